import fc from 'fast-check';
import t from 'tap';
import { RedisBucketStore } from '../../src/limits/redis-bucket-store.js';
import { TokenBucket } from '../../src/limits/token-bucket.js';
import { ageBucket, connectRedis, deleteKeys, listKeys, REDIS_URL, uniquePrefix } from '../helpers/limits-redis.js';

// Refill so slow (one token per ~10 days) that no token can come back while a test runs.
const frozen = { capacity: 5, refillPerMinute: 0.0001 };

t.test('exact counts: capacity N gives N ok, then refused with retryAfterSec >= 1', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('counts');
  const store = new RedisBucketStore({ url: REDIS_URL, keyPrefix: prefix });
  t.teardown(async () => {
    await store.stop();
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  await store.ready();
  const bucket = new TokenBucket({ ...frozen, store });
  for (let i = 0; i < 5; i++) t.same(await bucket.take('a'), { ok: true, remaining: 4 - i, retryAfterSec: 0 });
  const refused = await bucket.take('a');
  t.equal(refused.ok, false);
  t.equal(refused.remaining, 0);
  t.ok(refused.retryAfterSec >= 1, `retryAfterSec ${refused.retryAfterSec}`);
  t.same(await listKeys(admin, prefix), [`${prefix}a`], 'one key, under the prefix');
  const ttl = await admin.pttl(`${prefix}a`);
  t.ok(ttl > 0, `key has a TTL (${ttl} ms)`);
});

t.test('two limiters on two connections drain one shared budget', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('shared');
  const hostA = new TokenBucket({ capacity: 20, refillPerMinute: 0.0001, store: new RedisBucketStore({ url: REDIS_URL, keyPrefix: prefix }) });
  const hostB = new TokenBucket({ capacity: 20, refillPerMinute: 0.0001, store: new RedisBucketStore({ url: REDIS_URL, keyPrefix: prefix }) });
  t.teardown(async () => {
    await hostA.store.stop();
    await hostB.store.stop();
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  await Promise.all([hostA.store, hostB.store].map((s) => (s as RedisBucketStore).ready()));
  for (let i = 0; i < 5; i++) {
    t.equal((await hostA.take('tenant')).ok, true);
    t.equal((await hostB.take('tenant')).ok, true);
  }
  t.equal((await hostB.take('tenant')).remaining, 9, 'B sees what A took');
  // 60 concurrent takes from both hosts: exactly the 9 left succeed
  const results = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? hostA : hostB).take('tenant')));
  t.equal(results.filter((r) => r.ok).length, 9);
  t.ok(results.filter((r) => !r.ok).every((r) => r.retryAfterSec >= 1));
});

t.test('refills from the server clock (time shifted in the stored state)', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('refill');
  const store = new RedisBucketStore({ client: admin, keyPrefix: prefix });
  t.teardown(async () => {
    await store.stop(); // does not close a caller's client
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  const limit = { capacity: 10, refillPerMinute: 6 }; // one token per 10 s
  t.equal((await store.take([{ key: 'a', limit }], 10))[0]?.ok, true);
  const [refused] = await store.take([{ key: 'a', limit }], 1);
  t.equal(refused?.ok, false);
  t.ok((refused?.retryAfterSec ?? 0) >= 9 && (refused?.retryAfterSec ?? 0) <= 10, `retryAfterSec ${refused?.retryAfterSec}`);
  await ageBucket(admin, `${prefix}a`, 30_000);
  t.same((await store.take([{ key: 'a', limit }], 3))[0], { ok: true, remaining: 0, retryAfterSec: 0 }, '30 s = 3 tokens');
  await ageBucket(admin, `${prefix}a`, 3_600_000);
  t.same((await store.take([{ key: 'a', limit }], 1))[0], { ok: true, remaining: 9, retryAfterSec: 0 }, 'never above capacity');
});

t.test('all or nothing across keys, and survives a flushed script cache', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('multi');
  const store = new RedisBucketStore({ url: REDIS_URL, keyPrefix: prefix });
  t.teardown(async () => {
    await store.stop();
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  const refs = [{ key: 'big', limit: frozen }, { key: 'small', limit: { capacity: 1, refillPerMinute: 0.0001 } }];
  await store.ready();
  t.same((await store.take(refs, 1)).map((r) => r.ok), [true, true]);
  await admin.script('FLUSH');
  const second = await store.take(refs, 1);
  t.same(second.map((r) => r.ok), [true, false]);
  t.equal(second[0]?.remaining, 4, 'big bucket not charged by the refused take');
});

t.test('property: stored tokens never negative, never above capacity', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('prop');
  const store = new RedisBucketStore({ client: admin, keyPrefix: prefix });
  t.teardown(async () => {
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 20 }),
      fc.double({ min: 0.01, max: 1_000, noNaN: true }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 120_000 })), { minLength: 1, maxLength: 25 }),
      async (capacity, refillPerMinute, steps) => {
        const key = `k${run++}`;
        const limit = { capacity, refillPerMinute };
        for (const [want, age] of steps) {
          const [r] = await store.take([{ key, limit }], Math.min(want, capacity));
          if (r === undefined || r.remaining < 0 || r.remaining > capacity) return false;
          if (!r.ok && r.retryAfterSec < 1) return false;
          const stored = Number(await admin.hget(prefix + key, 't'));
          if (!(stored >= 0 && stored <= capacity)) return false;
          if (age > 0) await ageBucket(admin, prefix + key, age);
        }
        return true;
      },
    ),
    { numRuns: 60 },
  );
  t.pass('60 random schedules held');
});

t.test('needs exactly one of client or url', async (t) => {
  t.throws(() => new RedisBucketStore({}), TypeError);
});
