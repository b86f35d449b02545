// Load generator: N simulated LiveKit egress streams (the project's simulator, real-time pacing,
// one shared ticker), in a process of its own.
// argv: <job.json> with { streams: [{ id, url }], seconds, staggerMs }.
// stdout: {"phase":"started"} once the last stream was launched, then one result line:
// { streams: [{ id, bytesSent, framesSent, closeCode, error }], cpuSec, lagP99Ms, lagMaxMs }.
import { readFileSync } from 'node:fs';
import { simulateEgress, tonePcm } from '../../dist/clients/egress-simulator.js';
import { cpuSeconds, loopLag, sleep } from './proc.mjs';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const pcm = tonePcm(job.seconds); // shared by every stream: only views are sent
const lag = loopLag();
const cpu0 = cpuSeconds(process.pid);
const n = job.streams.length;
const gap = n > 1 ? (job.staggerMs ?? 0) / (n - 1) : 0;
const t0 = performance.now();

const results = job.streams.map(async ({ id, url }, i) => {
  const wait = t0 + i * gap - performance.now();
  if (wait > 0) await sleep(wait);
  try {
    const r = await simulateEgress({ url, pcm, realtime: true, end: 'normal' });
    return { id, bytesSent: r.bytesSent, framesSent: r.framesSent, closeCode: r.closeCode, error: null };
  } catch (err) {
    return { id, bytesSent: 0, framesSent: 0, closeCode: 0, error: String(err?.message ?? err) };
  }
});
await sleep(Math.max(0, t0 + (job.staggerMs ?? 0) - performance.now()));
lag.reset();
process.stdout.write(`${JSON.stringify({ phase: 'started' })}\n`);
const streams = await Promise.all(results);
process.stdout.write(`${JSON.stringify({ streams, cpuSec: cpuSeconds(process.pid) - cpu0, lagP99Ms: lag.p99Ms(), lagMaxMs: lag.maxMs() })}\n`);
