import { z } from 'zod';
import { AppError, toAppError } from '../errors.js';
import { checkUpgradeHandshake, strictQuery } from '../http/upgrade-query.js';
import { json, type HttpServer } from '../http/server.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from '../http/uws.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { CatalogRecord } from '../recording/recording-catalog.js';
import type { Recording } from '../recording/recording.js';
import type { ReplayGuard } from '../sources/egress-token.js';
import type { Tenant } from '../tenants/tenant-registry.js';
import { Resampler } from '../audio/resample.js';
import { MASTER_HEADER_BYTES } from '../audio/wav.js';
import type { LiveDirectory } from './live-directory.js';
import { LIVE_RATES, type LiveHub, LiveTrack, Subscriber, type SubscriberData } from './live-hub.js';
import { mintLiveToken, verifyLiveToken } from './live-token.js';

const QUERY_KEYS = new Set(['token', 'recordingId', 'roomName', 'participant', 'rate', 'from']);
const ID_PATTERN = /^[\p{L}\p{N}._:@+-]{1,128}$/u;
const OFFSET = /^\d{1,15}$/;

export interface LiveRouteOptions {
  server: HttpServer;
  hub: LiveHub;
  authenticate: (headers: Record<string, string>) => Tenant;
  tenants: { get(id: string): Tenant | undefined };
  /** Live recordings of this host. */
  recordings: { get(recordingId: string): Recording | undefined; inRoom(tenant: string, roomName: string): Recording[] };
  catalog: { get(tenant: string, recordingId: string): Promise<CatalogRecord | null> };
  directory: LiveDirectory | undefined;
  replayGuard: ReplayGuard;
  tokenSecret: string;
  baseUrl: () => string;
  defaultTtlSec: number;
  maxSubscribersPerTenant: number;
  maxBodyBytes: number;
  admitting: () => boolean;
  logger: Logger;
  metrics: Metrics;
}

/** What the upgrade decided, handed to `open`. */
interface Plan {
  tenant: string;
  rate: number;
  selection: { recordingId: string } | { roomName: string; participant: string | undefined };
  /** Single recording: its track and start offset. Room: the tracks named in from, and the live ones. */
  tracks: { track: LiveTrack | (() => LiveTrack); from: number | undefined }[];
}

const idField = z.string().regex(ID_PATTERN, '1–128 letters, digits or . _ : @ + -');

export const liveUrlRequestSchema = z
  .object({
    recordingId: idField.optional(),
    roomName: idField.optional(),
    participant: idField.optional(),
    rate: z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]).optional(),
    ttlSeconds: z.number().int().min(10).max(3600).optional(),
  })
  .strict()
  .refine((b) => (b.recordingId === undefined) !== (b.roomName === undefined), { message: 'give exactly one of recordingId and roomName' })
  .refine((b) => b.participant === undefined || b.roomName !== undefined, { message: 'participant goes with roomName' });

/**
 * `GET /v1/live` (WebSocket) and `POST /v1/live/urls`. Everything is decided before the upgrade
 * (auth, selection, tenant, limits, where the recording lives), so a refusal is a JSON error
 * answer and a recording on another host a 307 to it.
 */
export function registerLiveRoutes(o: LiveRouteOptions): void {
  const pending = { n: 0 };
  o.server.route('post', '/v1/live/urls', 'live-urls', async (ctx) => {
    const tenant = o.authenticate(ctx.headers);
    const parsed = liveUrlRequestSchema.safeParse(await ctx.readJson(o.maxBodyBytes));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new AppError('INVALID_PARAMETER', `${issue.path.join('.') || 'body'}: ${issue.message}`, {
        details: { problems: parsed.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })) },
      });
    }
    const { ttlSeconds, ...claims } = parsed.data;
    const { token, expiresAt } = await mintLiveToken(o.tokenSecret, { tenant: tenant.id, ...claims }, ttlSeconds ?? o.defaultTtlSec);
    const url = new URL('/v1/live', o.baseUrl().replace(/^http/, 'ws'));
    url.searchParams.set('token', token);
    return json(201, { url: url.toString(), expiresAt: expiresAt.toISOString() });
  });

  o.server.app.ws<SubscriberData>('/v1/live', {
    maxPayloadLength: 4096,
    // our own pings and idle sweep (live.pingSec / live.idleSec); uWS's timer is the backstop
    idleTimeout: 960,
    sendPingsAutomatically: false,
    // the queue bound is ours (live.queueSeconds, checked after each live send); uWS must never drop
    maxBackpressure: 1024 * 1024 * 1024,
    closeOnBackpressureLimit: 0,
    upgrade: (res, req, context) => upgrade(o, pending, res, req, context),
    open: (ws) => {
      const data = ws.getUserData() as SubscriberData & { plan?: Plan };
      const plan = data.plan!;
      data.plan = undefined;
      const sub = new Subscriber(o.hub, ws, plan.tenant, plan.rate, plan.selection, o.hub.queueSeconds);
      data.sub = sub;
      o.hub.add(sub);
      ws.cork(() => {
        for (const t of plan.tracks) {
          if (sub.closed) break;
          sub.addTrack(typeof t.track === 'function' ? t.track() : t.track, t.from);
        }
      });
      if (!sub.closed && sub.isRoom && sub.feeds.every((f) => f.mode === 'done')) sub.idleSince = Date.now();
    },
    message: (ws) => {
      const sub = ws.getUserData().sub;
      if (sub) sub.lastLife = Date.now();
    },
    pong: (ws) => {
      const sub = ws.getUserData().sub;
      if (sub) sub.lastLife = Date.now();
    },
    drain: (ws) => ws.getUserData().sub?.onDrain(),
    close: (ws, code, message) => {
      const sub = ws.getUserData().sub;
      // the daemon's own closes (ws.end) come through here too, before the subscriber is marked closed
      if (sub !== undefined && !sub.closed) o.logger.info({ tenant: sub.tenant, code, reason: Buffer.from(message).toString('utf8'), feeds: sub.feeds.map((f) => f.mode) }, 'live subscriber connection closed by the peer or the network');
      sub?.onClosed();
    },
  });
}

function upgrade(o: LiveRouteOptions, pending: { n: number }, res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
  const key = req.getHeader('sec-websocket-key');
  const protocol = req.getHeader('sec-websocket-protocol');
  const extensions = req.getHeader('sec-websocket-extensions');
  const rawQuery = req.getQuery() ?? '';
  const query = new URLSearchParams(rawQuery);
  const ctx = o.server.context(res, req, 'live');
  const response = ctx.response;
  const headers = ctx.headers;
  pending.n += 1;
  admit(o, query, headers)
    .then((decision) => {
      if ('redirect' in decision) {
        const location = new URL('/v1/live', decision.redirect.replace(/^http/, 'ws'));
        location.search = rawQuery;
        o.metrics.httpRequests.inc({ route: 'live', status: '307' });
        ctx.send(json(307, { location: location.toString() }, { Location: location.toString() }));
        return;
      }
      o.metrics.httpRequests.inc({ route: 'live', status: '101' });
      const data: SubscriberData & { plan?: Plan } = { sub: undefined, plan: decision };
      response.upgrade(data, key, protocol, extensions, context);
    })
    .catch((err: unknown) => {
      const appErr = toAppError(err);
      if (appErr.code === 'INTERNAL') o.logger.error({ err }, 'live upgrade failed');
      else o.logger.info({ code: appErr.code, reason: appErr.message }, 'live subscription refused');
      o.server.answerError(ctx, 'live', appErr);
    })
    .finally(() => {
      pending.n -= 1;
    });
}

async function admit(o: LiveRouteOptions, query: URLSearchParams, headers: Record<string, string>): Promise<Plan | { redirect: string }> {
  if (!o.admitting()) throw new AppError('DRAINING', 'the daemon is not accepting new subscriptions (starting or shutting down)', { retryAfterSec: 5 });
  checkUpgradeHandshake(headers);
  const q = strictQuery(query, QUERY_KEYS);
  // auth: a live token, or the API key header
  const token = q('token');
  const claims = token !== undefined ? await verifyLiveToken(o.tokenSecret, token) : undefined;
  let tenant: Tenant;
  if (claims) {
    const t = o.tenants.get(claims.tenant);
    if (!t) throw new AppError('UNKNOWN_TENANT', 'the token names an unknown tenant');
    tenant = t;
  } else tenant = o.authenticate(headers);

  const pick = (k: 'recordingId' | 'roomName' | 'participant'): string | undefined => {
    const v = q(k);
    const c = claims?.[k];
    if (claims && v !== undefined && v !== c) throw new AppError('INVALID_PARAMETER', `${k} differs from the one the token was made for`);
    const out = claims ? c : v;
    if (out !== undefined && !ID_PATTERN.test(out)) throw new AppError('INVALID_PARAMETER', `${k} must be 1–128 letters, digits or . _ : @ + -`);
    return out;
  };
  const recordingId = pick('recordingId');
  const roomName = pick('roomName');
  const participant = pick('participant');
  if ((recordingId === undefined) === (roomName === undefined)) throw new AppError('INVALID_PARAMETER', 'give exactly one of recordingId and roomName');
  if (participant !== undefined && roomName === undefined) throw new AppError('INVALID_PARAMETER', 'participant goes with roomName');
  const rateText = q('rate');
  if (claims?.rate !== undefined && rateText !== undefined && rateText !== String(claims.rate)) throw new AppError('INVALID_PARAMETER', 'rate differs from the one the token was made for');
  const rate = claims?.rate ?? (rateText === undefined ? 16000 : Number(rateText));
  if (!(LIVE_RATES as readonly number[]).includes(rate)) throw new AppError('INVALID_PARAMETER', `rate must be one of ${LIVE_RATES.join(', ')}`, { details: { allowed: [...LIVE_RATES] } });
  const fromText = q('from');

  if (o.hub.tenantSubscribers(tenant.id) >= o.maxSubscribersPerTenant) {
    throw new AppError('TOO_MANY_CONNECTIONS', `tenant already has ${o.maxSubscribersPerTenant} live subscribers on this host`, { retryAfterSec: 5 });
  }

  let plan: Plan;
  if (recordingId !== undefined) {
    if (fromText !== undefined && !OFFSET.test(fromText)) throw new AppError('INVALID_PARAMETER', 'from must be a sample offset (a non-negative integer) for a recording');
    const from = fromText === undefined ? undefined : Number(fromText);
    const found = await findRecording(o, tenant.id, recordingId, from !== undefined);
    if ('redirect' in found) return found;
    const track = found.track;
    checkFrom(track, from, rate);
    await checkSpooled(o, track, from, rate);
    plan = { tenant: tenant.id, rate, selection: { recordingId }, tracks: [{ track: found.lazy ?? track, from }] };
  } else {
    const froms = new Map<string, number>();
    if (fromText !== undefined) {
      for (const part of fromText.split(',')) {
        const i = part.lastIndexOf(':');
        const id = part.slice(0, i);
        const n = part.slice(i + 1);
        if (i <= 0 || !ID_PATTERN.test(id) || !OFFSET.test(n) || froms.has(id)) throw new AppError('INVALID_PARAMETER', 'from must be <recordingId>:<offset>,… for a room');
        froms.set(id, Number(n));
      }
    }
    const live = o.recordings.inRoom(tenant.id, roomName!).filter((r) => r.isLive && (participant === undefined || r.identity.participant === participant));
    const tracks: Plan['tracks'] = [];
    for (const [id, from] of froms) {
      const found = await findRecording(o, tenant.id, id, true);
      if ('redirect' in found) throw new AppError('INVALID_PARAMETER', `recording ${id} of from= is on another host`);
      if (found.track.info.roomName !== roomName) throw new AppError('NOT_FOUND', `recording ${id} is not of room ${roomName}`);
      checkFrom(found.track, from, rate);
      await checkSpooled(o, found.track, from, rate);
      tracks.push({ track: found.lazy ?? found.track, from });
    }
    for (const r of live) {
      if (froms.has(r.identity.recordingId)) continue;
      tracks.push({ track: () => o.hub.trackOf(r), from: undefined });
    }
    if (tracks.length === 0) {
      const elsewhere = await o.directory?.whereIsRoom(tenant.id, roomName!);
      if (elsewhere !== undefined) return { redirect: elsewhere };
      throw new AppError('NOT_FOUND', `no live recording of room ${roomName} on this daemon`);
    }
    plan = { tenant: tenant.id, rate, selection: { roomName: roomName!, participant }, tracks };
  }
  // consume the token only once everything else passed (and never for a redirect: the owner does)
  if (claims && !(await o.replayGuard.claim(claims.jti, claims.exp))) throw new AppError('TOKEN_REPLAYED', 'this live token was already used');
  return plan;
}

/** A from= beyond the audio there is is refused (the offset is the first sample not yet received). */
function checkFrom(track: LiveTrack, from: number | undefined, rate: number): void {
  if (from === undefined) return;
  const limit = Math.ceil((track.frames * rate) / track.info.masterRate);
  if (from > limit) throw new AppError('INVALID_PARAMETER', `from ${from} is beyond the ${limit} samples of this track so far`);
}

/**
 * A live recording's `from` that needs audio from parts already uploaded (S3: the middle parts
 * of the multipart upload, which the store shows only once the upload is complete) is refused
 * with 410 RESUME_UNAVAILABLE and the first offset that can be resumed from now, instead of a
 * subscription that cannot go on. Once the recording is stored, all of it can be read again.
 */
async function checkSpooled(o: LiveRouteOptions, track: LiveTrack, from: number | undefined, rate: number): Promise<void> {
  // an ended recording (stored, or being stored) is read from the store once its spool has moved there
  if (from === undefined || track.ended !== undefined || track.recording === undefined || !track.recording.isLive) return;
  const info = track.info;
  const r = new Resampler({ inputRate: info.masterRate, outputRate: rate, channels: 1, ...o.hub.filter });
  const needFrom = r.startAt(from);
  const spooled = track.readableFrames;
  if (needFrom >= spooled) return; // from the chunk being filled on
  const loc = { recordingId: info.recordingId, key: info.key, channels: info.masterChannels };
  const readable = await o.hub.history.reader.spooledFrom(loc, spooled);
  if (needFrom >= readable) return;
  // the first output offset whose input lies in the spool from `readable` on
  const availableFrom = r.passThrough ? readable : Math.ceil(((readable + r.lookaheadFrames) * rate) / info.masterRate);
  throw new AppError('RESUME_UNAVAILABLE', `the audio before offset ${availableFrom} is in parts of the master already uploaded and can be read only once the recording is stored`, {
    details: { availableFrom },
  });
}

async function findRecording(
  o: LiveRouteOptions,
  tenant: string,
  recordingId: string,
  replay: boolean,
): Promise<{ track: LiveTrack; lazy?: () => LiveTrack } | { redirect: string }> {
  const known = o.hub.known(recordingId);
  // at the upgrade, the hub's track of the recording then (the one seen here may have lost its last feed meanwhile)
  const rec0 = known?.recording;
  if (known !== undefined && known.info.tenant === tenant && (known.ended === undefined || replay)) return { track: known, lazy: () => (rec0 === undefined ? known : o.hub.trackOf(rec0)) };
  const rec = o.recordings.get(recordingId);
  if (rec !== undefined && rec.identity.tenant === tenant && (rec.isLive || replay)) {
    // a look at it for the checks; the hub's track (the tap) is made only if the upgrade happens
    return { track: new LiveTrack(o.hub, { recording: rec }), lazy: () => o.hub.trackOf(rec) };
  }
  if (rec !== undefined && rec.identity.tenant === tenant) throw new AppError('RECORDING_ENDED', 'the recording has ended; give from= to replay it');
  if (known !== undefined && known.info.tenant === tenant) throw new AppError('RECORDING_ENDED', 'the recording has ended; give from= to replay it');
  const elsewhere = await o.directory?.whereIsRecording(tenant, recordingId);
  if (elsewhere !== undefined) return { redirect: elsewhere };
  const record = await o.catalog.get(tenant, recordingId);
  if (!record || record.tenant !== tenant) throw new AppError('NOT_FOUND', 'no such recording');
  if (record.state === 'recording') {
    if (!replay) throw new AppError('RECORDING_ENDED', 'the recording has ended; give from= to replay it');
    throw new AppError('STORAGE_UNAVAILABLE', 'the recording is being stored; retry shortly', { retryAfterSec: 2 });
  }
  if (!replay) throw new AppError('RECORDING_ENDED', 'the recording has ended; give from= to replay it');
  if (record.state !== 'completed' || record.sizeBytes === null) throw new AppError('RESUME_UNAVAILABLE', 'the recording has no stored master');
  const frames = Math.floor((record.sizeBytes - MASTER_HEADER_BYTES) / (2 * record.channels));
  const track = o.hub.storedTrack({
    recordingId,
    tenant,
    roomName: record.roomName,
    participant: record.participant,
    trackId: record.trackId,
    startedAt: record.startedAt,
    key: record.key,
    masterRate: record.sampleRate,
    masterChannels: record.channels,
    frames,
    endReason: record.endReason ?? 'normal',
    muteIntervals: record.muteIntervals,
  });
  return { track };
}
