import t from 'tap';
import { FinalizeQueue } from '../../src/recording/finalize-queue.js';

/** A task that starts, records it, and settles when told to. */
function gate(): { promise: Promise<void>; open: () => void; fail: (err: Error) => void } {
  let open!: () => void;
  let fail!: (err: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

t.test('runs at most `concurrency` at once, the rest in arrival order; each result settles on its own', async (t) => {
  const q = new FinalizeQueue(3);
  const gates = Array.from({ length: 8 }, () => gate());
  const started: number[] = [];
  const settled: number[] = [];
  let running = 0;
  let peak = 0;
  const runs = gates.map((g, i) => q.run(async () => {
    started.push(i);
    running++;
    peak = Math.max(peak, running);
    try {
      await g.promise;
      return i;
    } finally {
      running--;
    }
  }).then((v) => { settled.push(v); return v; }, (err: unknown) => { settled.push(-i); throw err; }));
  await new Promise((r) => setImmediate(r));
  t.same(started, [0, 1, 2], 'three start at once');
  t.equal(q.active, 3);
  t.equal(q.queued, 5);
  gates[1]!.open();
  await runs[1];
  t.same(settled, [1], 'a finished one is settled while the others still run');
  await new Promise((r) => setImmediate(r));
  t.same(started, [0, 1, 2, 3], 'its slot goes to the next in line');
  gates[2]!.fail(new Error('store refused'));
  await t.rejects(runs[2]!, /store refused/, 'a failure is its own');
  await new Promise((r) => setImmediate(r));
  t.same(started, [0, 1, 2, 3, 4], 'and frees its slot too');
  for (const g of gates) g.open();
  t.same(await Promise.allSettled(runs).then((r) => r.map((x) => x.status)), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  t.same(started, [0, 1, 2, 3, 4, 5, 6, 7], 'in arrival order');
  t.equal(peak, 3, 'never more than three at once');
  t.equal(q.active, 0);
  t.equal(q.queued, 0);
});

t.test('a concurrency that is not a positive integer is refused', async (t) => {
  t.throws(() => new FinalizeQueue(0), RangeError);
  t.throws(() => new FinalizeQueue(1.5), RangeError);
});

t.test('the observer is told how long each finalization waited for its slot and how long it ran', async (t) => {
  const waited: number[] = [];
  const ran: number[] = [];
  const q = new FinalizeQueue(1, { waited: (s) => waited.push(s), ran: (s) => ran.push(s) });
  const first = gate();
  const a = q.run(() => first.promise);
  const b = q.run(async () => undefined);
  await new Promise((r) => setImmediate(r));
  t.equal(waited.length, 1, 'the first started at once and was told so');
  t.equal(q.queued, 1, 'the second waits');
  await new Promise((r) => setTimeout(r, 20));
  first.open();
  await Promise.all([a, b]);
  t.equal(waited.length, 2);
  t.equal(ran.length, 2, 'each run is reported once it settles');
  t.ok(ran[0]! > 0, 'the first ran for a while');
  t.ok(waited[1]! > waited[0]!, 'the second waited for it, the first did not');
});
