import { AppError, toAppError } from '../errors.js';
import { checkUpgradeHandshake, strictQuery } from '../http/upgrade-query.js';
import type { EndReason } from '../events/types.js';
import type { HttpServer } from '../http/server.js';
import type { HttpRequest, HttpResponse, us_socket_context_t, WebSocket } from '../http/uws.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { MAX_MUTE_INTERVALS, type Recording } from '../recording/recording.js';
import type { RecordingService } from '../recording/recording-service.js';
import type { Tenant, TenantRegistry } from '../tenants/tenant-registry.js';
import { EGRESS_ID_PATTERN, EGRESS_ID_RULE, GROUP_SECONDS, groupSecondsSchema } from './egress-params.js';
import { type ReplayGuard, verifyEgressToken } from './egress-token.js';

/** Query keys egress URLs may carry (seed-compatible); anything else is refused. */
const QUERY_KEYS = new Set(['token', 'roomName', 'participant', 'trackId', 'meetingId', 'tenant', 'sampleRate', 'channels', 'groupSeconds', 'channel']);
const SAMPLE_RATES = new Set([8000, 12000, 16000, 22050, 24000, 32000, 44100, 48000]);

export interface LiveKitEgressOptions {
  server: HttpServer;
  recordings: Pick<RecordingService, 'open' | 'finish' | 'whenIdle'>;
  tenants: Pick<TenantRegistry, 'get' | 'acquireStream'>;
  replayGuard: ReplayGuard;
  tokenSecret: string;
  requireToken: boolean;
  defaultTenant: string;
  defaultGroupSeconds: number;
  idleTimeoutSec: number;
  maxPayloadBytes: number;
  maxStreams: number;
  /** False while starting or draining: new streams are refused with 503. */
  admitting: () => boolean;
  logger: Logger;
  metrics: Metrics;
}

interface StreamData {
  recording: Recording;
  release: () => void;
  /** Set when the daemon ends the stream itself (room_finished, shutdown, timeout). */
  endReason: EndReason | undefined;
  closed: boolean;
}

/**
 * `GET /egress-audio`: LiveKit Track Egress as a WebSocket client. Everything is checked in the
 * upgrade handler (token, parameters, tenant, limits), so a refused egress gets a 4xx before
 * the upgrade; the per-message path only hands bytes to the recording and returns.
 */
export class LiveKitEgressSource {
  private readonly sockets = new Set<WebSocket<StreamData>>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private pendingUpgrades = 0;
  private readonly noStreamWaiters: (() => void)[] = [];
  // Hot-path counters, folded into prom-client once a second (a labelled inc per frame is costly).
  private frames = 0;
  private bytes = 0;

  constructor(private readonly opts: LiveKitEgressOptions) {}

  get name(): string {
    return 'livekit-egress';
  }

  get openStreams(): number {
    return this.sockets.size;
  }

  register(): void {
    const o = this.opts;
    o.server.app.ws<StreamData>('/egress-audio', {
      maxPayloadLength: o.maxPayloadBytes,
      // Our own sweep ends idle streams with `timeout`; uWS's timer is the backstop.
      idleTimeout: Math.min(960, o.idleTimeoutSec + 16),
      maxBackpressure: 64 * 1024,
      sendPingsAutomatically: false,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => {
        this.sockets.add(ws);
      },
      message: (ws, message, isBinary) => {
        const data = ws.getUserData();
        if (isBinary) {
          this.frames += 1;
          this.bytes += message.byteLength;
          data.recording.pushAudio(message); // read before this callback returns, as uWS requires
        } else this.onText(ws, data.recording, message);
      },
      ping: (ws) => ws.getUserData().recording.touch(),
      pong: (ws) => ws.getUserData().recording.touch(),
      close: (ws, code) => this.onClose(ws, code),
    });
  }

  async start(): Promise<void> {
    this.sweepTimer = setInterval(() => this.sweepIdle(), 1000);
    this.sweepTimer.unref();
    this.flushTimer = setInterval(() => this.flushCounters(), 1000);
    this.flushTimer.unref();
  }

  private flushCounters(): void {
    if (this.frames > 0) this.opts.metrics.framesReceived.inc({ source: 'livekit' }, this.frames);
    if (this.bytes > 0) this.opts.metrics.bytesReceived.inc({ source: 'livekit' }, this.bytes);
    this.frames = 0;
    this.bytes = 0;
  }

  private upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const query = new URLSearchParams(req.getQuery() ?? '');
    // every access to the response goes through the guard: the client may close during the checks
    const ctx = this.opts.server.context(res, req, 'egress-audio');
    const response = ctx.response;
    this.pendingUpgrades += 1;
    this.admit(query, ctx.headers)
      .then(
        async (admitted) => {
          if (!response.isOpen) {
            admitted.release();
            return;
          }
          const recording = await this.opts.recordings.open({
            identity: { tenant: admitted.tenant.id, roomName: admitted.roomName, meetingId: admitted.meetingId, participant: admitted.participant, trackId: admitted.trackId, dualChannel: admitted.dualChannel, source: 'livekit' },
            input: { sampleRate: admitted.sampleRate, channels: admitted.channels },
            groupSeconds: admitted.groupSeconds,
          });
          const data: StreamData = { recording, release: admitted.release, endReason: undefined, closed: false };
          if (!response.upgrade(data, key, protocol, extensions, context)) {
            admitted.release();
            void this.opts.recordings.finish(recording, 'aborted'); // finish() settles once the master is finalized; its failure is logged and counted there
          }
        },
      )
      .catch((err: unknown) => {
        const appErr = toAppError(err);
        if (appErr.code === 'INTERNAL') this.opts.logger.error({ err }, 'egress upgrade failed');
        else this.opts.logger.info({ code: appErr.code, reason: appErr.message }, 'egress connection refused');
        this.opts.server.answerError(ctx, 'egress-audio', appErr);
      })
      .finally(() => {
        this.pendingUpgrades -= 1;
        this.wakeIfNoStreams();
      });
  }

  /** Validates the query and token and reserves the stream slot; throws AppError on refusal. */
  private async admit(query: URLSearchParams, headers: Readonly<Record<string, string>>): Promise<{
    tenant: Tenant;
    roomName: string;
    participant: string | undefined;
    trackId: string | undefined;
    meetingId: string | undefined;
    dualChannel: 'left' | 'right' | undefined;
    sampleRate: number;
    channels: number;
    groupSeconds: number;
    release: () => void;
  }> {
    const o = this.opts;
    if (!o.admitting()) throw new AppError('DRAINING', 'the daemon is not accepting new streams (starting or shutting down)', { retryAfterSec: 5 });
    checkUpgradeHandshake(headers);
    const q = strictQuery(query, QUERY_KEYS);
    const token = q('token');
    let claims: Awaited<ReturnType<typeof verifyEgressToken>> | undefined;
    if (token) claims = await verifyEgressToken(o.tokenSecret, token);
    else if (o.requireToken) throw new AppError('UNAUTHORIZED', 'query parameter token is required');

    const tenantId = claims?.tenant ?? q('tenant') ?? o.defaultTenant;
    const tenant = o.tenants.get(tenantId);
    if (!tenant) throw new AppError('UNKNOWN_TENANT', `unknown tenant '${tenantId.slice(0, 64)}'`);
    const roomName = claims?.roomName ?? q('roomName');
    if (!roomName) throw new AppError('MISSING_PARAMETER', 'roomName is required');
    const ids = { roomName, participant: claims?.participant ?? q('participant'), trackId: claims?.trackId ?? q('trackId'), meetingId: claims?.meetingId ?? q('meetingId') };
    for (const [k, v] of Object.entries(ids)) {
      if (v !== undefined && !EGRESS_ID_PATTERN.test(v)) throw new AppError('INVALID_PARAMETER', `${k} must be ${EGRESS_ID_RULE}`);
    }
    const dualRaw = claims?.channel ?? q('channel');
    if (dualRaw !== undefined && dualRaw !== 'left' && dualRaw !== 'right') throw new AppError('INVALID_PARAMETER', 'channel must be left or right');
    const dualChannel = dualRaw;
    const sampleRate = intParam(q('sampleRate'), 48000, 'sampleRate');
    if (!SAMPLE_RATES.has(sampleRate)) throw new AppError('INVALID_PARAMETER', `sampleRate ${sampleRate} is not supported`, { details: { allowed: [...SAMPLE_RATES] } });
    const channels = intParam(q('channels'), 2, 'channels');
    if (channels !== 1 && channels !== 2) throw new AppError('INVALID_PARAMETER', 'channels must be 1 or 2');
    const groupRaw = claims?.groupSeconds ?? (q('groupSeconds') !== undefined ? Number(q('groupSeconds')) : o.defaultGroupSeconds);
    if (!groupSecondsSchema.safeParse(groupRaw).success) throw new AppError('INVALID_PARAMETER', `groupSeconds must be a number from ${GROUP_SECONDS.min} to ${GROUP_SECONDS.max}`);

    if (this.sockets.size + this.pendingUpgrades > o.maxStreams) {
      throw new AppError('TOO_MANY_CONNECTIONS', `this host already carries ${this.sockets.size} streams`, { retryAfterSec: 5 });
    }
    // Consume the token only once everything else passed, so a refusal for another reason does not burn it.
    if (claims && !(await o.replayGuard.claim(claims.jti, claims.exp))) throw new AppError('TOKEN_REPLAYED', 'this egress token was already used');
    const release = o.tenants.acquireStream(tenant);
    return { tenant, ...ids, dualChannel, sampleRate, channels, groupSeconds: groupRaw, release };
  }

  private onText(ws: WebSocket<StreamData>, recording: Recording, message: ArrayBuffer): void {
    recording.touch();
    const muted = parseMute(message);
    if (muted === undefined) {
      this.opts.metrics.textFrames.inc({ kind: 'invalid' });
      return;
    }
    this.opts.metrics.textFrames.inc({ kind: muted ? 'mute' : 'unmute' });
    if (recording.setMuted(muted)) return;
    // a source that mutes without end: its audio so far is kept, the stream ends (1008, policy)
    if (ws.getUserData().endReason === undefined) {
      this.opts.metrics.errors.inc({ code: 'MUTE_LIMIT' });
      this.opts.logger.warn({ recordingId: recording.identity.recordingId, limit: MAX_MUTE_INTERVALS }, 'egress stream ended: too many mute changes');
    }
    this.end(ws, 'aborted', 1008, `MUTE_LIMIT: more than ${MAX_MUTE_INTERVALS} mute intervals`);
  }

  private onClose(ws: WebSocket<StreamData>, code: number): void {
    this.sockets.delete(ws);
    this.wakeIfNoStreams();
    const data = ws.getUserData();
    data.closed = true;
    data.release();
    // 1000 and an empty close (1005) are egress's normal end; anything else is abnormal.
    const reason: EndReason = data.endReason ?? (code === 1000 || code === 1005 ? 'normal' : 'aborted');
    void this.opts.recordings.finish(data.recording, reason); // as above: stop() waits for every finish through recordings.whenIdle()
  }

  private sweepIdle(): void {
    const limitMs = this.opts.idleTimeoutSec * 1000;
    const now = Date.now();
    for (const ws of this.sockets) {
      const data = ws.getUserData();
      if (data.recording.idleMs(now) > limitMs) this.end(ws, 'timeout', 1001, 'idle timeout');
    }
  }

  private end(ws: WebSocket<StreamData>, reason: EndReason, code: number, text: string): void {
    const data = ws.getUserData();
    if (data.closed) return;
    data.endReason = reason;
    ws.end(code, text);
  }

  /** Ends every stream of a room on this host with `room_finished` (tenant `*` = any); returns how many. */
  finishRoom(tenant: string, roomName: string): number {
    let n = 0;
    for (const ws of this.sockets) {
      const id = ws.getUserData().recording.identity;
      if ((tenant === '*' || id.tenant === tenant) && id.roomName === roomName) {
        this.end(ws, 'room_finished', 1000, 'room finished');
        n++;
      }
    }
    return n;
  }

  /** Resolves when no stream is open and no upgrade is being checked (the drain window). */
  whenNoStreams(): Promise<void> {
    if (this.sockets.size === 0 && this.pendingUpgrades === 0) return Promise.resolve();
    return new Promise((resolve) => this.noStreamWaiters.push(resolve));
  }

  private wakeIfNoStreams(): void {
    if (this.sockets.size > 0 || this.pendingUpgrades > 0) return;
    for (const wake of this.noStreamWaiters.splice(0)) wake();
  }

  /** Ends every remaining stream with `shutdown` and waits until each recording is finalized. */
  async stop(): Promise<void> {
    for (const ws of [...this.sockets]) this.end(ws, 'shutdown', 1001, 'server shutting down');
    clearInterval(this.sweepTimer);
    clearInterval(this.flushTimer);
    this.flushCounters();
    await this.opts.recordings.whenIdle();
  }
}

function intParam(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined) return fallback;
  if (!/^\d{1,6}$/.test(raw)) throw new AppError('INVALID_PARAMETER', `${name} must be an integer`);
  return Number(raw);
}

const TRUE_JSON = /^\s*\{\s*"muted"\s*:\s*true\s*\}\s*$/;
const FALSE_JSON = /^\s*\{\s*"muted"\s*:\s*false\s*\}\s*$/;

/** `{"muted":true|false}` or the bare `true`/`false` of older egress; anything else is undefined. */
export function parseMute(message: ArrayBuffer): boolean | undefined {
  // Real mute frames are tiny: never parse a large text (JSON bombs, garbage).
  if (message.byteLength > 64) return undefined;
  const text = Buffer.from(message).toString('utf8');
  if (text === 'true' || TRUE_JSON.test(text)) return true;
  if (text === 'false' || FALSE_JSON.test(text)) return false;
  return undefined;
}
