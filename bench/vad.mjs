// VAD cost — what WebRTC voice-activity detection (vad.enabled, on worker threads) adds to a live
// stream, in CPU seconds per stream-hour, two ways in the same run:
//   worker   — one VadPool stream fed an hour of 48 kHz mono (speech-like: tone bursts and pauses
//              over noise) as fast as the worker takes it, in this process: the VAD alone (process
//              CPU, and the worker thread's own from /proc/self/task; the rest is this thread's
//              chunk copies and messages);
//   daemon   — N real-time egress streams (the generator in its own process) through the whole
//              daemon with vad.enabled = false, then true: daemon CPU (all threads) over the steady
//              window, per stream-hour, and the ratio on/off.
//
//
//   node bench/vad.mjs [--quick] [--n 50] [--seconds 20] [--hours 1]
//        [--worker-only] [--dist dist,<other build's dist>,…] [--rounds 2] [--frame-ms 10]
// --dist: the worker row for each build, alternating, `--rounds` times (same run, same load);
// the daemon rows always use this checkout's build.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { removeAtExit, saveResults, startDaemon } from './lib/daemon.mjs';
import { cpuSeconds, sleep } from './lib/proc.mjs';
import { runGenerator } from './lib/run-generator.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const quick = Boolean(args.quick);
const N = Number(args.n ?? (quick ? 20 : 50));
const SECONDS = Number(args.seconds ?? (quick ? 10 : 20));
const HOURS = Number(args.hours ?? (quick ? 0.25 : 1));
const RATE = 48000;
const settings = { mode: 2, frameMs: Number(args['frame-ms'] ?? 10), minSpeechMs: 200, minSilenceMs: 300, live: false };
const DISTS = String(args.dist ?? 'dist').split(',').map((d) => resolve(d));
const ROUNDS = Number(args.rounds ?? 1);
const silentLogger = { warn() {}, error() {}, info() {}, debug() {}, child() { return silentLogger; } };

/** 2 s chunks (the default groupSeconds) of 48 kHz mono: 1.3 s of a 180 Hz buzz with harmonics, then 0.7 s of faint noise. */
function chunk(seed) {
  const n = 2 * RATE;
  const a = new Int16Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const noise = ((x >>> 16) / 65536 - 0.5) * 200;
    const voiced = i < 1.3 * RATE ? 6000 * (Math.sin((2 * Math.PI * 180 * i) / RATE) + 0.5 * Math.sin((2 * Math.PI * 540 * i) / RATE) + 0.3 * Math.sin((2 * Math.PI * 1260 * i) / RATE)) : 0;
    a[i] = Math.max(-32768, Math.min(32767, Math.round(voiced + noise)));
  }
  return a;
}

async function workerOnly(dist) {
  const { VadPool } = await import(pathToFileURL(join(dist, 'recording/vad-pool.js')).href);
  // builds before the pool copied chunks itself took an ArrayBuffer of their own (recording.ts sliced one per chunk)
  const copies = readFileSync(join(dist, 'recording/vad-pool.js'), 'utf8').includes('spare');
  const feed = (s, a) => s.push(copies ? new Uint8Array(a.buffer) : a.slice().buffer);
  const before = new Set(readdirSync('/proc/self/task'));
  const pool = new VadPool({ workers: 1, settings, logger: silentLogger, finishTimeoutMs: 600_000, maxQueueBytes: 1 << 30 });
  // warm the worker (module load, wasm compile) outside the measurement
  const warm = pool.open(RATE, 1);
  feed(warm, chunk(1));
  await warm.finish();
  // the worker's own threads: what this process started with the pool
  const workerTids = readdirSync('/proc/self/task').filter((t) => !before.has(t));
  const workerCpu = () => workerTids.reduce((a, t) => a + cpuSeconds(`${process.pid}/task/${t}`), 0);
  const w0 = workerCpu();
  const chunks = Math.round((HOURS * 3600) / 2);
  const src = chunk(7);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const s = pool.open(RATE, 1);
  // in bursts, so the queue stays bounded
  for (let i = 0; i < chunks; i++) {
    feed(s, src);
    if (i % 200 === 199) await sleep(0);
  }
  const speech = await s.finish();
  const wallSec = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  const workerSec = workerCpu() - w0;
  await pool.stop();
  const cpuSec = (c.user + c.system) / 1e6;
  const audioHours = (chunks * 2) / 3600;
  return {
    what: `worker only (1 stream, as fast as it goes), ${dist}`,
    audioHours: round(audioHours, 3),
    cpuSec: round(cpuSec, 2),
    cpuSecPerStreamHour: round(cpuSec / audioHours, 2),
    workerThreadCpuSecPerStreamHour: round(workerSec / audioHours, 2),
    restCpuSecPerStreamHour: round((cpuSec - workerSec) / audioHours, 2),
    realtimeFactor: round((audioHours * 3600) / wallSec, 0),
    intervals: speech?.length ?? null,
    speechSec: speech === null ? null : round(speech.reduce((a, x) => a + x.end - x.start, 0) / RATE, 2),
  };
}

async function daemonRun(vad) {
  const d = await startDaemon({ config: { vad: { enabled: vad } } });
  removeAtExit(d.dataDir);
  try {
    const streams = [];
    for (let i = 0; i < N; i++) streams.push({ id: i, url: await d.egressUrl('bench-vad', `TR_${i}`, `p${i}`) });
    const gen = runGenerator({ streams, seconds: SECONDS, staggerMs: 1000 });
    const started = await gen.started;
    await gen.open;
    await sleep(500);
    const tA = Date.now();
    const cpuA = cpuSeconds(d.pid);
    const tEnd = started.endAtMs - 500;
    await sleep(Math.max(0, tEnd - Date.now()));
    const cpuB = cpuSeconds(d.pid);
    const windowSec = (Date.now() - tA) / 1000;
    await gen.done;
    // every recording completed, with speech as configured
    const deadline = Date.now() + 60_000;
    let done = [];
    for (;;) {
      try {
        done = readFileSync(join(d.dataDir, 'events.ndjson'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'recording.completed');
      } catch {
        done = [];
      }
      if (done.length >= N || Date.now() > deadline) break;
      await sleep(250);
    }
    const withSpeech = done.filter((e) => Array.isArray(e.speech)).length;
    const cpu = cpuB - cpuA;
    return {
      what: `daemon, ${N} live streams, vad ${vad ? 'on' : 'off'}`,
      windowSec: round(windowSec, 1),
      cpuSec: round(cpu, 2),
      cpuSecPerStreamHour: round((cpu / (N * windowSec)) * 3600, 2),
      completed: done.length,
      withSpeech,
    };
  } finally {
    await d.stop();
  }
}

function round(x, d) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

const rows = [];
for (let r = 0; r < ROUNDS; r++) for (const dist of DISTS) rows.push({ ...(await workerOnly(dist)), load1: loadavg()[0] });
if (!args['worker-only']) {
  const off = await daemonRun(false);
  await sleep(2000);
  const on = await daemonRun(true);
  rows.push(off, on, {
    what: 'VAD in the daemon: on − off',
    cpuSecPerStreamHour: round(on.cpuSecPerStreamHour - off.cpuSecPerStreamHour, 2),
    ratioOnOff: round(on.cpuSecPerStreamHour / off.cpuSecPerStreamHour, 2),
  });
}
printTable('VAD cost per stream-hour', rows);
saveResults('vad', { n: N, seconds: SECONDS, hours: HOURS, settings, rows }, rows.map((r) => JSON.stringify(r)).join('\n'));
process.exit(0);
