import fc from 'fast-check';
import t from 'tap';
import { AppError } from '../../src/errors.js';
import { MemoryBucketStore } from '../../src/limits/memory-bucket-store.js';
import { DEFAULT_BUCKET_LIMIT, TokenBucket, parseBucketLimit } from '../../src/limits/token-bucket.js';
import { manualClock } from '../helpers/limits-redis.js';

t.test('defaults: capacity 500, refill 500 per minute', async (t) => {
  const clock = manualClock();
  const bucket = new TokenBucket({ store: new MemoryBucketStore({ now: clock.now }) });
  t.same(bucket.limit, { capacity: 500, refillPerMinute: 500 });
  t.same(DEFAULT_BUCKET_LIMIT, bucket.limit);
  let ok = 0;
  for (let i = 0; i < 501; i++) if ((await bucket.take('k')).ok) ok++;
  t.equal(ok, 500);
  const refused = await bucket.take('k');
  t.equal(refused.ok, false);
  t.ok(refused.retryAfterSec >= 1);
  clock.advance(120); // 500/min = one token per 120 ms
  t.same(await bucket.take('k'), { ok: true, remaining: 0, retryAfterSec: 0 });
});

t.test('take(key, n) takes n at once', async (t) => {
  const bucket = new TokenBucket({ capacity: 10, refillPerMinute: 1, store: new MemoryBucketStore({ now: manualClock().now }) });
  t.same(await bucket.take('k', 7), { ok: true, remaining: 3, retryAfterSec: 0 });
  t.same(await bucket.take('k', 4), { ok: false, remaining: 3, retryAfterSec: 60 });
  t.same(await bucket.take('k', 3), { ok: true, remaining: 0, retryAfterSec: 0 });
});

t.test('bad limits and counts are INVALID_PARAMETER naming field, value and range', async (t) => {
  const cases: [object, string, unknown][] = [
    [{ capacity: 0 }, 'limit.capacity', 0],
    [{ capacity: 1.5 }, 'limit.capacity', 1.5],
    [{ refillPerMinute: 0 }, 'limit.refillPerMinute', 0],
    [{ refillPerMinute: -3 }, 'limit.refillPerMinute', -3],
  ];
  for (const [input, field, value] of cases) {
    const err = t.throws(() => parseBucketLimit(input)) as AppError;
    t.ok(err instanceof AppError);
    t.equal(err.code, 'INVALID_PARAMETER');
    t.equal(err.details?.field, field);
    t.equal(err.details?.value, value);
    t.match(err.message, new RegExp(`^${field.replace('.', '\\.')} must be `));
  }
  const bucket = new TokenBucket({ capacity: 3 });
  for (const n of [0, -1, 1.5, 4]) {
    await t.rejects(bucket.take('k', n), { code: 'INVALID_PARAMETER' }, `n=${n}`);
  }
});

t.test('property: tokens never negative, never above capacity, and match a reference model', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 50 }),
      fc.double({ min: 0.01, max: 10_000, noNaN: true }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 600_000 })), { maxLength: 60 }),
      async (capacity, refillPerMinute, steps) => {
        const clock = manualClock();
        const bucket = new TokenBucket({ capacity, refillPerMinute, store: new MemoryBucketStore({ now: clock.now }) });
        let model = capacity;
        let last: number | undefined; // the bucket has no state before its first take
        for (const [want, advance] of steps) {
          clock.advance(advance);
          const n = Math.min(want, capacity);
          const elapsed = last === undefined ? 0 : Math.max(0, clock.now() - last);
          model = Math.min(capacity, model + (elapsed * refillPerMinute) / 60_000);
          last = Math.max(last ?? clock.now(), clock.now());
          const r = await bucket.take('k', n);
          if (r.remaining < 0 || r.remaining > capacity) return false;
          if (r.ok !== model >= n) return false;
          if (r.ok) model -= n;
          else if (r.retryAfterSec < 1) return false;
          if (r.remaining !== Math.floor(model)) return false;
        }
        return true;
      },
    ),
    { numRuns: 1000 },
  );
  t.pass('1000 random schedules held');
});
