// Load generator: N egress streams (48 kHz stereo s16le, 1 920 B every 10 ms, real-time pacing),
// in a process of its own, with one of three clients:
//   sim — the project's simulator (src/clients/egress-simulator.ts: one shared ticker, catch-up bursts, pings);
//   ws  — a plain `ws` client written here: its own 10 ms interval per stream, whole frames due since it opened;
//   raw — a WebSocket client on node:net alone, written here, for a generator cheap enough not to
//         distort N = 500: a hand-written HTTP/1.1 upgrade, frames masked with an all-zero key
//         (the 8-byte header and the PCM view are written as they are, no XOR, no copy), ONE
//         shared 10 ms timer for every stream (each sends the whole frames due since it opened,
//         corked, and waits for 'drain' when a write says so), Close 1000 after the last frame;
//         incoming frames are parsed only for the server's Close (its code) and pings (answered).
// Streams start `staggerMs` apart in total and all end at the same moment (a meeting ending):
// stream i sends `seconds` + the stagger still ahead of it.
// argv: <job.json> with { streams: [{ id, url }], seconds, staggerMs, client }.
// stdout: {"phase":"started", endAtMs} once the last stream was launched (endAtMs: epoch ms at which
// every stream sends its last frame), {"phase":"open", open} once every stream is connected (or failed),
// then one result line: { streams: [{ id, bytesSent, framesSent, closeCode, error }], cpuSec, lagP99Ms, lagMaxMs }.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import WebSocket from 'ws';
import { simulateEgress, tonePcm } from '../../dist/clients/egress-simulator.js';
import { cpuSeconds, loopLag, sleep } from './proc.mjs';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const client = job.client ?? 'sim';
if (!['sim', 'ws', 'raw'].includes(client)) throw new Error(`unknown client ${client} (sim, ws or raw)`);
const staggerMs = job.staggerMs ?? 0;
const FRAME = 1920;
const BYTES_PER_MS = 192;
const pcm = tonePcm(job.seconds + staggerMs / 1000 + 1); // shared by every stream: only views are sent
const lag = loopLag();
const cpu0 = cpuSeconds(process.pid);
const n = job.streams.length;
const gap = n > 1 ? staggerMs / (n - 1) : 0;
const t0 = performance.now();
const endAt = t0 + staggerMs + job.seconds * 1000;
let opened = 0;
let settled = 0;
let onAllOpen;
const allOpen = new Promise((r) => (onAllOpen = r));
const openedOne = () => {
  if (++opened + settled === n) onAllOpen();
};

/** Bytes stream i sends: whole frames from its start to the common end. */
const bytesFor = (i) => Math.floor(((endAt - (t0 + i * gap)) * BYTES_PER_MS) / FRAME) * FRAME;

/** A plain ws client: connect, send the frames due every 10 ms, close with 1000 after the last one. */
function plainWs(url, bytes) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, headers: { 'Content-Type': 'audio/x-raw' } });
    const r = { bytesSent: 0, framesSent: 0, closeCode: 0 };
    let timer;
    let wasOpen = false;
    ws.on('error', (err) => {
      clearInterval(timer);
      if (!wasOpen) reject(err);
    });
    ws.on('close', (code) => {
      clearInterval(timer);
      r.closeCode = code;
      resolve(r);
    });
    ws.on('open', () => {
      wasOpen = true;
      openedOne();
      const start = performance.now();
      const tick = () => {
        if (ws.readyState !== WebSocket.OPEN) return;
        const due = Math.min(bytes, (Math.floor(((performance.now() - start) * BYTES_PER_MS) / FRAME) + 1) * FRAME);
        while (r.bytesSent < due) {
          ws.send(pcm.subarray(r.bytesSent, r.bytesSent + FRAME), { binary: true });
          r.bytesSent += FRAME;
          r.framesSent++;
        }
        if (r.bytesSent >= bytes) {
          clearInterval(timer);
          ws.close(1000);
        }
      };
      timer = setInterval(tick, 10);
      tick();
    });
  });
}

// ---- raw: a WebSocket client on node:net ----
/** A masked binary frame header for FRAME bytes: FIN + binary, mask bit + 126, 16-bit length, mask key 0 0 0 0. */
const RAW_HEADER = Buffer.from([0x82, 0x80 | 126, FRAME >> 8, FRAME & 0xff, 0, 0, 0, 0]);
/** A masked Close frame with code 1000 (mask key 0 0 0 0, so the payload is the code as it is). */
const RAW_CLOSE = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
const rawStreams = new Set(); // the open raw streams still sending, ticked by one shared timer
let rawTimer;
const rawTick = () => {
  const now = performance.now();
  for (const s of rawStreams) s.tick(now);
};
const rawAdd = (s) => {
  rawStreams.add(s);
  rawTimer ??= setInterval(rawTick, 10);
};
const rawRemove = (s) => {
  rawStreams.delete(s);
  if (rawStreams.size === 0 && rawTimer) {
    clearInterval(rawTimer);
    rawTimer = undefined;
  }
};

/**
 * The raw client: net.connect, a hand-written upgrade, then the frames due since the 101 on the
 * shared timer, Close 1000 after the last one, and the server's Close awaited. closeCode: the
 * server's Close code (1005 if it had none), else 1000 if the socket ended cleanly after our
 * Close, else 1006.
 */
function rawWs(url, bytes) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.protocol !== 'ws:' && u.protocol !== 'http:') {
      reject(new Error(`raw client: ${u.protocol} is not supported (ws: only)`));
      return;
    }
    const socket = connect({ host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 80) });
    socket.setNoDelay(true);
    const r = { bytesSent: 0, framesSent: 0, closeCode: 0 };
    let opened = false;
    let head = ''; // the response head until \r\n\r\n (latin1)
    let inbuf = null; // incoming frame bytes not parsed yet
    let blocked = false; // a write returned false: nothing more until 'drain'
    let closeSent = false;
    let serverCode = 0; // the code of the server's Close, once parsed
    let endedClean = false;
    let closeTimer;
    let start = 0;
    const sendClose = () => {
      if (closeSent) return;
      closeSent = true;
      rawRemove(stream);
      socket.write(RAW_CLOSE);
      // the server answers a Close and ends the connection; one that does not gets 30 s (as ws)
      closeTimer = setTimeout(() => socket.destroy(), 30_000);
    };
    const stream = {
      tick(now) {
        if (blocked || closeSent) return;
        const due = Math.min(bytes, (Math.floor(((now - start) * BYTES_PER_MS) / FRAME) + 1) * FRAME);
        if (r.bytesSent >= due && r.bytesSent < bytes) return;
        socket.cork();
        let ok = true;
        while (ok && r.bytesSent < due) {
          socket.write(RAW_HEADER);
          ok = socket.write(pcm.subarray(r.bytesSent, r.bytesSent + FRAME));
          r.bytesSent += FRAME;
          r.framesSent++;
        }
        if (r.bytesSent >= bytes) sendClose();
        socket.uncork();
        if (!ok && !closeSent) blocked = true;
      },
    };
    socket.on('drain', () => {
      if (!blocked) return;
      blocked = false;
      stream.tick(performance.now()); // catch up with the frames due meanwhile
    });
    /** Incoming frames (server frames are unmasked; a masked one is skipped the same way): Close and Ping only. */
    const onFrames = (chunk) => {
      let b = inbuf ? Buffer.concat([inbuf, chunk]) : chunk;
      let pos = 0;
      for (;;) {
        if (b.length - pos < 2) break;
        const op = b[pos] & 0x0f;
        const masked = (b[pos + 1] & 0x80) !== 0;
        let len = b[pos + 1] & 0x7f;
        let hl = 2;
        if (len === 126) {
          if (b.length - pos < 4) break;
          len = b.readUInt16BE(pos + 2);
          hl = 4;
        } else if (len === 127) {
          if (b.length - pos < 10) break;
          len = Number(b.readBigUInt64BE(pos + 2));
          hl = 10;
        }
        const ml = masked ? 4 : 0;
        if (b.length - pos < hl + ml + len) break;
        const p0 = pos + hl + ml;
        const payload = b.subarray(p0, p0 + len);
        if (masked) {
          const key = b.subarray(pos + hl, p0);
          for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
        }
        if (op === 0x8) {
          serverCode = len >= 2 ? payload.readUInt16BE(0) : 1005;
          if (!closeSent) {
            // the server closed first: answer with its code, send nothing more
            closeSent = true;
            rawRemove(stream);
            socket.write(Buffer.from([0x88, 0x82, 0, 0, 0, 0, serverCode === 1005 ? 0x03 : serverCode >> 8, serverCode === 1005 ? 0xe8 : serverCode & 0xff]));
          }
          socket.end(); // both Closes exchanged: nothing more to read
        } else if (op === 0x9 && len <= 125 && !socket.writableEnded) {
          socket.write(Buffer.concat([Buffer.from([0x8a, 0x80 | len, 0, 0, 0, 0]), payload]));
        }
        pos = p0 + len;
      }
      inbuf = pos < b.length ? b.subarray(pos) : null;
      if (inbuf && pos > 0) inbuf = Buffer.from(inbuf); // do not keep the whole chunk alive
    };
    socket.on('data', (chunk) => {
      if (opened) {
        if (serverCode === 0) onFrames(chunk);
        return;
      }
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16384) socket.destroy(new Error('raw client: response head over 16 KiB'));
        return;
      }
      const statusLine = head.slice(0, head.indexOf('\r\n'));
      if (!/^HTTP\/1\.[01] 101 /.test(`${statusLine} `)) {
        socket.destroy();
        reject(new Error(statusLine));
        return;
      }
      opened = true;
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      head = '';
      openedOne();
      start = performance.now();
      rawAdd(stream);
      stream.tick(start);
      if (rest.length) onFrames(rest);
    });
    socket.on('end', () => {
      if (closeSent) endedClean = true;
    });
    socket.on('error', (err) => {
      if (!opened) reject(err);
    });
    socket.on('close', () => {
      clearTimeout(closeTimer);
      rawRemove(stream);
      if (!opened) {
        reject(new Error('raw client: connection closed before the upgrade response'));
        return;
      }
      r.closeCode = serverCode || (endedClean ? 1000 : 1006);
      resolve(r);
    });
    socket.write(
      `GET ${u.pathname || '/'}${u.search} HTTP/1.1\r\n` +
        `Host: ${u.host}\r\n` +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
        'Sec-WebSocket-Version: 13\r\n' +
        'Content-Type: audio/x-raw\r\n' +
        '\r\n',
    );
  });
}

const results = job.streams.map(async ({ id, url }, i) => {
  const wait = t0 + i * gap - performance.now();
  if (wait > 0) await sleep(wait);
  const bytes = bytesFor(i);
  try {
    let r;
    if (client === 'ws') {
      r = await plainWs(url, bytes);
    } else if (client === 'raw') {
      r = await rawWs(url, bytes);
    } else {
      r = await simulateEgress({ url, pcm: pcm.subarray(0, bytes), realtime: true, end: 'normal', onOpen: openedOne });
    }
    return { id, bytesSent: r.bytesSent, framesSent: r.framesSent, closeCode: r.closeCode, error: null };
  } catch (err) {
    settled++;
    if (opened + settled === n) onAllOpen();
    return { id, bytesSent: 0, framesSent: 0, closeCode: 0, error: String(err?.message ?? err) };
  }
});
await sleep(Math.max(0, t0 + staggerMs - performance.now()));
lag.reset();
process.stdout.write(`${JSON.stringify({ phase: 'started', endAtMs: Date.now() + (endAt - performance.now()) })}\n`);
await Promise.race([allOpen, sleep(30_000)]);
process.stdout.write(`${JSON.stringify({ phase: 'open', open: opened })}\n`);
const streams = await Promise.all(results);
process.stdout.write(`${JSON.stringify({ streams, cpuSec: cpuSeconds(process.pid) - cpu0, lagP99Ms: lag.p99Ms(), lagMaxMs: lag.maxMs() })}\n`);
