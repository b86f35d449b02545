import t from 'tap';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Outbox } from '../../src/events/outbox.js';
import { QueueStatsReporter } from '../../src/events/queue-stats.js';
import { queueError, type AudioEvent } from '../../src/events/types.js';
import { WebhookSink, signWebhook, verifyWebhookSignature } from '../../src/events/webhooks.js';
import { startReceiver } from '../helpers/events-http.js';
import { completedEvent, storedVoiceNote } from '../helpers/events-fixtures.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { tempDir } from '../helpers/events-tmp.js';
import { waitFor } from '../helpers/events-wait.js';

const secret = 'whsec-test-1';

/** The recipe from docs/events.md, written out independently of the daemon's code. */
function verifyAsDocumented(headers: Record<string, string | string[] | undefined>, raw: Buffer): boolean {
  const ts = String(headers['x-webhook-timestamp']);
  const sig = String(headers['x-webhook-signature']);
  const expected = 'sha256=' + createHmac('sha256', secret).update(`${ts}.`).update(raw).digest('hex');
  const fresh = Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
  return fresh && sig.length === expected.length && timingSafeEqual(Buffer.from(sig), Buffer.from(expected));
}

t.test('a receiver failing twice then succeeding gets the event once confirmed, validly signed', async (t) => {
  const main = await startReceiver(t, (_r, i) => (i < 2 ? 503 : 200));
  const sink = new WebhookSink({ url: main.url, secret, role: 'main' });
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
      new WebhookSink({ url: main.url, secret, role: 'main', maxAttempts: 3, onGiveUp }),
      new WebhookSink({ url: monitoring.url, secret, role: 'monitoring' }),
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
    sinks: [new WebhookSink({ url: main.url, secret, role: 'main', timeoutMs: 200 })],
    retry: { baseMs: 5, maxMs: 20 },
  });
  await outbox.start();
  t.teardown(() => outbox.stop());
  await outbox.append(completedEvent(1));
  await waitFor(() => outbox.stats().sinks.webhook!.pending === 0);
  t.equal(calls, 2);
  t.match(outbox.stats().sinks.webhook!.retries, 1);
});
