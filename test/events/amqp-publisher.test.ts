import t from 'tap';
import { AmqpPublisher } from '../../src/events/amqp-publisher.js';
import { Outbox } from '../../src/events/outbox.js';
import type { GiveUp } from '../../src/events/sink.js';
import { recordingChunk, type AudioEvent } from '../../src/events/types.js';
import {
  TestConsumer,
  AMQP_URL,
  closeConnectionsNamed,
  deleteTopology,
  queueArguments,
  uniqueNames,
} from '../helpers/events-amqp.js';
import { completedEvent, storedVoiceNote } from '../helpers/events-fixtures.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

t.setTimeout(60_000);

async function setup(t: { teardown(fn: () => unknown): void }, label: string) {
  const { prefix, connectionName } = uniqueNames(label);
  const exchange = `${prefix}.audio.events`;
  const globalQueue = `${prefix}.global.messages`;
  const consumer = await TestConsumer.open();
  await consumer.bind(exchange, 'topic', '#');
  const publisher = new AmqpPublisher({
    url: AMQP_URL,
    exchange,
    globalQueue,
    connectionName,
    reconnect: { baseMs: 50, maxMs: 500 },
    connectWaitMs: 2_000,
    maxBatch: 50,
  });
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [publisher], retry: { baseMs: 20, maxMs: 200 } });
  t.teardown(async () => {
    await outbox.stop();
    await consumer.close();
    await deleteTopology([exchange], [globalQueue]);
  });
  return { exchange, globalQueue, connectionName, consumer, publisher, outbox };
}

t.test('events arrive with routing key = type, messageId = id, and a schema-valid body', async (t) => {
  const { globalQueue, consumer, publisher, outbox } = await setup(t, 'shape');
  await outbox.start();
  const chunk = recordingChunk({
    recording_id: 'r1', tenant_id: 't1', user_id: 'alice', seq: 0, s3_key: 'k', start_sec: 0, duration_sec: 2,
    start_sample: 0, sample_count: 96_000, size_bytes: 192_044, sample_rate: 48_000, channels: 1, url: null, url_expires_at: null,
  });
  const events: AudioEvent[] = [chunk, completedEvent(1), storedVoiceNote(1)];
  for (const e of events) await outbox.append(e);
  await consumer.until(() => consumer.messages.length >= 3);
  t.equal(publisher.ready(), true);
  for (const [i, m] of consumer.messages.entries()) {
    const e = events[i]!;
    t.equal(m.fields.routingKey, e.type, `routing key of ${e.type}`);
    t.equal(m.properties.messageId, e.id);
    t.equal(m.properties.type, e.type);
    t.equal(m.properties.contentType, 'application/json');
    t.equal(m.properties.deliveryMode, 2, 'persistent');
    t.equal(m.properties.timestamp, Math.floor(Date.parse(e.occurredAt) / 1000));
    const body = JSON.parse(m.content.toString('utf8')) as AudioEvent;
    t.same(validate(loadSchema(e.type), body), [], `${e.type} body matches its schema`);
    t.same(body, JSON.parse(JSON.stringify(e)));
  }

  // the seed queue got the voice note, in GlobalQueueMessage shape, with priority 5
  const gq = await TestConsumer.open();
  t.teardown(() => gq.close());
  await gq.collect(globalQueue);
  await gq.until(() => gq.messages.length >= 1);
  const [m] = gq.messages;
  t.equal(gq.messages.length, 1, 'only voicenote.stored goes to the global queue');
  t.equal(m!.properties.priority, 5);
  t.equal(m!.properties.messageId, events[2]!.id);
  const body = JSON.parse(m!.content.toString('utf8')) as Record<string, unknown>;
  t.same(validate(loadSchema('global-queue-message'), body), []);
  t.match(body, { type: 'audio', source: 'whatsapp', messageId: 'MSG1', tenantId: 't1' });
  const args = await queueArguments(globalQueue);
  t.match(args, /x-max-priority.*10/, 'x-max-priority 10');
  t.match(args, /x-message-ttl.*3600000/, 'x-message-ttl 3600000');
  t.match(args, /\ttrue\t/, 'durable');
});

t.test('broker-side connection drops mid-stream lose no event', async (t) => {
  const { connectionName, consumer, outbox, publisher } = await setup(t, 'drop');
  await outbox.start();
  const total = 300;
  const ids: string[] = [];
  let closed = 0;
  for (let i = 0; i < total; i++) {
    const e = completedEvent(i);
    ids.push(e.id);
    await outbox.append(e);
    if (i === 100 || i === 200) {
      // wait until the publisher is connected and busy, then cut it from the broker side
      await consumer.until(() => consumer.messages.length > i - 50);
      closed += await closeConnectionsNamed(connectionName);
    }
  }
  t.ok(closed >= 2, `closed the publisher's connection ${closed} times`);
  const seen = (): Set<string> => new Set(consumer.messages.map((m) => m.properties.messageId as string));
  await consumer.until(() => seen().size >= total);
  t.equal(seen().size, total, 'every event arrived');
  t.ok(ids.every((id) => seen().has(id)));
  const firsts: string[] = [];
  const s = new Set<string>();
  for (const m of consumer.messages) {
    const id = m.properties.messageId as string;
    if (s.has(id)) continue;
    s.add(id);
    firsts.push(id);
  }
  t.same(firsts, ids, 'first deliveries in outbox order');
  t.equal(publisher.connectionCount, 3, 'the publisher reconnected after each drop');
  await waitFor(() => outbox.stats().sinks.amqp!.pending === 0);
  t.equal(outbox.stats().sinks.amqp!.pending, 0, 'all confirmed');
});

t.test('broker unreachable: events stay pending and are delivered once it is back', async (t) => {
  const { consumer, exchange, globalQueue } = await setup(t, 'down');
  // a publisher pointed at a closed port stands in for a broker outage
  const dead = new AmqpPublisher({ url: 'amqp://guest:guest@127.0.0.1:1', exchange, globalQueue, connectWaitMs: 100, reconnect: { baseMs: 20, maxMs: 50 } });
  const dir = await tempDir(t);
  const down = new Outbox({ dir, sinks: [dead], retry: { baseMs: 10, maxMs: 50 } });
  await down.start();
  const events = [completedEvent(1), completedEvent(2)];
  for (const e of events) await down.append(e);
  await waitFor(() => down.stats().sinks.amqp!.retries >= 2);
  t.equal(down.ready('amqp'), false, 'not ready while the broker is unreachable');
  t.equal(down.stats().sinks.amqp!.pending, 2);
  await down.stop();

  const up = new Outbox({ dir, sinks: [new AmqpPublisher({ url: AMQP_URL, exchange, globalQueue })], retry: { baseMs: 10, maxMs: 50 } });
  await up.start();
  t.teardown(() => up.stop());
  await consumer.until(() => consumer.messages.length >= 2);
  t.same(consumer.messages.map((m) => m.properties.messageId), events.map((e) => e.id));
});

t.test('an event larger than the broker takes is given up on its own and reported; the events around it are delivered, in order', async (t) => {
  const { prefix, connectionName } = uniqueNames('oversize');
  const exchange = `${prefix}.audio.events`;
  const globalQueue = `${prefix}.global.messages`;
  const consumer = await TestConsumer.open();
  await consumer.bind(exchange, 'topic', '#');
  const publisher = new AmqpPublisher({ url: AMQP_URL, exchange, globalQueue, connectionName, maxBatch: 50, maxMessageBytes: 64 * 1024 });
  const givenUp: GiveUp[] = [];
  Object.assign(publisher, { onGiveUp: (g: GiveUp) => void givenUp.push(g) });
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [publisher], retry: { baseMs: 20, maxMs: 200 } });
  t.teardown(async () => {
    await outbox.stop();
    await consumer.close();
    await deleteTopology([exchange], [globalQueue]);
  });
  // a recording.completed of a long meeting with 2 000 mute intervals: ~300 KB of JSON
  const big = completedEvent(2);
  const intervals = big as unknown as { mute_intervals: unknown[] };
  intervals.mute_intervals = Array.from({ length: 2000 }, () => intervals.mute_intervals[0]);
  t.ok(JSON.stringify(big).length > 64 * 1024, 'the big event is over the limit');
  const events = [completedEvent(1), big, completedEvent(3), storedVoiceNote(4)];
  await outbox.start();
  // appended together: one write, and so one batch for the sink
  await Promise.all(events.map((e) => outbox.append(e)));
  await consumer.until(() => consumer.messages.length >= 3);
  await waitFor(() => (outbox.stats().sinks.amqp!.pending === 0 ? true : undefined), 10_000, 'caught up');
  t.same(consumer.messages.map((m) => m.properties.messageId), [events[0]!.id, events[2]!.id, events[3]!.id], 'every other event, in order');
  t.equal(givenUp.length, 1, 'one event given up');
  t.match(givenUp[0], { sink: 'amqp', attempts: 0, event: { id: big.id }, error: /exceed the broker's message limit/ });
  t.equal(outbox.ready('amqp'), true, 'the sink stays ready');
  const later = completedEvent(5);
  await outbox.append(later);
  await consumer.until(() => consumer.messages.length >= 4);
  t.equal(consumer.messages[3]!.properties.messageId, later.id, 'and later events go on');
});
