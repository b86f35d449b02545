import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Admission } from './admission.js';
import { ffmpegVersion, resolveFfmpeg } from './audio/ffmpeg-binary.js';
import { FfmpegPool } from './audio/ffmpeg-pool.js';
import { OpusWorkerPool } from './audio/opus-workers.js';
import type { Config } from './config/schema.js';
import type { Secrets } from './config/secrets.js';
import { ChunkDispatcher } from './dispatch/chunk-dispatch.js';
import { Outbox } from './events/outbox.js';
import { QueueStatsReporter } from './events/queue-stats.js';
import { AmqpRoomSignals, LocalRoomSignals, type RoomSignals } from './events/room-signals.js';
import { createEventSinks, reportGiveUp } from './events/sinks.js';
import type { AudioEvent } from './events/types.js';
import { registerObjectRoutes } from './http/object-routes.js';
import { registerOpsRoutes } from './http/ops-routes.js';
import { registerRecordingRoutes } from './http/recording-routes.js';
import { registerRoomRoutes } from './http/room-routes.js';
import { HttpServer } from './http/server.js';
import { uwsRuntime } from './http/uws.js';
import type { Lifecycle, Service } from './lifecycle.js';
import type { DurationFilter } from './limits/duration-filter.js';
import { FailOpenBucketStore } from './limits/fail-open-bucket-store.js';
import { RateLimiter } from './limits/rate-limiter.js';
import { RedisBucketStore } from './limits/redis-bucket-store.js';
import { HistoryReader } from './live/history.js';
import { RedisLiveDirectory } from './live/live-directory.js';
import { LIVE_FILTERS, LiveHub } from './live/live-hub.js';
import { registerLiveRoutes } from './live/live-route.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import { ChunkDispatchSink } from './recording/chunk-dispatch-sink.js';
import { ChunkObjects } from './recording/chunk-objects.js';
import type { ChunkSink } from './recording/recording.js';
import { RecordingCatalog } from './recording/recording-catalog.js';
import { RecordingService } from './recording/recording-service.js';
import { announceRecovered } from './recording/recovery-events.js';
import { VadPool } from './recording/vad-pool.js';
import { LocalRoomLease, RedisRoomLease } from './rooms/room-lease.js';
import { RoomService } from './rooms/room-service.js';
import { MemoryReplayGuard, RedisReplayGuard } from './sources/egress-token.js';
import { registerEgressUrlRoute } from './sources/livekit-egress-urls.js';
import { LiveKitEgressSource } from './sources/livekit-egress.js';
import { registerLiveKitWebhook } from './sources/livekit-webhook.js';
import { WhatsAppAmqpConsumer } from './sources/whatsapp-amqp.js';
import { registerWhatsAppHttp } from './sources/whatsapp-http.js';
import { registerWhatsAppMessages } from './sources/whatsapp-messages.js';
import { FsObjectStore } from './storage/fs-store.js';
import { ObjectKeys } from './storage/keys.js';
import { MasterUpload } from './storage/master-upload.js';
import { MeteredObjectStore } from './storage/metered-store.js';
import type { ObjectStore } from './storage/object-store.js';
import { RetentionSweeper } from './storage/retention-sweeper.js';
import { objectSettingsOf, S3ObjectStore } from './storage/s3-store.js';
import { Spool } from './storage/spool.js';
import { ApiAuth } from './tenants/api-auth.js';
import type { TenantRegistry } from './tenants/tenant-registry.js';
import { IdempotencyStore } from './voicenotes/idempotency-store.js';
import { type VoiceNoteAnswer, VoiceNoteService } from './voicenotes/voice-note-service.js';

/** What the composition is given: the config and what was read from disk before it (no part does I/O while being built). */
export interface CompositionInput {
  config: Config;
  /** `config.dataDir`, absolute. */
  dataDir: string;
  secrets: Secrets;
  tenants: TenantRegistry;
  /** Opened with the overrides kept in `dataDir`. */
  durationFilter: DurationFilter;
  /** `spool.maxBytes`, or its default from the free space under `dataDir`. */
  spoolMaxBytes: number;
  admission: Admission;
  /** Readiness probes in force (those of the services started so far). */
  checks: Pick<Lifecycle, 'checks'>;
  version: string;
  logger: Logger;
  metrics: Metrics;
}

/** Every part of the daemon, built and wired; `services` is the order they start in (they stop in reverse). */
export interface Daemon {
  http: HttpServer;
  /** The metered store every part uses. */
  store: ObjectStore;
  keys: ObjectKeys;
  spool: Spool;
  catalog: RecordingCatalog;
  /** Periodic retention sweep, when storage.retentionDays > 0. */
  retention: RetentionSweeper | undefined;
  outbox: Outbox;
  roomSignals: RoomSignals;
  /** Room sessions (mix, manifest, room.completed); undefined when rooms.enabled is false. */
  rooms: RoomService | undefined;
  recordings: RecordingService;
  livekit: LiveKitEgressSource;
  /** Live audio out (GET /v1/live). */
  live: LiveHub;
  voiceNotes: VoiceNoteService;
  rateLimiter: RateLimiter;
  durationFilter: DurationFilter;
  whatsappAmqp: WhatsAppAmqpConsumer | undefined;
  /** Base URL clients reach the daemon at: `server.publicUrl`, else derived from host and the port listened on. */
  publicUrl(): string;
  services: Service[];
}

/**
 * Builds every part with its constructor and wires them to each other: routes get the real
 * objects. Nothing here does I/O; that happens in the services' `start()`, in list order.
 */
export function composeDaemon(input: CompositionInput): Daemon {
  const { config, dataDir, secrets, tenants, durationFilter, admission, logger: log, metrics } = input;
  const presignTtlSec = config.storage.presignTtlSec;

  const http = new HttpServer({
    logger: log,
    metrics,
    requestTimeoutSec: config.server.requestTimeoutSec,
    bodyIdleTimeoutSec: config.server.bodyIdleTimeoutSec,
    gate: (route) => admission.gate(route),
  });
  const publicUrl = (): string => publicUrlOf(config.server, http.port);
  const auth = new ApiAuth({ tenants, metrics });
  const authenticate = (headers: Record<string, string>) => auth.authenticate(headers);

  // Storage
  const keys = new ObjectKeys({ prefix: config.storage.prefix });
  const spool = new Spool({ maxBytes: input.spoolMaxBytes, metrics });
  metrics.spoolMaxBytes.set(spool.maxBytes);
  const s3 = config.storage.s3;
  const driver =
    config.storage.driver === 's3'
      ? new S3ObjectStore({ endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, forcePathStyle: s3.forcePathStyle, checksum: s3.checksum, objects: objectSettingsOf(s3) })
      : new FsObjectStore({ root: join(dataDir, 'store'), presign: { baseUrl: publicUrl, secret: secrets.objectUrlSecret } });
  const store = new MeteredObjectStore(driver, metrics);
  const presign = async (key: string): Promise<{ url: string; expiresAt: Date }> => ({
    url: await store.presign(key, presignTtlSec),
    expiresAt: new Date(Date.now() + presignTtlSec * 1000),
  });
  const catalog = new RecordingCatalog({ store, keys, logger: log, metrics });
  const retention = config.storage.retentionDays > 0 ? new RetentionSweeper({ store, prefix: keys.prefix, retentionDays: config.storage.retentionDays, logger: log }) : undefined;

  // Redis: one client that fails at once while Redis is away, one that queues (see docs/architecture.md)
  const redisUrl = config.rateLimit.redisUrl;
  const redis = redisUrl === undefined ? undefined : redisClient(redisUrl, false, 'redis connection error', log);
  const roomsRedis = redisUrl === undefined || !config.rooms.enabled ? undefined : redisClient(redisUrl, true, 'rooms: redis connection error', log);

  // Events
  const sinks = createEventSinks({ events: config.events, dataDir, logger: log, onGiveUp: (g) => reportGiveUp(outbox, g, log) });
  const outbox = new Outbox({ dir: join(dataDir, 'outbox'), sinks, logger: log, metrics });
  const queueStats = config.events.monitoringWebhookUrl ? new QueueStatsReporter({ outbox, intervalMs: config.events.statsIntervalSec * 1000 }) : undefined;
  const roomSignals: RoomSignals = config.events.amqpUrl ? new AmqpRoomSignals({ url: config.events.amqpUrl, exchange: config.events.signalsExchange, logger: log }) : new LocalRoomSignals();

  // Rooms: sessions are claimed through Redis when REDIS_URL is set
  const r = config.rooms;
  if (r.enabled && roomsRedis === undefined) log.info('REDIS_URL not set: room sessions are claimed per host (run one host per store, or set REDIS_URL)');
  const rooms = r.enabled
    ? new RoomService({
        store,
        keys,
        events: outbox,
        lease: roomsRedis ? new RedisRoomLease(roomsRedis) : new LocalRoomLease(),
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
        presign,
        logger: log.child({ component: 'rooms' }),
      })
    : undefined;

  // Live recordings: their events go to the outbox, then to the rooms (which remember each room's tracks)
  const recordingEvents = {
    append: async (e: AudioEvent): Promise<void> => {
      await outbox.append(e);
      // the dual.wav channel an egress URL claimed travels with the recording, not in its events
      const channel = e.type === 'recording.started' ? recordings.get(e.recording_id)?.identity.dualChannel : undefined;
      rooms?.observe(e, { channel });
    },
  };
  const chunkSinks: ChunkSink[] = [];
  if (config.storage.chunkObjects) chunkSinks.push(new ChunkObjects({ store, keys, events: outbox, presign, urls: config.storage.chunkUrls, commitMs: config.storage.chunkCommitMs, logger: log, metrics }));
  const cd = config.chunkDispatch;
  const chunkDispatcher =
    cd.url === undefined
      ? undefined
      : new ChunkDispatcher({
          url: cd.url,
          apiKey: cd.apiKey,
          timeoutMs: cd.timeoutMs,
          maxAttempts: cd.maxAttempts,
          concurrency: cd.concurrency,
          maxQueueBytes: cd.maxQueueMiB * 1024 * 1024,
          logger: log,
          onSent: (c) => {
            if (c.cutAt !== undefined) metrics.chunkDispatchLatency.observe((Date.now() - c.cutAt) / 1000);
          },
        });
  if (chunkDispatcher) chunkSinks.push(new ChunkDispatchSink(chunkDispatcher, cd.format, metrics));
  const v = config.vad;
  const vad = v.enabled ? new VadPool({ workers: v.workers, settings: { mode: v.mode, frameMs: v.frameMs, minSpeechMs: v.minSpeechMs, minSilenceMs: v.minSilenceMs, live: v.liveEvents }, logger: log }) : undefined;

  // Live audio out
  const live = new LiveHub({
    history: { reader: new HistoryReader({ store, stateDir: dataDir, fileBytes: config.storage.driver === 'fs' ? 0 : config.storage.partSizeMiB * 1024 * 1024 }) },
    queueSeconds: config.live.queueSeconds,
    batchMs: config.live.batchMs,
    filter: LIVE_FILTERS[config.live.filter],
    pingSec: config.live.pingSec,
    idleSec: config.live.idleSec,
    // a room subscription lasts as long as the room session (README, Live audio out)
    roomIdleSec: config.live.roomIdleSec ?? config.rooms.idleSec,
    logger: log,
    metrics,
  });
  const liveDirectory = redis ? new RedisLiveDirectory({ redis, selfUrl: publicUrl, ttlSec: config.live.directoryTtlSec, recordings: () => recordings.all(), logger: log }) : undefined;

  const recordings = new RecordingService({
    keys,
    events: recordingEvents,
    chunkSinks,
    openMaster: ({ recordingId, key, format, metadata, release }) =>
      MasterUpload.create({ release, store, stateDir: dataDir, recordingId, key, format, metadata, partSize: config.storage.partSizeMiB * 1024 * 1024, spool,
        // the resume window of live audio out (README, Live audio out)
        keepUploadedSec: config.live.resumeWindowSec, logger: log, metrics }),
    presign,
    output: { sampleRate: config.output.sampleRate, channels: config.output.channels },
    normalize: { mode: config.output.normalize, targetDb: config.output.targetDb },
    muteFill: config.livekit.muteFill,
    finalizeConcurrency: config.storage.finalizeConcurrency,
    catalog,
    // a room subscription of its room gets the recording; other hosts learn where it is
    onOpened: (rec) => {
      live.opened(rec);
      liveDirectory?.announce(rec);
    },
    vad,
    logger: log,
    metrics,
  });

  // Egress token ids are single-use across hosts with Redis, per host otherwise.
  const replayGuard = redis ? new RedisReplayGuard(redis, (err) => log.warn({ err }, 'egress token replay check fell back to this host')) : new MemoryReplayGuard();
  const livekit = new LiveKitEgressSource({
    server: http,
    recordings,
    tenants,
    replayGuard,
    tokenSecret: secrets.egressTokenSecret,
    requireToken: config.livekit.requireToken,
    defaultTenant: config.auth.defaultTenant,
    defaultGroupSeconds: config.livekit.groupSeconds,
    idleTimeoutSec: config.livekit.idleTimeoutSec,
    maxPayloadBytes: config.livekit.maxPayloadBytes,
    maxStreams: config.livekit.maxStreams,
    admitting: () => admission.admitting,
    logger: log,
    metrics,
  });
  roomSignals.onRoomFinished(({ tenant, roomName }) => {
    rooms?.roomFinished(tenant, roomName);
    live.roomFinished(tenant, roomName);
    const n = livekit.finishRoom(tenant, roomName);
    if (n > 0) log.info({ tenant, roomName, streams: n }, 'room finished: streams on this host ended');
  });

  // WhatsApp voice notes
  const wa = config.whatsapp;
  const rl = config.rateLimit;
  const rateLimiter = new RateLimiter({
    global: rl.global,
    tenant: rl.tenant,
    instance: rl.instance,
    store: redis ? new FailOpenBucketStore({ primary: new RedisBucketStore({ client: redis }), logger: log, metrics }) : undefined,
    metrics,
  });
  const opusWorkers = wa.opusWorkers === 0 ? undefined : new OpusWorkerPool({ size: wa.opusWorkers, logger: log });
  const voiceNotes = new VoiceNoteService({
    store,
    keys,
    events: outbox,
    filter: durationFilter,
    // In the object store: a retry that lands on another host is still recognised.
    idempotency: new IdempotencyStore<VoiceNoteAnswer>({
      store,
      prefix: `${keys.prefix}idempotency/`,
      source: 'whatsapp',
      onWriteError: (err) => log.error({ err }, 'idempotency record not written: a repeat of this key would be stored again'),
    }),
    pool: new FfmpegPool({ maxConcurrent: wa.ffmpegConcurrency, metrics }),
    opusWorkers,
    sampleRate: wa.sampleRate,
    maxBytes: wa.maxBytes,
    keepOriginal: wa.keepOriginal,
    decodeTimeoutSec: wa.decodeTimeoutSec,
    decoderCpuSec: wa.decoderCpuSec,
    decoderMemoryMiB: wa.decoderMemoryMiB,
    normalize: { mode: config.output.normalize, targetDb: config.output.targetDb },
    presignTtlSec,
    logger: log,
    metrics,
  });
  const c = wa.amqpConsumer;
  // parseConfig() refuses the consumer without events.amqpUrl
  const whatsappAmqp =
    c.enabled && config.events.amqpUrl !== undefined
      ? new WhatsAppAmqpConsumer({ url: config.events.amqpUrl, exchange: c.exchange, routingKey: c.routingKey, queue: c.queue, prefetch: c.prefetch, tenant: config.auth.defaultTenant, service: voiceNotes, maxBytes: wa.maxBytes, logger: log })
      : undefined;

  // Routes, each with the parts it calls
  registerOpsRoutes(http, { metrics, checks: () => input.checks.checks(), draining: () => !admission.admitting, version: input.version });
  registerEgressUrlRoute({ server: http, authenticate, secret: secrets.egressTokenSecret, baseUrl: publicUrl, defaultTtlSec: config.livekit.tokenTtlSec, maxBodyBytes: config.server.maxJsonBytes });
  registerLiveRoutes({
    server: http,
    hub: live,
    authenticate,
    tenants,
    recordings: { get: (id) => recordings.getLiveOrEnding(id), inRoom: (t, room) => recordings.inRoom(t, room) },
    catalog,
    directory: liveDirectory,
    replayGuard,
    tokenSecret: secrets.egressTokenSecret,
    baseUrl: publicUrl,
    defaultTtlSec: config.live.tokenTtlSec,
    maxSubscribersPerTenant: config.live.maxSubscribersPerTenant,
    maxBodyBytes: config.server.maxJsonBytes,
    admitting: () => admission.admitting,
    logger: log,
    metrics,
  });
  livekit.register();
  if (config.livekit.apiKey && config.livekit.apiSecret) {
    registerLiveKitWebhook({
      server: http,
      apiKey: config.livekit.apiKey,
      apiSecret: config.livekit.apiSecret,
      maxBodyBytes: config.server.maxJsonBytes,
      logger: log,
      // One LiveKit project serves every tenant here, so the signal names the room only; each host ends its own streams.
      onRoomFinished: (roomName) => roomSignals.publishRoomFinished({ tenant: '*', roomName }),
    });
  } else {
    log.info('LIVEKIT_API_KEY/LIVEKIT_API_SECRET not set: POST /livekit/webhook is not served');
  }
  if (driver instanceof FsObjectStore) {
    registerObjectRoutes({ server: http, store: driver, secret: secrets.objectUrlSecret, admit: () => admission.gate('objects'), metrics, logger: log });
  }
  registerRecordingRoutes({ server: http, authenticate, catalog, presign });
  registerRoomRoutes({ server: http, authenticate, rooms, presign });
  const whatsapp = { server: http, authenticate, service: voiceNotes, limiter: rateLimiter, maxBytes: wa.maxBytes };
  registerWhatsAppHttp({ ...whatsapp, filter: durationFilter, maxJsonBytes: config.server.maxJsonBytes });
  registerWhatsAppMessages(whatsapp);
  http.fallback();

  // Started in this order, stopped in reverse: what a part uses starts before it and stops after it.
  const services: Service[] = [
    { name: 'build-info', start: () => reportBuild(input.version, log, metrics) },
    // connects before the daemon listens; replay checks, the live directory and rate limits use it once running
    ...(redis ? [{ name: 'redis', start: () => connectRedis(redis), stop: () => redis.disconnect() }] : []),
    {
      name: 'http',
      start: async () => {
        const port = await http.listen(config.server.host, config.server.port);
        log.info({ host: config.server.host, port }, 'listening (starting)');
      },
      // last: requests were drained or given up before the stop began
      stop: () => http.stop(),
    },
    {
      name: 'store',
      start: async () => {
        await store.start();
        // chunk objects acknowledged before a crash, from the fs store's group-commit journal
        const restored = driver instanceof FsObjectStore ? await driver.recoverJournal() : 0;
        if (restored) log.info({ objects: restored }, 'chunk objects restored from the store journal');
      },
      stop: () => store.stop(),
      checks: [{ name: 'store', check: () => store.ping() }],
    },
    ...(retention ? [{ name: 'retention', start: () => retention.start(), stop: () => retention.stop() }] : []),
    { name: 'catalog', stop: () => catalog.whenIdle() },
    {
      name: 'outbox',
      start: () => outbox.start(),
      // last of the event path: every part that appends stops before it
      stop: () => outbox.stop(),
      // the outbox's view: the sink says it is reachable and its last delivery did not fail
      checks: sinks.map((sink) => ({ name: `events:${sink.name}`, check: () => assertReady(outbox.ready(sink.name), sink.name) })),
    },
    ...(queueStats ? [{ name: 'queue-stats', start: () => queueStats.start(), stop: () => queueStats.stop() }] : []),
    { name: 'room-signals', start: () => roomSignals.start(), stop: () => roomSignals.stop() },
    ...(rooms
      ? [
          {
            name: 'rooms',
            start: () => {
              if (roomsRedis) connectRedis(roomsRedis);
              rooms.start();
            },
            stop: () => rooms.stop(),
          },
        ]
      : []),
    {
      name: 'masters',
      // masters a crashed process left behind: completed (or failed for good) and announced before their spool goes
      start: () => MasterUpload.recover({ store, stateDir: dataDir, spool, logger: log, announce: (o) => announceRecovered(o, { catalog, events: recordingEvents, defaultTenant: config.auth.defaultTenant, logger: log }) }).then(() => undefined),
    },
    ...(chunkDispatcher ? [{ name: 'chunk-dispatch', stop: () => chunkDispatcher.stop(5000) }] : []),
    ...(vad ? [{ name: 'vad', start: () => vad.start(), stop: () => vad.stop() }] : []),
    ...(liveDirectory ? [{ name: 'live-directory', start: () => liveDirectory.start(), stop: () => liveDirectory.stop() }] : []),
    // stops after the recordings ended, so its subscribers had the end messages
    { name: 'live', start: () => live.start(), stop: () => live.stop() },
    // stops first of the recording path: ends the streams and waits until every recording is finalized
    { name: 'livekit', start: () => livekit.start(), stop: () => livekit.stop() },
    { name: 'rate-limiter', stop: () => rateLimiter.stop() },
    ...(opusWorkers ? [{ name: 'opus-workers', start: () => {
            opusWorkers.start();
            log.info({ threads: opusWorkers.size }, 'Ogg/Opus decoding on worker threads');
          }, stop: () => opusWorkers.stop() }] : []),
    ...(whatsappAmqp
      ? [{ name: 'whatsapp-amqp', start: () => whatsappAmqp.start(), stop: () => whatsappAmqp.stop(), checks: [{ name: 'whatsapp-amqp', check: () => assertReady(whatsappAmqp.isOpen(), 'whatsapp-amqp') }] }]
      : []),
  ];

  return { http, store, keys, spool, catalog, retention, outbox, roomSignals, rooms, recordings, livekit, live, voiceNotes, rateLimiter, durationFilter, whatsappAmqp, publicUrl, services };
}

/** `server.publicUrl`, else `http://<host>:<port>` (a wildcard host is reached at 127.0.0.1). */
function publicUrlOf(server: Config['server'], port: number): string {
  if (server.publicUrl) return server.publicUrl.replace(/\/+$/, '');
  const host = server.host === '0.0.0.0' || server.host === '::' ? '127.0.0.1' : server.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * An ioredis client that connects in its service's `start()`. With `queue` false a command
 * fails at once while Redis is away (callers fall back to this host); with `queue` true it
 * waits for the connection (one reconnection attempt, `maxRetriesPerRequest: 1`).
 */
function redisClient(url: string, queue: boolean, errorMessage: string, log: Logger): Redis {
  const client = new Redis(url, { enableOfflineQueue: queue, maxRetriesPerRequest: 1, lazyConnect: true });
  client.on('error', (err: unknown) => log.debug({ err }, errorMessage));
  return client;
}

/** What ioredis does at construction without `lazyConnect`: connect, and keep reconnecting after a failure. */
function connectRedis(client: Redis): void {
  // the first attempt's failure already reached the client's error listener; reconnection goes on
  void client.connect().catch(() => undefined);
}

/** The decoder of untrusted media and the uWS binary, in the log and in `audio_ingestd_build_info`. */
async function reportBuild(version: string, log: Logger, metrics: Metrics): Promise<void> {
  // the distribution's (security-patched) ffmpeg unless none exists
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
  metrics.buildInfo.set({ version, node: process.version, uws_native: String(uwsRuntime.native), ffmpeg: ffmpegVer, ffmpeg_source: ffmpeg.source }, 1);
  if (uwsRuntime.native) log.info({ binary: uwsRuntime.binary }, 'uWebSockets.js native binary loaded');
  else log.error('uWebSockets.js fell back to its JavaScript implementation: expect far lower throughput');
}

function assertReady(ok: boolean, name: string): void {
  if (!ok) throw new Error(`${name} is not connected`);
}
