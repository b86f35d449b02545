import t from 'tap';
import { MemoryBucketStore } from '../../src/limits/memory-bucket-store.js';
import { manualClock } from '../helpers/limits-redis.js';

const limit = { capacity: 5, refillPerMinute: 60 }; // one token per second

t.test('capacity N: exactly N takes pass, then refused with retryAfterSec >= 1', async (t) => {
  const clock = manualClock();
  const store = new MemoryBucketStore({ now: clock.now });
  for (let i = 0; i < 5; i++) {
    const [r] = await store.take([{ key: 'a', limit }], 1);
    t.same(r, { ok: true, remaining: 4 - i, retryAfterSec: 0 }, `take ${i + 1}`);
  }
  const [refused] = await store.take([{ key: 'a', limit }], 1);
  t.same(refused, { ok: false, remaining: 0, retryAfterSec: 1 });
  // another key has its own bucket
  t.equal((await store.take([{ key: 'b', limit }], 1))[0]?.ok, true);
});

t.test('refills lazily from the clock, never above capacity', async (t) => {
  const clock = manualClock();
  const store = new MemoryBucketStore({ now: clock.now });
  await store.take([{ key: 'a', limit }], 5);
  t.same((await store.take([{ key: 'a', limit }], 2))[0], { ok: false, remaining: 0, retryAfterSec: 2 });
  clock.advance(999);
  t.equal((await store.take([{ key: 'a', limit }], 1))[0]?.ok, false, 'not yet a whole token');
  clock.advance(1);
  t.same((await store.take([{ key: 'a', limit }], 1))[0], { ok: true, remaining: 0, retryAfterSec: 0 });
  clock.advance(3_600_000);
  t.same((await store.take([{ key: 'a', limit }], 1))[0], { ok: true, remaining: 4, retryAfterSec: 0 }, 'capped at capacity');
});

t.test('a clock going backwards adds no tokens', async (t) => {
  const clock = manualClock(10_000);
  const store = new MemoryBucketStore({ now: clock.now });
  await store.take([{ key: 'a', limit }], 5);
  clock.advance(-5_000);
  t.equal((await store.take([{ key: 'a', limit }], 1))[0]?.ok, false);
});

t.test('retryAfterSec rounds the wait up to whole seconds', async (t) => {
  const clock = manualClock();
  const slow = { capacity: 10, refillPerMinute: 4 }; // one token per 15 s
  const store = new MemoryBucketStore({ now: clock.now });
  await store.take([{ key: 'a', limit: slow }], 10);
  t.equal((await store.take([{ key: 'a', limit: slow }], 1))[0]?.retryAfterSec, 15);
  t.equal((await store.take([{ key: 'a', limit: slow }], 3))[0]?.retryAfterSec, 45);
  clock.advance(14_001);
  t.equal((await store.take([{ key: 'a', limit: slow }], 1))[0]?.retryAfterSec, 1);
});

t.test('a take across buckets is all or nothing', async (t) => {
  const clock = manualClock();
  const store = new MemoryBucketStore({ now: clock.now });
  const small = { capacity: 1, refillPerMinute: 1 };
  const refs = [{ key: 'big', limit }, { key: 'small', limit: small }];
  t.same((await store.take(refs, 1)).map((r) => r.ok), [true, true]);
  const second = await store.take(refs, 1);
  t.same(second.map((r) => r.ok), [true, false], 'the big bucket had enough, the small did not');
  t.equal(second[0]?.remaining, 4, 'refused take charged nothing');
  t.equal((await store.take([{ key: 'big', limit }], 4))[0]?.ok, true, 'the 4 tokens are still there');
});

t.test('bounded: least recently used keys are dropped beyond maxKeys', async (t) => {
  const clock = manualClock();
  const store = new MemoryBucketStore({ now: clock.now, maxKeys: 3 });
  for (const key of ['a', 'b', 'c']) await store.take([{ key, limit }], 5);
  await store.take([{ key: 'a', limit }], 0); // touch a: now b is the least recently used
  await store.take([{ key: 'd', limit }], 1);
  t.equal(store.size, 3);
  t.equal((await store.take([{ key: 'a', limit }], 1))[0]?.ok, false, 'a kept (recently used)');
  t.equal((await store.take([{ key: 'c', limit }], 1))[0]?.ok, false, 'c kept');
  t.same((await store.take([{ key: 'b', limit }], 1))[0], { ok: true, remaining: 4, retryAfterSec: 0 }, 'b forgotten: full again');
});

t.test('idle buckets that are full again are forgotten without timers', async (t) => {
  const clock = manualClock();
  const store = new MemoryBucketStore({ now: clock.now });
  for (const key of ['a', 'b', 'c', 'd']) await store.take([{ key, limit }], 5);
  t.equal(store.size, 4);
  clock.advance(5_000); // all four are full now
  await store.take([{ key: 'e', limit }], 1);
  await store.take([{ key: 'e', limit }], 1);
  t.ok(store.size <= 2, `swept to ${store.size}`);
  await store.stop();
  t.equal(store.size, 0);
});

t.test('rejects a nonsensical maxKeys', async (t) => {
  t.throws(() => new MemoryBucketStore({ maxKeys: 0 }), RangeError);
});
