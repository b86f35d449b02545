import { AppError } from '../errors.js';
import { json, type HttpServer, type RequestContext } from '../http/server.js';
import type { DurationFilter, DurationLimits } from '../limits/duration-filter.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { Tenant } from '../tenants/tenant-registry.js';
import { parseMessageTimestamp } from '../voicenotes/message-timestamp.js';
import type { DeclaredFacts, VoiceNoteService } from '../voicenotes/voice-note-service.js';

/** Options of {@link registerWhatsAppHttp}. */
export interface WhatsAppHttpOptions {
  server: HttpServer;
  /** API-key authentication (`apikey` or `Authorization: Bearer`); throws 401. */
  authenticate(headers: Record<string, string>): Tenant;
  service: VoiceNoteService;
  limiter: RateLimiter;
  filter: DurationFilter;
  /** Largest media body accepted (`whatsapp.maxBytes`). */
  maxBytes: number;
  /** Largest JSON body of the filter routes. */
  maxJsonBytes: number;
}

/**
 * `POST /v1/whatsapp/audio` (CONTRACT §2.2): the original media bytes, streamed, with the
 * message's facts in headers. Everything that can be refused without the body is refused
 * first (auth, headers, media type, size, rate); the body is then read with backpressure
 * by the voice-note pipeline. Also the per-instance duration filter routes.
 */
export function registerWhatsAppHttp(opts: WhatsAppHttpOptions): void {
  opts.server.route('post', '/v1/whatsapp/audio', 'whatsapp_audio', async (ctx) => {
    const h = ctx.headers;
    const tenant = authorizeTenant(ctx, opts.authenticate);
    const instance = requiredHeader(h, 'x-instance');
    const chatId = requiredHeader(h, 'x-chat-id');
    const messageId = requiredHeader(h, 'x-message-id');
    checkMediaType(h['content-type']);
    const declaredBytes = h['content-length'];
    if (declaredBytes !== undefined && Number(declaredBytes) > opts.maxBytes) {
      throw new AppError('PAYLOAD_TOO_LARGE', `body of ${declaredBytes} bytes exceeds ${opts.maxBytes}`, { details: { limit: opts.maxBytes } });
    }
    const declared = declaredFromHeaders(h);
    await opts.limiter.consume({ tenant: tenant.id, instance });
    const result = await opts.service.ingest({
      tenant: tenant.id,
      instance,
      chatId,
      messageId,
      idempotencyKey: h['idempotency-key'] || `${instance}:${messageId}`,
      declared,
      body: ctx.bodyStream(),
      signal: ctx.signal,
    });
    return json(result.status, result.body);
  });

  const filterRoute = '/v1/whatsapp/instances/:name/filter';
  opts.server.route('get', filterRoute, 'whatsapp_filter', (ctx) => {
    const tenant = opts.authenticate(ctx.headers);
    const name = ctx.params[0] ?? '';
    return json(200, filterBody(name, opts.filter.get(name, tenant.id)));
  });
  opts.server.route('put', filterRoute, 'whatsapp_filter', async (ctx) => {
    const tenant = opts.authenticate(ctx.headers);
    const name = ctx.params[0] ?? '';
    const body = await ctx.readJson(opts.maxJsonBytes);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new AppError('INVALID_PARAMETER', 'body must be an object {minSec, maxSec, enabled}', { details: { field: 'body', allowed: '{minSec, maxSec, enabled}' } });
    }
    const limits = await opts.filter.setInstanceFilter(name, body as Partial<DurationLimits>, tenant.id);
    return json(200, filterBody(name, limits));
  });
  opts.server.route('del', filterRoute, 'whatsapp_filter', async (ctx) => {
    const tenant = opts.authenticate(ctx.headers);
    const name = ctx.params[0] ?? '';
    return json(200, filterBody(name, await opts.filter.removeInstanceFilter(name, tenant.id)));
  });
}

/** Authenticates and checks that `X-Tenant-Id`, when sent, names the key's own tenant. */
export function authorizeTenant(ctx: RequestContext, authenticate: (headers: Record<string, string>) => Tenant): Tenant {
  const tenant = authenticate(ctx.headers);
  const claimed = ctx.headers['x-tenant-id'];
  if (claimed !== undefined && claimed !== '' && claimed !== tenant.id) {
    throw new AppError('FORBIDDEN', 'X-Tenant-Id does not match the API key\'s tenant', { details: { header: 'X-Tenant-Id' } });
  }
  return tenant;
}

function requiredHeader(h: Record<string, string>, name: string): string {
  const v = h[name]?.trim();
  if (v === undefined || v === '') {
    const header = name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
    throw new AppError('MISSING_PARAMETER', `header ${header} is required`, { details: { header } });
  }
  return v;
}

/** audio/* or application/octet-stream (or none): only a hint, the bytes decide the format. */
function checkMediaType(contentType: string | undefined): void {
  if (contentType === undefined || contentType.trim() === '') return;
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (type.startsWith('audio/') || type === 'application/octet-stream') return;
  throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Type ${type} is not audio; send the message's audio mimetype or application/octet-stream`, {
    details: { header: 'Content-Type', value: type },
  });
}

function declaredFromHeaders(h: Record<string, string>): DeclaredFacts {
  const seconds = h['x-audio-seconds'];
  const ptt = h['x-audio-ptt'];
  const length = h['x-file-length'];
  const timestamp = h['x-message-timestamp'];
  const declared: DeclaredFacts = { mimetype: h['content-type'] };
  if (seconds !== undefined && seconds !== '') {
    if (!/^\d+(\.\d+)?$/.test(seconds)) throw invalidHeader('X-Audio-Seconds', seconds, 'a number of seconds >= 0');
    declared.seconds = Number(seconds);
  }
  if (ptt !== undefined && ptt !== '') {
    if (!/^(true|false|1|0)$/i.test(ptt)) throw invalidHeader('X-Audio-Ptt', ptt, 'true or false');
    declared.ptt = /^(true|1)$/i.test(ptt);
  }
  if (length !== undefined && length !== '') {
    if (!/^\d{1,15}$/.test(length)) throw invalidHeader('X-File-Length', length, 'a byte count');
    declared.fileLength = Number(length);
  }
  if (h['x-file-sha256']) declared.sha256Base64 = h['x-file-sha256'];
  if (timestamp !== undefined && timestamp !== '') {
    declared.messageTimestamp = parseMessageTimestamp(timestamp);
    if (declared.messageTimestamp === undefined) throw invalidHeader('X-Message-Timestamp', timestamp, 'Unix seconds, Unix milliseconds or ISO 8601');
  }
  return declared;
}

function invalidHeader(header: string, value: string, allowed: string): AppError {
  return new AppError('INVALID_PARAMETER', `header ${header} must be ${allowed}, got ${JSON.stringify(value.slice(0, 100))}`, {
    details: { header, value: value.slice(0, 100), allowed },
  });
}

function filterBody(instance: string, limits: DurationLimits): Record<string, unknown> {
  return { instance, ...limits };
}
