import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import t from 'tap';
import { HttpServer, json } from '../../src/http/server.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { startTestApp, TEST_API_KEY } from '../helpers/app.js';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';

const sink = new Writable({ write: (_c, _e, cb) => cb() });

t.test('a body that arrives while the handler is still awaiting something else is kept whole', async (t) => {
  const server = new HttpServer({ logger: createLogger({ level: 'silent', destination: sink as never }), metrics: new Metrics({ defaultMetrics: false }), requestTimeoutSec: 20, bodyHighWaterMark: 64 * 1024 });
  server.route('post', '/late-read', 'late-read', async (ctx) => {
    await new Promise((r) => setTimeout(r, 300)); // e.g. a rate limiter asking Redis
    const body = await ctx.readBody(16 * 1024 * 1024);
    return json(200, { size: body.length, sha: createHash('sha256').update(body).digest('hex') });
  });
  server.route('post', '/late-stream', 'late-stream', async (ctx) => {
    await new Promise((r) => setTimeout(r, 300));
    const hash = createHash('sha256');
    let size = 0;
    for await (const c of ctx.bodyStream()) {
      hash.update(c as Buffer);
      size += (c as Buffer).length;
      await new Promise((r) => setImmediate(r)); // a slow consumer
    }
    return json(200, { size, sha: hash.digest('hex') });
  });
  server.fallback();
  const port = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.stop());
  for (const route of ['late-read', 'late-stream']) {
    for (const size of [10, 100_000, 3 * 1024 * 1024]) {
      const body = Buffer.alloc(size, 7);
      body.writeUInt32LE(size, 0);
      const res = await fetch(`http://127.0.0.1:${port}/${route}`, { method: 'POST', body });
      t.same(await res.json(), { size, sha: createHash('sha256').update(body).digest('hex') }, `${route}: ${size} bytes intact`);
    }
  }
});

t.test('with the rate limiter on Redis, voice notes are stored (the limiter awaits I/O before the body is read)', async (t) => {
  const h = await startTestApp({ rateLimit: { redisUrl: 'redis://127.0.0.1:6379' } });
  t.teardown(() => h.close());
  const note = readFixture(await opusVoiceNote());
  const res = await fetch(`${h.baseUrl}/v1/whatsapp/audio`, {
    method: 'POST',
    headers: { apikey: TEST_API_KEY, 'content-type': 'audio/ogg; codecs=opus', 'x-instance': 'inst-r', 'x-chat-id': 'chat', 'x-message-id': `R${Date.now()}` },
    body: note,
  });
  t.equal(res.status, 201, JSON.stringify(await res.clone().json()));
  t.match(await res.json(), { status: 'stored', sampleRate: 16000, channels: 1 });
});

t.test('a malformed %-escape in a path parameter is a 400, not a crash', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const res = await fetch(`${h.baseUrl}/v1/recordings/%E0%A4%A`, { headers: { apikey: TEST_API_KEY } });
  t.equal(res.status, 400);
  t.match(await res.json(), { error: { code: 'INVALID_PARAMETER' } });
  t.equal((await fetch(`${h.baseUrl}/health`)).status, 200, 'still serving');
});
