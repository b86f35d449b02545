import t from 'tap';
import { IdempotencyStore } from '../../src/voicenotes/idempotency-store.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('one caller per key does the work; the record survives a new store (a restart)', async (t) => {
  const dir = await tempDir(t, 'idem-');
  const store = new IdempotencyStore<{ n: number }>({ dir });
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const work = async (): Promise<{ n: number }> => {
    runs++;
    await gate;
    return { n: runs };
  };
  const a = store.run('t1', 'k', work);
  const b = store.run('t1', 'k', work);
  release();
  const [ra, rb] = await Promise.all([a, b]);
  t.equal(runs, 1);
  t.same([ra.fresh, rb.fresh], [true, false]);
  t.same(rb.body, ra.body);
  const restarted = new IdempotencyStore<{ n: number }>({ dir });
  t.same(await restarted.run('t1', 'k', work), { body: { n: 1 }, fresh: false });
  t.same(await restarted.run('t2', 'k', work), { body: { n: 2 }, fresh: true }, 'keys are per tenant');
});

t.test('a failed first attempt lets the waiting one try with its own work', async (t) => {
  const dir = await tempDir(t, 'idem-');
  const store = new IdempotencyStore<string>({ dir });
  const a = store.run('t', 'k', async () => {
    await new Promise((r) => setImmediate(r));
    throw new Error('storage down');
  });
  const b = store.run('t', 'k', async () => 'second');
  await t.rejects(a, { message: 'storage down' });
  t.same(await b, { body: 'second', fresh: true });
});
