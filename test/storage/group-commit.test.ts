import t, { type Test } from 'tap';
import { AppError } from '../../src/errors.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { GroupCommit } from '../../src/storage/group-commit.js';
import type { BatchItem } from '../../src/storage/object-store.js';
import { tempDir } from '../helpers/temp-dir.js';

/** A real fs store; `batches` records the size of each putBatch the committer made. */
async function countingStore(t: Test): Promise<{ store: FsObjectStore; batches: number[]; puts: string[] }> {
  const store = new FsObjectStore({ root: await tempDir(t, 'aid-group-'), presign: { baseUrl: 'http://127.0.0.1', secret: 's' } });
  await store.start();
  t.teardown(() => store.stop());
  const batches: number[] = [];
  const puts: string[] = [];
  const putBatch = store.putBatch.bind(store);
  const put = store.put.bind(store);
  store.putBatch = (items: BatchItem[]) => {
    batches.push(items.length);
    return putBatch(items);
  };
  store.put = (key, body, options) => {
    puts.push(key);
    return put(key, body, options);
  };
  return { store, batches, puts };
}

const item = (i: number): BatchItem => ({ key: `rooms-state/t/r/tracks/${i}.json`, body: Buffer.from(JSON.stringify({ i })), options: { contentType: 'application/json' } });

t.test('the puts of one moment leave as one batch; each caller hears when its object is stored', async (t) => {
  const { store, batches, puts } = await countingStore(t);
  const commit = new GroupCommit(store);
  await Promise.all(Array.from({ length: 100 }, (_, i) => commit.put(item(i))));
  t.same(batches, [100], 'one putBatch for 100 puts of the same tick');
  t.same(puts, [], 'no put of its own');
  for (let i = 0; i < 100; i++) t.same(JSON.parse((await store.get(item(i).key)).toString()), { i });

  // while a batch is being made durable, the next ones gather (at most `inFlight` at once)
  batches.length = 0;
  const first = Array.from({ length: 10 }, (_, i) => commit.put(item(i)));
  const second = Array.from({ length: 30 }, (_, i) => commit.put(item(100 + i)));
  await Promise.all([...first, ...second]);
  t.same(batches, [40], 'puts made in one tick, by different callers, go together');
  const capped = new GroupCommit(store, { maxItems: 16, inFlight: 1 });
  batches.length = 0;
  await Promise.all(Array.from({ length: 40 }, (_, i) => capped.put(item(i))));
  t.same(batches, [16, 16, 8], 'batches of at most maxItems, one at a time');
});

t.test('an object the store refuses fails its own put only', async (t) => {
  const { store, batches } = await countingStore(t);
  const commit = new GroupCommit(store);
  const results = await Promise.allSettled([
    commit.put(item(1)),
    commit.put({ key: 'bad', body: Buffer.from('x'), options: { contentType: 'text/plain', metadata: { 'Not-Lower': 'x' } } }),
    commit.put(item(2)),
  ]);
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  t.match((results[1] as PromiseRejectedResult).reason, { code: 'INVALID_PARAMETER' });
  t.same(batches, [3, 1, 1, 1], 'the refused batch, then each object alone');
  t.ok(await store.head(item(2).key));
});

t.test('a batch that fails as unavailable fails every put in it at once: the callers retry, no object is tried alone', async (t) => {
  const { store, puts } = await countingStore(t);
  const down = new AppError('STORAGE_UNAVAILABLE', 'disk gone', { retryable: true });
  const batches: number[] = [];
  store.putBatch = async (items: BatchItem[]) => {
    batches.push(items.length);
    throw down;
  };
  const commit = new GroupCommit(store);
  const results = await Promise.allSettled([commit.put(item(1)), commit.put(item(2)), commit.put(item(3))]);
  t.same(results.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
  t.ok(results.every((r) => (r as PromiseRejectedResult).reason === down), 'each put rejects with the store\'s error');
  t.same(batches, [3], 'one attempt for the batch, none per object');
  t.same(puts, []);
});

t.test('a store without putBatch gets one put per object', async (t) => {
  const { store, puts } = await countingStore(t);
  const plain = { put: store.put.bind(store) };
  const commit = new GroupCommit(plain);
  await Promise.all([commit.put(item(1)), commit.put(item(2))]);
  t.same(puts.sort(), [item(1).key, item(2).key]);
});
