import t from 'tap';
import { Gather, type Gathered } from '../../src/storage/gather.js';

/** A run that records its groups and settles each when told. */
function recordingRun(): { groups: number[][]; release: (k: number) => void; run: (jobs: Gathered<number, number>[]) => Promise<void> } {
  const groups: number[][] = [];
  const gates: (() => void)[] = [];
  return {
    groups,
    release: (k) => gates[k]!(),
    run: async (jobs) => {
      groups.push(jobs.map((j) => j.item));
      await new Promise<void>((r) => gates.push(r));
      for (const j of jobs) j.resolve(j.item * 10);
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('the items of one tick leave as one group; those added while it runs gather for the next; at most inFlight at once', async (t) => {
  const r = recordingRun();
  const g = new Gather(r.run, { maxItems: 3, inFlight: 1 });
  const first = [1, 2, 3, 4].map((i) => g.add(i));
  await tick();
  t.same(r.groups, [[1, 2, 3]], 'maxItems per group, one group in flight');
  const later = [5, 6].map((i) => g.add(i));
  await tick();
  t.same(r.groups, [[1, 2, 3]], 'the rest waits while the first runs');
  r.release(0);
  t.same(await Promise.all(first.slice(0, 3)), [10, 20, 30]);
  await tick();
  t.same(r.groups, [[1, 2, 3], [4, 5, 6]], 'what gathered meanwhile leaves together');
  r.release(1);
  t.same(await Promise.all([first[3], ...later]), [40, 50, 60]);
});

t.test('two in flight: the second group leaves while the first runs', async (t) => {
  const r = recordingRun();
  const g = new Gather(r.run, { maxItems: 2, inFlight: 2 });
  const all = [1, 2, 3, 4, 5].map((i) => g.add(i));
  await tick();
  t.same(r.groups, [[1, 2], [3, 4]]);
  r.release(1);
  await tick();
  t.same(r.groups, [[1, 2], [3, 4], [5]], 'a slot freed: the next group goes');
  r.release(0);
  r.release(2);
  t.same(await Promise.all(all), [10, 20, 30, 40, 50]);
});

t.test('a run that throws rejects the jobs it left unsettled; those it settled keep their result; the next group still runs', async (t) => {
  let calls = 0;
  const g = new Gather<number, number>(async (jobs) => {
    calls++;
    if (calls === 1) {
      jobs[0]!.resolve(1);
      throw new Error('store gone');
    }
    for (const j of jobs) j.resolve(j.item);
  }, { maxItems: 2, inFlight: 1 });
  const [a, b, c] = [1, 2, 3].map((i) => g.add(i));
  t.equal(await a, 1);
  await t.rejects(b!, /store gone/);
  t.equal(await c, 3, 'the group after it ran');
});
