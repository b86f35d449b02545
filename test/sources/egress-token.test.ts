import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { EgressRefusedError, simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { MemoryReplayGuard, mintEgressToken, RedisReplayGuard, verifyEgressToken } from '../../src/sources/egress-token.js';
import { startTestApp } from '../helpers/app.js';
import { egressUrl } from '../helpers/egress.js';

const SECRET = 'token-test-secret-0123456789abcdef0123456789';

t.test('minted tokens carry the claims and verify; tampering and expiry are refused', async (t) => {
  const { token, jti, expiresAt } = await mintEgressToken(SECRET, { tenant: 'acme', roomName: 'r1', trackId: 'TR', participant: 'p', meetingId: 'm', groupSeconds: 4 }, 60);
  const v = await verifyEgressToken(SECRET, token);
  t.match(v, { tenant: 'acme', roomName: 'r1', trackId: 'TR', participant: 'p', meetingId: 'm', groupSeconds: 4, jti });
  t.equal(v.exp * 1000, expiresAt.getTime());
  const [h, p, s] = token.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), tenant: 'other' })).toString('base64url');
  await t.rejects(verifyEgressToken(SECRET, `${h}.${forgedPayload}.${s}`), { code: 'INVALID_TOKEN' });
  await t.rejects(verifyEgressToken(SECRET, token, Date.now() + 61_000), { code: 'TOKEN_EXPIRED' });
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
  await t.rejects(verifyEgressToken(SECRET, none), { code: 'INVALID_TOKEN' }, 'alg none refused');
  const noRoom = await mintEgressToken(SECRET, { tenant: 'acme', roomName: '' }, 60);
  await t.rejects(verifyEgressToken(SECRET, noRoom.token), { code: 'INVALID_TOKEN' });
});

t.test('replay guards accept a jti once', async (t) => {
  const mem = new MemoryReplayGuard();
  const exp = Date.now() / 1000 + 60;
  t.equal(await mem.claim('a', exp), true);
  t.equal(await mem.claim('a', exp), false);

  const redis = new Redis('redis://127.0.0.1:6379');
  const prefix = `aid-test:${randomUUID()}:`;
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  const hostA = new RedisReplayGuard(redis, undefined, prefix);
  const hostB = new RedisReplayGuard(redis, undefined, prefix);
  t.equal(await hostA.claim('j1', exp), true);
  t.equal(await hostB.claim('j1', exp), false, 'another host sees the jti as used');
  const ttl = await redis.ttl(`${prefix}j1`);
  t.ok(ttl > 0 && ttl <= 60, `expires with the token (${ttl}s)`);

  const down = new Redis('redis://127.0.0.1:1', { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
  const errors: unknown[] = [];
  const fallback = new RedisReplayGuard(down, (e) => errors.push(e), prefix);
  t.equal(await fallback.claim('j2', exp), true, 'Redis down: falls back to this host');
  t.equal(await fallback.claim('j2', exp), false, 'and still refuses a replay on this host');
  t.ok(errors.length >= 1, 'the fallback is reported');
  down.disconnect();
});

t.test('with REDIS_URL, a token used on one host is refused on another', async (t) => {
  const a = await startTestApp({ rateLimit: { redisUrl: 'redis://127.0.0.1:6379' } });
  const b = await startTestApp({ rateLimit: { redisUrl: 'redis://127.0.0.1:6379' } });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const url = await egressUrl(a, { roomName: 'shared' });
  await simulateEgress({ url, pcm: tonePcm(0.1), realtime: false });
  const onB = url.replace(`:${a.app.listenPort}/`, `:${b.app.listenPort}/`);
  const err = await simulateEgress({ url: onB, pcm: tonePcm(0.1), realtime: false }).catch((e: unknown) => e);
  t.ok(err instanceof EgressRefusedError, 'refused');
  t.equal((err as EgressRefusedError).status, 401);
  t.match((err as EgressRefusedError).body, /TOKEN_REPLAYED/);
});
