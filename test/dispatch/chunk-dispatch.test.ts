import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import t from 'tap';
import { Agent } from 'undici';
import { ChunkDispatcher } from '../../src/dispatch/chunk-dispatch.js';
import { startReceiver } from '../helpers/events-http.js';

const wav = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(40), Buffer.from([1, 2, 3, 4])]);

t.test('chunk headers on the wire, retries on 503, L16 content type', async (t) => {
  const rx = await startReceiver(t, (_r, i) => (i === 0 ? 503 : 200));
  const d = new ChunkDispatcher({ url: rx.url, apiKey: 'analysis-key', retry: { baseMs: 5, maxMs: 10 } });
  t.equal(d.enqueue({ meetingId: 'm1', participantId: 'alice', trackId: 'TR_1', bytes: wav, format: 'wav', sampleRate: 48_000, channels: 1 }), true);
  await d.idle();
  d.enqueue({ meetingId: 'm1', participantId: 'alice', trackId: 'TR_1', bytes: Buffer.alloc(8), format: 'l16', sampleRate: 16_000, channels: 1 });
  await d.idle();
  t.equal(rx.requests.length, 3);
  const [, ok, l16] = rx.requests;
  t.match(ok!.headers, {
    'x-meeting-id': 'm1',
    'x-participant-id': 'alice',
    'x-track-id': 'TR_1',
    authorization: 'Bearer analysis-key',
    'content-type': 'audio/wav',
  });
  t.same(ok!.body, wav, 'bytes intact');
  t.equal(l16!.headers['content-type'], 'audio/L16;rate=16000;channels=1');
  t.match(d.stats(), { sent: 2, failed: 0, dropped: 0 });
  await d.stop();
});

t.test('enqueue never blocks: chunks beyond the queue\'s bytes are dropped and counted; 4xx is not retried', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const rx = await startReceiver(t, () => 400);
  rx.server.removeAllListeners('request');
  rx.server.on('request', (req, res) => {
    req.resume();
    void gate.then(() => ((res.statusCode = 400), res.end()));
  });
  const d = new ChunkDispatcher({ url: rx.url, maxQueueBytes: 2 * wav.length, concurrency: 1 });
  const chunk = { meetingId: 'm', participantId: 'p', trackId: 't', bytes: wav, format: 'wav' as const, sampleRate: 48_000, channels: 1 };
  const results = Array.from({ length: 5 }, () => d.enqueue(chunk));
  // one in flight, two queued, two dropped — all decided synchronously
  t.same(results, [true, true, true, false, false]);
  t.match(d.stats(), { inFlight: 1, queued: 2, dropped: 2 });
  release();
  await d.idle();
  t.match(d.stats(), { sent: 0, failed: 3, dropped: 2 });
  await d.stop();
});

t.test('a meeting ending: every stream\'s last chunk arrives in the same moment, and all of them are sent', async (t) => {
  // 500 streams end together; their last chunks are short (here 0.2 s of 48 kHz mono each). A
  // queue bounded by a count (256 before) dropped half of them; the bound is memory.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const rx = await startReceiver(t, () => 200);
  rx.server.removeAllListeners('request');
  const bodies = new Map<string, number>();
  rx.server.on('request', (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      bodies.set(String(req.headers['x-track-id']), n);
      void gate.then(() => ((res.statusCode = 200), res.end()));
    });
  });
  const d = new ChunkDispatcher({ url: rx.url });
  const last = Buffer.alloc(44 + 19_200);
  const results = Array.from({ length: 500 }, (_, i) => d.enqueue({ meetingId: 'm', participantId: `p${i}`, trackId: `TR_${i}`, bytes: last, format: 'wav', sampleRate: 48_000, channels: 1 }));
  t.equal(results.filter(Boolean).length, 500, 'none dropped while the endpoint is still answering the first ones');
  release();
  await d.idle();
  t.match(d.stats(), { sent: 500, failed: 0, dropped: 0 });
  t.equal(bodies.size, 500, 'one request per track');
  t.ok([...bodies.values()].every((n) => n === last.length), 'every body whole');
  await d.stop();
});

t.test('an endpoint that never answers: each attempt ends at timeoutMs, and stop() ends a request still in flight', async (t) => {
  const rx = await startReceiver(t);
  rx.server.removeAllListeners('request');
  let arrived = 0;
  rx.server.on('request', (req) => {
    arrived++;
    req.resume(); // reads the body, never answers
  });
  const chunk = { meetingId: 'm', participantId: 'p', trackId: 't', bytes: wav, format: 'wav' as const, sampleRate: 48_000, channels: 1 };
  const timing = new ChunkDispatcher({ url: rx.url, timeoutMs: 50, maxAttempts: 2, retry: { baseMs: 1, maxMs: 2 } });
  timing.enqueue(chunk);
  await timing.idle();
  t.match(timing.stats(), { sent: 0, failed: 1, inFlight: 0 }, 'given up after its attempts timed out');
  t.equal(arrived, 2, 'two attempts reached the endpoint');
  await timing.stop();

  const stopping = new ChunkDispatcher({ url: rx.url, timeoutMs: 60_000, maxAttempts: 1 });
  stopping.enqueue(chunk);
  while (arrived < 3) await new Promise((r) => setTimeout(r, 5));
  t.equal(stopping.stats().inFlight, 1, 'the request is out');
  await stopping.stop(10);
  await stopping.idle();
  t.match(stopping.stats(), { sent: 0, failed: 1, inFlight: 0 }, 'stop() aborted it, well before its timeout');
});

t.test('a chunk\'s buffer is released once nothing reads it: after a delivery written out, at once when dropped, never while a write may be pending', async (t) => {
  const rx = await startReceiver(t);
  const released: string[] = [];
  const chunk = (name: string, bytes: Buffer = wav) => ({ meetingId: 'm', participantId: 'p', trackId: name, bytes, format: 'wav' as const, sampleRate: 48_000, channels: 1, release: () => released.push(name) });
  const d = new ChunkDispatcher({ url: rx.url, maxQueueBytes: 3 * wav.length, concurrency: 1 });
  t.teardown(() => d.stop(100));
  d.enqueue(chunk('sent'));
  await d.idle();
  t.same(released, ['sent'], 'delivered (the endpoint read the whole body and answered 200): released');
  for (let i = 0; i < 6; i++) d.enqueue(chunk(`burst-${i}`));
  t.same(released.slice(1), ['burst-4', 'burst-5'], 'one in flight, three queued: the two beyond the queue are released as they are dropped');
  await d.idle();
  t.same(released.filter((n) => n.startsWith('burst')).length, 6, 'and the others once delivered, each once');

  // an endpoint that answers 200 at once and never reads: the 32 MiB body is still being written
  const sockets = new Set<Socket>();
  const early = createServer((req, res) => {
    req.pause();
    res.end();
  });
  early.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => early.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); early.close(() => r()); }));
  const port = (early.address() as AddressInfo).port;
  const e = new ChunkDispatcher({ url: `http://127.0.0.1:${port}/analyze`, maxAttempts: 1 });
  t.teardown(() => e.stop(100));
  const big = Buffer.alloc(32 * 1024 * 1024, 7);
  e.enqueue(chunk('early', big));
  await e.idle();
  t.match(e.stats(), { sent: 1 }, 'the early 200 counts as delivered');
  t.notOk(released.includes('early'), 'but its buffer is not released: the socket still holds bytes to write from it');

  // a dispatcher given by the caller: nothing tells whether its writes are out
  const agent = new Agent();
  t.teardown(() => agent.close());
  const c = new ChunkDispatcher({ url: rx.url, dispatcher: agent });
  c.enqueue(chunk('caller-agent'));
  await c.idle();
  t.notOk(released.includes('caller-agent'), 'a caller\'s dispatcher: left to the garbage collector');
  await c.stop();
});

t.test('an endpoint that resets the connection in the middle of the body: the next attempt sends the same bytes whole, and the buffer is released once, after that delivery', async (t) => {
  const size = 4 * 1024 * 1024;
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) big.writeUInt32LE(i, i);
  const expected = Buffer.from(big);
  const released: string[] = [];
  const bodies: { received: number; complete: Buffer | undefined; releasedAtStart: number }[] = [];
  let resetEvery = 1; // reset attempts 1 … resetEvery
  const server = createServer((req, res) => {
    const seen = { received: 0, complete: undefined as Buffer | undefined, releasedAtStart: released.length };
    bodies.push(seen);
    const n = bodies.length;
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => {
      seen.received += d.length;
      if (n <= resetEvery) {
        // a quarter of the body in: the peer goes away (RST), mid-body
        if (seen.received >= size / 4) req.socket.resetAndDestroy();
        return;
      }
      parts.push(d);
    });
    req.on('end', () => {
      seen.complete = Buffer.concat(parts);
      res.end();
    });
    req.on('error', () => undefined);
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/analyze`;

  const d = new ChunkDispatcher({ url, retry: { baseMs: 5, maxMs: 10 }, maxAttempts: 3 });
  t.teardown(() => d.stop(100));
  d.enqueue({ meetingId: 'm', participantId: 'p', trackId: 'reset-once', bytes: big, format: 'wav', sampleRate: 48_000, channels: 1, release: () => released.push('reset-once') });
  await d.idle();
  t.equal(bodies.length, 2, 'one attempt cut mid-body, one more');
  t.ok(bodies[0]!.received >= size / 4 && bodies[0]!.received < size, `the first attempt was cut inside the body (${bodies[0]!.received} of ${size} bytes)`);
  t.equal(bodies[1]!.releasedAtStart, 0, 'the buffer was not released before the retry read it');
  t.ok(bodies[1]!.complete?.equals(expected), 'the retry carried the same bytes, whole');
  t.match(d.stats(), { sent: 1, failed: 0 });
  t.same(released, ['reset-once'], 'released once, after the delivery');

  // an endpoint that cuts every attempt: given up after maxAttempts, counted, never released early
  resetEvery = Infinity;
  const before = bodies.length;
  const e = new ChunkDispatcher({ url, retry: { baseMs: 5, maxMs: 10 }, maxAttempts: 2 });
  t.teardown(() => e.stop(100));
  e.enqueue({ meetingId: 'm', participantId: 'p', trackId: 'reset-always', bytes: big, format: 'wav', sampleRate: 48_000, channels: 1, release: () => released.push('reset-always') });
  await e.idle();
  t.equal(bodies.length - before, 2, 'both attempts made');
  t.match(e.stats(), { sent: 0, failed: 1 });
  t.notOk(released.includes('reset-always'), 'a chunk given up is left to the garbage collector: a cut write may still be reading it');
  t.ok(big.equals(expected), 'the caller\'s bytes were never written to');
});
