#!/usr/bin/env node
// Live audio out: what GET /v1/live costs the daemon.
//
//   node bench/live-out.mjs [--streams 200] [--seconds 20] [--rate 16000] [--batch-ms 20] [--filter speech|archive]
//                           [--room-size 1] [--gap-seconds 5] [--no-reconnect] [--cpu-prof <dir>] [--root <checkout>]
//
// One daemon (fs store), N egress streams paced in real time (10 ms frames of 48 kHz stereo).
// Phase A: the streams with no subscriber; phase B: the same streams, each with one subscriber
// at --rate from its live edge; then phase A again once the subscribers have left. All run in the
// same daemon, so the CPU ratio B ÷ mean(A before, A after) compares like with like and a
// baseline that drifts during the run is seen (`baselineDrift`: A after ÷ A before). Reported: daemon CPU per phase and their ratio, the
// daemon's delivery latency histogram (frame arrival → handed to the subscriber's socket, p50/p99
// as bucket bounds), the consumers' own end-to-end latency (frame sent by egress → audio of that
// frame received), overflows, and whether every consumer's offsets stayed contiguous.
// --room-size K: the streams are K participants per room and each room has one subscriber of the
// whole room (roomName=, K tracks on one socket) instead of one per stream.
//
// Then the moment a consumer lives through when its network blips: every subscriber's socket is
// cut at once (no close handshake), and after --gap-seconds all of them reconnect together with
// `from=` the offset after the last sample each received. Reported: the time until each one's audio
// is back at the live edge (p50 / max), the daemon's CPU for the reconnect above the steady rate
// with subscribers (ms per reconnect), whether every resumed stream started exactly at its
// `from` and stayed contiguous (no gap, no overlap), egress frames dropped, overflows and the
// event loop's longest delay in the window, and the senders' share of real time meanwhile.
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { histogramQuantile, metricSum, removeAtExit, saveResults, startDaemon } from './lib/daemon.mjs';
import { cpuSplit, percentile } from './lib/proc.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const N = Number(args.streams ?? 200);
const SECONDS = Number(args.seconds ?? 20);
const RATE = Number(args.rate ?? 16000);
const RECONNECT = args['no-reconnect'] === undefined;
const ROOM_SIZE = Number(args['room-size'] ?? 1);
const roomOf = (i) => (ROOM_SIZE > 1 ? `bench-room-${Math.floor(i / ROOM_SIZE)}` : 'bench-live');
const GAP_MS = Number(args['gap-seconds'] ?? 5) * 1000;
/** The reconnect's window: at least this long, and until every consumer is back at the live edge. */
const RECONNECT_WINDOW_MS = 10_000;
const FRAME_BYTES = 1920; // 10 ms of 48 kHz stereo
const WARMUP_MS = 3000;

function toneFrames(count) {
  const frames = [];
  for (let k = 0; k < count; k++) {
    const b = Buffer.alloc(FRAME_BYTES);
    for (let i = 0; i < 480; i++) {
      const v = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (k * 480 + i)) / 48000));
      b.writeInt16LE(v, i * 4);
      b.writeInt16LE(v, i * 4 + 2);
    }
    frames.push(b);
  }
  return frames;
}

// --cpu-prof <dir>: the daemon writes a V8 CPU profile there when it stops; --batch-ms: live.batchMs;
// --root: the checkout whose build runs as the daemon (another build for A/B runs, alternated in one lock hold)
// --filter: live.filter (the daemon's default when not given)
const BATCH_MS = args['batch-ms'] === undefined ? undefined : Number(args['batch-ms']);
const FILTER = args.filter === undefined ? {} : { filter: String(args.filter) };
const daemon = await startDaemon({ config: { live: { maxSubscribersPerTenant: 100_000, ...FILTER, ...(BATCH_MS === undefined ? {} : { batchMs: BATCH_MS }) } }, cpuProf: args['cpu-prof'], ...(args.root === undefined ? {} : { root: args.root }) });
// the first egress connection of a daemon started with --cpu-prof can be aborted as it opens: a throwaway one goes first
{
  const w = new WebSocket(await daemon.egressUrl('bench-warmup', 'TR_warmup', 'warmup'), { headers: { 'Content-Type': 'audio/x-raw' }, perMessageDeflate: false });
  w.on('error', () => undefined);
  await new Promise((resolve) => w.once('open', resolve));
  w.close();
}
removeAtExit(daemon.dataDir);
const frames = toneFrames(100);

// egress streams, paced by one timer as LiveKit would (catching up after a late tick)
const streams = [];
for (let i = 0; i < N; i++) {
  const url = await daemon.egressUrl(roomOf(i), `TR_${i}`, `p${i}`);
  const ws = new WebSocket(url, { headers: { 'Content-Type': 'audio/x-raw' }, perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.on('error', () => undefined);
  streams.push({ ws, sent: 0 });
}
// when each frame was sent (ms since the epoch), shared with the consumers' thread for the end-to-end latency
const MAX_FRAMES = (2 * SECONDS + 30) * 100;
const SENT_AT = new Float64Array(new SharedArrayBuffer(8 * N * MAX_FRAMES));
// frames sent per stream, for the consumers' live edge
const SENT_COUNT = new Int32Array(new SharedArrayBuffer(4 * N));
const t0 = performance.now();
const ticker = setInterval(() => {
  const due = Math.floor((performance.now() - t0) / 10);
  streams.forEach((s, i) => {
    while (s.sent < due) {
      s.ws.send(frames[s.sent % frames.length], { binary: true });
      if (s.sent < MAX_FRAMES) SENT_AT[i * MAX_FRAMES + s.sent] = performance.timeOrigin + performance.now();
      s.sent++;
    }
    SENT_COUNT[i] = s.sent;
  });
}, 5);
const framesSent = () => streams.reduce((sum, s) => sum + s.sent, 0);

async function recordingIds() {
  // the catalog API lists each room's recordings; wait until every stream is there
  const byTrack = new Map();
  for (let tries = 0; tries < 100 && byTrack.size < N; tries++) {
    for (const room of new Set(streams.map((_, i) => roomOf(i)))) {
      const r = await fetch(`${daemon.base}/v1/recordings?roomName=${room}&limit=1000`, { headers: { apikey: daemon.apiKey } });
      if (!r.ok) continue;
      const body = await r.json();
      const list = body.recordings ?? body.items ?? body;
      if (Array.isArray(list)) for (const x of list) byTrack.set(x.trackId ?? x.track_id, x.recordingId ?? x.recording_id ?? x.id);
    }
    if (byTrack.size < N) await sleep(200);
  }
  if (byTrack.size < N) throw new Error('the recordings of the streams did not appear in the catalog');
  return byTrack;
}

/** prom-client's event-loop delay resets at every scrape: read at a window's end, its longest delay. */
const eventLoopMaxMs = (m) => Number((1000 * metricSum(m, 'audio_ingestd_nodejs_eventloop_lag_max_seconds')).toFixed(1));
/** The monotonic clock in µs, as a V8 CPU profile's timestamps (for profile-summary's --from/--to). */
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

async function phase(name, ms) {
  const m0 = await daemon.metrics();
  const s0 = cpuSplit(daemon.pid);
  const w0 = performance.now();
  const f0 = framesSent();
  await sleep(ms);
  const s1 = cpuSplit(daemon.pid);
  const w1 = performance.now();
  const f1 = framesSent();
  const m1 = await daemon.metrics();
  // the share of real time the senders kept up with (a saturated bench makes the phases unlike)
  const ingest = (f1 - f0) / (((w1 - w0) / 10) * N);
  const user = s1.user - s0.user;
  const system = s1.system - s0.system;
  return { name, cpuSec: user + system, user, system, wallSec: (w1 - w0) / 1000, ingest, eventLoopMaxMs: eventLoopMaxMs(m1), m0, m1 };
}

await sleep(WARMUP_MS);
const a = await phase('no subscribers', SECONDS * 1000);

// one subscriber per stream, from its live edge, on the consumers' own thread
const ids = await recordingIds();
const consumers = new Worker(new URL('./lib/live-consumers.mjs', import.meta.url), {
  workerData: { wsBase: daemon.base.replace('http', 'ws'), apiKey: daemon.apiKey, rate: RATE, ids: streams.map((_, i) => ids.get(`TR_${i}`)), rooms: ROOM_SIZE > 1 ? streams.map((_, i) => roomOf(i)) : undefined, sentAt: SENT_AT.buffer, sentCount: SENT_COUNT.buffer, maxFrames: MAX_FRAMES },
});
const fromConsumers = (type) => new Promise((resolve, reject) => {
  const on = (m) => {
    if (m.type === 'refused') reject(new Error(`subscriber ${m.i} refused: ${m.status} ${m.body}`));
    else if (m.type === type) {
      consumers.off('message', on);
      resolve(m);
    }
  };
  consumers.on('message', on);
  consumers.once('error', reject);
});
await fromConsumers('open');
await sleep(WARMUP_MS);
consumers.postMessage('measure');
const b = await phase(ROOM_SIZE > 1 ? `one subscriber per room of ${ROOM_SIZE}` : 'one subscriber each', SECONDS * 1000);
consumers.postMessage('pause');

let reconnect;
if (RECONNECT) {
  await sleep(1000);
  const dropped = fromConsumers('dropped');
  consumers.postMessage('drop');
  await dropped;
  await sleep(GAP_MS);
  const m0 = await daemon.metrics();
  const s0 = cpuSplit(daemon.pid);
  const w0 = performance.now();
  const mono0 = monoUs();
  const f0 = framesSent();
  const caught = fromConsumers('caught-up');
  const reopened = fromConsumers('open');
  consumers.postMessage('reconnect');
  const openMs = (await reopened, performance.now() - w0);
  const { ms } = await Promise.race([caught, sleep(60_000).then(() => { throw new Error('the reconnected consumers did not reach the live edge within 60 s'); })]);
  const left = RECONNECT_WINDOW_MS - (performance.now() - w0);
  if (left > 0) await sleep(left);
  const s1 = cpuSplit(daemon.pid);
  const w1 = performance.now();
  const f1 = framesSent();
  const m1 = await daemon.metrics();
  if (args['cpu-prof'] !== undefined) console.log(`profile window of the reconnect: --from ${mono0} --to ${monoUs()}`);
  const wallSec = (w1 - w0) / 1000;
  const cpuSec = s1.user + s1.system - s0.user - s0.system;
  const steadyRate = b.cpuSec / b.wallSec;
  reconnect = {
    name: 'reconnect',
    cpuSec,
    user: s1.user - s0.user,
    system: s1.system - s0.system,
    wallSec,
    ingest: (f1 - f0) / (((w1 - w0) / 10) * N),
    gapSeconds: GAP_MS / 1000,
    allOpenMs: Math.round(openMs),
    caughtUpP50Ms: Math.round(percentile(ms, 50)),
    caughtUpMaxMs: Math.round(Math.max(...ms)),
    extraCpuMsPerTrack: Number(((1000 * (cpuSec - steadyRate * wallSec)) / N).toFixed(2)),
    framesDropped: metricSum(m1, 'audio_ingestd_frames_dropped_total') - metricSum(m0, 'audio_ingestd_frames_dropped_total'),
    overflows: metricSum(m1, 'audio_ingestd_live_overflows_total') - metricSum(m0, 'audio_ingestd_live_overflows_total'),
    eventLoopMaxMs: eventLoopMaxMs(m1),
    sentMB: Number(((metricSum(m1, 'audio_ingestd_live_bytes_sent_total') - metricSum(m0, 'audio_ingestd_live_bytes_sent_total')) / 1e6).toFixed(2)),
  };
}
const done = fromConsumers('done');
consumers.postMessage('stop');
const { e2e, problems, closedEarly, resumeProblems } = await done;
await consumers.terminate();

// the streams alone again: the phase with subscribers is bracketed by two without, so a baseline
// that drifts during the run (it moved 14–19 % between runs of one build) shows, and the ratio
// is taken against the mean of both
await sleep(WARMUP_MS);
const a2 = await phase('no subscribers, after', SECONDS * 1000);

clearInterval(ticker);
for (const s of streams) s.ws.close();
await sleep(2000);
await daemon.stop();

const hist = 'audio_ingestd_live_delivery_latency_seconds';
const p50 = histogramQuantile(b.m1, hist, 0.5, b.m0);
const p99 = histogramQuantile(b.m1, hist, 0.99, b.m0);
const overflows = metricSum(b.m1, 'audio_ingestd_live_overflows_total') - metricSum(b.m0, 'audio_ingestd_live_overflows_total');
const sentBytes = metricSum(b.m1, 'audio_ingestd_live_bytes_sent_total') - metricSum(b.m0, 'audio_ingestd_live_bytes_sent_total');
const ratio = b.cpuSec / b.wallSec / ((a.cpuSec / a.wallSec + a2.cpuSec / a2.wallSec) / 2);
const row = (x) => ({ phase: x.name, streams: N, 'daemon CPU %': ((100 * x.cpuSec) / x.wallSec).toFixed(1), 'ms CPU / stream·s': ((1000 * x.cpuSec) / x.wallSec / N).toFixed(3), 'user / system %': `${((100 * x.user) / x.wallSec).toFixed(1)} / ${((100 * x.system) / x.wallSec).toFixed(1)}`, 'ingest % of real time': (100 * x.ingest).toFixed(1), 'event loop max ms': x.eventLoopMaxMs });
const rows = [a, b, ...(reconnect ? [reconnect] : []), a2].map(row);
const summary = {
  streams: N,
  roomSize: ROOM_SIZE,
  subscribers: ROOM_SIZE > 1 ? Math.ceil(N / ROOM_SIZE) : N,
  batchMs: BATCH_MS ?? 'default',
  root: args.root ?? 'this checkout',
  loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
  seconds: SECONDS,
  rate: RATE,
  cpuRatio: Number(ratio.toFixed(3)),
  baselineDrift: Number(((a2.cpuSec / a2.wallSec) / (a.cpuSec / a.wallSec)).toFixed(3)),
  deliveryP50Ms: p50.le * 1000,
  deliveryP99Ms: p99.le * 1000,
  deliveryMessages: p99.count,
  endToEndP50Ms: Number(percentile(e2e, 50).toFixed(2)),
  endToEndP99Ms: Number(percentile(e2e, 99).toFixed(2)),
  overflows,
  offsetGaps: problems,
  closedEarly,
  liveMBps: Number((sentBytes / b.wallSec / 1e6).toFixed(3)),
  ...(reconnect === undefined
    ? {}
    : {
        reconnect: { ...Object.fromEntries(Object.entries(reconnect).filter(([k]) => !['name', 'user', 'system'].includes(k))), resumeProblems },
      }),
};
printTable(`live audio out: ${N} streams, ${SECONDS} s per phase, ${ROOM_SIZE > 1 ? `rooms of ${ROOM_SIZE}, one room subscriber each` : "one subscriber per stream"} at ${RATE} Hz`, rows);
console.log(JSON.stringify(summary, null, 2));
const md = [
  `| phase | streams | daemon CPU % | user / system % | ms CPU per stream·s | ingest % of real time | event loop max ms |`,
  `|---|---:|---:|---:|---:|---:|---:|`,
  ...rows.map((r) => `| ${r.phase} | ${r.streams} | ${r['daemon CPU %']} | ${r['user / system %']} | ${r['ms CPU / stream·s']} | ${r['ingest % of real time']} | ${r['event loop max ms']} |`),
  '',
  `CPU ratio (with ÷ the mean of the phases without subscribers before and after): **${summary.cpuRatio}×** (target ≤ 1.5×). Delivery latency in the daemon (frame arrival → send), p50 ≤ ${summary.deliveryP50Ms} ms, p99 ≤ ${summary.deliveryP99Ms} ms (bucket bounds, ${summary.deliveryMessages} messages; target ≤ 50 ms). End to end (egress send → consumer receive, same machine): p50 ${summary.endToEndP50Ms} ms, p99 ${summary.endToEndP99Ms} ms. Overflows at steady state: ${overflows}; offset gaps: ${problems}; consumers closed early: ${closedEarly}; live audio out ${summary.liveMBps} MB/s. Load average at the end: ${summary.loadAverage.join(', ')}.`,
  ...(reconnect === undefined
    ? []
    : [
        '',
        `Reconnect (every subscriber cut at once, back after ${reconnect.gapSeconds} s with \`from=\`): all open in ${reconnect.allOpenMs} ms; back at the live edge in p50 ${reconnect.caughtUpP50Ms} ms, max ${reconnect.caughtUpMaxMs} ms; ${reconnect.sentMB} MB sent (catch-up and live) in the ${reconnect.wallSec.toFixed(1)} s window; CPU above the steady rate **${reconnect.extraCpuMsPerTrack} ms per track resumed**; resumed streams not starting at their \`from\`: ${resumeProblems}; egress frames dropped: ${reconnect.framesDropped}; overflows: ${reconnect.overflows}; longest event-loop delay ${reconnect.eventLoopMaxMs} ms; senders at ${(100 * reconnect.ingest).toFixed(1)} % of real time.`,
      ]),
].join('\n');
saveResults('live-out', summary, md);
console.log(md);
process.exit(0);
