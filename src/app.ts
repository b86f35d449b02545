import { existsSync, mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Admission, type DaemonState } from './admission.js';
import { composeDaemon, type Daemon } from './composition.js';
import type { Config } from './config/schema.js';
import { loadSecrets, type Secrets } from './config/secrets.js';
import { AppError } from './errors.js';
import type { Outbox } from './events/outbox.js';
import type { RoomSignals } from './events/room-signals.js';
import type { HttpServer } from './http/server.js';
import { Lifecycle } from './lifecycle.js';
import { DurationFilter } from './limits/duration-filter.js';
import type { RateLimiter } from './limits/rate-limiter.js';
import type { LiveHub } from './live/live-hub.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import type { RecordingCatalog } from './recording/recording-catalog.js';
import type { RecordingService } from './recording/recording-service.js';
import type { RoomService } from './rooms/room-service.js';
import type { LiveKitEgressSource } from './sources/livekit-egress.js';
import type { WhatsAppAmqpConsumer } from './sources/whatsapp-amqp.js';
import type { ObjectKeys } from './storage/keys.js';
import type { ObjectStore } from './storage/object-store.js';
import type { RetentionSweeper } from './storage/retention-sweeper.js';
import type { Spool } from './storage/spool.js';
import { TenantRegistry } from './tenants/tenant-registry.js';
import type { VoiceNoteService } from './voicenotes/voice-note-service.js';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface AppOptions {
  logger?: Logger;
  metrics?: Metrics;
}

export type AppState = DaemonState;

/** How long requests given up at the end of the drain may take to finish before the parts they use stop. */
const ABORTED_REQUESTS_MS = 5000;

/**
 * The one deadline of stopping the parts, after the drain (ms). Finalizing the live recordings
 * is what takes long; a part still stopping then is logged and the others stop without it
 * (what it left on disk is recovered by the next start).
 */
const STOP_DEADLINE_MS = 120_000;

/**
 * The daemon: {@link App.create} reads what the parts need from disk and builds them
 * (`composition.ts`); `start()` runs the lifecycle — it listens first (answering 503 until
 * ready, so an operator sees the daemon while recovery runs), recovers what a previous process
 * left, then opens for work. `stop()` drains: not ready at once, new work refused with
 * DRAINING, live streams may continue up to `shutdown.drainSeconds`, then the parts stop in
 * reverse (every recording is finalized, the outbox flushed).
 */
export class App {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly dataDir: string;
  /** Secrets in force (from the environment, or generated into DATA_DIR for the embedded defaults). */
  readonly secrets: Secrets;
  readonly tenants: TenantRegistry;
  readonly http: HttpServer;
  readonly store: ObjectStore;
  readonly keys: ObjectKeys;
  readonly spool: Spool;
  readonly catalog: RecordingCatalog;
  readonly retention: RetentionSweeper | undefined;
  readonly outbox: Outbox;
  readonly roomSignals: RoomSignals;
  readonly rooms: RoomService | undefined;
  readonly recordings: RecordingService;
  readonly livekit: LiveKitEgressSource;
  readonly live: LiveHub;
  readonly voiceNotes: VoiceNoteService;
  readonly rateLimiter: RateLimiter;
  readonly durationFilter: DurationFilter;
  readonly whatsappAmqp: WhatsAppAmqpConsumer | undefined;
  private readonly admission: Admission;
  private readonly lifecycle: Lifecycle;
  private readonly daemon: Daemon;
  private stopping: Promise<void> | undefined;

  /**
   * Reads what building the parts needs — generated secrets, TENANTS_FILE, the duration filters
   * kept in DATA_DIR, the free space the spool defaults to — then builds them (no part does I/O
   * while being built; they do in `start()`).
   */
  static async create(config: Config, options: AppOptions = {}): Promise<App> {
    const logger = options.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty });
    const metrics = options.metrics ?? new Metrics();
    const dataDir = resolve(config.dataDir);
    const spoolMaxBytes = config.spool.maxBytes ?? defaultSpoolBytes(dataDir);
    mkdirSync(dataDir, { recursive: true });
    const secrets = loadSecrets(config, dataDir, logger);
    const tenants = new TenantRegistry({ defaultTenant: config.auth.defaultTenant, apiKey: secrets.apiKey, tenantsFile: config.auth.tenantsFile, defaults: config.tenantDefaults });
    const wa = config.whatsapp;
    const durationFilter = await DurationFilter.open({ defaults: { minSec: wa.filter.minSec, maxSec: wa.filter.maxSec }, instances: wa.filter.instances, stateDir: dataDir });
    return new App({ config, dataDir, secrets, tenants, durationFilter, spoolMaxBytes, logger, metrics });
  }

  private constructor(loaded: { config: Config; dataDir: string; secrets: Secrets; tenants: TenantRegistry; durationFilter: DurationFilter; spoolMaxBytes: number; logger: Logger; metrics: Metrics }) {
    this.config = loaded.config;
    this.logger = loaded.logger;
    this.metrics = loaded.metrics;
    this.dataDir = loaded.dataDir;
    this.secrets = loaded.secrets;
    this.tenants = loaded.tenants;
    this.admission = new Admission();
    const checks = { checks: () => this.lifecycle.checks() };
    const d = composeDaemon({ ...loaded, admission: this.admission, checks, version: VERSION });
    this.daemon = d;
    this.lifecycle = new Lifecycle(d.services, this.logger);
    this.http = d.http;
    this.store = d.store;
    this.keys = d.keys;
    this.spool = d.spool;
    this.catalog = d.catalog;
    this.retention = d.retention;
    this.outbox = d.outbox;
    this.roomSignals = d.roomSignals;
    this.rooms = d.rooms;
    this.recordings = d.recordings;
    this.livekit = d.livekit;
    this.live = d.live;
    this.voiceNotes = d.voiceNotes;
    this.rateLimiter = d.rateLimiter;
    this.durationFilter = d.durationFilter;
    this.whatsappAmqp = d.whatsappAmqp;
  }

  get state(): AppState {
    return this.admission.state;
  }

  get draining(): boolean {
    return this.admission.draining;
  }

  /** The port actually listened on (differs from config when it was 0). */
  get listenPort(): number {
    return this.http.port;
  }

  /** Base URL clients reach us at: `server.publicUrl`, else derived from host and port. */
  get publicUrl(): string {
    return this.daemon.publicUrl();
  }

  async start(): Promise<void> {
    if (this.admission.state !== 'created') throw new Error(`cannot start an app that is ${this.admission.state}`);
    this.admission.state = 'starting';
    try {
      await this.lifecycle.start();
    } catch (err) {
      // Leave nothing listening or connected behind a failed start.
      await this.stop({ drainSeconds: 0, reason: 'start failed' });
      throw err;
    }
    this.admission.state = 'running';
    this.logger.info({ port: this.listenPort, dataDir: this.dataDir, storage: this.config.storage.driver, tenants: this.tenants.size, publicUrl: this.publicUrl, spoolMaxBytes: this.spool.maxBytes }, 'audio-ingestd ready');
  }

  /** Drain then stop; idempotent. */
  stop(options: { drainSeconds?: number; reason?: string } = {}): Promise<void> {
    this.stopping ??= this.drainAndStop(options.drainSeconds ?? this.config.shutdown.drainSeconds, options.reason ?? 'stop');
    return this.stopping;
  }

  private async drainAndStop(drainSeconds: number, reason: string): Promise<void> {
    const { logger: log, http, livekit } = this;
    const wasRunning = this.admission.state === 'running';
    this.admission.state = 'draining';
    log.info({ reason, drainSeconds, liveStreams: livekit.openStreams, httpRequests: http.inflightCount }, 'draining');
    // New streams and requests are refused from here on (DRAINING); those already accepted go on
    // within the drain window, with every part they need still running.
    if (wasRunning && drainSeconds > 0) {
      const outcome = await withDeadline(Promise.all([livekit.whenNoStreams(), http.whenIdle()]), drainSeconds * 1000);
      log.info({ outcome: outcome === 'timeout' ? 'timeout' : 'drained', liveStreams: livekit.openStreams, httpRequests: http.inflightCount }, 'drain window over');
    }
    // Requests still running are given up: decodes stop at their next step, a note already being
    // stored finishes and gets its real answer. Only then do the decoders and the outbox stop.
    if (http.abortInflight(new AppError('DRAINING', 'the daemon is shutting down', { retryAfterSec: 5 })) > 0) {
      const finished = await withDeadline(http.whenIdle(), ABORTED_REQUESTS_MS);
      if (finished === 'timeout') log.warn({ httpRequests: http.inflightCount }, 'requests still running after the drain');
    }
    await this.lifecycle.stop({ deadlineMs: STOP_DEADLINE_MS });
    this.admission.state = 'stopped';
    log.info('stopped');
  }
}

/** `p`'s value, or 'timeout' when it takes longer than `ms`. */
async function withDeadline<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Half the free space of the filesystem holding `dir` (or its nearest existing parent), at least 1 GiB. */
function defaultSpoolBytes(dir: string): number {
  let probe = dir;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  try {
    const fs = statfsSync(probe);
    return Math.max(1024 ** 3, Math.floor((fs.bavail * fs.bsize) / 2));
  } catch {
    return 1024 ** 3;
  }
}
