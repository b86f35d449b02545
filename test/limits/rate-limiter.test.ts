import t from 'tap';
import { AppError } from '../../src/errors.js';
import { httpStatus } from '../../src/http/error-status.js';
import { MemoryBucketStore } from '../../src/limits/memory-bucket-store.js';
import { RateLimiter } from '../../src/limits/rate-limiter.js';
import { RedisBucketStore } from '../../src/limits/redis-bucket-store.js';
import { Metrics } from '../../src/observability/metrics.js';
import { connectRedis, deleteKeys, listKeys, manualClock, REDIS_URL, uniquePrefix } from '../helpers/limits-redis.js';

function limiter(clock = manualClock(), metrics?: Metrics): RateLimiter {
  return new RateLimiter({
    global: { capacity: 10, refillPerMinute: 60 },
    tenant: { capacity: 5, refillPerMinute: 60 },
    instance: { capacity: 2, refillPerMinute: 60 },
    store: new MemoryBucketStore({ now: clock.now }),
    ...(metrics ? { metrics } : {}),
  });
}

async function scopeCount(metrics: Metrics, scope: string): Promise<number> {
  return (await metrics.rateLimited.get()).values.find((v) => v.labels.scope === scope)?.value ?? 0;
}

t.test('defaults are 500 / 500 per minute for every scope', async (t) => {
  const l = new RateLimiter();
  t.same(l.limits, {
    global: { capacity: 500, refillPerMinute: 500 },
    tenant: { capacity: 500, refillPerMinute: 500 },
    instance: { capacity: 500, refillPerMinute: 500 },
  });
  await l.stop();
});

t.test('reports which scope refused, and a refused request charges no scope', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false });
  const l = limiter(manualClock(), metrics);
  t.same(await l.check({ tenant: 'acme', instance: 'sales' }), { ok: true, remaining: 1 });
  t.same(await l.check({ tenant: 'acme', instance: 'sales' }), { ok: true, remaining: 0 });
  const refused = await l.check({ tenant: 'acme', instance: 'sales' });
  t.match(refused, { ok: false, scope: 'instance', retryAfterSec: 1 });
  // tenant acme has 3 left, not 2: the refused request took nothing
  t.equal((await l.check({ tenant: 'acme', instance: 'a' }, 2)).ok, true);
  t.same(await l.check({ tenant: 'acme', instance: 'b' }), { ok: true, remaining: 0 });
  t.match(await l.check({ tenant: 'acme', instance: 'b' }), { ok: false, scope: 'tenant' });
  t.match(await l.check({ tenant: 'acme' }), { ok: false, scope: 'tenant' }, 'no instance: global and tenant only');
  // global: 10 in all, 5 spent by acme
  for (let i = 0; i < 5; i++) t.equal((await l.check({ tenant: `t${i}`, instance: 'x' })).ok, true);
  t.match(await l.check({ tenant: 'fresh', instance: 'x' }), { ok: false, scope: 'global' });
  t.equal(await scopeCount(metrics, 'instance'), 1);
  t.equal(await scopeCount(metrics, 'tenant'), 2);
  t.equal(await scopeCount(metrics, 'global'), 1);
});

t.test('several scopes refusing: the longest wait is reported', async (t) => {
  const l = new RateLimiter({
    global: { capacity: 1, refillPerMinute: 1 }, // 60 s per token
    tenant: { capacity: 1, refillPerMinute: 60 }, // 1 s per token
    store: new MemoryBucketStore({ now: manualClock().now }),
  });
  await l.check({ tenant: 'a' });
  t.match(await l.check({ tenant: 'a' }), { ok: false, scope: 'global', retryAfterSec: 60 });
});

t.test('refills per scope over time', async (t) => {
  const clock = manualClock();
  const l = limiter(clock);
  await l.check({ tenant: 'acme', instance: 'sales' }, 2);
  t.match(await l.check({ tenant: 'acme', instance: 'sales' }), { ok: false, scope: 'instance' });
  clock.advance(1000);
  t.same(await l.check({ tenant: 'acme', instance: 'sales' }), { ok: true, remaining: 0 });
});

t.test('consume throws RATE_LIMITED with Retry-After and scope', async (t) => {
  const l = limiter();
  t.equal(await l.consume({ tenant: 'acme', instance: 'sales' }, 2), 0);
  const err = (await l.consume({ tenant: 'acme', instance: 'sales' }).catch((e: unknown) => e)) as AppError;
  t.ok(err instanceof AppError);
  t.equal(err.code, 'RATE_LIMITED');
  t.equal(httpStatus(err.code), 429);
  t.equal(err.retryAfterSec, 1);
  t.same(err.details, { scope: 'instance', retryAfterSec: 1 });
});

t.test('names with "/" cannot alias another tenant/instance pair', async (t) => {
  const l = limiter();
  await l.check({ tenant: 'a/b', instance: 'c' }, 2);
  t.equal((await l.check({ tenant: 'a', instance: 'b/c' })).ok, true);
});

t.test('bad scope limits and counts are refused up front', async (t) => {
  t.throws(() => new RateLimiter({ tenant: { capacity: -1 } }), { code: 'INVALID_PARAMETER', details: { field: 'tenant.capacity', value: -1 } });
  await t.rejects(limiter().check({ tenant: 'a', instance: 'b' }, 3), { code: 'INVALID_PARAMETER' }, 'more than the instance capacity');
});

t.test('two limiters sharing Redis drain one budget per scope', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('limiter');
  const make = (): { limiter: RateLimiter; store: RedisBucketStore } => {
    const store = new RedisBucketStore({ url: REDIS_URL, keyPrefix: prefix });
    const limiter = new RateLimiter({
      global: { capacity: 100, refillPerMinute: 0.0001 },
      tenant: { capacity: 6, refillPerMinute: 0.0001 },
      instance: { capacity: 4, refillPerMinute: 0.0001 },
      store,
    });
    return { limiter, store };
  };
  const a = make();
  const b = make();
  t.teardown(async () => {
    await a.limiter.stop();
    await b.limiter.stop();
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  await Promise.all([a.store.ready(), b.store.ready()]);
  const subject = { tenant: 'acme', instance: 'sales' };
  const first = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).limiter.check(subject)));
  t.equal(first.filter((d) => d.ok).length, 4, 'instance budget of 4 across both hosts');
  t.ok(first.every((d) => d.ok || d.scope === 'instance'));
  const other = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).limiter.check({ tenant: 'acme', instance: 'support' })));
  t.equal(other.filter((d) => d.ok).length, 2, 'tenant budget of 6 across both hosts and instances');
  t.ok(other.filter((d) => !d.ok).every((d) => !d.ok && d.scope === 'tenant'));
  t.same(await listKeys(admin, prefix), [`${prefix}global`, `${prefix}instance:acme/sales`, `${prefix}instance:acme/support`, `${prefix}tenant:acme`]);
  t.equal(Math.floor(Number(await admin.hget(`${prefix}global`, 't'))), 94, 'global charged once per accepted request');
});
