import { existsSync, mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Config } from './config/schema.js';
import { loadSecrets, type Secrets } from './config/secrets.js';
import { AppError } from './errors.js';
import { Outbox } from './events/outbox.js';
import type { AudioEvent } from './events/types.js';
import { createEventSinks, reportGiveUp } from './events/sinks.js';
import { ChunkDispatcher } from './dispatch/chunk-dispatch.js';
import { QueueStatsReporter } from './events/queue-stats.js';
import { AmqpRoomSignals, LocalRoomSignals, type RoomSignals } from './events/room-signals.js';
import { ChunkDispatchSink } from './recording/chunk-dispatch-sink.js';
import { registerObjectRoutes } from './http/object-routes.js';
import { registerRecordingRoutes } from './http/recording-routes.js';
import { registerRoomRoutes } from './http/room-routes.js';
import { LocalRoomLease, RedisRoomLease } from './rooms/room-lease.js';
import { RoomService } from './rooms/room-service.js';
import { type ReadinessCheck, registerOpsRoutes } from './http/ops-routes.js';
import { HttpServer } from './http/server.js';
import { uwsRuntime } from './http/uws.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { ChunkObjects } from './recording/chunk-objects.js';
import type { ChunkSink } from './recording/recording.js';
import { RecordingService } from './recording/recording-service.js';
import { VadPool } from './recording/vad-pool.js';
import { RecordingCatalog } from './recording/recording-catalog.js';
import { MemoryReplayGuard, RedisReplayGuard, type ReplayGuard } from './sources/egress-token.js';
import { Redis } from 'ioredis';
import { registerEgressUrlRoute } from './sources/livekit-egress-urls.js';
import { LiveKitEgressSource } from './sources/livekit-egress.js';
import { HistoryReader } from './live/history.js';
import { RedisLiveDirectory } from './live/live-directory.js';
import { LiveHub } from './live/live-hub.js';
import { registerLiveRoutes } from './live/live-route.js';
import type { Recording } from './recording/recording.js';
import { registerLiveKitWebhook } from './sources/livekit-webhook.js';
import { WhatsAppAmqpConsumer } from './sources/whatsapp-amqp.js';
import { registerWhatsAppHttp } from './sources/whatsapp-http.js';
import { registerWhatsAppMessages } from './sources/whatsapp-messages.js';
import { FfmpegPool } from './audio/ffmpeg-pool.js';
import { ffmpegVersion, resolveFfmpeg } from './audio/ffmpeg-binary.js';
import { OpusWorkerPool } from './audio/opus-workers.js';
import { DurationFilter } from './limits/duration-filter.js';
import { FailOpenBucketStore } from './limits/fail-open-bucket-store.js';
import { RateLimiter } from './limits/rate-limiter.js';
import { RedisBucketStore } from './limits/redis-bucket-store.js';
import { IdempotencyStore } from './voicenotes/idempotency-store.js';
import { type VoiceNoteAnswer, VoiceNoteService } from './voicenotes/voice-note-service.js';
import { FsObjectStore } from './storage/fs-store.js';
import { ObjectKeys } from './storage/keys.js';
import { MasterUpload } from './storage/master-upload.js';
import { MeteredObjectStore } from './storage/metered-store.js';
import { RetentionSweeper } from './storage/retention-sweeper.js';
import type { ObjectStore } from './storage/object-store.js';
import { objectSettingsOf, S3ObjectStore } from './storage/s3-store.js';
import { Spool } from './storage/spool.js';
import { ApiAuth } from './tenants/api-auth.js';
import { type Tenant, TenantRegistry } from './tenants/tenant-registry.js';
import { announceRecovered } from './recording/recovery-events.js';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface AppOptions {
  logger?: Logger;
  metrics?: Metrics;
}

export type AppState = 'created' | 'starting' | 'running' | 'draining' | 'stopped';

/**
 * Wires every part of the daemon — the only place that knows them all. `start()` listens
 * first (answering 503 until ready, so an operator sees the daemon while recovery runs),
 * recovers what a previous process left, then opens for work. `stop()` drains: not ready at
 * once, new work refused with DRAINING, live streams may continue up to
 * `shutdown.drainSeconds`, then every recording is finalized and the outbox flushed.
 */
export class App {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly dataDir: string;
  readonly http: HttpServer;
  tenants!: TenantRegistry;
  store!: ObjectStore;
  /** The fs driver itself (unmetered), for the presigned download routes; undefined with S3. */
  private fsStore: FsObjectStore | undefined;
  outbox!: Outbox;
  recordings!: RecordingService;
  catalog!: RecordingCatalog;
  /** Periodic retention sweep, when storage.retentionDays > 0. */
  retention: RetentionSweeper | undefined;
  livekit!: LiveKitEgressSource;
  /** Live audio out (GET /v1/live). */
  live!: LiveHub;
  private liveDirectory: RedisLiveDirectory | undefined;
  roomSignals!: RoomSignals;
  /** Room sessions (mix, manifest, room.completed); undefined when rooms.enabled is false. */
  rooms: RoomService | undefined;
  private queueStats: QueueStatsReporter | undefined;
  private chunkDispatcher: ChunkDispatcher | undefined;
  private redis: Redis | undefined;
  voiceNotes!: VoiceNoteService;
  private opusWorkers: OpusWorkerPool | undefined;
  private vad: VadPool | undefined;
  rateLimiter!: RateLimiter;
  durationFilter!: DurationFilter;
  whatsappAmqp: WhatsAppAmqpConsumer | undefined;
  readonly keys: ObjectKeys;
  readonly spool: Spool;
  private auth!: ApiAuth;
  /** Secrets in force (from the environment, or generated into DATA_DIR for the embedded defaults). */
  secrets: Secrets = { apiKey: undefined, egressTokenSecret: '', objectUrlSecret: '' };
  private readonly checks: ReadinessCheck[] = [];
  private stateValue: AppState = 'created';
  private port = 0;
  private stopping: Promise<void> | undefined;

  constructor(config: Config, options: AppOptions = {}) {
    this.config = config;
    this.logger = options.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty });
    this.metrics = options.metrics ?? new Metrics();
    this.dataDir = resolve(config.dataDir);
    this.http = new HttpServer({
      logger: this.logger,
      metrics: this.metrics,
      requestTimeoutSec: config.server.requestTimeoutSec,
      bodyIdleTimeoutSec: config.server.bodyIdleTimeoutSec,
      gate: (route) => this.gate(route),
    });
    this.keys = new ObjectKeys({ prefix: config.storage.prefix });
    this.spool = new Spool({ maxBytes: config.spool.maxBytes ?? defaultSpoolBytes(this.dataDir), metrics: this.metrics });
    this.metrics.spoolMaxBytes.set(this.spool.maxBytes);
  }

  get state(): AppState {
    return this.stateValue;
  }

  get draining(): boolean {
    return this.stateValue === 'draining' || this.stateValue === 'stopped';
  }

  /** The port actually listened on (differs from config when it was 0). */
  get listenPort(): number {
    return this.port;
  }

  /** Base URL clients reach us at: `server.publicUrl`, else derived from host and port. */
  get publicUrl(): string {
    if (this.config.server.publicUrl) return this.config.server.publicUrl.replace(/\/+$/, '');
    const host = this.config.server.host === '0.0.0.0' || this.config.server.host === '::' ? '127.0.0.1' : this.config.server.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  /** API-key authentication for every API route, charged against the tenant's request budget. */
  authenticate(headers: Record<string, string>): Tenant {
    return this.auth.authenticate(headers);
  }

  /** Refuses work while starting or draining; ops routes always pass. */
  private gate(route: string): AppError | undefined {
    if (route === 'health' || route === 'ready' || route === 'metrics') return undefined;
    if (this.stateValue === 'starting') return new AppError('OVERLOADED', 'the daemon is starting', { retryAfterSec: 2 });
    if (this.draining) return new AppError('DRAINING', 'the daemon is shutting down', { retryAfterSec: 5 });
    return undefined;
  }

  async start(): Promise<void> {
    if (this.stateValue !== 'created') throw new Error(`cannot start an app that is ${this.stateValue}`);
    this.stateValue = 'starting';
    try {
      await this.startParts();
    } catch (err) {
      // Leave nothing listening or connected behind a failed start.
      await this.stop({ drainSeconds: 0, reason: 'start failed' });
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { config, logger: log, metrics } = this;
    mkdirSync(this.dataDir, { recursive: true });

    // The decoder of untrusted media: the distribution's (security-patched) ffmpeg unless none exists.
    const ffmpeg = resolveFfmpeg();
    const ffmpegVer = await ffmpegVersion(ffmpeg.path).catch((err: unknown) => {
      log.error({ err, binary: ffmpeg.path }, 'ffmpeg does not run: voice notes other than Ogg/Opus will fail to decode');
      return 'unavailable';
    });
    if (ffmpeg.source === 'bundled') {
      log.warn({ binary: ffmpeg.path, version: ffmpegVer }, `no system ffmpeg: untrusted media is decoded by the bundled static build ${ffmpegVer}; install the distribution's ffmpeg or set FFMPEG_PATH`);
    } else {
      log.info({ binary: ffmpeg.path, version: ffmpegVer, source: ffmpeg.source }, 'ffmpeg decoder');
    }
    metrics.buildInfo.set({ version: VERSION, node: process.version, uws_native: String(uwsRuntime.native), ffmpeg: ffmpegVer, ffmpeg_source: ffmpeg.source }, 1);
    if (uwsRuntime.native) log.info({ binary: uwsRuntime.binary }, 'uWebSockets.js native binary loaded');
    else log.error('uWebSockets.js fell back to its JavaScript implementation: expect far lower throughput');

    this.secrets = loadSecrets(config, this.dataDir, log);
    this.tenants = new TenantRegistry({
      defaultTenant: config.auth.defaultTenant,
      apiKey: this.secrets.apiKey,
      tenantsFile: config.auth.tenantsFile,
      defaults: config.tenantDefaults,
    });
    this.auth = new ApiAuth({ tenants: this.tenants, metrics });

    this.registerRoutes();
    this.port = await this.http.listen(config.server.host, config.server.port);
    log.info({ host: config.server.host, port: this.port }, 'listening (starting)');

    // Storage
    const driver =
      config.storage.driver === 's3'
        ? new S3ObjectStore({
            endpoint: config.storage.s3.endpoint,
            region: config.storage.s3.region,
            bucket: config.storage.s3.bucket,
            forcePathStyle: config.storage.s3.forcePathStyle,
            checksum: config.storage.s3.checksum,
            objects: objectSettingsOf(config.storage.s3),
          })
        : new FsObjectStore({ root: join(this.dataDir, 'store'), presign: { baseUrl: this.publicUrl, secret: this.secrets.objectUrlSecret } });
    if (driver instanceof FsObjectStore) this.fsStore = driver;
    this.store = new MeteredObjectStore(driver, metrics);
    await this.store.start();
    // chunk objects acknowledged before a crash, from the fs store's group-commit journal
    const restored = await this.fsStore?.recoverJournal();
    if (restored) log.info({ objects: restored }, 'chunk objects restored from the store journal');
    this.checks.push({ name: 'store', check: () => this.store.ping() });
    this.catalog = new RecordingCatalog({ store: this.store, keys: this.keys, logger: log, metrics });
    if (config.storage.retentionDays > 0) {
      this.retention = new RetentionSweeper({ store: this.store, prefix: this.keys.prefix, retentionDays: config.storage.retentionDays, logger: log });
      this.retention.start();
    }

    // Events
    const sinks = createEventSinks({ events: config.events, dataDir: this.dataDir, logger: log, onGiveUp: (g) => reportGiveUp(this.outbox, g, log) });
    this.outbox = new Outbox({ dir: join(this.dataDir, 'outbox'), sinks, logger: log, metrics });
    await this.outbox.start();
    if (config.events.monitoringWebhookUrl) {
      this.queueStats = new QueueStatsReporter({ outbox: this.outbox, intervalMs: config.events.statsIntervalSec * 1000 });
      this.queueStats.start();
    }
    this.roomSignals = config.events.amqpUrl
      ? new AmqpRoomSignals({ url: config.events.amqpUrl, exchange: config.events.signalsExchange, logger: log })
      : new LocalRoomSignals();
    this.roomSignals.onRoomFinished(({ tenant, roomName }) => {
      this.rooms?.roomFinished(tenant, roomName);
      this.live.roomFinished(tenant, roomName);
      const n = this.livekit.finishRoom(tenant, roomName);
      if (n > 0) log.info({ tenant, roomName, streams: n }, 'room finished: streams on this host ended');
    });
    await this.roomSignals.start();
    // the outbox's view: the sink says it is reachable and its last delivery did not fail (an NDJSON log that cannot be written is not ready either)
    for (const sink of sinks) this.checks.push({ name: `events:${sink.name}`, check: () => assertReady(this.outbox.ready(sink.name), sink.name) });

    if (config.rooms.enabled) this.startRooms();

    await this.recoverMasters();

    // Live recordings
    const presign = async (key: string): Promise<{ url: string; expiresAt: Date }> => ({
      url: await this.store.presign(key, config.storage.presignTtlSec),
      expiresAt: new Date(Date.now() + config.storage.presignTtlSec * 1000),
    });
    const chunkSinks: ChunkSink[] = [];
    if (config.storage.chunkObjects) chunkSinks.push(new ChunkObjects({ store: this.store, keys: this.keys, events: this.outbox, presign, urls: config.storage.chunkUrls, logger: log, metrics }));
    if (config.chunkDispatch.url) {
      const cd = config.chunkDispatch;
      this.chunkDispatcher = new ChunkDispatcher({
        url: cd.url!, apiKey: cd.apiKey, timeoutMs: cd.timeoutMs, maxAttempts: cd.maxAttempts, logger: log,
        onSent: (c) => { if (c.cutAt !== undefined) metrics.chunkDispatchLatency.observe((Date.now() - c.cutAt) / 1000); },
      });
      chunkSinks.push(new ChunkDispatchSink(this.chunkDispatcher, cd.format, metrics));
    }
    const v = config.vad;
    if (v.enabled) {
      this.vad = new VadPool({ workers: v.workers, settings: { mode: v.mode, frameMs: v.frameMs, minSpeechMs: v.minSpeechMs, minSilenceMs: v.minSilenceMs, live: v.liveEvents }, logger: log });
    }
    this.recordings = new RecordingService({
      keys: this.keys,
      events: { append: (e) => this.appendEvent(e) },
      chunkSinks,
      openMaster: ({ recordingId, key, format, metadata, release }) =>
        MasterUpload.create({
          release,
          store: this.store,
          stateDir: this.dataDir,
          recordingId,
          key,
          format,
          metadata,
          partSize: config.storage.partSizeMiB * 1024 * 1024,
          spool: this.spool,
          logger: log,
          metrics,
        }),
      presign,
      output: { sampleRate: config.output.sampleRate, channels: config.output.channels },
      normalize: { mode: config.output.normalize, targetDb: config.output.targetDb },
      muteFill: config.livekit.muteFill,
      finalizeConcurrency: config.storage.finalizeConcurrency,
      catalog: this.catalog,
      onOpened: (r) => this.liveOpened(r),
      vad: this.vad,
      logger: log,
      metrics,
    });
    this.live.start();
    this.liveDirectory?.start();
    await this.livekit.start();
    await this.startVoiceNotes();

    this.stateValue = 'running';
    log.info({ port: this.port, dataDir: this.dataDir, storage: config.storage.driver, tenants: this.tenants.size, publicUrl: this.publicUrl, spoolMaxBytes: this.spool.maxBytes }, 'audio-ingestd ready');
  }

  private registerRoutes(): void {
    const { config, logger: log, metrics } = this;
    registerOpsRoutes(this.http, { metrics, checks: () => this.checks, draining: () => this.draining || this.stateValue !== 'running', version: VERSION });
    registerEgressUrlRoute({
      server: this.http,
      authenticate: (h) => this.authenticate(h),
      secret: () => this.secrets.egressTokenSecret,
      baseUrl: () => this.publicUrl,
      defaultTtlSec: config.livekit.tokenTtlSec,
      maxBodyBytes: config.server.maxJsonBytes,
    });
    const replayGuard = this.createReplayGuard();
    this.live = new LiveHub({
      history: {
        reader: new HistoryReader({ store: () => this.store, stateDir: this.dataDir, fileBytes: config.storage.driver === 'fs' ? 0 : config.storage.partSizeMiB * 1024 * 1024 }),
      },
      queueSeconds: config.live.queueSeconds,
      batchMs: config.live.batchMs,
      pingSec: config.live.pingSec,
      idleSec: config.live.idleSec,
      // a room subscription lasts as long as the room session (README, Live audio out)
      roomIdleSec: config.live.roomIdleSec ?? config.rooms.idleSec,
      logger: log,
      metrics,
    });
    if (this.redis) {
      this.liveDirectory = new RedisLiveDirectory({ redis: this.redis, selfUrl: () => this.publicUrl, ttlSec: config.live.directoryTtlSec, recordings: () => this.recordings?.all() ?? [], logger: log });
    }
    registerLiveRoutes({
      server: this.http,
      hub: this.live,
      authenticate: (h) => this.authenticate(h),
      tenants: { get: (id) => this.tenants.get(id) },
      recordings: { get: (id) => this.recordings?.getLiveOrEnding(id), inRoom: (t, r) => this.recordings?.inRoom(t, r) ?? [] },
      catalog: () => this.catalog,
      directory: this.liveDirectory,
      replayGuard,
      tokenSecret: () => this.secrets.egressTokenSecret,
      baseUrl: () => this.publicUrl,
      defaultTtlSec: config.live.tokenTtlSec,
      maxSubscribersPerTenant: config.live.maxSubscribersPerTenant,
      maxBodyBytes: config.server.maxJsonBytes,
      admitting: () => this.stateValue === 'running',
      logger: log,
      metrics,
    });
    this.livekit = new LiveKitEgressSource({
      server: this.http,
      recordings: {
        open: (r) => this.recordings.open(r),
        finish: (rec, reason) => this.recordings.finish(rec, reason),
        settle: () => this.recordings?.settle() ?? Promise.resolve(),
      },
      tenants: { get: (id) => this.tenants.get(id), acquireStream: (t) => this.tenants.acquireStream(t) },
      replayGuard,
      tokenSecret: () => this.secrets.egressTokenSecret,
      requireToken: config.livekit.requireToken,
      defaultTenant: config.auth.defaultTenant,
      defaultGroupSeconds: config.livekit.groupSeconds,
      idleTimeoutSec: config.livekit.idleTimeoutSec,
      maxPayloadBytes: config.livekit.maxPayloadBytes,
      maxStreams: config.livekit.maxStreams,
      admitting: () => this.stateValue === 'running',
      logger: log,
      metrics,
    });
    this.livekit.register();
    if (config.livekit.apiKey && config.livekit.apiSecret) {
      registerLiveKitWebhook({
        server: this.http,
        apiKey: config.livekit.apiKey,
        apiSecret: config.livekit.apiSecret,
        maxBodyBytes: config.server.maxJsonBytes,
        logger: log,
        // One LiveKit project serves every tenant here, so the signal names the room only; each host ends its own streams.
        onRoomFinished: (roomName) => this.roomSignals.publishRoomFinished({ tenant: '*', roomName }),
      });
    } else {
      log.info('LIVEKIT_API_KEY/LIVEKIT_API_SECRET not set: POST /livekit/webhook is not served');
    }
    if (config.storage.driver === 'fs') {
      registerObjectRoutes({ server: this.http, store: () => this.fsStore!, secret: () => this.secrets.objectUrlSecret, admit: () => this.gate('objects'), metrics, logger: log });
    }
    registerRecordingRoutes({
      server: this.http,
      authenticate: (h) => this.authenticate(h),
      catalog: () => this.catalog,
      presign: async (key) => ({ url: await this.store.presign(key, config.storage.presignTtlSec), expiresAt: new Date(Date.now() + config.storage.presignTtlSec * 1000) }),
    });
    registerRoomRoutes({
      server: this.http,
      authenticate: (h) => this.authenticate(h),
      rooms: () => this.rooms,
      presign: async (key) => ({ url: await this.store.presign(key, config.storage.presignTtlSec), expiresAt: new Date(Date.now() + config.storage.presignTtlSec * 1000) }),
    });
    const whatsapp = { server: this.http, authenticate: (h: Record<string, string>) => this.authenticate(h), service: () => this.voiceNotes, limiter: () => this.rateLimiter, maxBytes: config.whatsapp.maxBytes };
    registerWhatsAppHttp({ ...whatsapp, filter: () => this.durationFilter, maxJsonBytes: config.server.maxJsonBytes });
    registerWhatsAppMessages(whatsapp);
    this.http.fallback();
  }

  /** A recording opened: room subscriptions of its room get it; other hosts learn where it is. */
  private liveOpened(recording: Recording): void {
    this.live.opened(recording);
    this.liveDirectory?.announce(recording);
  }

  /** Egress token ids are single-use across hosts when Redis is configured, per host otherwise. */
  private createReplayGuard(): ReplayGuard {
    const url = this.config.rateLimit.redisUrl;
    if (!url) return new MemoryReplayGuard();
    this.redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
    this.redis.on('error', (err: unknown) => this.logger.debug({ err }, 'redis connection error'));
    return new RedisReplayGuard(this.redis, (err) => this.logger.warn({ err }, 'egress token replay check fell back to this host'));
  }

  /**
   * Completes masters a crashed process left behind and announces each (recording.completed,
   * or recording.failed once when the store refuses it for good) before its spool is removed.
   */
  private async recoverMasters(): Promise<void> {
    await MasterUpload.recover({
      store: this.store,
      stateDir: this.dataDir,
      spool: this.spool,
      logger: this.logger,
      announce: (r) => announceRecovered(r, { catalog: this.catalog, events: { append: (e) => this.appendEvent(e) }, defaultTenant: this.config.auth.defaultTenant, logger: this.logger }),
    });
  }

  /** Recording events go to the outbox, then to the rooms (which remember each room's tracks). */
  private async appendEvent(e: AudioEvent): Promise<void> {
    await this.outbox.append(e);
    // the dual.wav channel an egress URL claimed travels with the recording, not in its events
    const channel = e.type === 'recording.started' ? this.recordings?.get(e.recording_id)?.identity.dualChannel : undefined;
    this.rooms?.observe(e, { channel });
  }

  /** Room sessions; their claims are shared through Redis when REDIS_URL is set. */
  private startRooms(): void {
    const { config, logger: log } = this;
    const r = config.rooms;
    let lease;
    if (config.rateLimit.redisUrl) {
      const redis = new Redis(config.rateLimit.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
      redis.on('error', (err: unknown) => log.debug({ err }, 'rooms: redis connection error'));
      lease = new RedisRoomLease(redis);
    } else {
      lease = new LocalRoomLease();
      log.info('REDIS_URL not set: room sessions are claimed per host (run one host per store, or set REDIS_URL)');
    }
    this.rooms = new RoomService({
      store: this.store,
      keys: this.keys,
      events: this.outbox,
      lease,
      config: {
        idleSec: r.idleSec,
        leaseSec: r.leaseSec,
        trackWaitSec: r.trackWaitSec,
        staleSec: r.staleSec,
        dual: r.dual,
        law: { headroomDb: r.headroomDb, knee: r.limiterKnee },
        partBytes: config.storage.partSizeMiB * 1024 * 1024,
        windowSec: r.windowSec,
      },
      presign: async (key) => ({ url: await this.store.presign(key, config.storage.presignTtlSec), expiresAt: new Date(Date.now() + config.storage.presignTtlSec * 1000) }),
      logger: log.child({ component: 'rooms' }),
    });
    this.rooms.start();
  }

  /** WhatsApp voice notes: limits, the pipeline, and the optional Evolution AMQP consumer. */
  private async startVoiceNotes(): Promise<void> {
    const { config, logger: log, metrics } = this;
    const wa = config.whatsapp;
    const rl = config.rateLimit;
    const bucketStore = rl.redisUrl ? new FailOpenBucketStore({ primary: new RedisBucketStore({ url: rl.redisUrl }), logger: log, metrics }) : undefined;
    this.rateLimiter = new RateLimiter({ global: rl.global, tenant: rl.tenant, instance: rl.instance, store: bucketStore, metrics });
    this.durationFilter = await DurationFilter.open({ defaults: { minSec: wa.filter.minSec, maxSec: wa.filter.maxSec }, instances: wa.filter.instances, stateDir: this.dataDir });
    if (wa.opusWorkers !== 0) {
      this.opusWorkers = new OpusWorkerPool({ size: wa.opusWorkers, logger: log });
      log.info({ threads: this.opusWorkers.size }, 'Ogg/Opus decoding on worker threads');
    }
    this.voiceNotes = new VoiceNoteService({
      store: this.store,
      keys: this.keys,
      events: this.outbox,
      filter: this.durationFilter,
      idempotency: new IdempotencyStore<VoiceNoteAnswer>({
        // In the object store: a retry that lands on another host is still recognised.
        store: this.store,
        prefix: `${this.keys.prefix}idempotency/`,
        source: 'whatsapp',
        onWriteError: (err) => log.error({ err }, 'idempotency record not written: a repeat of this key would be stored again'),
      }),
      pool: new FfmpegPool({ maxConcurrent: wa.ffmpegConcurrency, metrics }),
      opusWorkers: this.opusWorkers,
      sampleRate: wa.sampleRate,
      maxBytes: wa.maxBytes,
      keepOriginal: wa.keepOriginal,
      decodeTimeoutSec: wa.decodeTimeoutSec,
      decoderCpuSec: wa.decoderCpuSec,
      decoderMemoryMiB: wa.decoderMemoryMiB,
      normalize: { mode: config.output.normalize, targetDb: config.output.targetDb },
      presignTtlSec: config.storage.presignTtlSec,
      logger: log,
      metrics,
    });
    if (wa.amqpConsumer.enabled) {
      {
        const c = wa.amqpConsumer;
        this.whatsappAmqp = new WhatsAppAmqpConsumer({ url: config.events.amqpUrl!, exchange: c.exchange, routingKey: c.routingKey, queue: c.queue, prefetch: c.prefetch, tenant: config.auth.defaultTenant, service: this.voiceNotes, maxBytes: wa.maxBytes, logger: log });
        this.whatsappAmqp.start();
        this.checks.push({ name: 'whatsapp-amqp', check: () => assertReady(this.whatsappAmqp?.isOpen() ?? false, 'whatsapp-amqp') });
      }
    }
  }

  /** Drain then stop; idempotent. */
  stop(options: { drainSeconds?: number; reason?: string } = {}): Promise<void> {
    this.stopping ??= this.doStop(options.drainSeconds ?? this.config.shutdown.drainSeconds, options.reason ?? 'stop');
    return this.stopping;
  }

  private async doStop(drainSeconds: number, reason: string): Promise<void> {
    const log = this.logger;
    const wasRunning = this.stateValue === 'running';
    this.stateValue = 'draining';
    log.info({ reason, drainSeconds, liveStreams: this.livekit?.openStreams ?? 0, httpRequests: this.http.inflightCount }, 'draining');
    // New streams and requests are refused from here on (DRAINING); those already accepted go on
    // within the drain window, with every part they need still running.
    if (wasRunning && drainSeconds > 0) {
      const outcome = await withDeadline(Promise.all([this.livekit.whenNoStreams(), this.http.whenIdle()]), drainSeconds * 1000);
      log.info({ outcome: outcome === 'timeout' ? 'timeout' : 'drained', liveStreams: this.livekit.openStreams, httpRequests: this.http.inflightCount }, 'drain window over');
    }
    // Requests still running are given up: decodes stop at their next step, a note already being
    // stored finishes and gets its real answer. Only then do the decoders and the outbox stop.
    if (this.http.abortInflight(new AppError('DRAINING', 'the daemon is shutting down', { retryAfterSec: 5 })) > 0) {
      const settled = await withDeadline(this.http.whenIdle(), SETTLE_MS);
      if (settled === 'timeout') log.warn({ httpRequests: this.http.inflightCount }, 'requests still running after the drain');
    }
    const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        log.error({ err, component: name }, 'component failed to stop cleanly');
      }
    };
    if (this.livekit) await step('livekit', () => this.livekit.stop());
    // after the recordings ended, so their subscribers had the end messages
    if (this.live) await step('live', async () => this.live.stop());
    this.liveDirectory?.stop();
    if (this.vad) await step('vad', () => this.vad!.close());
    if (this.retention) await step('retention', () => this.retention!.stop());
    if (this.catalog) await step('catalog', () => this.catalog.settle());
    if (this.rooms) await step('rooms', () => this.rooms!.stop());
    if (this.whatsappAmqp) await step('whatsapp-amqp', () => this.whatsappAmqp!.stop());
    if (this.opusWorkers) await step('opus-workers', () => this.opusWorkers!.stop());
    if (this.rateLimiter) await step('rate-limiter', () => this.rateLimiter.close());
    if (this.roomSignals) await step('room-signals', () => this.roomSignals.stop());
    if (this.chunkDispatcher) await step('chunk-dispatch', () => this.chunkDispatcher!.stop(5000));
    if (this.queueStats) await step('queue-stats', async () => this.queueStats!.stop());
    if (this.redis) await step('redis', async () => void this.redis!.disconnect());
    // Last of the event path: recordings above have appended their final events.
    if (this.outbox) await step('outbox', () => this.outbox.stop());
    if (this.store) await step('store', () => this.store.stop());
    this.http.stopListening();
    this.stateValue = 'stopped';
    log.info('stopped');
  }
}

/** How long requests given up at the end of the drain may take to settle before the parts they use stop. */
const SETTLE_MS = 5000;

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

function assertReady(ok: boolean, name: string): void {
  if (!ok) throw new Error(`${name} is not connected`);
}
