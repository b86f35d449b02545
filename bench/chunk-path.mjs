// The per-chunk path: N live streams with per-chunk objects and per-chunk dispatch to a local
// analysis receiver, against the same N streams with the master only, in the same run.
//
//   node bench/chunk-path.mjs [--quick] [--n 100,200,500] [--seconds 20] [--storage fs|s3]
//        [--chunk-seconds 2] [--config '{"storage":{"chunkUrls":true}}'] [--cpu-prof]
//        [--base-root <checkout>]   (another build, built: its master and chunk runs alternate with this one's)
//        [--client ws|raw|sim]   (the load generator's client, lib/generator.mjs; default ws)
//
// Per N and mode: daemon CPU over the steady window (every stream open, until 1 s before the
// common end) in cores and per stream-hour; chunk latency p50/p99 from a chunk's last frame to
// its object being stored (audio_ingestd_chunk_store_latency_seconds) and to the receiver's
// 200 (audio_ingestd_chunk_dispatch_latency_seconds), steady window, as upper bucket bounds;
// chunks stored / delivered / dropped over the whole run and dropped within the steady window;
// the generator's, the receiver's (a child process) and this process's CPU and event-loop lag
// over the same window, and the load average. Then the CPU ratio chunks ÷ master.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { histogramQuantile, metricSum, removeAtExit, saveResults, startDaemon, tempDir } from './lib/daemon.mjs';
import { cpuSeconds, loopLag, sleep } from './lib/proc.mjs';
import { runGenerator } from './lib/run-generator.mjs';
import { startS3rver } from './lib/s3rver.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const quick = Boolean(args.quick);
const NS = String(args.n ?? (quick ? '100' : '100,200,500')).split(',').map(Number);
const SECONDS = Number(args.seconds ?? (quick ? 12 : 20));
const STORAGE = String(args.storage ?? 'fs');
const CHUNK_SECONDS = Number(args['chunk-seconds'] ?? 2);
const EXTRA = args.config ? JSON.parse(String(args.config)) : {};
const CPU_PROF = Boolean(args['cpu-prof']);
const BASE_ROOT = args['base-root'] ? String(args['base-root']) : undefined;
const CLIENT = String(args.client ?? 'ws');

/** A local analysis endpoint in a child process (lib/chunk-receiver.mjs): reads each body, answers 200, counts. */
async function startReceiver() {
  const child = fork(fileURLToPath(new URL('./lib/chunk-receiver.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  /** { requests, bytes, cpuSec, lagP99Ms }, CPU and lag since the previous call. */
  const stats = () => new Promise((resolve) => {
    child.once('message', resolve);
    child.send({ stats: true });
  });
  return {
    url: `http://127.0.0.1:${port}/analyze`,
    pid: child.pid,
    stats,
    close: () => new Promise((r) => { child.once('exit', r); child.disconnect(); }),
  };
}

/** The 1-minute load average of the machine. */
const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
const benchLag = loopLag();

const q = (m, name, p, before) => {
  const r = histogramQuantile(m, name, p, before);
  return r.count === 0 ? '—' : r.le === Infinity ? '>10000' : `≤${Math.round(r.le * 1000)}`;
};

async function runOne(mode, n) {
  const receiver = await startReceiver();
  const s3 = STORAGE === 's3' ? await startS3rver() : null;
  const chunks = mode.startsWith('chunks');
  const base = mode.endsWith('@base');
  const profDir = CPU_PROF ? tempDir(`prof-${mode}`) : undefined;
  const d = await startDaemon({
    cpuProf: profDir,
    ...(base ? { root: BASE_ROOT } : {}),
    storage: s3 ? { s3: { endpoint: s3.endpoint, bucket: s3.bucket } } : 'fs',
    config: {
      livekit: { groupSeconds: CHUNK_SECONDS, maxStreams: 5000 },
      ...(chunks ? { chunkDispatch: { url: receiver.url, maxAttempts: 2 } } : {}),
      ...EXTRA,
      storage: { ...(chunks ? { chunkObjects: true } : {}), ...(EXTRA.storage ?? {}) },
    },
  });
  try {
    await sleep(1000);
    const streams = [];
    for (let i = 0; i < n; i++) streams.push({ id: `s${i}`, url: await d.egressUrl(`room-${i % 50}`, `TR_${i}`, `p${i}`) });
    const gen = runGenerator({ streams, seconds: SECONDS, staggerMs: Math.min(3000, n * 6), client: CLIENT });
    const { endAtMs } = await gen.started;
    await gen.open;
    await sleep(1000);
    const before = await d.metrics();
    const t0 = Date.now();
    const c0 = cpuSeconds(d.pid);
    const g0 = cpuSeconds(gen.pid);
    const b0 = cpuSeconds(process.pid);
    const load0 = loadAverage();
    await receiver.stats();
    benchLag.reset();
    await sleep(Math.max(0, endAtMs - 1000 - Date.now()));
    const c1 = cpuSeconds(d.pid);
    const g1 = cpuSeconds(gen.pid);
    const b1 = cpuSeconds(process.pid);
    const recv = await receiver.stats();
    const t1 = Date.now();
    const benchLagMs = benchLag.p99Ms();
    const steady = await d.metrics();
    const genResult = await gen.done;
    // every chunk of the end stored and delivered (or given up)
    await sleep(3000);
    const end = await d.metrics();
    // A machine too busy to open every stream well before the common end has no steady window:
    // say so instead of printing a CPU figure of an empty interval.
    const windowS = (t1 - t0) / 1000;
    if (windowS < 3) process.stderr.write(`${mode} N=${n}: steady window only ${windowS.toFixed(1)} s (streams opened late); no CPU figure\n`);
    const cores = windowS >= 3 ? (c1 - c0) / windowS : NaN;
    const drops = (m, base) => [...m].filter(([k, v]) => k.startsWith('audio_ingestd_frames_dropped_total{') && v - (base?.get(k) ?? 0) > 0).map(([k, v]) => `${/reason="([^"]+)"/.exec(k)?.[1]}:${v - (base?.get(k) ?? 0)}`).join(' ') || 0;
    const dropped = drops(end);
    const droppedSteady = drops(steady, before);
    return {
      mode,
      N: n,
      'open': metricSum(before, 'audio_ingestd_streams_active'),
      'window s': windowS,
      'cpu cores': cores,
      'cpu s/stream-h': (cores * 3600) / n,
      'stored p50 ms': chunks ? q(steady, 'audio_ingestd_chunk_store_latency_seconds', 0.5, before) : '—',
      'stored p99 ms': chunks ? q(steady, 'audio_ingestd_chunk_store_latency_seconds', 0.99, before) : '—',
      'delivered p50 ms': chunks ? q(steady, 'audio_ingestd_chunk_dispatch_latency_seconds', 0.5, before) : '—',
      'delivered p99 ms': chunks ? q(steady, 'audio_ingestd_chunk_dispatch_latency_seconds', 0.99, before) : '—',
      chunks: metricSum(end, 'audio_ingestd_chunks_total'),
      stored: chunks ? metricSum(end, 'audio_ingestd_chunk_store_latency_seconds_count') : 0,
      delivered: (await receiver.stats()).requests,
      dropped,
      'dropped (steady)': droppedSteady,
      'lag p99 ms': steady.get('audio_ingestd_nodejs_eventloop_lag_p99_seconds') * 1000,
      'gen errors': genResult.streams.filter((s) => s.error).length,
      // the other processes on the same cores over the same window: a generator or receiver that
      // is short of CPU or lags paces the run badly, which is not the daemon's doing
      'gen cores': windowS >= 3 ? (g1 - g0) / windowS : NaN,
      'gen lag p99 ms': genResult.lagP99Ms,
      'recv cores': chunks && windowS >= 3 ? recv.cpuSec / windowS : '—',
      'recv lag p99 ms': chunks ? recv.lagP99Ms : '—',
      'bench cores': windowS >= 3 ? (b1 - b0) / windowS : NaN,
      'bench lag p99 ms': benchLagMs,
      load: `${load0}→${loadAverage()}`,
    };
  } finally {
    await d.stop();
    if (profDir) process.stdout.write(`cpu profile of ${mode} N=${n}: ${profDir}\n`);
    await receiver.close();
    await s3?.stop();
    removeAtExit(d.dataDir);
    removeAtExit(s3?.directory);
  }
}

const rows = [];
const ratios = [];
for (const n of NS) {
  for (const build of BASE_ROOT ? ['@base', ''] : ['']) {
    const master = await runOne(`master${build}`, n);
    rows.push(master);
    await sleep(2000);
    const chunk = await runOne(`chunks${build}`, n);
    rows.push(chunk);
    ratios.push({ N: n, build: build === '' ? 'this' : BASE_ROOT, 'cpu ratio chunks/master': chunk['cpu cores'] / master['cpu cores'] });
    await sleep(2000);
  }
}
const title = `chunk path: ${STORAGE}, ${CHUNK_SECONDS} s chunks, ${SECONDS} s streams, client ${CLIENT}${Object.keys(EXTRA).length ? `, config ${JSON.stringify(EXTRA)}` : ''}`;
const md = `${printTable(title, rows)}\n${printTable('CPU ratio (same run)', ratios)}`;
saveResults('chunk-path', { rows, ratios, client: CLIENT, storage: STORAGE, seconds: SECONDS, chunkSeconds: CHUNK_SECONDS, extra: EXTRA }, md);
