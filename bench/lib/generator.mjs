// Load generator: N egress streams (48 kHz stereo s16le, 1 920 B every 10 ms, real-time pacing),
// in a process of its own, with one of two clients:
//   sim — the project's simulator (src/clients/egress-simulator.ts: one shared ticker, catch-up bursts, pings);
//   ws  — a plain `ws` client written here: its own 10 ms interval per stream, whole frames due since it opened.
// Streams start `staggerMs` apart in total and all end at the same moment (a meeting ending):
// stream i sends `seconds` + the stagger still ahead of it.
// argv: <job.json> with { streams: [{ id, url }], seconds, staggerMs, client }.
// stdout: {"phase":"started", endAtMs} once the last stream was launched (endAtMs: epoch ms at which
// every stream sends its last frame), {"phase":"open", open} once every stream is connected (or failed),
// then one result line: { streams: [{ id, bytesSent, framesSent, closeCode, error }], cpuSec, lagP99Ms, lagMaxMs }.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { simulateEgress, tonePcm } from '../../dist/clients/egress-simulator.js';
import { cpuSeconds, loopLag, sleep } from './proc.mjs';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const client = job.client ?? 'sim';
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

const results = job.streams.map(async ({ id, url }, i) => {
  const wait = t0 + i * gap - performance.now();
  if (wait > 0) await sleep(wait);
  const bytes = bytesFor(i);
  try {
    let r;
    if (client === 'ws') {
      r = await plainWs(url, bytes);
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
