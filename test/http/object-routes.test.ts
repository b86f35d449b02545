import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import t from 'tap';
import { parseRange } from '../../src/http/object-routes.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

/** Stores `body` in the app's fs store and returns a presigned URL of it. */
async function stored(h: TestApp, key: string, body: Buffer, contentType = 'audio/wav'): Promise<string> {
  await h.app.store.put(key, body, { contentType });
  return h.app.store.presign(key, 60);
}

/**
 * GET with node:http so the reader controls its pace: it stops reading after the first chunk
 * until `pauseUntil` resolves, so the server's socket fills and it must wait for it to drain.
 */
function slowGet(url: string, pauseUntil: Promise<void>, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      const parts: Buffer[] = [];
      let paused = false;
      res.on('data', (c: Buffer) => {
        parts.push(c);
        if (!paused) {
          paused = true;
          res.pause();
          void pauseUntil.then(() => res.resume());
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('a large object streams intact to a reader that stalls (socket backpressure)', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const body = randomBytes(24 * 1024 * 1024 + 7);
  const url = await stored(h, 'recordings/default/r/p/t/big.wav', body);
  // the reader stops after its first chunk; while it waits, 24 MiB cannot all fit in the
  // socket buffers, so the server has to wait for the socket to drain (the bytes must match either way)
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const download = slowGet(url, gate);
  await new Promise((r) => setTimeout(r, 300));
  release();
  const res = await download;
  t.equal(res.status, 200);
  t.equal(res.headers['content-length'], String(body.length));
  t.equal(res.headers['content-type'], 'audio/wav');
  t.ok(res.body.equals(body), 'every byte, in order');
  // the daemon still answers afterwards
  t.equal((await fetch(`${h.baseUrl}/health`)).status, 200);
});

t.test('Range requests: 206 with the exact bytes, 416 when unsatisfiable, whole object otherwise', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const body = randomBytes(100_000);
  const url = await stored(h, 'recordings/default/r/p/t/range.wav', body);
  const get = async (range: string): Promise<{ status: number; headers: Headers; bytes: Buffer }> => {
    const res = await fetch(url, { headers: { Range: range } });
    return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
  };
  const cases: [string, number, number][] = [
    ['bytes=0-0', 0, 0],
    ['bytes=10-19', 10, 19],
    ['bytes=99990-', 99990, 99999],
    ['bytes=-5', 99995, 99999],
    ['bytes=50000-200000', 50000, 99999],
    ['bytes=-200000', 0, 99999],
  ];
  for (const [range, start, end] of cases) {
    const r = await get(range);
    t.equal(r.status, 206, range);
    t.equal(r.headers.get('content-range'), `bytes ${start}-${end}/100000`, `${range}: Content-Range`);
    t.equal(r.headers.get('content-length'), String(end - start + 1), `${range}: Content-Length`);
    t.ok(r.bytes.equals(body.subarray(start, end + 1)), `${range}: bytes`);
  }
  for (const range of ['bytes=100000-', 'bytes=200000-200010', 'bytes=-0']) {
    const r = await get(range);
    t.equal(r.status, 416, range);
    t.equal(r.headers.get('content-range'), 'bytes */100000', `${range}: Content-Range`);
  }
  for (const range of ['bytes=5-2', 'bytes=0-1,5-6', 'items=0-5', 'bytes=x-y']) {
    const r = await get(range);
    t.equal(r.status, 200, `${range}: ignored, whole object`);
    t.ok(r.bytes.equals(body), `${range}: whole body`);
  }
  // a range read by a slow client is streamed too
  let release!: () => void;
  const slow = slowGet(url, new Promise<void>((r) => (release = r)), { Range: 'bytes=1000-' });
  release();
  const r = await slow;
  t.equal(r.status, 206);
  t.ok(r.body.equals(body.subarray(1000)));
});

t.test('empty objects, bad signatures, expired links and missing objects', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const empty = await fetch(await stored(h, 'recordings/default/empty.wav', Buffer.alloc(0)));
  t.equal(empty.status, 200);
  t.equal(empty.headers.get('content-length'), '0');
  t.equal((await empty.arrayBuffer()).byteLength, 0);

  const url = await stored(h, 'recordings/default/s.wav', Buffer.from('RIFF'));
  const tampered = url.replace(/signature=([0-9a-f])/, (_m, c: string) => `signature=${c === '0' ? '1' : '0'}`);
  const bad = await fetch(tampered);
  t.equal(bad.status, 401);
  t.match(await bad.json(), { error: { code: 'INVALID_SIGNATURE' } });
  t.equal((await fetch(url.replace('s.wav', 'other.wav'))).status, 401, 'the signature covers the key');
  t.equal((await fetch(url.replace(/expires=\d+/, 'expires=1'))).status, 401, 'the signature covers the expiry');
  t.equal((await fetch(`${h.baseUrl}/v1/objects/recordings/default/%E0%A4%A?expires=1&signature=00`)).status, 401, 'a malformed key is refused');

  const goneUrl = await stored(h, 'recordings/default/gone.wav', Buffer.from('x'));
  await h.app.store.delete('recordings/default/gone.wav');
  const gone = await fetch(goneUrl);
  t.equal(gone.status, 404);
  t.match(await gone.json(), { error: { code: 'NOT_FOUND' } });

  const metrics = await (await fetch(`${h.baseUrl}/metrics`)).text();
  t.match(metrics, /audio_ingestd_http_requests_total\{route="objects",status="401"\} 4/, 'answers counted under the route label');
});

t.test('a client that disconnects mid-download leaves the daemon serving', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const body = randomBytes(16 * 1024 * 1024);
  const url = await stored(h, 'recordings/default/abort.wav', body);
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = request(url, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)));
      req.end();
    });
  }
  const res = await fetch(url);
  t.ok(Buffer.from(await res.arrayBuffer()).equals(body), 'a later download is complete');
});

t.test('parseRange', async (t) => {
  t.equal(parseRange(undefined, 10), null);
  t.same(parseRange('bytes=2-4', 10), { start: 2, end: 4 });
  t.same(parseRange('bytes = 2 - 4', 10), { start: 2, end: 4 });
  t.same(parseRange('BYTES=2-', 10), { start: 2, end: 9 });
  t.same(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  t.same(parseRange('bytes=0-99', 10), { start: 0, end: 9 });
  t.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
  t.equal(parseRange('bytes=-1', 0), 'unsatisfiable');
  t.equal(parseRange('bytes=0-', 0), 'unsatisfiable');
  t.equal(parseRange('bytes=-', 10), null);
  t.equal(parseRange('bytes=4-2', 10), null);
  t.equal(parseRange('bytes=1-2,4-5', 10), null);
  t.equal(parseRange('bytes=99999999999999999999-', 10), null);
});
