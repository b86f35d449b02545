// Scenario 4 — events: confirmed events per second to RabbitMQ through the durable outbox
// (fsync'd NDJSON segment + AmqpPublisher on a confirm channel) versus raw amqplib
// publish-with-confirm of the same messages, same broker, same run.
//
//   node bench/events.mjs [--quick] [--events 20000] [--amqp amqp://guest:guest@127.0.0.1:5672]
import { join } from 'node:path';
import amqp from 'amqplib';
import { AmqpPublisher } from '../dist/events/amqp-publisher.js';
import { Outbox } from '../dist/events/outbox.js';
import { recordingStarted } from '../dist/events/types.js';
import { saveResults, removeAtExit, tempDir } from './lib/daemon.mjs';
import { cpuSeconds, sleep } from './lib/proc.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const quick = Boolean(args.quick);
const URL_ = String(args.amqp ?? process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
const M = Number(args.events ?? (quick ? 5000 : 20000));
const EXCHANGE = 'bench.audio.events';
const QUEUE = 'bench.audio.events.all';

const event = (i) =>
  recordingStarted({
    recording_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    tenant_id: 'default',
    user_id: `p${i % 500}`,
    platform: 'livekit',
    room_name: 'bench-room',
    meeting_id: null,
    track_id: `t${i % 500}`,
    s3_key_master: `recordings/default/bench-room/p${i % 500}/t${i % 500}/${i}.wav`,
    sample_rate: 48000,
    channels: 1,
    started_at: new Date().toISOString(),
  });

/** A durable queue bound to the exchange, so persistent messages really reach the broker's disk. */
async function prepareBroker() {
  const conn = await amqp.connect(URL_);
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'topic', { durable: true });
  await ch.assertQueue(QUEUE, { durable: true });
  await ch.bindQueue(QUEUE, EXCHANGE, '#');
  await ch.purgeQueue(QUEUE);
  return {
    purge: () => ch.purgeQueue(QUEUE),
    async close() {
      await ch.deleteQueue(QUEUE);
      await ch.deleteExchange(EXCHANGE);
      await conn.close();
    },
  };
}

/** Raw amqplib: confirm channel, persistent messages, confirms awaited per window of `window` publishes. */
async function rawPublish(events, window) {
  const conn = await amqp.connect(URL_);
  const ch = await conn.createConfirmChannel();
  const bodies = events.map((e) => ({ e, body: Buffer.from(JSON.stringify(e)) }));
  const cpu0 = cpuSeconds(process.pid);
  const t0 = performance.now();
  for (let i = 0; i < bodies.length; i += window) {
    for (const { e, body } of bodies.slice(i, i + window)) {
      if (!ch.publish(EXCHANGE, e.type, body, { persistent: true, messageId: e.id, type: e.type, contentType: 'application/json' })) {
        await new Promise((r) => ch.once('drain', r));
      }
    }
    await ch.waitForConfirms();
  }
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(process.pid) - cpu0;
  await conn.close();
  return { secs, cpu };
}

/** Through the outbox: `appenders` concurrent producers append until all M are in; done when the AMQP sink confirmed the last. */
async function outboxPublish(events, appenders) {
  const dir = tempDir('outbox');
  const sink = new AmqpPublisher({ url: URL_, exchange: EXCHANGE, globalQueue: null });
  const outbox = new Outbox({ dir: join(dir, 'outbox'), sinks: [sink] });
  await outbox.start();
  const deadline = Date.now() + 10_000;
  while (!sink.ready() && Date.now() < deadline) await sleep(20);
  const cpu0 = cpuSeconds(process.pid);
  const t0 = performance.now();
  let next = 0;
  const producer = async () => {
    while (next < events.length) await outbox.append(events[next++]);
  };
  await Promise.all(Array.from({ length: appenders }, producer));
  const tAppended = performance.now();
  const stop = Date.now() + 60_000;
  while (outbox.stats().sinks[sink.name].delivered < events.length && Date.now() < stop) await sleep(2);
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(process.pid) - cpu0;
  const st = outbox.stats();
  await outbox.stop();
  removeAtExit(dir);
  return { secs, cpu, appendSecs: (tAppended - t0) / 1000, flushes: st.flushes, delivered: st.sinks[sink.name].delivered };
}

export async function runEvents() {
  const broker = await prepareBroker();
  const rows = [];
  try {
    const evs = Array.from({ length: M }, (_, i) => event(i));
    const add = (name, n, r, extra = {}) =>
      rows.push({ path: name, events: n, 'events/s': n / r.secs, 'cpu µs/event': (r.cpu / n) * 1e6, ...extra });
    await rawPublish(evs.slice(0, 1000), 256); // warm-up
    await broker.purge();
    add('raw amqplib, confirms per 256', M, await rawPublish(evs, 256));
    await broker.purge();
    for (const appenders of [256, 16, 1]) {
      // One appender waits an fsync per event: fewer events so the run stays short.
      const n = appenders === 1 ? Math.min(M, 2000) : M;
      const r = await outboxPublish(evs.slice(0, n), appenders);
      add(`outbox → AmqpPublisher, ${appenders} appender(s)`, n, r, { 'fsync groups': r.flushes, delivered: r.delivered });
      await broker.purge();
    }
  } finally {
    await broker.close();
  }
  const raw = rows[0]['events/s'];
  for (const r of rows) r['vs raw (≥0.5)'] = r['events/s'] / raw;
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await runEvents();
  const md = printTable('Events: confirmed events per second (RabbitMQ, persistent, durable queue bound)', rows);
  saveResults('events', { rows }, md);
}
