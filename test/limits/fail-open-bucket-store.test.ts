import { once } from 'node:events';
import { Redis } from 'ioredis';
import t from 'tap';
import { FailOpenBucketStore } from '../../src/limits/fail-open-bucket-store.js';
import { MemoryBucketStore } from '../../src/limits/memory-bucket-store.js';
import { RedisBucketStore } from '../../src/limits/redis-bucket-store.js';
import { Metrics } from '../../src/observability/metrics.js';
import { closedPort } from '../helpers/limits-net.js';
import { connectRedis, deleteKeys, manualClock, recordingLogger, REDIS_URL, uniquePrefix } from '../helpers/limits-redis.js';

const limit = { capacity: 3, refillPerMinute: 0.0001 };

async function fallbackCount(metrics: Metrics): Promise<number> {
  const { values } = await metrics.errors.get();
  return values.find((v) => v.labels.code === 'STORAGE_UNAVAILABLE')?.value ?? 0;
}

t.test('Redis unreachable: takes are served by the local bucket, warned once and counted', async (t) => {
  const port = await closedPort();
  const primary = new RedisBucketStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: uniquePrefix('down') });
  const logger = recordingLogger();
  const metrics = new Metrics({ defaultMetrics: false });
  const store = new FailOpenBucketStore({ primary, fallback: new MemoryBucketStore({ now: manualClock().now }), logger, metrics });
  t.teardown(() => store.stop());
  await t.rejects(primary.take([{ key: 'a', limit }], 1), 'the primary alone fails');
  const results = [];
  for (let i = 0; i < 4; i++) results.push((await store.take([{ key: 'a', limit }], 1))[0]);
  t.same(results.map((r) => r?.ok), [true, true, true, false], 'the local bucket still enforces its capacity');
  t.equal(store.degraded, true);
  t.equal(store.fallbackTakes, 4);
  t.equal(await fallbackCount(metrics), 4);
  t.same(logger.lines.map((l) => l.level), ['warn'], 'one warning for the whole outage');
});

t.test('back to the shared store when Redis returns, with one line saying so', async (t) => {
  const admin = await connectRedis();
  const prefix = uniquePrefix('recover');
  const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  const logger = recordingLogger();
  const store = new FailOpenBucketStore({ primary: new RedisBucketStore({ client, keyPrefix: prefix }), logger });
  t.teardown(async () => {
    client.disconnect();
    await deleteKeys(admin, prefix);
    await admin.quit();
  });
  await client.connect();
  t.same((await store.take([{ key: 'a', limit }], 1))[0], { ok: true, remaining: 2, retryAfterSec: 0 }, 'shared');
  const ended = once(client, 'end');
  client.disconnect();
  await ended;
  t.same((await store.take([{ key: 'a', limit }], 3))[0], { ok: true, remaining: 0, retryAfterSec: 0 }, 'Redis gone: local');
  t.equal(store.degraded, true);
  await client.connect();
  const [shared] = await store.take([{ key: 'a', limit }], 1);
  t.same(shared, { ok: true, remaining: 1, retryAfterSec: 0 }, 'the shared bucket was untouched by the local take');
  t.equal(Math.floor(Number(await admin.hget(`${prefix}a`, 't'))), 1);
  t.equal(store.degraded, false);
  t.same(logger.lines.map((l) => l.level), ['warn', 'info']);
});
