import { randomBytes } from 'node:crypto';
import t from 'tap';
import { Webhook } from 'standardwebhooks';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { parseWebhookSecrets, signatureHeaders, standardSignature } from '../../src/events/webhook-signing.js';
import { startTestApp } from '../helpers/app.js';

const whsec = (bytes = 32): string => `whsec_${randomBytes(bytes).toString('base64')}`;

t.test('the daemon\'s v1 signature equals the standardwebhooks package\'s for the same id, time and body', async (t) => {
  const secret = whsec();
  const key = parseWebhookSecrets('standard', secret).keys!.standard;
  for (const body of ['{}', '{"type":"recording.completed","room":"Sala de reunião ✓"}', JSON.stringify({ long: 'x'.repeat(70_000) })]) {
    const id = randomBytes(8).toString('hex');
    const ts = 1_700_000_000 + Math.floor(Math.random() * 1e6);
    t.equal(standardSignature(key, id, ts, body), new Webhook(secret).sign(id, new Date(ts * 1000), body));
  }
});

t.test('header sets by scheme', async (t) => {
  const std = whsec();
  const headers = (scheme: 'standard' | 'legacy' | 'both', secret: string): string[] => Object.keys(signatureHeaders(parseWebhookSecrets(scheme, secret).keys!, 'id-1', 1_700_000_000, '{}')).sort();
  t.same(headers('standard', std), ['webhook-id', 'webhook-signature', 'webhook-timestamp']);
  t.same(headers('legacy', 'legacy-secret-0123456789'), ['x-webhook-id', 'x-webhook-signature', 'x-webhook-timestamp']);
  t.same(headers('both', `legacy-secret-0123456789 ${std}`), ['webhook-id', 'webhook-signature', 'webhook-timestamp', 'x-webhook-id', 'x-webhook-signature', 'x-webhook-timestamp']);
});

t.test('secrets that do not fit the scheme are refused with what was given and what is allowed, never the value', async (t) => {
  const plain = 'an-old-legacy-secret-value';
  const cases: [scheme: 'standard' | 'legacy' | 'both', secret: string, expected: RegExp][] = [
    ['standard', plain, /got 1 secret, 1 without the whsec_ prefix; allowed with WEBHOOK_SIGNATURE=standard: only whsec_<base64> secrets .*WEBHOOK_SIGNATURE=legacy.*both/],
    ['standard', `${whsec()} ${plain}`, /got 2 secrets, 1 without the whsec_ prefix/],
    ['standard', 'whsec_not base64!', /secret 1 of 2 \(whsec_…, 9 characters\) is not whsec_ followed by standard, padded base64/],
    ['standard', 'whsec_bm9wYWQ', /is not whsec_ followed by standard, padded base64/],
    ['standard', whsec(16), /decodes to 16 bytes; allowed: 24–64 bytes/],
    ['standard', whsec(65), /decodes to 65 bytes; allowed: 24–64 bytes/],
    ['legacy', `${plain} ${plain}2`, /got 2 secrets separated by spaces; allowed with WEBHOOK_SIGNATURE=legacy: one secret/],
    ['legacy', 'short', /got a 5-character secret; allowed with WEBHOOK_SIGNATURE=legacy: at least 16 characters/],
    ['both', plain, /none with the whsec_ prefix; allowed with WEBHOOK_SIGNATURE=both: at least one whsec_<base64> secret/],
    ['both', `${plain} ${plain}2 ${whsec()}`, /got 2 secrets without the whsec_ prefix; allowed with WEBHOOK_SIGNATURE=both: at most one/],
    ['both', `short ${whsec()}`, /the secret without the whsec_ prefix has 5 characters; allowed: at least 16/],
    ['standard', '   ', /got nothing/],
  ];
  for (const [scheme, secret, expected] of cases) {
    const { keys, problems } = parseWebhookSecrets(scheme, secret);
    t.equal(keys, null, `${scheme} refuses ${JSON.stringify(secret.slice(0, 12))}…`);
    t.match(problems.join('\n'), expected);
    for (const part of secret.split(' ').filter((p) => p.length > 8)) t.notOk(problems.join('\n').includes(part), 'the secret is not in the message');
  }
  t.ok(parseWebhookSecrets('legacy', whsec()).keys, 'legacy takes a whsec_ string as an ordinary secret');
  t.equal(parseWebhookSecrets('standard', ` ${whsec()}  ${whsec()} `).keys?.standard.length, 2, 'extra spaces are ignored');
});

t.test('config: default standard, WEBHOOK_SIGNATURE read from the environment, problems reported at load', async (t) => {
  const base = { WEBHOOK_URL: 'http://127.0.0.1:9/hook' };
  t.equal(loadConfig({ env: {} }).events.webhookSignature, 'standard', 'new installs sign with Standard Webhooks');
  t.equal(loadConfig({ env: { ...base, WEBHOOK_SECRET: whsec() } }).events.webhookSignature, 'standard');
  t.equal(loadConfig({ env: { ...base, WEBHOOK_SECRET: 'an-old-legacy-secret', WEBHOOK_SIGNATURE: 'legacy' } }).events.webhookSignature, 'legacy');
  t.equal(loadConfig({ env: { ...base, WEBHOOK_SECRET: `an-old-legacy-secret ${whsec()}`, WEBHOOK_SIGNATURE: 'both' } }).events.webhookSignature, 'both');

  const upgraded = t.throws(() => loadConfig({ env: { ...base, WEBHOOK_SECRET: 'an-old-legacy-secret' } })) as ConfigError;
  t.ok(upgraded instanceof ConfigError, 'an install upgraded with a legacy secret and no WEBHOOK_SIGNATURE stops at start');
  t.match(upgraded.message, /events\.webhookSecret \(env WEBHOOK_SECRET\): got 1 secret, 1 without the whsec_ prefix/);
  t.notOk(upgraded.message.includes('an-old-legacy-secret'));

  const bad = t.throws(() => loadConfig({ env: { ...base, WEBHOOK_SECRET: whsec(), WEBHOOK_SIGNATURE: 'svix' } })) as ConfigError;
  t.match(bad.message, /events\.webhookSignature: got "svix"; allowed: .*standard.*legacy.*both.* \(env WEBHOOK_SIGNATURE\)/);

  t.throws(() => loadConfig({ env: base }), { message: /WEBHOOK_SECRET is required/ });
  t.equal(loadConfig({ env: { WEBHOOK_SECRET: 'unused-legacy-secret' } }).events.webhookSecret, 'unused-legacy-secret', 'without a webhook URL the secret is not checked');
});

t.test('an app given a secret that does not fit its scheme refuses to start', async (t) => {
  await t.rejects(startTestApp({ events: { webhookUrl: 'http://127.0.0.1:9/hook', webhookSecret: 'an-old-legacy-secret' } }), { message: /without the whsec_ prefix/ });
});
