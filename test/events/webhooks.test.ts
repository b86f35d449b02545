import t from 'tap';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { Outbox } from '../../src/events/outbox.js';
import { QueueStatsReporter } from '../../src/events/queue-stats.js';
import { queueError, type AudioEvent } from '../../src/events/types.js';
import { parseWebhookSecrets, type WebhookKeys, type WebhookScheme } from '../../src/events/webhook-signing.js';
import { WebhookSink, signWebhook, verifyWebhookSignature } from '../../src/events/webhooks.js';
import { startReceiver } from '../helpers/events-http.js';
import { completedEvent, storedVoiceNote } from '../helpers/events-fixtures.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

const secret = 'legacy-secret-test-1';
const whsec = (): string => `whsec_${randomBytes(32).toString('base64')}`;

function keysFor(scheme: WebhookScheme, value: string): WebhookKeys {
  const { keys, problems } = parseWebhookSecrets(scheme, value);
  if (keys === null) throw new Error(problems.join('; '));
  return keys;
}

/** The legacy recipe from docs/events.md, written out independently of the daemon's code. */
function verifyAsDocumented(headers: IncomingHttpHeaders, raw: Buffer, key = secret): boolean {
  const ts = String(headers['x-webhook-timestamp']);
  const sig = String(headers['x-webhook-signature']);
  const expected = 'sha256=' + createHmac('sha256', key).update(`${ts}.`).update(raw).digest('hex');
  const fresh = Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
  return fresh && sig.length === expected.length && timingSafeEqual(Buffer.from(sig), Buffer.from(expected));
}

/** Standard Webhooks verification with the stock `standardwebhooks` package: the parsed event, or the library's error. */
function verifyStandard(whsecret: string, headers: IncomingHttpHeaders, raw: Buffer): unknown {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') flat[k] = v;
  try {
    return new Webhook(whsecret).verify(raw, flat);
  } catch (err) {
    if (err instanceof WebhookVerificationError) return err;
    throw err;
  }
}

t.test('standard: every attempt verifies with the standardwebhooks package; retries carry the same webhook-id', async (t) => {
  const key = whsec();
  const main = await startReceiver(t, (_r, i) => (i < 2 ? 503 : 200));
  const sink = new WebhookSink({ url: main.url, keys: keysFor('standard', key), role: 'main' });
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [sink], retry: { baseMs: 10, maxMs: 40 } });
  await outbox.start();
  t.teardown(() => outbox.stop());
  const event = completedEvent(1);
  await outbox.append(event);
  await waitFor(() => outbox.stats().sinks.webhook!.pending === 0);
  t.equal(main.requests.length, 3, 'two failures, then the success');
  for (const r of main.requests) {
    t.equal(r.headers['content-type'], 'application/json');
    t.equal(r.headers['webhook-id'], event.id, 'webhook-id is the event id, on every attempt');
    t.match(r.headers['webhook-timestamp'], /^\d+$/);
    t.ok(Math.abs(Number(r.headers['webhook-timestamp']) - Date.now() / 1000) < 60, 'unix seconds of the attempt');
    t.match(r.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]{43}=$/);
    t.same(verifyStandard(key, r.headers, r.body), JSON.parse(JSON.stringify(event)), 'standardwebhooks verifies it and returns the event');
    t.notOk('x-webhook-signature' in r.headers || 'x-webhook-id' in r.headers, 'no legacy headers');
  }
  const last = main.requests[2]!;
  t.type(verifyStandard(whsec(), last.headers, last.body), WebhookVerificationError, 'another secret does not verify');
  t.type(verifyStandard(key, last.headers, Buffer.concat([last.body, Buffer.from(' ')])), WebhookVerificationError, 'a tampered body does not verify');
  t.type(verifyStandard(key, { ...last.headers, 'webhook-id': 'another-id' }, last.body), WebhookVerificationError, 'the id is signed');
  t.type(verifyStandard(key, { ...last.headers, 'webhook-timestamp': String(Number(last.headers['webhook-timestamp']) - 1) }, last.body), WebhookVerificationError, 'the timestamp is signed');
});

t.test('standard with two secrets (rotation): one v1 signature each, either secret verifies', async (t) => {
  const [oldKey, newKey] = [whsec(), whsec()];
  const main = await startReceiver(t);
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [new WebhookSink({ url: main.url, keys: keysFor('standard', `${oldKey} ${newKey}`), role: 'main' })] });
  await outbox.start();
  t.teardown(() => outbox.stop());
  await outbox.append(completedEvent(1));
  await waitFor(() => main.requests.length === 1);
  const r = main.requests[0]!;
  t.match(r.headers['webhook-signature'], /^v1,\S+ v1,\S+$/, 'two space-separated signatures');
  t.same(verifyStandard(oldKey, r.headers, r.body), JSON.parse(r.body.toString()), 'the old secret verifies');
  t.same(verifyStandard(newKey, r.headers, r.body), JSON.parse(r.body.toString()), 'the new secret verifies');
  t.type(verifyStandard(whsec(), r.headers, r.body), WebhookVerificationError, 'a third does not');
});

t.test('both: the standard headers verify with the whsec_ secret, the legacy ones with the other secret', async (t) => {
  const key = whsec();
  const main = await startReceiver(t);
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [new WebhookSink({ url: main.url, keys: keysFor('both', `${secret} ${key}`), role: 'main' })] });
  await outbox.start();
  t.teardown(() => outbox.stop());
  const event = storedVoiceNote(1);
  await outbox.append(event);
  await waitFor(() => main.requests.length === 1);
  const r = main.requests[0]!;
  t.same(verifyStandard(key, r.headers, r.body), JSON.parse(r.body.toString()), 'standardwebhooks verifies');
  t.ok(verifyAsDocumented(r.headers, r.body), 'the legacy recipe verifies with the secret without whsec_');
  t.equal(r.headers['webhook-id'], event.id);
  t.equal(r.headers['x-webhook-id'], event.id);
  t.equal(r.headers['webhook-timestamp'], r.headers['x-webhook-timestamp'], 'one timestamp for both');
  t.equal(String(r.headers['webhook-signature']).split(' ').length, 1, 'only the whsec_ secret signs the standard header');
});

t.test('both with only a whsec_ secret: the legacy header is keyed by that secret as configured', async (t) => {
  const key = whsec();
  const main = await startReceiver(t);
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [new WebhookSink({ url: main.url, keys: keysFor('both', key), role: 'main' })] });
  await outbox.start();
  t.teardown(() => outbox.stop());
  await outbox.append(completedEvent(2));
  await waitFor(() => main.requests.length === 1);
  const r = main.requests[0]!;
  t.same(verifyStandard(key, r.headers, r.body), JSON.parse(r.body.toString()));
  t.ok(verifyAsDocumented(r.headers, r.body, key));
});

t.test('legacy: a receiver failing twice then succeeding gets the event once confirmed, validly signed', async (t) => {
  const main = await startReceiver(t, (_r, i) => (i < 2 ? 503 : 200));
  const sink = new WebhookSink({ url: main.url, keys: keysFor('legacy', secret), role: 'main' });
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [sink], retry: { baseMs: 10, maxMs: 40 } });
  await outbox.start();
  t.teardown(() => outbox.stop());
  const event = completedEvent(1);
  await outbox.append(event);
  await waitFor(() => outbox.stats().sinks.webhook!.pending === 0);
  t.equal(main.requests.length, 3, 'two failures, then the success');
  t.equal(outbox.stats().sinks.webhook!.retries, 2);
  for (const r of main.requests) {
    t.equal(r.method, 'POST');
    t.equal(r.headers['content-type'], 'application/json');
    t.equal(r.headers['x-webhook-id'], event.id);
    t.match(r.headers['x-webhook-signature'], /^sha256=[0-9a-f]{64}$/);
    t.ok(verifyAsDocumented(r.headers, r.body), 'documented recipe verifies it');
    t.ok(verifyWebhookSignature(secret, String(r.headers['x-webhook-timestamp']), r.body, String(r.headers['x-webhook-signature'])));
    t.same(JSON.parse(r.body.toString()), JSON.parse(JSON.stringify(event)));
    t.notOk('webhook-signature' in r.headers, 'no standard headers');
  }
  const last = main.requests[2]!;
  t.notOk(verifyWebhookSignature('wrong-secret', String(last.headers['x-webhook-timestamp']), last.body, String(last.headers['x-webhook-signature'])));
  t.notOk(verifyWebhookSignature(secret, String(last.headers['x-webhook-timestamp']), last.body.toString() + ' ', String(last.headers['x-webhook-signature'])), 'tampered body');
  t.equal(outbox.ready('webhook'), true);
});

t.test('verifyWebhookSignature enforces the timestamp tolerance', async (t) => {
  const body = '{"a":1}';
  const sig = signWebhook(secret, 1_000_000, body);
  t.ok(verifyWebhookSignature(secret, 1_000_000, body, sig, 300, 1_000_100));
  t.notOk(verifyWebhookSignature(secret, 1_000_000, body, sig, 300, 1_000_301), 'too old');
  t.notOk(verifyWebhookSignature(secret, 1_000_000, body, undefined, 300, 1_000_000), 'missing header');
  t.notOk(verifyWebhookSignature(secret, 1_000_000, body, sig.slice(0, -1), 300, 1_000_000), 'short header');
});

t.test('4xx gives up at once, retries exhaust after maxAttempts; both become queue.error on the monitoring webhook', async (t) => {
  const gone = completedEvent(1);
  const flaky = storedVoiceNote(2);
  const main = await startReceiver(t, (r) => (JSON.parse(r.body.toString()).id === gone.id ? 410 : 500));
  const monitoring = await startReceiver(t);
  const onGiveUp = async (g: { sink: string; event: AudioEvent; attempts: number; error: string; status: number | null }) => {
    await outbox.append(
      queueError(g.event.tenant, {
        sink: g.sink, failed_event_id: g.event.id, failed_event_type: g.event.type, attempts: g.attempts,
        error: g.error, status: g.status, gave_up_at: new Date().toISOString(),
      }),
    );
  };
  const outbox: Outbox = new Outbox({
    dir: await tempDir(t),
    sinks: [
      new WebhookSink({ url: main.url, keys: keysFor('legacy', secret), role: 'main', maxAttempts: 3, onGiveUp }),
      new WebhookSink({ url: monitoring.url, keys: keysFor('legacy', secret), role: 'monitoring' }),
    ],
    retry: { baseMs: 5, maxMs: 20 },
  });
  await outbox.start();
  t.teardown(() => outbox.stop());
  await outbox.append(gone);
  await outbox.append(flaky);
  const stats = new QueueStatsReporter({ outbox, host: 'test-host' });
  await stats.emit();
  await waitFor(() => monitoring.requests.length >= 3);
  const received = monitoring.requests.map((r) => JSON.parse(r.body.toString()) as AudioEvent & Record<string, unknown>);
  t.same(received.map((e) => e.type).sort(), ['queue.error', 'queue.error', 'queue.stats']);
  for (const e of received) t.same(validate(loadSchema(e.type), e), [], `${e.type} valid`);
  const errors = received.filter((e) => e.type === 'queue.error');
  t.match(errors.find((e) => e.failed_event_id === gone.id), { attempts: 1, status: 410, sink: 'webhook' }, '410: no retry');
  t.match(errors.find((e) => e.failed_event_id === flaky.id), { attempts: 3, status: 500 }, '500: retried up to maxAttempts');
  t.equal(main.requests.filter((r) => r.headers['x-webhook-id'] === gone.id).length, 1);
  t.equal(main.requests.filter((r) => r.headers['x-webhook-id'] === flaky.id).length, 3);
  t.notOk(main.requests.some((r) => JSON.parse(r.body.toString()).type.startsWith('queue.')), 'main webhook gets no monitoring events');
  t.ok(monitoring.requests.every((r) => verifyAsDocumented(r.headers, r.body)));
});

t.test('a receiver that never answers times out and is retried', async (t) => {
  let calls = 0;
  const main = await startReceiver(t);
  main.server.removeAllListeners('request');
  main.server.on('request', (req, res) => {
    calls++;
    req.resume();
    if (calls > 1) res.end(); // the first request hangs past the timeout
  });
  const outbox = new Outbox({
    dir: await tempDir(t),
    sinks: [new WebhookSink({ url: main.url, keys: keysFor('standard', whsec()), role: 'main', timeoutMs: 200 })],
    retry: { baseMs: 5, maxMs: 20 },
  });
  await outbox.start();
  t.teardown(() => outbox.stop());
  await outbox.append(completedEvent(1));
  await waitFor(() => outbox.stats().sinks.webhook!.pending === 0);
  t.equal(calls, 2);
  t.match(outbox.stats().sinks.webhook!.retries, 1);
});
