import { Readable } from 'node:stream';
import { json, type Handler, type HttpServer } from '../http/server.js';
import type { RateLimiter } from '../limits/rate-limiter.js';
import type { Tenant } from '../tenants/tenant-registry.js';
import { parseEvolutionUpsert } from '../voicenotes/evolution-envelope.js';
import type { VoiceNoteService } from '../voicenotes/voice-note-service.js';
import { authorizeTenant } from './whatsapp-http.js';

/** Options of {@link registerWhatsAppMessages}. */
export interface WhatsAppMessagesOptions {
  server: HttpServer;
  authenticate(headers: Record<string, string>): Tenant;
  service: VoiceNoteService;
  limiter: RateLimiter;
  /** Largest media accepted (`whatsapp.maxBytes`); the JSON body may be 4/3 of it plus the envelope. */
  maxBytes: number;
}

/** Room for the envelope's other fields around the base64 media. */
const ENVELOPE_SLACK_BYTES = 256 * 1024;

/**
 * `POST /v1/whatsapp/messages`: Evolution API's `messages.upsert` webhook with "webhook
 * base64" on. Same pipeline and answers as `/v1/whatsapp/audio`. Other events and
 * non-audio messages are answered `200 {status:"ignored", reason}`, because a webhook
 * subscription carries every message and its sender would retry any error. Evolution's
 * "webhook by events" mode posts to `…/messages-upsert`, which is served too.
 */
export function registerWhatsAppMessages(opts: WhatsAppMessagesOptions): void {
  const maxJson = Math.ceil(opts.maxBytes / 3) * 4 + ENVELOPE_SLACK_BYTES;
  const handler: Handler = async (ctx) => {
    const tenant = authorizeTenant(ctx, opts.authenticate);
    const parsed = parseEvolutionUpsert(await ctx.readJson(maxJson), opts.maxBytes);
    if (parsed.kind === 'ignored') {
      return json(200, { status: 'ignored', reason: parsed.reason, ...(parsed.messageId === undefined ? {} : { messageId: parsed.messageId }) });
    }
    await opts.limiter.consume({ tenant: tenant.id, instance: parsed.instance });
    const result = await opts.service.ingest({
      tenant: tenant.id,
      instance: parsed.instance,
      chatId: parsed.chatId,
      messageId: parsed.messageId,
      idempotencyKey: ctx.headers['idempotency-key'] || `${parsed.instance}:${parsed.messageId}`,
      declared: parsed.declared,
      body: Readable.from([parsed.media]),
      signal: ctx.signal,
    });
    return json(result.status, result.body);
  };
  opts.server.route('post', '/v1/whatsapp/messages', 'whatsapp_messages', handler);
  opts.server.route('post', '/v1/whatsapp/messages/messages-upsert', 'whatsapp_messages', handler);
}
