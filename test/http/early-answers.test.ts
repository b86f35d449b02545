import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { AppError } from '../../src/errors.js';
import { HttpServer, json } from '../../src/http/server.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { chunk, LAST_CHUNK, RawClient, requestHead } from '../helpers/raw-http.js';

const sink = new Writable({ write: (_c, _e, cb) => cb() });

/** What the handlers saw, per request id. */
const seen = new Map<string, { read?: number; error?: string }>();

async function start(t: Test, options: { requestTimeoutSec?: number; bodyIdleTimeoutSec?: number } = {}): Promise<number> {
  const server = new HttpServer({
    logger: createLogger({ level: 'silent', destination: sink as never }),
    metrics: new Metrics({ defaultMetrics: false }),
    requestTimeoutSec: options.requestTimeoutSec ?? 30,
    bodyIdleTimeoutSec: options.bodyIdleTimeoutSec ?? 8,
  });
  // awaits something (auth, a rate limiter in Redis) before it reads the body, then reads it all
  server.route('post', '/late-read', 'late-read', async (ctx) => {
    await sleep(Number(ctx.query.get('wait') ?? 200));
    try {
      const body = await ctx.readBody(64 * 1024 * 1024);
      seen.set(ctx.id, { read: body.length });
      return json(200, { size: body.length, sha: createHash('sha256').update(body).digest('hex') });
    } catch (err) {
      seen.set(ctx.id, { error: (err as AppError).code ?? String(err) });
      throw err;
    }
  });
  // refuses after an await, never reading the body (a wrong key, a duplicate answered from its record)
  server.route('post', '/refuse', 'refuse', async () => {
    await sleep(100);
    throw new AppError('FORBIDDEN', 'refused before the body');
  });
  server.route('get', '/ping', 'ping', () => json(200, { pong: true }));
  server.fallback();
  const port = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.stop());
  return port;
}

const upload = (path: string, headers: Record<string, string | number>): string => requestHead('POST', path, { 'content-type': 'application/octet-stream', ...headers });

t.test('a client that goes away before the handler reads the body: no crash, the handler sees CLIENT_ABORTED', async (t) => {
  const port = await start(t);
  for (const [name, sent] of [['after the headers', 0], ['after 16 KiB', 16 * 1024], ['after 300 KiB (the socket paused)', 300 * 1024]] as const) {
    const c = await RawClient.connect(port);
    await c.write(upload('/late-read?wait=300', { 'x-request-id': `abort-${sent}`, 'transfer-encoding': 'chunked' }));
    if (sent > 0) await c.write(chunk(Buffer.alloc(sent, 1)));
    await sleep(50);
    c.destroy();
    await sleep(500);
    t.same(seen.get(`abort-${sent}`), { error: 'CLIENT_ABORTED' }, `${name}: the body read fails with CLIENT_ABORTED`);
  }
  const ping = await RawClient.connect(port);
  await ping.write(requestHead('GET', '/ping', {}));
  t.equal((await ping.answers(1))[0]?.status, 200, 'still serving');
  ping.destroy();
});

t.test('an answer given while a large body keeps arriving is delivered whole, then the connection closes cleanly', async (t) => {
  const port = await start(t);
  const body = Buffer.alloc(2 * 1024 * 1024, 7);
  for (const framing of ['content-length', 'chunked'] as const) {
    const c = await RawClient.connect(port);
    await c.write(upload('/refuse', framing === 'chunked' ? { 'transfer-encoding': 'chunked' } : { 'content-length': body.length }));
    // the client ignores the early answer and sends its whole body
    for (let o = 0; o < body.length; o += 64 * 1024) {
      const part = body.subarray(o, o + 64 * 1024);
      if (!(await c.write(framing === 'chunked' ? chunk(part) : part))) break;
    }
    if (framing === 'chunked') await c.write(LAST_CHUNK);
    const end = await c.ended;
    const [answer] = c.parsed().answers;
    t.equal(answer?.status, 403, `${framing}: the 403 arrived`);
    t.same(JSON.parse(answer?.body.toString() ?? 'null'), { error: { code: 'FORBIDDEN', message: 'refused before the body' } }, `${framing}: with its JSON body`);
    t.equal(answer?.headers['connection'], 'close', `${framing}: Connection: close (more than 1 MiB was left, or an unknown length)`);
    t.same(end, { fin: true, reset: false, answersBeforeReset: undefined, answersAtEnd: 1 }, `${framing}: closed with a FIN after the body, never reset`);
  }
});

t.test('an early answer with a small rest of the body keeps the connection, which serves the next request', async (t) => {
  const port = await start(t);
  // 600 KiB: more than the 256 KiB read-ahead, so the socket was paused when the answer came
  const body = Buffer.alloc(600 * 1024, 3);
  const c = await RawClient.connect(port);
  await c.write(upload('/refuse', { 'content-length': body.length }));
  await c.write(body.subarray(0, 400 * 1024));
  const [first] = await c.answers(1);
  t.equal(first?.status, 403, 'answered before the body ended');
  t.equal(first?.headers['connection'], undefined, 'no Connection: close');
  await c.write(body.subarray(400 * 1024));
  await c.write(requestHead('GET', '/ping', {}));
  const answers = await c.answers(2, 10_000);
  t.equal(answers[1]?.status, 200, 'the next request on the same connection is answered');
  t.same(JSON.parse(answers[1]?.body.toString() ?? 'null'), { pong: true });
  c.destroy();
});

t.test('a stalled body is answered 408 before uWS would close it, and its late bytes are never read', async (t) => {
  const port = await start(t, { bodyIdleTimeoutSec: 1 });
  const c = await RawClient.connect(port);
  await c.write(upload('/late-read?wait=0', { 'x-request-id': 'stall', 'content-length': 100_000 }));
  await c.write(Buffer.alloc(10_000, 1));
  const [answer] = await c.answers(1, 5000);
  t.equal(answer?.status, 408);
  t.match(JSON.parse(answer?.body.toString() ?? 'null'), { error: { code: 'REQUEST_TIMEOUT' } });
  t.equal(answer?.headers['connection'], 'close');
  await c.write(Buffer.alloc(90_000, 1)); // the rest, too late
  const end = await c.ended;
  t.equal(end.answersAtEnd, 1);
  t.same(seen.get('stall'), { error: 'REQUEST_TIMEOUT' }, 'the handler was told REQUEST_TIMEOUT, not a client abort, and read nothing after it');
});

t.test('a body stalled for the longest idle deadline (9 s) is answered 408 whatever the phase of uWS\'s timeout sweep', async (t) => {
  // uSockets sweeps its timeouts every 4 s, so uWS's own close of a stalled body comes 8-12 s
  // after the stall, depending on where the sweep falls: stalls started across one sweep interval
  // meet every phase of it. Without the daemon re-arming uWS's timer, about one in four of them
  // was closed by uWS before the 9 s answer (no answer at all).
  const port = await start(t, { bodyIdleTimeoutSec: 9 });
  const STALLS = 12;
  const outcomes = await Promise.all(Array.from({ length: STALLS }, async (_, i) => {
    await sleep((i * 4000) / STALLS);
    const c = await RawClient.connect(port);
    await c.write(upload('/late-read?wait=0', { 'x-request-id': `stall9-${i}`, 'content-length': 100_000 }));
    await c.write(Buffer.alloc(10_000, 1));
    const [answer] = await c.answers(1, 20_000);
    c.destroy();
    return answer?.status ?? 'closed without an answer';
  }));
  t.same(outcomes, Array.from({ length: STALLS }, () => 408), 'every stall got its 408');
});

t.test('a body that trickles in past the whole-request deadline is answered 408', async (t) => {
  const port = await start(t, { requestTimeoutSec: 2, bodyIdleTimeoutSec: 9 });
  const c = await RawClient.connect(port);
  await c.write(upload('/late-read?wait=0', { 'x-request-id': 'trickle', 'content-length': 10 * 200 * 1024 }));
  for (let i = 0; i < 10 && !c.closed && c.parsed().answers.length === 0; i++) {
    await c.write(Buffer.alloc(200 * 1024, 2)); // a uWS window's worth each time: uWS keeps it open
    await sleep(500);
  }
  const [answer] = await c.answers(1, 5000);
  t.equal(answer?.status, 408);
  t.match(answer?.body.toString(), /request not received within 2s/);
  t.same(seen.get('trickle'), { error: 'REQUEST_TIMEOUT' });
  c.destroy();
});

t.test('a body that arrives in full while the handler awaits is kept whole (and a chunked one too)', async (t) => {
  const port = await start(t);
  for (const size of [0, 10, 100_000, 3 * 1024 * 1024]) {
    const body = Buffer.alloc(size, 9);
    const res = await fetch(`http://127.0.0.1:${port}/late-read?wait=300`, { method: 'POST', body });
    t.same(await res.json(), { size, sha: createHash('sha256').update(body).digest('hex') }, `${size} bytes intact`);
  }
  const c = await RawClient.connect(port);
  await c.write(upload('/late-read?wait=100', { 'transfer-encoding': 'chunked' }));
  await c.write(Buffer.concat([chunk(Buffer.from('hello ')), chunk(Buffer.from('world')), LAST_CHUNK]));
  const [answer] = await c.answers(1);
  t.same(JSON.parse(answer?.body.toString() ?? 'null'), { size: 11, sha: createHash('sha256').update('hello world').digest('hex') });
  c.destroy();
});
