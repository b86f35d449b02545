import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import { parseWebhookSecrets } from '../events/webhook-signing.js';
import { type Config, configSchema, SECRET_PATHS } from './schema.js';

/** Where each environment variable lands in the config tree, and how its text is read. */
type EnvKind = 'string' | 'int' | 'number' | 'bool';
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
  ['LIVE_MAX_SUBSCRIBERS_PER_TENANT', 'live.maxSubscribersPerTenant', 'int'],
];

export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../../config/default.json', import.meta.url));

export interface LoadOptions {
  /** `--config` file; falls back to env AUDIO_INGEST_CONFIG. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** The embedded defaults file (tests point it elsewhere). */
  defaultFile?: string;
}

/**
 * config/default.json < `--config` / AUDIO_INGEST_CONFIG < environment. Every problem is
 * collected and reported in one ConfigError naming the key, the value given and what is allowed.
 */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  const merged: Record<string, unknown> = {};

  const readJson = (file: string, label: string): Record<string, unknown> | undefined => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push(`${label} ${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return undefined;
    }
    try {
      const value: unknown = JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        problems.push(`${label} ${file}: must hold a JSON object`);
        return undefined;
      }
      return value as Record<string, unknown>;
    } catch (err) {
      problems.push(`${label} ${file}: invalid JSON (${(err as Error).message})`);
      return undefined;
    }
  };

  const defaults = readJson(options.defaultFile ?? DEFAULT_CONFIG_FILE, 'defaults file');
  if (defaults) deepMerge(merged, defaults);
  const file = options.file ?? env.AUDIO_INGEST_CONFIG;
  if (file) {
    const fromFile = readJson(file, 'config file');
    if (fromFile) {
      for (const secret of SECRET_PATHS) {
        if (getPath(fromFile, secret) !== undefined) {
          problems.push(`${secret}: secrets are not read from config files; set ${envNameOf(secret)} (or ${envNameOf(secret)}_FILE) instead`);
          deletePath(fromFile, secret);
        }
      }
      deepMerge(merged, fromFile);
    }
  }

  for (const [name, path, kind] of ENV_MAP) {
    let raw = env[name];
    const fileVar = env[`${name}_FILE`];
    if ((raw === undefined || raw === '') && fileVar) {
      try {
        raw = readFileSync(fileVar, 'utf8').trim();
      } catch (err) {
        problems.push(`${name}_FILE=${fileVar}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
        continue;
      }
    }
    if (raw === undefined || raw === '') continue;
    const parsed = parseEnv(raw, kind);
    if (parsed === undefined) {
      const shown = isSecret(path) ? '<redacted>' : JSON.stringify(raw);
      problems.push(`${name} (${path}): got ${shown}; allowed: ${describeKind(kind)}`);
      continue;
    }
    setPath(merged, path, parsed);
  }

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.join('.');
      const given = getPath(merged, path);
      const shown = isSecret(path) ? '<redacted>' : given === undefined ? 'nothing' : JSON.stringify(given);
      const where = issue.code === 'unrecognized_keys' ? `${path ? `${path}: ` : ''}unknown key(s) ${issue.keys.join(', ')}` : `${path || '(root)'}: got ${shown}; allowed: ${issue.message}`;
      problems.push(where + envHint(path));
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const config = result.data as Config;
  crossCheck(config, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Rules that span several keys. */
function crossCheck(config: Config, problems: string[]): void {
  const f = config.whatsapp.filter;
  if (f.minSec >= f.maxSec) problems.push(`whatsapp.filter: minSec (${f.minSec}) must be below maxSec (${f.maxSec})`);
  for (const [name, inst] of Object.entries(f.instances)) {
    if (inst.minSec >= inst.maxSec) problems.push(`whatsapp.filter.instances.${name}: minSec (${inst.minSec}) must be below maxSec (${inst.maxSec})`);
  }
  if (config.whatsapp.amqpConsumer.enabled && !config.events.amqpUrl) {
    problems.push('whatsapp.amqpConsumer.enabled: needs AMQP_URL (events.amqpUrl)');
  }
  if ((config.livekit.apiKey === undefined) !== (config.livekit.apiSecret === undefined)) {
    problems.push('livekit: LIVEKIT_API_KEY and LIVEKIT_API_SECRET go together (webhook verification needs both)');
  }
  problems.push(...s3SettingProblems(config.storage.s3));
  const ev = config.events;
  if (ev.webhookUrl !== undefined || ev.monitoringWebhookUrl !== undefined) {
    if (ev.webhookSecret === undefined) problems.push('events.webhookSecret: WEBHOOK_SECRET is required when WEBHOOK_URL or MONITORING_WEBHOOK_URL is set (webhooks are always signed)');
    else problems.push(...parseWebhookSecrets(ev.webhookSignature, ev.webhookSecret).problems);
  }
}

/** S3 object settings that contradict each other or would make objects unreadable to the daemon. */
function s3SettingProblems(s3: Config['storage']['s3']): string[] {
  const problems: string[] = [];
  const kms = s3.sse === 'aws:kms' || s3.sse === 'aws:kms:dsse';
  if (s3.kmsKeyId !== undefined && !kms) {
    problems.push(`storage.s3.kmsKeyId: a KMS key needs KMS encryption; set S3_SSE (storage.s3.sse) to aws:kms (got ${s3.sse})`);
  }
  if (s3.bucketKey && !kms) {
    problems.push(`storage.s3.bucketKey: an S3 Bucket Key applies to KMS encryption only; set S3_SSE (storage.s3.sse) to aws:kms (got ${s3.sse})`);
  }
  if (s3.storageClass === 'GLACIER' || s3.storageClass === 'DEEP_ARCHIVE') {
    problems.push(`storage.s3.storageClass: ${s3.storageClass} objects must be restored before they can be read, and the daemon reads its records and masters back; use a lifecycle rule to archive (env S3_STORAGE_CLASS)`);
  }
  return problems;
}

function envNameOf(path: string): string {
  return ENV_MAP.find(([, p]) => p === path)?.[0] ?? path;
}

function envHint(path: string): string {
  const hit = ENV_MAP.find(([, p]) => p === path);
  return hit ? ` (env ${hit[0]})` : '';
}

export function isSecret(path: string): boolean {
  return (SECRET_PATHS as readonly string[]).includes(path);
}

function parseEnv(raw: string, kind: EnvKind): unknown {
  switch (kind) {
    case 'string':
      return raw;
    case 'int':
      return /^-?\d+$/.test(raw.trim()) ? Number(raw) : undefined;
    case 'number': {
      const n = Number(raw);
      return raw.trim() !== '' && Number.isFinite(n) ? n : undefined;
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      return undefined;
    }
  }
}

function describeKind(kind: EnvKind): string {
  return kind === 'int' ? 'an integer' : kind === 'number' ? 'a number' : kind === 'bool' ? 'true/false/1/0/yes/no' : 'text';
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(source)) {
    const cur = target[k];
    if (isPlainObject(v) && isPlainObject(cur)) deepMerge(cur, v);
    else target[k] = isPlainObject(v) ? structuredClone(v) : v;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(cur[part])) cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function deletePath(obj: Record<string, unknown>, path: string): void {
  const parts = path.split('.');
  const parent = getPath(obj, parts.slice(0, -1).join('.'));
  if (isPlainObject(parent)) delete parent[parts[parts.length - 1]!];
}
