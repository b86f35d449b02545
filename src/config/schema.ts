import { z } from 'zod';
import { WEBHOOK_SCHEMES } from '../events/webhook-signing.js';
import { groupSecondsSchema } from '../sources/egress-params.js';

/**
 * The whole configuration, validated once at start. Every key has a default so that
 * `npm start` runs with no file and no environment. Secrets are marked in SECRET_PATHS: they
 * are accepted only from the environment (or `<NAME>_FILE`), never from a JSON file, and are
 * redacted from logs.
 */

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().positive();
const url = z.string().url();

const limitSchema = z.object({
  /** Bucket size (burst). */
  capacity: positiveInt,
  /** Tokens added per minute. */
  refillPerMinute: z.number().positive(),
});

export const configSchema = z.object({
  server: z
    .object({
      /** Interface to listen on. Env HOST. */
      host: z.string().min(1).default('0.0.0.0'),
      /** TCP port; 0 picks a free one. Env PORT. */
      port: port.default(8080),
      /** Base URL clients reach this daemon at (WebSocket URLs, fs presigned URLs). Env PUBLIC_URL. */
      publicUrl: url.optional(),
      /** Largest HTTP body accepted for JSON endpoints. */
      maxJsonBytes: positiveInt.default(1024 * 1024),
      /** Seconds an HTTP request may take to send its body before it is answered 408. */
      requestTimeoutSec: positiveInt.default(60),
      /**
       * Seconds a request body may go without progress before it is answered 408. Below 10:
       * uWebSockets.js closes such a request itself, unanswered, 8-12 s into the stall (compiled
       * in; the daemon re-arms that timer every 4 s of a stall, see http/request-body.ts).
       */
      bodyIdleTimeoutSec: z.number().int().min(1).max(9).default(8),
    })
    .strict()
    .prefault({}),
  log: z
    .object({
      /** pino level. Env LOG_LEVEL. */
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      /** Human-readable lines instead of JSON (needs pino-pretty). Env LOG_PRETTY. */
      pretty: z.boolean().default(false),
    })
    .strict()
    .prefault({}),
  /** fs store, outbox, spool and state live here. Env DATA_DIR. */
  dataDir: z.string().min(1).default('./data'),
  auth: z
    .object({
      /** Key of the default tenant. Secret: env API_KEY. Generated into DATA_DIR when unset. */
      apiKey: z.string().min(16).optional(),
      /** JSON file of tenants with hashed keys and limits. Env TENANTS_FILE. */
      tenantsFile: z.string().min(1).optional(),
      /** Name of the tenant that API_KEY belongs to. */
      defaultTenant: z.string().min(1).max(64).default('default'),
    })
    .strict()
    .prefault({}),
  /** Limits applied to tenants that do not set their own. */
  tenantDefaults: z
    .object({
      /** Concurrent live streams per tenant. */
      maxStreams: positiveInt.default(500),
      /** API requests per minute per tenant (token bucket, burst = this value). */
      requestsPerMinute: positiveInt.default(6000),
    })
    .strict()
    .prefault({}),
  livekit: z
    .object({
      /** HS256 secret of egress tokens. Secret: env EGRESS_TOKEN_SECRET. Generated into DATA_DIR when unset. */
      egressTokenSecret: z.string().min(32).optional(),
      /** Refuse egress connections without a token. */
      requireToken: z.boolean().default(true),
      /** Default lifetime of minted egress URLs. */
      tokenTtlSec: positiveInt.max(7 * 24 * 3600).default(3600),
      /** LiveKit API key for webhook verification. Env LIVEKIT_API_KEY. */
      apiKey: z.string().min(1).optional(),
      /** LiveKit API secret. Secret: env LIVEKIT_API_SECRET. */
      apiSecret: z.string().min(1).optional(),
      /** Chunk length in seconds when the URL gives none. Env GROUP_SECONDS. */
      groupSeconds: groupSecondsSchema.default(2),
      /** Seconds without any frame (audio, text or ping) before a stream ends with `timeout`. */
      idleTimeoutSec: z.number().int().min(1).max(960).default(90),
      /** Largest WebSocket message accepted; larger closes the stream (counted). */
      maxPayloadBytes: positiveInt.default(64 * 1024),
      /** While muted: `none` writes nothing, `silence` fills the muted span with silence. */
      muteFill: z.enum(['none', 'silence']).default('none'),
      /** Live streams this host accepts in total. */
      maxStreams: positiveInt.default(2000),
    })
    .strict()
    .prefault({}),
  live: z
    .object({
      /** Live audio a subscriber's queue holds (summed over its tracks) before it is closed with 4008. Env LIVE_QUEUE_SECONDS. */
      queueSeconds: z.number().min(0.1).max(60).default(2),
      /**
       * The filter that makes the live output rate: `speech` (default) a 60 dB stopband, flat to
       * 0.80 of the lower Nyquist rate (6.4 kHz at 16 kHz out), half the taps of `archive` (0.62× its CPU), the
       * 80 dB / 0.86 design the stored audio is resampled with. Every host of a fleet must use
       * the same one: a resume on another host continues the same samples. Env LIVE_FILTER.
       */
      filter: z.enum(['speech', 'archive']).default('speech'),
      /** Period in ms of the timer that sends every track's gathered live audio (0: each step at once). Env LIVE_BATCH_MS. */
      batchMs: z.number().int().min(0).max(100).default(20),
      /** Concurrent `GET /v1/live` subscribers per tenant on this host. Env LIVE_MAX_SUBSCRIBERS_PER_TENANT. */
      maxSubscribersPerTenant: positiveInt.max(100_000).default(200),
      /** Seconds between pings to a subscriber. */
      pingSec: z.number().int().min(1).max(300).default(30),
      /** A subscriber that answers no ping for this long is closed (1001). */
      idleSec: z.number().int().min(2).max(960).default(75),
      /** Default lifetime of tokens minted by POST /v1/live/urls. */
      tokenTtlSec: positiveInt.max(3600).default(300),
      /**
       * Seconds a room subscription stays open after its last track ended (closed at once on
       * room_finished). Unset: `rooms.idleSec`, the gap after which the room session is over.
       */
      roomIdleSec: z.number().min(0).max(3600).optional(),
      /**
       * S3: seconds of a live recording behind the live edge whose uploaded master parts stay in
       * the spool, so `from=` anywhere in them resumes (S3 cannot read parts of an unfinished
       * upload); 0 deletes a part once uploaded. Costs spool disk: ~345 MB per stream-hour at
       * 48 kHz mono, ~58 MB per stream at 600 s. Env LIVE_RESUME_WINDOW_SEC.
       */
      resumeWindowSec: z.number().int().min(0).max(86_400).default(600),
      /** Lease of the Redis entry that tells other hosts where a live recording is (REDIS_URL set). */
      directoryTtlSec: z.number().int().min(3).max(3600).default(30),
    })
    .strict()
    .prefault({}),
  output: z
    .object({
      /** Output sample rate; unset keeps the source rate (48 kHz LiveKit, 16 kHz voice notes). */
      sampleRate: z.union([z.literal(8000), z.literal(16000), z.literal(22050), z.literal(24000), z.literal(32000), z.literal(44100), z.literal(48000)]).optional(),
      /** Output channels (1 = downmix). */
      channels: z.union([z.literal(1), z.literal(2)]).default(1),
      /** Normalization: none, peak or loudness (never clips). */
      normalize: z.enum(['none', 'peak', 'loudness']).default('none'),
      /** Target level in dBFS for peak / RMS loudness. */
      targetDb: z.number().min(-40).max(0).default(-1),
    })
    .strict()
    .prefault({}),
  vad: z
    .object({
      /** Voice-activity detection of every live master (WebRTC VAD on worker threads). Env VAD_ENABLED. */
      enabled: z.boolean().default(true),
      /** fvad mode: 0 quality, 1 low bitrate, 2 aggressive, 3 very aggressive (fewer non-speech frames called speech). Env VAD_MODE. */
      mode: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3)]).default(2),
      /** VAD frame length in ms (10, 20 or 30). */
      frameMs: z.union([z.literal(10), z.literal(20), z.literal(30)]).default(10),
      /** Speech shorter than this is dropped (after bridging pauses). Env VAD_MIN_SPEECH_MS. */
      minSpeechMs: z.number().int().min(0).max(10_000).default(200),
      /** Pauses shorter than this inside speech are bridged. Env VAD_MIN_SILENCE_MS. */
      minSilenceMs: z.number().int().min(10).max(10_000).default(300),
      /** Worker threads the VAD runs on. Env VAD_WORKERS. */
      workers: z.number().int().min(1).max(64).default(1),
      /** Also send `recording.speech` (`on`/`off`) events while recordings run. Env VAD_LIVE_EVENTS. */
      liveEvents: z.boolean().default(false),
    })
    .strict()
    .prefault({}),
  storage: z
    .object({
      /** `fs` (embedded, under DATA_DIR/objects) or `s3`. Env STORAGE_DRIVER. */
      driver: z.enum(['fs', 's3']).default('fs'),
      /** Prefix of every key. */
      prefix: z.string().max(256).regex(/^[A-Za-z0-9._\-/]*$/, 'letters, digits, . _ - /').default(''),
      /**
       * Multipart part size in MiB (S3 needs ≥ 5). Every part but the last has exactly this
       * size, header included; a master holds at most 10 000 parts (151 h of 48 kHz mono at 5).
       */
      partSizeMiB: z.number().int().min(5).max(512).default(5),
      /**
       * Masters finalized at once (last parts, header, completion); more ends wait in a queue,
       * so a meeting ending for hundreds of streams cannot spike memory or file descriptors.
       * Env FINALIZE_CONCURRENCY.
       */
      finalizeConcurrency: z.number().int().min(1).max(1024).default(16),
      /** Also store every chunk as its own object. */
      chunkObjects: z.boolean().default(false),
      /** Presign a URL into every `recording.chunk`; false leaves `url` null (cheaper per chunk). Env CHUNK_URLS. */
      chunkUrls: z.boolean().default(true),
      /**
       * ms a chunk object waits for others to share its group commit (fs store): one journal
       * write and fdatasync, one outbox append for all of them. 0 = none. Env CHUNK_COMMIT_MS.
       */
      chunkCommitMs: z.number().int().min(0).max(1000).default(50),
      /** Lifetime of presigned GET URLs. */
      presignTtlSec: positiveInt.max(7 * 24 * 3600).default(3600),
      /** Delete objects older than this many days (0 = keep). */
      retentionDays: z.number().int().min(0).default(0),
      s3: z
        .object({
          /** Env S3_ENDPOINT. */
          endpoint: url.optional(),
          /** Env S3_BUCKET. */
          bucket: z.string().min(3).max(63).default('audio-ingestd'),
          /** Env S3_REGION. */
          region: z.string().min(1).default('us-east-1'),
          /** Env S3_FORCE_PATH_STYLE. */
          forcePathStyle: z.boolean().default(false),
          /**
           * Integrity checksum of every write: `md5` (Content-MD5, computed before the request),
           * `crc32` (x-amz-checksum-crc32, the same way), `sdk` (the SDK's CRC32 in aws-chunked
           * trailers, for stores that read them), `none`. Env S3_CHECKSUM.
           */
          checksum: z.enum(['md5', 'crc32', 'sdk', 'none']).default('md5'),
          /**
           * Server-side encryption of every object: `none` (the bucket's default), `AES256` (SSE-S3),
           * `aws:kms` (SSE-KMS) or `aws:kms:dsse` (dual-layer SSE-KMS). Env S3_SSE.
           */
          sse: z.enum(['none', 'AES256', 'aws:kms', 'aws:kms:dsse']).default('none'),
          /** KMS key (id, ARN or alias) of SSE-KMS; unset uses the account's aws/s3 key. Env S3_SSE_KMS_KEY_ID. */
          kmsKeyId: z.string().min(1).max(2048).optional(),
          /** S3 Bucket Key for SSE-KMS (fewer KMS requests). Env S3_SSE_BUCKET_KEY. */
          bucketKey: z.boolean().default(false),
          /** Storage class of every object; unset is the bucket's (STANDARD). Env S3_STORAGE_CLASS. */
          storageClass: z.enum(['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'REDUCED_REDUNDANCY', 'GLACIER', 'DEEP_ARCHIVE']).optional(),
          /** Tag every object with `tenant` and `source` (x-amz-tagging). Env S3_TAG_OBJECTS. */
          tagObjects: z.boolean().default(false),
        })
        .strict()
        .prefault({}),
    })
    .strict()
    .prefault({}),
  spool: z
    .object({
      /**
       * Local bytes live audio may occupy (each live stream holds part 1 until the end, the part
       * being filled and, on S3, its uploaded parts within `live.resumeWindowSec`). Unset: half the free space of DATA_DIR's
       * filesystem at start, at least 1 GiB. Env SPOOL_MAX_BYTES.
       */
      maxBytes: positiveInt.optional(),
    })
    .strict()
    .prefault({}),
  events: z
    .object({
      /** RabbitMQ URL; unset writes events to DATA_DIR/events.ndjson. Secret: env AMQP_URL. */
      amqpUrl: z.string().regex(/^amqps?:\/\//, 'an amqp:// or amqps:// URL').optional(),
      /** Topic exchange events are published to. */
      exchange: z.string().min(1).default('audio.events'),
      /** Queue receiving voicenote.stored as GlobalQueueMessage. */
      globalQueue: z.string().min(1).default('global.messages'),
      /** Fanout exchange for cross-host signals (room_finished). */
      signalsExchange: z.string().min(1).default('audio.signals'),
      /** Main webhook. Env WEBHOOK_URL. */
      webhookUrl: url.optional(),
      /** Monitoring webhook (queue.error, queue.stats, filter.applied). Env MONITORING_WEBHOOK_URL. */
      monitoringWebhookUrl: url.optional(),
      /**
       * Webhook signing secrets, separated by spaces (every one signs: rotation). `whsec_<base64>`
       * for the standard scheme. Secret: env WEBHOOK_SECRET.
       */
      webhookSecret: z.string().min(16).optional(),
      /**
       * Signature scheme of webhooks: `standard` (Standard Webhooks), `legacy` (X-Webhook-Signature)
       * or `both` while consumers migrate. Env WEBHOOK_SIGNATURE.
       */
      webhookSignature: z.enum(WEBHOOK_SCHEMES).default('standard'),
      /** Attempts before a webhook delivery gives up with queue.error. */
      webhookMaxAttempts: positiveInt.max(100).default(10),
      /** Seconds between queue.stats to the monitoring webhook. */
      statsIntervalSec: positiveInt.default(60),
    })
    .strict()
    .prefault({}),
  chunkDispatch: z
    .object({
      /** Analysis endpoint receiving every chunk; unset disables. Env CHUNK_DISPATCH_URL. */
      url: url.optional(),
      /** Bearer key for it. Secret: env CHUNK_DISPATCH_API_KEY. */
      apiKey: z.string().min(1).optional(),
      /** `wav` (audio/wav) or `l16` (audio/L16). */
      format: z.enum(['wav', 'l16']).default('wav'),
      timeoutMs: positiveInt.default(10_000),
      maxAttempts: positiveInt.max(20).default(5),
      /** Requests to the endpoint in flight at once (one connection each). */
      concurrency: positiveInt.max(256).default(16),
      /** MiB of chunks waiting to be sent; beyond it a chunk is dropped (counted as dispatch_queue_full). */
      maxQueueMiB: positiveInt.max(4096).default(64),
    })
    .strict()
    .prefault({}),
  whatsapp: z
    .object({
      /** Largest media body accepted. */
      maxBytes: positiveInt.default(64 * 1024 * 1024),
      /** Also store the original media next to the WAV. */
      keepOriginal: z.boolean().default(false),
      /** Output rate of voice notes (default keeps 16 kHz). */
      sampleRate: z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]).default(16000),
      /** ffmpeg processes running at once. */
      ffmpegConcurrency: positiveInt.max(64).default(4),
      /** Worker threads decoding Ogg/Opus: "auto" (one per CPU, at most 4), or 0 to decode on the event loop. */
      opusWorkers: z.union([z.literal('auto'), z.number().int().min(0).max(64)]).default('auto'),
      /** Seconds a decode may take. */
      decodeTimeoutSec: positiveInt.default(120),
      /** CPU seconds one ffmpeg child may use (RLIMIT_CPU); unset: the decode deadline rounded up, plus one. */
      decoderCpuSec: positiveInt.max(3600).optional(),
      /** Address space of one ffmpeg child (RLIMIT_AS) in MiB; Debian's ffmpeg maps ~300 MiB of libraries. */
      decoderMemoryMiB: positiveInt.min(256).max(16384).default(1024),
      filter: z
        .object({
          minSec: z.number().min(1).max(300).default(3),
          maxSec: z.number().positive().max(7200).default(7200),
          /** Per-instance overrides. */
          instances: z
            .record(z.string(), z.object({ minSec: z.number().min(1).max(300), maxSec: z.number().positive().max(7200), enabled: z.boolean().default(true) }).strict())
            .default({}),
        })
        .strict()
        .prefault({}),
      amqpConsumer: z
        .object({
          /** Consume Evolution API's exchange (needs events.amqpUrl). */
          enabled: z.boolean().default(false),
          exchange: z.string().min(1).default('evolution_exchange'),
          routingKey: z.string().min(1).default('messages.upsert'),
          queue: z.string().min(1).default('audio-ingestd.messages.upsert'),
          prefetch: positiveInt.max(1000).default(8),
        })
        .strict()
        .prefault({}),
    })
    .strict()
    .prefault({}),
  rateLimit: z
    .object({
      /** Whole-daemon bucket. */
      global: limitSchema.default({ capacity: 500, refillPerMinute: 500 }),
      /** Per tenant. */
      tenant: limitSchema.default({ capacity: 500, refillPerMinute: 500 }),
      /** Per tenant and WhatsApp instance. */
      instance: limitSchema.default({ capacity: 500, refillPerMinute: 500 }),
      /** Shared bucket store for several hosts. Env REDIS_URL. */
      redisUrl: z.string().regex(/^rediss?:\/\//, 'a redis:// URL').optional(),
    })
    .strict()
    .prefault({}),
  rooms: z
    .object({
      /** Room sessions (README, Rooms): mix each room's tracks once the room is over. */
      enabled: z.boolean().default(true),
      /** Seconds after every track of a room ended before its session is over. Env ROOMS_IDLE_SEC. */
      idleSec: z.number().min(0).max(3600).default(30),
      /** Lifetime of a host's claim on a room (renewed every third of it); a crashed holder's claim expires after it. Env ROOMS_LEASE_SEC. */
      leaseSec: z.number().min(1).max(3600).default(30),
      /** After room_finished, seconds to wait for tracks still finishing before mixing without them. */
      trackWaitSec: z.number().min(0).max(3600).default(120),
      /** A live track whose host has not refreshed it for this long counts as ended at its last refresh (its host died). */
      staleSec: z.number().min(4).max(3600).default(120),
      /** Headroom in dB of the mono mix before its soft limiter. */
      headroomDb: z.number().min(0).max(40).default(6),
      /** Knee of the mix's soft limiter, a fraction of full scale. */
      limiterKnee: z.number().gt(0).lt(1).default(0.5),
      /** Seconds of room timeline mixed per step (memory: two steps of every track). */
      windowSec: z.number().min(0.1).max(30).default(2),
      /** Participants of dual.wav when no egress URL claims a channel. Env ROOMS_DUAL_LEFT / ROOMS_DUAL_RIGHT. */
      dual: z
        .object({
          left: z.string().min(1).optional(),
          right: z.string().min(1).optional(),
        })
        .strict()
        .prefault({}),
    })
    .strict()
    .prefault({}),
  shutdown: z
    .object({
      /** Seconds live streams and HTTP requests in flight may continue after SIGTERM. Env DRAIN_SECONDS. */
      drainSeconds: z.number().min(0).max(3600).default(25),
    })
    .strict()
    .prefault({}),
}).strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Paths of secret values: never read from JSON files, always redacted. */
export const SECRET_PATHS = [
  'auth.apiKey',
  'livekit.egressTokenSecret',
  'livekit.apiSecret',
  'events.amqpUrl',
  'events.webhookSecret',
  'chunkDispatch.apiKey',
  'rateLimit.redisUrl',
] as const;
