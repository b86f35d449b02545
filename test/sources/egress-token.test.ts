import { createHmac, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { jwtVerify, SignJWT } from 'jose';
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

t.test('tokens are standard HS256 JWTs: jose verifies ours, ours takes jose\'s, and every other shape is refused', async (t) => {
  const key = new TextEncoder().encode(SECRET);
  const { token, jti } = await mintEgressToken(SECRET, { tenant: 'acme', roomName: 'r1' }, 60);
  const viaJose = await jwtVerify(token, key, { algorithms: ['HS256'], issuer: 'audio-ingestd', audience: 'egress-audio', requiredClaims: ['exp', 'jti'] });
  t.match(viaJose.payload, { tenant: 'acme', roomName: 'r1', jti });
  t.same(viaJose.protectedHeader, { alg: 'HS256', typ: 'JWT' });

  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = { alg: 'HS256' }, secret = SECRET): Promise<string> =>
    new SignJWT({ tenant: 'acme', roomName: 'r1', ...claims }).setProtectedHeader(header as { alg: string }).sign(new TextEncoder().encode(secret));
  const base = { iss: 'audio-ingestd', aud: 'egress-audio', exp: now + 60, jti: 'j-1' };
  t.match(await verifyEgressToken(SECRET, await sign(base)), { tenant: 'acme', roomName: 'r1', jti: 'j-1' }, 'a jose-signed token verifies');
  t.match(await verifyEgressToken(SECRET, await sign({ ...base, aud: ['x', 'egress-audio'] })), { jti: 'j-1' }, 'audience in a list');

  // jose refuses to sign a critical extension it does not know: made by hand
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const critInput = `${b64({ alg: 'HS256', crit: ['x-ext'], 'x-ext': 1 })}.${b64({ tenant: 'acme', roomName: 'r1', ...base })}`;
  const crit = `${critInput}.${createHmac('sha256', SECRET).update(critInput).digest('base64url')}`;
  const refused: [string, () => Promise<string>, string][] = [
    ['another secret', () => sign(base, { alg: 'HS256' }, `${SECRET}x`), 'INVALID_TOKEN'],
    ['another audience (a live-audio token)', () => sign({ ...base, aud: 'live-audio' }), 'INVALID_TOKEN'],
    ['another issuer', () => sign({ ...base, iss: 'someone' }), 'INVALID_TOKEN'],
    ['no jti', () => sign({ iss: base.iss, aud: base.aud, exp: base.exp }), 'INVALID_TOKEN'],
    ['no exp', () => sign({ iss: base.iss, aud: base.aud, jti: 'j' }), 'INVALID_TOKEN'],
    ['exp not a number', () => sign({ ...base, exp: String(now + 60) }), 'INVALID_TOKEN'],
    ['not yet valid (nbf)', () => sign({ ...base, nbf: now + 30 }), 'INVALID_TOKEN'],
    ['expired', () => sign({ ...base, exp: now - 1 }), 'TOKEN_EXPIRED'],
    ['HS512', () => sign(base, { alg: 'HS512' }), 'INVALID_TOKEN'],
    ['a critical header extension', () => Promise.resolve(crit), 'INVALID_TOKEN'],
  ];
  for (const [what, tok, code] of refused) await t.rejects(verifyEgressToken(SECRET, await tok()), { code }, what);
  const good = await sign(base);
  for (const [what, tok] of [
    ['a character after the signature', `${good}A`],
    ['padding on the signature', `${good}=`],
    ['four parts', `${good}.x`],
    ['a signature with a foreign character', `${good.slice(0, -1)}!`],
    ['an empty token', ''],
  ] as const) await t.rejects(verifyEgressToken(SECRET, tok), { code: 'INVALID_TOKEN' }, what);
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
