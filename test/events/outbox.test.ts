import t from 'tap';
import { spawn } from 'node:child_process';
import { appendFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Outbox, type OutboxEvent, type Sink } from '../../src/events/outbox.js';
import { Metrics } from '../../src/observability/metrics.js';
import { completedEvent } from '../helpers/events-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';


/** A sink that keeps what it confirmed; `failFirst` batches are rejected before it starts confirming. */
class CollectingSink implements Sink {
  readonly received: OutboxEvent[] = [];
  calls = 0;
  private waiters: { n: number; resolve: () => void }[] = [];
  constructor(
    readonly name: string,
    private failFirst = 0,
    readonly maxBatch?: number,
  ) {}
  async deliver(batch: OutboxEvent[]): Promise<void> {
    this.calls++;
    if (this.failFirst > 0) {
      this.failFirst--;
      throw new Error('destination down');
    }
    this.received.push(...batch);
    this.waiters = this.waiters.filter((w) => (this.received.length >= w.n ? (w.resolve(), false) : true));
  }
  until(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

const fastRetry = { baseMs: 5, maxMs: 20 };

t.test('concurrent appends are group-committed and delivered in order', async (t) => {
  const dir = await tempDir(t);
  const sink = new CollectingSink('log');
  const metrics = new Metrics({ defaultMetrics: false });
  const outbox = new Outbox({ dir, sinks: [sink], retry: fastRetry, metrics });
  await outbox.start();
  const events = Array.from({ length: 500 }, (_, i) => completedEvent(i));
  await Promise.all(events.map((e) => outbox.append(e)));
  const s = outbox.stats();
  t.equal(s.appended, 500);
  t.ok(s.flushes < 500, `500 concurrent appends took ${s.flushes} fsyncs`);
  await sink.until(500);
  t.same(
    sink.received.map((e) => e.id),
    events.map((e) => e.id),
    'same events, same order',
  );
  t.same(sink.received[3], JSON.parse(JSON.stringify(events[3])), 'event round-trips through the segment');
  await outbox.stop();
  t.equal(outbox.stats().sinks.log!.pending, 0);
  const delivered = await metrics.registry.getSingleMetricAsString('audio_ingestd_events_delivered_total');
  t.match(delivered, /sink="log",type="recording.completed"} 500/);
  await t.rejects(outbox.append(completedEvent(999)), { code: 'DRAINING' });
});

t.test('each sink has its own cursor; segments go only when every sink confirmed', async (t) => {
  const dir = await tempDir(t);
  const fast = new CollectingSink('fast');
  const slow = new CollectingSink('slow', 4, 10);
  const outbox = new Outbox({ dir, sinks: [fast, slow], retry: fastRetry, segmentBytes: 4096 });
  await outbox.start();
  for (let i = 0; i < 60; i++) await outbox.append(completedEvent(i));
  await fast.until(60);
  await slow.until(60);
  t.equal(slow.calls >= 4 + 6, true, 'slow sink retried its failures and got batches of at most 10');
  t.ok(slow.received.length === 60 && slow.received.every((e, i) => e.id === fast.received[i]!.id), 'both in outbox order');
  t.equal(outbox.stats().sinks.slow!.retries, 4);
  // after both confirmed, only the active segment remains
  await new Promise((r) => setTimeout(r, 20));
  const segs = (await readdir(dir)).filter((n) => n.startsWith('seg-'));
  t.equal(segs.length, 1, `only the active segment is left: ${segs.join(',')}`);
  await outbox.stop();
});

t.test('sinks that keep up are handed each group from memory, in order, without reading a segment back', async (t) => {
  const dir = await tempDir(t);
  const a = new CollectingSink('amqp');
  const b = new CollectingSink('webhook', 2, 7);
  const outbox = new Outbox({ dir, sinks: [a, b], retry: fastRetry, segmentBytes: 8192 });
  await outbox.start();
  const events = Array.from({ length: 120 }, (_, i) => completedEvent(i));
  for (let i = 0; i < events.length; i += 12) {
    await Promise.all(events.slice(i, i + 12).map((e) => outbox.append(e)));
    await a.until(i + 12);
  }
  await b.until(120);
  t.same(a.received.map((e) => e.id), events.map((e) => e.id), 'every event once, in order');
  t.same(b.received.map((e) => e.id), events.map((e) => e.id), 'also to the sink that failed twice and takes batches of 7');
  t.equal(a.received[5], events[5], 'the very event appended');
  const s = outbox.stats();
  const [active] = (await readdir(dir)).filter((n) => n.startsWith('seg-'));
  t.ok(Number(/^seg-(\d+)/.exec(active!)![1]) > 1, `rotated past the first segment: ${active}`);
  t.equal(s.segmentReads, 0, 'no segment read back');
  await outbox.stop();
  const again = new CollectingSink('amqp');
  const second = new Outbox({ dir, sinks: [again, new CollectingSink('webhook')], retry: fastRetry });
  await second.start();
  const later = completedEvent(200);
  await second.append(later);
  await again.until(1);
  t.same(again.received.map((e) => e.id), [later.id], 'after a restart the cursors hold: only the new event');
  await second.stop();
});

t.test('a sink that never confirms keeps segments; restart replays unconfirmed events only', async (t) => {
  const dir = await tempDir(t);
  const ok = new CollectingSink('amqp');
  const down: Sink = { name: 'webhook', deliver: () => Promise.reject(new Error('down')) };
  const first = new Outbox({ dir, sinks: [ok, down], retry: fastRetry, segmentBytes: 2048 });
  await first.start();
  const events = Array.from({ length: 40 }, (_, i) => completedEvent(i));
  for (const e of events) await first.append(e);
  await ok.until(40);
  t.equal(first.ready('amqp'), true);
  t.equal(first.ready('webhook'), false, 'failing sink is not ready');
  t.equal(first.stats().sinks.webhook!.pending, 40);
  t.ok((await readdir(dir)).filter((n) => n.startsWith('seg-')).length > 1, 'segments retained for the lagging sink');
  await first.stop();

  const ok2 = new CollectingSink('amqp');
  const webhook2 = new CollectingSink('webhook');
  const second = new Outbox({ dir, sinks: [ok2, webhook2], retry: fastRetry });
  await second.start();
  await webhook2.until(40);
  t.same(webhook2.received.map((e) => e.id), events.map((e) => e.id), 'lagging sink gets everything, in order');
  await second.append(completedEvent(100));
  await ok2.until(1);
  await webhook2.until(41);
  t.same(ok2.received.map((e) => e.id), [webhook2.received[40]!.id], 'confirmed sink gets only the new event');
  await second.stop();
  t.same((await readdir(dir)).filter((n) => n.startsWith('seg-')).length, 1);
});

t.test('a torn last line is ignored on restart and later appends are intact', async (t) => {
  const dir = await tempDir(t);
  const first = new Outbox({ dir, sinks: [{ name: 'x', deliver: () => Promise.reject(new Error('down')) }], retry: fastRetry });
  await first.start();
  const events = [completedEvent(1), completedEvent(2)];
  for (const e of events) await first.append(e);
  await first.stop();
  const [seg] = (await readdir(dir)).filter((n) => n.startsWith('seg-'));
  await appendFile(join(dir, seg!), '{"seq":3,"event":{"id":"torn","ty');

  const sink = new CollectingSink('x');
  const second = new Outbox({ dir, sinks: [sink], retry: fastRetry });
  await second.start();
  const later = completedEvent(3);
  await second.append(later);
  await sink.until(3);
  t.same(sink.received.map((e) => e.id), [...events, later].map((e) => e.id));
  t.equal(second.stats().lastSeq, 3, 'sequence continues after the last complete line');
  await second.stop();
});

t.test('kill -9 with pending events: every acknowledged event is delivered after restart', async (t) => {
  const dir = await tempDir(t);
  const child = spawn(process.execPath, [...process.execArgv, 'test/helpers/events-child.ts', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const acked: string[] = [];
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited early: code ${code} signal ${signal}`));
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      acked.push(...lines);
      if (acked.length >= 300 && !child.killed) {
        child.kill('SIGKILL');
        resolve();
      }
    });
  });
  await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
  t.ok(acked.length >= 300);

  const sink = new CollectingSink('stuck');
  const outbox = new Outbox({ dir, sinks: [sink], retry: fastRetry });
  await outbox.start();
  const total = outbox.stats().lastSeq;
  t.ok(total >= acked.length, `outbox holds ${total} events, ${acked.length} acknowledged`);
  await sink.until(total);
  const ids = sink.received.map((e) => e.id);
  const got = new Set(ids);
  t.equal(got.size, ids.length, 'no duplicates on replay');
  t.ok(acked.every((id) => got.has(id)), 'every acknowledged event survived kill -9');
  const idx = sink.received.map((e) => Number((e as { recording_id: string }).recording_id.slice(4)));
  t.ok(idx.every((v, i) => i === 0 || v > idx[i - 1]!), 'replayed in append order');
  await outbox.stop();
});

t.test('stop(deadline) has one deadline: a delivery that never settles holds it up no longer', async (t) => {
  const dir = await tempDir(t);
  let started = 0;
  const hung: Sink = { name: 'hung', deliver: () => (started++, new Promise<void>(() => undefined)) };
  const ok = new CollectingSink('ok');
  // stopTimeoutMs is only the default deadline: the one given to stop() wins
  const outbox = new Outbox({ dir, sinks: [hung, ok], retry: fastRetry, stopTimeoutMs: 600_000, cursorSyncMs: 60_000 });
  await outbox.start();
  await outbox.append(completedEvent(1));
  await ok.until(1);
  while (started === 0) await new Promise((r) => setTimeout(r, 5));
  await outbox.stop(Date.now() + 50);
  t.equal(outbox.stats().sinks.hung!.pending, 1, 'the hung sink confirmed nothing');
  await t.rejects(outbox.append(completedEvent(2)), { code: 'DRAINING' });

  const again = new CollectingSink('ok');
  const replay = new CollectingSink('hung');
  const second = new Outbox({ dir, sinks: [replay, again], retry: fastRetry });
  await second.start();
  t.equal(second.stats().sinks.ok!.cursor, 1, 'the cursor of the sink that confirmed was written by the stop');
  await replay.until(1);
  t.equal(replay.received[0]!.id, ok.received[0]!.id, 'the unconfirmed event is delivered in the next run');
  await second.stop();
  t.equal(again.received.length, 0, 'nothing is sent again to the sink that confirmed');
});
