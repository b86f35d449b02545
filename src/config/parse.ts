import { ConfigError } from '../errors.js';
import { parseWebhookSecrets } from '../events/webhook-signing.js';
import { envHint, isSecret } from './env-map.js';
import { type Config, configSchema } from './schema.js';

/**
 * The one validation of a config tree: the schema, then the rules that span several keys. Every
 * problem is reported in one ConfigError naming the key, the value given and what is allowed;
 * `earlier` are problems found while reading the layers (they are reported with the schema's, and
 * the cross-key rules run only on a tree that has none). The loader and the test helpers use it.
 */
export function parseConfig(input: unknown, earlier: readonly string[] = []): Config {
  const problems = [...earlier];
  const result = configSchema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.join('.');
      const given = getPath(input, path);
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

function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
