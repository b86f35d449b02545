import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signature schemes (CONTRACT §5): `standard` is Standard Webhooks (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature: v1,<base64>` keyed by `whsec_` secrets), `legacy` is
 * the daemon's first scheme (`X-Webhook-Signature: sha256=<hex>`), `both` sends both header sets.
 */
export const WEBHOOK_SCHEMES = ['standard', 'legacy', 'both'] as const;
export type WebhookScheme = (typeof WEBHOOK_SCHEMES)[number];

/** Prefix of a Standard Webhooks secret; the rest is the base64 HMAC key. */
export const STANDARD_SECRET_PREFIX = 'whsec_';
/** Key sizes the Standard Webhooks spec recommends (bytes after base64 decoding). */
const STANDARD_KEY_BYTES = { min: 24, max: 64 } as const;
/** Shortest legacy secret accepted (as before the standard scheme existed). */
const LEGACY_MIN_CHARS = 16;

/** The HMAC keys one webhook sink signs with, derived once from `WEBHOOK_SECRET`. */
export interface WebhookKeys {
  scheme: WebhookScheme;
  /** Keys of `webhook-signature`, one `v1,` signature each (rotation); empty for `legacy`. */
  standard: Buffer[];
  /** Key of `X-Webhook-Signature`: the secret's bytes as configured; null for `standard`. */
  legacy: Buffer | null;
}

/**
 * Reads `WEBHOOK_SECRET` (secrets separated by spaces) for a scheme. `standard` needs every
 * entry to be `whsec_<base64 of 24–64 bytes>`; `legacy` takes exactly one entry, used as is;
 * `both` signs the standard header with every `whsec_` entry and the legacy header with the one
 * entry without the prefix, or with the first `whsec_` entry's text when there is none.
 * Problems name the entries by position and shape, never by value.
 */
export function parseWebhookSecrets(scheme: WebhookScheme, secret: string): { keys: WebhookKeys; problems: [] } | { keys: null; problems: string[] } {
  const entries = secret.split(/\s+/).filter((s) => s !== '');
  const problems: string[] = [];
  const where = 'events.webhookSecret (env WEBHOOK_SECRET)';
  const count = `${entries.length} secret${entries.length === 1 ? '' : 's'}`;
  if (entries.length === 0) return { keys: null, problems: [`${where}: got nothing; allowed: one or more secrets separated by spaces`] };

  const standard: Buffer[] = [];
  const plain: string[] = [];
  entries.forEach((entry, i) => {
    if (!entry.startsWith(STANDARD_SECRET_PREFIX)) {
      plain.push(entry);
      return;
    }
    if (scheme === 'legacy') return;
    const problem = standardKeyProblem(entry.slice(STANDARD_SECRET_PREFIX.length));
    if (typeof problem === 'string') problems.push(`${where}: secret ${i + 1} of ${entries.length} (whsec_…, ${entry.length} characters) ${problem}`);
    else standard.push(problem);
  });

  if (scheme === 'legacy') {
    if (entries.length > 1) {
      problems.push(`${where}: got ${count} separated by spaces; allowed with WEBHOOK_SIGNATURE=legacy: one secret (X-Webhook-Signature carries one signature; rotate with WEBHOOK_SIGNATURE=standard or both)`);
    } else if (entries[0]!.length < LEGACY_MIN_CHARS) {
      problems.push(`${where}: got a ${entries[0]!.length}-character secret; allowed with WEBHOOK_SIGNATURE=legacy: at least ${LEGACY_MIN_CHARS} characters`);
    }
    return problems.length > 0 ? { keys: null, problems } : { keys: { scheme, standard: [], legacy: Buffer.from(entries[0]!, 'utf8') }, problems: [] };
  }

  if (scheme === 'standard' && plain.length > 0) {
    problems.push(
      `${where}: got ${count}, ${plain.length} without the whsec_ prefix; allowed with WEBHOOK_SIGNATURE=standard: only whsec_<base64> secrets ` +
        '(keep an existing secret with WEBHOOK_SIGNATURE=legacy, or list it next to a whsec_ secret with WEBHOOK_SIGNATURE=both while consumers migrate; see README "Webhook signatures")',
    );
  }
  if (scheme === 'both') {
    if (plain.length > 1) problems.push(`${where}: got ${plain.length} secrets without the whsec_ prefix; allowed with WEBHOOK_SIGNATURE=both: at most one (the legacy header carries one signature)`);
    else if (plain.length === 1 && plain[0]!.length < LEGACY_MIN_CHARS) problems.push(`${where}: the secret without the whsec_ prefix has ${plain[0]!.length} characters; allowed: at least ${LEGACY_MIN_CHARS}`);
    if (entries.length === plain.length) problems.push(`${where}: got ${count}, none with the whsec_ prefix; allowed with WEBHOOK_SIGNATURE=both: at least one whsec_<base64> secret for the standard header`);
  }
  if (problems.length > 0) return { keys: null, problems };
  const legacyText = scheme === 'both' ? (plain[0] ?? entries.find((e) => e.startsWith(STANDARD_SECRET_PREFIX))!) : null;
  return { keys: { scheme, standard, legacy: legacyText === null ? null : Buffer.from(legacyText, 'utf8') }, problems: [] };
}

/** The decoded key, or what is wrong with the base64 after `whsec_`. */
function standardKeyProblem(b64: string): Buffer | string {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return 'is not whsec_ followed by standard, padded base64';
  const key = Buffer.from(b64, 'base64');
  if (key.toString('base64') !== b64) return 'is not whsec_ followed by standard, padded base64';
  if (key.length < STANDARD_KEY_BYTES.min || key.length > STANDARD_KEY_BYTES.max) {
    return `decodes to ${key.length} bytes; allowed: ${STANDARD_KEY_BYTES.min}–${STANDARD_KEY_BYTES.max} bytes (e.g. whsec_$(openssl rand -base64 32))`;
  }
  return key;
}

/** `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` per key, separated by spaces. */
export function standardSignature(keys: readonly Buffer[], id: string, timestamp: number, body: string): string {
  const content = `${id}.${timestamp}.${body}`;
  return keys.map((key) => `v1,${createHmac('sha256', key).update(content).digest('base64')}`).join(' ');
}

/** `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` (the legacy scheme). */
export function signWebhook(secret: string | Buffer, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** The signature headers of one delivery attempt of event `id`, for the sink's scheme. */
export function signatureHeaders(keys: WebhookKeys, id: string, timestamp: number, body: string): Record<string, string> {
  const headers: Record<string, string> = {};
  if (keys.standard.length > 0) {
    headers['webhook-id'] = id;
    headers['webhook-timestamp'] = String(timestamp);
    headers['webhook-signature'] = standardSignature(keys.standard, id, timestamp, body);
  }
  if (keys.legacy !== null) {
    headers['x-webhook-id'] = id;
    headers['x-webhook-timestamp'] = String(timestamp);
    headers['x-webhook-signature'] = signWebhook(keys.legacy, timestamp, body);
  }
  return headers;
}

/**
 * Consumer-side check of a legacy webhook: the signature matches (constant-time) and the
 * timestamp is within `toleranceSec` of `now` (unix seconds), which bounds replays. Standard
 * Webhooks consumers use a stock library (e.g. the `standardwebhooks` package) instead.
 */
export function verifyWebhookSignature(
  secret: string,
  timestamp: string | number,
  body: string | Buffer,
  header: string | undefined,
  toleranceSec = 300,
  now = Math.floor(Date.now() / 1000),
): boolean {
  const ts = typeof timestamp === 'number' ? timestamp : Number(timestamp);
  if (!Number.isInteger(ts) || Math.abs(now - ts) > toleranceSec || typeof header !== 'string') return false;
  const expected = Buffer.from(signWebhook(secret, ts, Buffer.isBuffer(body) ? body.toString('utf8') : body));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
