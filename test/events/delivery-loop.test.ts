import t, { type Test } from 'tap';
import { AmqpPublisher } from '../../src/events/amqp-publisher.js';
import { DeliveryError } from '../../src/events/delivery-error.js';
import { DeliveryLoop } from '../../src/events/delivery-loop.js';
import { SegmentLog } from '../../src/events/segment-log.js';
import { SinkCursor } from '../../src/events/sink-cursor.js';
import type { GiveUp, OutboxEvent, Sink } from '../../src/events/sink.js';
import { parseWebhookSecrets } from '../../src/events/webhook-signing.js';
import { WebhookSink } from '../../src/events/webhooks.js';
import { AMQP_URL, TestConsumer, deleteTopology, uniqueNames } from '../helpers/events-amqp.js';
import { completedEvent } from '../helpers/events-fixtures.js';
import { startReceiver } from '../helpers/events-http.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

t.setTimeout(60_000);

const keys = parseWebhookSecrets('legacy', 'legacy-secret-delivery-loop').keys!;
const fastRetry = { baseMs: 5, maxMs: 20 };
const idOf = (body: Buffer): string => (JSON.parse(body.toString()) as { id: string }).id;

/** A real log and cursor in a temp dir, and one loop delivering them to `sink`. */
async function loopFor(t: Test, sink: Sink, batchSize = 256) {
  const dir = await tempDir(t);
  const cursor = await SinkCursor.open(dir, sink.name, { syncMs: 0 });
  const log = new SegmentLog({ dir, confirmedThrough: () => cursor.seq });
  await log.open();
  await cursor.place(0);
  const loop = new DeliveryLoop({ sink, log, cursor, batchSize, retry: fastRetry, onAdvance: () => log.deleteConfirmed() });
  log.onFlush(() => loop.wake());
  let stopped = false;
  const stop = async (deadline: AbortSignal): Promise<boolean> => {
    stopped = true;
    const ended = await loop.stop(deadline);
    await cursor.close();
    await sink.stop?.();
    await log.close();
    return ended;
  };
  t.teardown(async () => {
    if (!stopped) await stop(AbortSignal.timeout(5000));
  });
  await sink.start?.();
  loop.start();
  return { dir, log, cursor, loop, stop };
}

t.test('DeliveryError: permanent and Retry-After are carried; anything else is retryable', async (t) => {
  const e = new DeliveryError('HTTP 429', { status: 429, retryAfterMs: 2000 });
  t.equal(e.permanent, false);
  t.equal(e.retryAfterMs, 2000);
  t.equal(e.status, 429);
  t.equal(DeliveryError.from(e), e, 'a DeliveryError is itself');
  const plain = new Error('socket hang up');
  const wrapped = DeliveryError.from(plain);
  t.match(wrapped, { permanent: false, retryAfterMs: undefined, status: null, message: 'socket hang up', cause: plain });
  t.equal(new DeliveryError('x', { retryAfterMs: Number.NaN }).retryAfterMs, undefined, 'an unreadable wait is no wait');
  t.equal(new DeliveryError('HTTP 410', { status: 410, permanent: true }).permanent, true);
});

t.test('a webhook answering 410 is given up at once, reported, and the loop goes on with the next event', async (t) => {
  const gone = completedEvent(1);
  const next = completedEvent(2);
  const receiver = await startReceiver(t, (r) => (idOf(r.body) === gone.id ? 410 : 200));
  const reports: GiveUp[] = [];
  const sink = new WebhookSink({ url: receiver.url, keys, role: 'main', maxAttempts: 5, onGiveUp: (g) => void reports.push(g) });
  const { log, cursor, loop } = await loopFor(t, sink);
  await log.append(gone);
  await log.append(next);
  await waitFor(() => cursor.seq === 2);
  t.same(receiver.requests.map((r) => idOf(r.body)), [gone.id, next.id], 'one POST of the refused event, no retry');
  t.equal(reports.length, 1);
  t.match(reports[0], { sink: 'webhook', attempts: 1, status: 410, error: 'HTTP 410' });
  t.equal(reports[0]!.event.id, gone.id);
  t.match(loop.stats(), { retries: 0, consecutiveFailures: 0, lastError: null });
});

t.test('a retryable failure is retried with backoff up to maxAttempts, then given up', async (t) => {
  const receiver = await startReceiver(t, () => 500);
  const reports: GiveUp[] = [];
  const sink = new WebhookSink({ url: receiver.url, keys, role: 'main', maxAttempts: 3, onGiveUp: (g) => void reports.push(g) });
  const { log, cursor, loop } = await loopFor(t, sink);
  await log.append(completedEvent(1));
  await waitFor(() => cursor.seq === 1);
  t.equal(receiver.requests.length, 3, 'three attempts');
  t.match(reports, [{ attempts: 3, status: 500, error: 'HTTP 500' }]);
  t.equal(loop.stats().retries, 2, 'the two failures before the last are retries');
  t.equal(sink.ready(), false, 'the receiver failed last');
});

t.test('a give-up report that fails is retried without delivering the event again', async (t) => {
  const receiver = await startReceiver(t, () => 410);
  let calls = 0;
  const sink = new WebhookSink({
    url: receiver.url,
    keys,
    role: 'main',
    onGiveUp: () => {
      if (++calls === 1) throw new Error('outbox full');
    },
  });
  const { log, cursor, loop } = await loopFor(t, sink);
  await log.append(completedEvent(1));
  await waitFor(() => cursor.seq === 1);
  t.equal(calls, 2, 'reported again after the failed report');
  t.equal(receiver.requests.length, 1, 'POSTed once: the event stays given up');
  t.equal(loop.stats().consecutiveFailures, 0);
});

t.test('a sink throwing plain errors, without maxAttempts, is retried until it confirms, in order', async (t) => {
  const received: OutboxEvent[] = [];
  let failuresLeft = 4;
  const sink: Sink = {
    name: 'flaky',
    maxBatch: 3,
    deliver: async (batch) => {
      if (failuresLeft-- > 0) throw new Error('destination down');
      received.push(...batch);
    },
  };
  const { log, cursor, loop } = await loopFor(t, sink);
  const events = Array.from({ length: 10 }, (_, i) => completedEvent(i));
  for (const e of events) await log.append(e);
  await waitFor(() => cursor.seq === 10);
  t.same(received.map((e) => e.id), events.map((e) => e.id), 'every event once, in order');
  t.equal(loop.stats().retries, 4);
  t.equal(loop.stats().delivered, 10);
  t.equal(loop.pending, 0);
});

t.test('events the sink does not accept count as confirmed without a delivery', async (t) => {
  // a monitoring webhook takes no recording.completed; asked to POST it, it could never confirm
  const sink = new WebhookSink({ url: 'http://127.0.0.1:1/never', keys, role: 'monitoring' });
  const { log, cursor, loop } = await loopFor(t, sink);
  await log.append(completedEvent(1));
  await waitFor(() => cursor.seq === 1);
  t.match(loop.stats(), { retries: 0, delivered: 0 });
});

t.test('stop(deadline): caught up, the loop ends at once; a delivery still in flight at the deadline is left behind', async (t) => {
  const ok = await startReceiver(t);
  const a = await loopFor(t, new WebhookSink({ url: ok.url, keys, role: 'main' }));
  await a.log.append(completedEvent(1));
  t.equal(await a.stop(AbortSignal.timeout(60_000)), true, 'drained and ended long before the deadline');
  t.equal(a.cursor.seq, 1);
  t.equal(ok.requests.length, 1);

  const hung = await startReceiver(t);
  hung.server.removeAllListeners('request');
  let arrived = 0;
  hung.server.on('request', (req) => {
    arrived++;
    req.resume(); // never answers
  });
  const b = await loopFor(t, new WebhookSink({ url: hung.url, keys, role: 'main', timeoutMs: 60_000 }));
  await b.log.append(completedEvent(1));
  await waitFor(() => arrived === 1);
  const deadline = new AbortController();
  const stopping = b.stop(deadline.signal);
  deadline.abort();
  t.equal(await stopping, false, 'stop returns at the deadline, the POST still hanging');
  t.equal(b.cursor.seq, 0, 'nothing confirmed: delivered again after the next start');
});

t.test('stop(deadline) lets a failing sink retry until it confirms, if that happens before the deadline', async (t) => {
  let failuresLeft = 3;
  const received: OutboxEvent[] = [];
  const sink: Sink = {
    name: 'recovering',
    deliver: async (batch) => {
      if (failuresLeft-- > 0) throw new DeliveryError('HTTP 503', { status: 503 });
      received.push(...batch);
    },
  };
  const { log, cursor, stop } = await loopFor(t, sink);
  await log.append(completedEvent(1));
  t.equal(await stop(AbortSignal.timeout(60_000)), true);
  t.equal(received.length, 1);
  t.equal(cursor.seq, 1);
});

t.test('RabbitMQ: batches of the sink’s maxBatch are confirmed by the broker, in order', async (t) => {
  const { prefix, connectionName } = uniqueNames('delivery-loop');
  const exchange = `${prefix}.audio.events`;
  const consumer = await TestConsumer.open();
  await consumer.bind(exchange, 'topic', '#');
  t.teardown(async () => {
    await consumer.close();
    await deleteTopology([exchange], []);
  });
  const publisher = new AmqpPublisher({ url: AMQP_URL, exchange, globalQueue: null, connectionName, maxBatch: 7, connectWaitMs: 5000 });
  const { log, cursor, loop, stop } = await loopFor(t, publisher);
  const events = Array.from({ length: 50 }, (_, i) => completedEvent(i));
  await Promise.all(events.map((e) => log.append(e)));
  await consumer.until(() => consumer.messages.length >= 50);
  await waitFor(() => cursor.seq === 50);
  t.same(consumer.messages.map((m) => m.properties.messageId as string), events.map((e) => e.id), 'every event once, in order');
  t.equal(loop.stats().delivered, 50);
  t.equal(await stop(AbortSignal.timeout(10_000)), true);
});
