import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { WebSocket } from 'ws';
import type { CorkAnchor } from '../../src/http/cork-anchor.js';
import { HttpServer } from '../../src/http/server.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { endEgress, LiveConsumer, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

const sink = new Writable({ write: (_c, _e, cb) => cb() });

/** A server on `/async` whose upgrades run after the handler returned, echoing every frame. */
async function asyncUpgradeServer(t: Test, onOpen: () => void = () => undefined, logs?: string[]): Promise<{ port: number; server: HttpServer }> {
  const destination = logs
    ? new Writable({
        write: (c: Buffer, _e, cb) => {
          logs.push(c.toString('utf8'));
          cb();
        },
      })
    : sink;
  const server = new HttpServer({ logger: createLogger({ level: logs ? 'warn' : 'silent', destination: destination as never }), metrics: new Metrics({ defaultMetrics: false }), requestTimeoutSec: 20 });
  server.app.ws<{ n: number }>('/async', {
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const ctx = server.context(res, req, 'async');
      // after the handler returned, as the egress and live checks do (token, Redis, storage)
      setImmediate(() => ctx.response.upgrade({ n: 0 }, key, protocol, extensions, context));
    },
    open: onOpen,
    message: (ws, message) => {
      ws.send(message, true); // the echo shows the socket carries frames both ways
    },
  });
  const port = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.stop());
  return { port, server };
}

/**
 * Rounds of WebSocket clients against `/async`, each round's upgrades overlapping the previous
 * round's closes (so freed sockets are reused); each sends an egress frame, waits for its echo
 * and closes with 1000. Returns the close codes seen, counted, and how many echoed.
 */
async function upgradeRounds(port: number, rounds: number, perRound: number): Promise<{ codes: Record<number, number>; echoed: number; total: number }> {
  const frame = Buffer.alloc(1920, 3); // 10 ms of 48 kHz mono s16le, an egress frame
  const outcomes: { echoed: boolean; code: number }[] = [];
  const client = (): Promise<void> =>
    new Promise((resolve) => {
      const outcome = { echoed: false, code: 0 };
      outcomes.push(outcome);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/async`);
      ws.on('open', () => ws.send(frame));
      ws.on('message', (data: Buffer) => {
        outcome.echoed = Buffer.compare(data, frame) === 0;
        ws.close(1000);
      });
      ws.on('error', () => undefined); // the close code below says what happened
      ws.on('close', (code) => {
        outcome.code = code;
        resolve();
      });
    });
  let previous: Promise<void>[] = [];
  for (let round = 0; round < rounds; round++) {
    const current = Array.from({ length: perRound }, client);
    await Promise.all(previous);
    previous = current;
  }
  await Promise.all(previous);
  const codes: Record<number, number> = {};
  for (const o of outcomes) codes[o.code] = (codes[o.code] ?? 0) + 1;
  return { codes, echoed: outcomes.filter((o) => o.echoed).length, total: outcomes.length };
}

/**
 * What uWS 20.30 (uWebSockets 7999d09) does after an upgrade made inside the upgrading
 * response's own `res.cork`, once its upgrade handler had returned: the socket is realloc'd
 * in place to the smaller WebSocket size and `cork` then reads the HTTP state word at its old
 * place, bytes 36-39 of the 96-byte heap chunk glibc freed from the socket's tail. Here the
 * open handler takes that chunk on purpose: buffers of 73-88 bytes (the requests glibc serves
 * from 96-byte chunks, most recently freed first) filled with 0x10, which reads as "connection
 * close, nothing pending". With `res.cork(() => res.upgrade(...))` most of these sockets are
 * shut at once (the client sees 1006); through the cork anchor none may be.
 */
t.test('async upgrades stay open while the open handler reuses the socket’s freed tail and other sockets close', async (t) => {
  const kept: Buffer[] = [];
  const { port } = await asyncUpgradeServer(t, () => {
    for (let size = 73; size <= 88; size++) kept.push(Buffer.allocUnsafeSlow(size).fill(0x10));
  });

  const { codes, echoed, total } = await upgradeRounds(port, 6, 100);
  t.equal(total, 600);
  t.same(codes, { 1000: total }, 'every socket closed with the client’s 1000, none with 1006');
  t.equal(echoed, total, 'every socket opened and echoed its frame');
  t.ok(kept.length >= total * 16, 'the open handler ran for every socket');
});

t.test('the cork anchor reconnects after losing its connection; upgrades stay open through the new one, and uncorked while there is none', async (t) => {
  const logs: string[] = [];
  const { port, server } = await asyncUpgradeServer(t, () => {
    for (let size = 73; size <= 88; size++) Buffer.allocUnsafeSlow(size).fill(0x10);
  }, logs);
  const anchor = (server as unknown as { corkAnchor: CorkAnchor }).corkAnchor;
  const held = (): boolean => anchor.run(() => undefined);
  t.ok(held(), 'the anchor holds its request once the server listens');
  const first = (anchor as unknown as { client: Socket }).client;
  first.destroy(); // the anchor's connection reset (what a conntrack flush or an RST would do)
  await waitFor(() => !held() || undefined, 10_000, 'anchor lost');
  t.ok(logs.some((l) => l.includes('cork anchor connection lost')), 'the loss is logged');
  await waitFor(() => held() || undefined, 10_000, 'anchor held again');
  t.not((anchor as unknown as { client: Socket }).client, first, 'on a new connection');
  const after = await upgradeRounds(port, 4, 100);
  t.same(after.codes, { 1000: after.total }, 'through the new anchor: every socket closed with the client’s 1000, none with 1006');
  t.equal(after.echoed, after.total, 'every socket echoed its frame');

  // without any anchor the upgrade runs uncorked (the moment between a loss and the reconnect)
  anchor.stop();
  t.notOk(held(), 'no anchor after stop');
  const uncorked = await upgradeRounds(port, 4, 100);
  t.same(uncorked.codes, { 1000: uncorked.total }, 'uncorked: every socket closed with the client’s 1000, none with 1006');
  t.equal(uncorked.echoed, uncorked.total, 'every socket echoed its frame');
});

/**
 * The same HTTP state word before anything reused it: uWS marks a request "connection close"
 * when its Connection value is five characters long. Through `res.cork(() => res.upgrade())`
 * such a handshake got its 101 and an immediate close; upgraded outside that cork, uWS closes
 * it inside `res.upgrade` yet still opens a WebSocket on the closed socket. So the daemon
 * refuses a handshake without `Connection: Upgrade` (RFC 6455) before its checks. `ws` always
 * sends `Connection: Upgrade`, hence a raw handshake; a valid one is answered 101 and its
 * socket answers a Close frame with its own, so it was open.
 */
t.test('an egress handshake without Connection: Upgrade is refused 400; a raw valid one upgrades and stays open', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const port = Number(new URL(h.baseUrl).port);
  const exchange = (path: string, connection: string): Promise<{ head: string; rest: Buffer }> =>
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: ${connection}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      let got = Buffer.alloc(0);
      let head: string | undefined;
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        if (head === undefined) {
          const end = got.indexOf('\r\n\r\n');
          if (end < 0) return;
          head = got.subarray(0, end).toString();
          got = got.subarray(end + 4);
          if (!head.startsWith('HTTP/1.1 101 ')) return; // an error answer: its body follows, then the close
          const mask = Buffer.from([1, 2, 3, 4]);
          const close = Buffer.from([0x03, 0xe8]).map((b, i) => b ^ mask[i]!); // 1000
          socket.write(Buffer.concat([Buffer.from([0x88, 0x82]), mask, close]));
        }
        if (head.startsWith('HTTP/1.1 101 ') && got.length >= 4) {
          resolve({ head, rest: got.subarray(0, 4) });
          socket.destroy();
        }
      });
      socket.on('end', () => (head !== undefined && !head.startsWith('HTTP/1.1 101 ') ? resolve({ head, rest: got }) : reject(new Error(`closed by the server after: ${head ?? 'nothing'}`))));
      socket.on('error', reject);
    });
  for (const connection of ['close', 'xxxxx', 'keep-alive']) {
    const url = new URL(await egressUrl(h, { roomName: 'room-raw' }));
    const r = await exchange(`${url.pathname}${url.search}`, connection);
    t.match(r.head, /^HTTP\/1\.1 400 /, `Connection: ${connection}: refused 400 before the upgrade`);
    t.match(r.rest.toString(), /BAD_REQUEST/);
  }
  const url = new URL(await egressUrl(h, { roomName: 'room-raw' }));
  const r = await exchange(`${url.pathname}${url.search}`, 'Upgrade');
  t.same([...r.rest], [0x88, 2, 0x03, 0xe8], 'Connection: Upgrade: upgraded, and the open socket answers Close 1000 with its own');
  await waitFor(() => (h.app.livekit.openStreams === 0 ? true : undefined), 10_000, 'no stream left open');
});

/**
 * The daemon's own async upgrades, egress and live, through the anchor: two waves of egress
 * streams, the second upgrading while the first ends (their sockets freed and reused), and a
 * live subscriber per first-wave stream upgrading meanwhile. Every socket must open, carry its
 * audio to the master and to its subscriber, and end normally, none with 1006.
 */
t.test('the daemon’s egress and live upgrades, many at once while others close, all stay open and carry audio', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const PER_WAVE = 40;
  const pcmOf = (i: number): Buffer => randomStereo(48000 / 5 + i, i + 1); // 0.2 s, a length per stream
  const egressCloses: number[] = [];
  const openEgress = async (wave: string, i: number): Promise<WebSocket> => {
    const ws = await connectEgress(await egressUrl(h, { roomName: `room-${wave}`, trackId: `TR_${wave}${i}` }));
    ws.on('close', (code) => egressCloses.push(code));
    await sendFrames(ws, pcmOf(i));
    return ws;
  };

  const first = await Promise.all(Array.from({ length: PER_WAVE }, (_, i) => openEgress('A', i)));
  const ids = await Promise.all(first.map((_, i) => waitFor(() => h.app.recordings.all().find((r) => r.identity.trackId === `TR_A${i}`)?.identity.recordingId, 10_000, `recording of TR_A${i}`)));
  const subscribers = ids.map((id) => new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&from=0&rate=48000`));
  // the second wave's and the subscribers' upgrades overlap the first wave's ends
  const [second] = await Promise.all([
    Promise.all(Array.from({ length: PER_WAVE }, (_, i) => openEgress('B', i))),
    Promise.all(subscribers.map((c) => c.opened)).then(() => Promise.all(first.map((ws) => endEgress(ws)))),
  ]);
  await Promise.all(second.map((ws) => endEgress(ws)));
  await Promise.all(subscribers.map((c) => c.closed));

  t.equal(egressCloses.length, 2 * PER_WAVE, 'every egress socket opened and closed');
  t.same(egressCloses.filter((code) => code !== 1005), [], 'every egress socket ended with its own empty Close (1005), none with 1006');
  const completed = await waitFor(() => {
    const done = outboxEvents(h).filter((e) => e.type === 'recording.completed');
    return done.length === 2 * PER_WAVE ? done : undefined;
  }, 30_000, 'every recording completed');
  for (const wave of ['A', 'B']) {
    for (let i = 0; i < PER_WAVE; i++) {
      const ev = completed.find((e) => e.track_id === `TR_${wave}${i}`);
      if (!ev) {
        t.fail(`no recording.completed for TR_${wave}${i}`);
        continue;
      }
      const master = readWav(await h.app.store.get(ev.s3_key_master as string)).data;
      t.ok(master.equals(downmix(pcmOf(i))), `TR_${wave}${i}: the master holds every frame sent`);
      if (wave === 'A') {
        const c = subscribers[i]!;
        t.same({ problems: c.problems, errors: c.errors, closeCode: c.closeCode }, { problems: [], errors: [], closeCode: 1000 }, `TR_A${i}: its subscriber closed with 1000`);
        t.ok(c.pcm().equals(master), `TR_A${i}: its subscriber got the master sample for sample`);
      }
    }
  }
});
