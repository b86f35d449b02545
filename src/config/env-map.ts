import { SECRET_PATHS } from './schema.js';

/** Where each environment variable lands in the config tree, and how its text is read. */
export type EnvKind = 'string' | 'int' | 'number' | 'bool';
export const ENV_MAP: ReadonlyArray<readonly [name: string, path: string, kind: EnvKind]> = [
  ['HOST', 'server.host', 'string'],
  ['PORT', 'server.port', 'int'],
  ['PUBLIC_URL', 'server.publicUrl', 'string'],
  ['DATA_DIR', 'dataDir', 'string'],
  ['LOG_LEVEL', 'log.level', 'string'],
  ['LOG_PRETTY', 'log.pretty', 'bool'],
  ['API_KEY', 'auth.apiKey', 'string'],
  ['TENANTS_FILE', 'auth.tenantsFile', 'string'],
  ['EGRESS_TOKEN_SECRET', 'livekit.egressTokenSecret', 'string'],
  ['LIVEKIT_API_KEY', 'livekit.apiKey', 'string'],
  ['LIVEKIT_API_SECRET', 'livekit.apiSecret', 'string'],
  ['GROUP_SECONDS', 'livekit.groupSeconds', 'number'],
  ['STORAGE_DRIVER', 'storage.driver', 'string'],
  ['STORAGE_PREFIX', 'storage.prefix', 'string'],
  ['S3_ENDPOINT', 'storage.s3.endpoint', 'string'],
  ['S3_BUCKET', 'storage.s3.bucket', 'string'],
  ['S3_REGION', 'storage.s3.region', 'string'],
  ['S3_FORCE_PATH_STYLE', 'storage.s3.forcePathStyle', 'bool'],
  ['S3_CHECKSUM', 'storage.s3.checksum', 'string'],
  ['S3_SSE', 'storage.s3.sse', 'string'],
  ['S3_SSE_KMS_KEY_ID', 'storage.s3.kmsKeyId', 'string'],
  ['S3_SSE_BUCKET_KEY', 'storage.s3.bucketKey', 'bool'],
  ['S3_STORAGE_CLASS', 'storage.s3.storageClass', 'string'],
  ['S3_TAG_OBJECTS', 'storage.s3.tagObjects', 'bool'],
  ['CHUNK_URLS', 'storage.chunkUrls', 'bool'],
  ['CHUNK_COMMIT_MS', 'storage.chunkCommitMs', 'int'],
  ['FINALIZE_CONCURRENCY', 'storage.finalizeConcurrency', 'int'],
  ['VAD_ENABLED', 'vad.enabled', 'bool'],
  ['VAD_MODE', 'vad.mode', 'int'],
  ['VAD_MIN_SPEECH_MS', 'vad.minSpeechMs', 'int'],
  ['VAD_MIN_SILENCE_MS', 'vad.minSilenceMs', 'int'],
  ['VAD_WORKERS', 'vad.workers', 'int'],
  ['VAD_LIVE_EVENTS', 'vad.liveEvents', 'bool'],
  ['RETENTION_DAYS', 'storage.retentionDays', 'int'],
  ['SPOOL_MAX_BYTES', 'spool.maxBytes', 'int'],
  ['AMQP_URL', 'events.amqpUrl', 'string'],
  ['WEBHOOK_URL', 'events.webhookUrl', 'string'],
  ['MONITORING_WEBHOOK_URL', 'events.monitoringWebhookUrl', 'string'],
  ['WEBHOOK_SECRET', 'events.webhookSecret', 'string'],
  ['WEBHOOK_SIGNATURE', 'events.webhookSignature', 'string'],
  ['CHUNK_DISPATCH_URL', 'chunkDispatch.url', 'string'],
  ['CHUNK_DISPATCH_API_KEY', 'chunkDispatch.apiKey', 'string'],
  ['REDIS_URL', 'rateLimit.redisUrl', 'string'],
  ['DRAIN_SECONDS', 'shutdown.drainSeconds', 'number'],
  ['ROOMS_IDLE_SEC', 'rooms.idleSec', 'number'],
  ['ROOMS_LEASE_SEC', 'rooms.leaseSec', 'number'],
  ['ROOMS_DUAL_LEFT', 'rooms.dual.left', 'string'],
  ['ROOMS_DUAL_RIGHT', 'rooms.dual.right', 'string'],
  ['LIVE_QUEUE_SECONDS', 'live.queueSeconds', 'number'],
  ['LIVE_BATCH_MS', 'live.batchMs', 'int'],
  ['LIVE_FILTER', 'live.filter', 'string'],
  ['LIVE_RESUME_WINDOW_SEC', 'live.resumeWindowSec', 'int'],
  ['LIVE_MAX_SUBSCRIBERS_PER_TENANT', 'live.maxSubscribersPerTenant', 'int'],
];

/** The environment variable that sets `path` (or the path itself when none does). */
export function envNameOf(path: string): string {
  return ENV_MAP.find(([, p]) => p === path)?.[0] ?? path;
}

/** " (env NAME)" when an environment variable sets `path`, else nothing. */
export function envHint(path: string): string {
  const hit = ENV_MAP.find(([, p]) => p === path);
  return hit ? ` (env ${hit[0]})` : '';
}

/** Whether `path` holds a secret (never read from files, always redacted). */
export function isSecret(path: string): boolean {
  return (SECRET_PATHS as readonly string[]).includes(path);
}

