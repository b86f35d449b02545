// Scenario 1 — live streams, in the phases users live through: N concurrent LiveKit egress
// streams (real-time pacing, generator in its own process) start over up to 3 s (setup), run
// (live) and all end in the same second (finalize: a meeting ending), through the whole daemon
// to the fs store and to s3rver, against a uWS server that only counts bytes (the raw drain)
// and a plain `ws` + Buffer.concat + fs.writeFile receiver, in the same run.
//
//   node bench/live-streams.mjs [--quick] [--n 50,200,500] [--seconds 25] [--clients sim,ws,raw]
//        [--targets uws-raw,ws-baseline,daemon-fs,daemon-s3] [--cpu-prof] [--no-chunk-objects] [--json out.json]
//        [--s3rver-disk] [--s3rver-prof]
//        [--config '{"vad":{"enabled":false}}']   (merged into the daemon's config file)
//        [--base-root <checkout>]   (another build, built, for targets ending in @base)
// Daemon targets take suffixes, so one invocation can alternate builds and settings:
// `daemon-fs:vad-off` (vad.enabled false), `daemon-fs@base` (the build in --base-root).
//   node bench/live-streams.mjs --scenario meeting-ends [--n 200,500] [--seconds 75] [--clients ws|raw] [--warmup W]
//        (defaults: uws-raw,daemon-fs,daemon-s3, master only; every master has 2+ parts)
//
// Phases, each as daemon CPU per stream and RSS peak growth per stream (from before the first
// URL is minted):
//   setup    — mint the URLs, connect every stream (until all are open + 0.5 s); the live audio
//              of streams already open in that window is subtracted at the live phase's rate;
//              `--warmup W` first runs W streams of 3 s to their end, so setup is measured on
//              a process whose code is compiled (a meeting starting on a running daemon);
//   live     — the steady window with every stream open, also per stream-hour;
//   finalize — from the common end to the last recording.completed (baselines: the last close);
//   whole    — from the first mint to the last recording.completed.
// With --cpu-prof each row also gives the phases' bounds on the monotonic clock the profiles use
// (`profile windows`), for `node bench/lib/profile-summary.mjs <dir> 25 --from <µs> --to <µs>`.
// Also the event loop's lag p99 / max from 1 s before the common end to the last completion
// (`finalize lag`). daemon-s3: s3rver's own CPU in each phase next to the daemon's (`… CPU s`,
// both in CPU-seconds), and, from the daemon's side (bench/lib/s3-request-times.mjs), when it had
// sent its last CompleteMultipartUpload and when the last one was answered (`last complete
// sent / answered s`, from the common end; likewise the last UploadPart answered). s3rver runs
// in its own process with its directory on tmpfs (/dev/shm; `--s3rver-disk`: on the bench's
// disk), `--s3rver-prof` writes its CPU profile.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { saveResults, histogramQuantile, metricSum, removeAtExit, startDaemon, tempDir } from './lib/daemon.mjs';
import { cpuSplit, MiB, rssBytes, rssSampler, sleep } from './lib/proc.mjs';
import { runGenerator } from './lib/run-generator.mjs';
import { startS3rver } from './lib/s3rver.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const quick = Boolean(args.quick);
const meeting = args.scenario === 'meeting-ends';
const NS = String(args.n ?? (meeting ? (quick ? '50' : '200,500') : quick ? '50,200' : '50,200,500')).split(',').map(Number);
const SECONDS = Number(args.seconds ?? (meeting ? (quick ? 20 : 75) : quick ? 15 : 25));
const TARGETS = String(args.targets ?? (meeting ? 'uws-raw,daemon-fs,daemon-s3' : 'uws-raw,ws-baseline,daemon-fs,daemon-s3')).split(',');
const CLIENTS = String(args.clients ?? (meeting ? 'ws' : 'sim,ws')).split(',');
const CHUNK_OBJECTS = meeting ? Boolean(args['chunk-objects']) : !args['no-chunk-objects'];
const CHUNK_SECONDS = 2;
const S3RVER_MEMORY = !args['s3rver-disk'];
const S3RVER_PROF = Boolean(args['s3rver-prof']);
const EXTRA_CONFIG = args.config ? JSON.parse(String(args.config)) : {};
const WARMUP = Number(args.warmup ?? 0);

/** Microseconds on CLOCK_MONOTONIC: the clock of V8's CPU profiles (startTime, timeDeltas). */
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

const cpuOf = (pid) => {
  const c = cpuSplit(pid);
  return { total: c.user + c.system, system: c.system };
};

/** Sleeps until epoch ms `at`. */
const until = (at) => sleep(Math.max(0, at - Date.now()));

/** Runs one target at one N with one client; returns a result row. */
export async function runLive(target, n, seconds, { cpuProf = false, client = 'sim' } = {}) {
  const staggerMs = Math.min(3000, n * 6);
  const server = await startTarget(target, cpuProf);
  try {
    await sleep(1000);
    // --warmup W: W streams of 3 s start and end first, so the measured round meets a process
    // whose code is compiled (a meeting starting on a daemon that has been running) rather than
    // the first streams of a fresh process
    if (WARMUP > 0) {
      const warm = runGenerator({ streams: await server.streams(WARMUP, 'w'), seconds: 3, staggerMs: Math.min(1000, WARMUP * 6), client });
      await warm.done;
      const until = Date.now() + 60_000;
      while ((await server.finalized()).count < WARMUP && Date.now() < until) await sleep(50);
      await sleep(1000);
    }
    const rss0 = rssBytes(server.pid);
    const rss = rssSampler(server.pid, 100);
    const tA = Date.now();
    const mA = monoUs();
    const cpuA = cpuOf(server.pid);
    const storeCpu = () => (server.storePid ? cpuOf(server.storePid).total : null);
    const storeA = storeCpu();
    // setup: mint, connect
    const streams = await server.streams(n);
    const gen = runGenerator({ streams, seconds, staggerMs, client });
    const { endAtMs } = await gen.started;
    const { open: opened } = await gen.open;
    await sleep(500);
    const tS = Date.now();
    const mS = monoUs();
    const cpuS = cpuOf(server.pid);
    const storeS = storeCpu();
    const setupPeak = rss.peak;
    // live: every stream open, until 1 s before the common end
    await sleep(500);
    await server.resetLag();
    rss.reset();
    const tL0 = Date.now();
    const mL0 = monoUs();
    const cpuL0 = cpuOf(server.pid);
    const storeL0 = storeCpu();
    await until(endAtMs - 1000);
    const cpuL1 = cpuOf(server.pid);
    const storeL1 = storeCpu();
    const tL1 = Date.now();
    const mL1 = monoUs();
    const live = await server.sample();
    const livePeak = rss.peak;
    // finalize: from the common end to the last completion
    await until(endAtMs);
    const mE = monoUs();
    const cpuE = cpuOf(server.pid);
    const storeE = storeCpu();
    rss.reset();
    const deadline = Date.now() + 180_000;
    let fin = await server.finalized();
    while (fin.count < n + WARMUP && Date.now() < deadline) {
      await sleep(50);
      fin = await server.finalized();
    }
    const tF = Date.now();
    const mF = monoUs();
    const cpuF = cpuOf(server.pid);
    const storeF = storeCpu();
    const finPeak = rss.stop();
    // the event loop from the live sample (1 s before the end) to the last completion
    const finLoop = await server.sample();
    const s3 = (await server.s3Times?.(endAtMs)) ?? null;
    const genResult = await gen.done;
    const stored = await server.stored(n, genResult.streams);
    const sent = genResult.streams.reduce((s, x) => s + x.bytesSent, 0);
    const errors = genResult.streams.filter((s) => s.error || (s.closeCode !== 1000 && s.closeCode !== 1005));
    let lostBytes = 0;
    for (const s of genResult.streams) lostBytes += Math.max(0, s.bytesSent - (stored.get(s.id) ?? 0));

    const liveSec = (tL1 - tL0) / 1000;
    const liveCpu = cpuL1.total - cpuL0.total;
    const livePerStreamSec = liveCpu / (n * liveSec);
    // stream-seconds of audio already flowing during setup (stream i opened about genT0 + i·gap)
    const genT0 = endAtMs - seconds * 1000 - staggerMs;
    const gap = n > 1 ? staggerMs / (n - 1) : 0;
    let setupStreamSec = 0;
    for (let i = 0; i < n; i++) setupStreamSec += Math.max(0, tS - (genT0 + i * gap)) / 1000;
    const setupCpu = cpuS.total - cpuA.total - livePerStreamSec * setupStreamSec;
    const finCpu = cpuF.total - cpuE.total;
    const wholeCpu = cpuF.total - cpuA.total;
    const perStreamKiB = (peak) => (peak - rss0) / n / 1024;
    const row = {
      target,
      client,
      N: n,
      open: opened,
      'setup ms/stream': (1000 * setupCpu) / n,
      'setup RSS KiB/stream': perStreamKiB(setupPeak),
      'live s/stream-h': livePerStreamSec * 3600,
      'live kernel %': (100 * (cpuL1.system - cpuL0.system)) / Math.max(liveCpu, 1e-9),
      'live RSS KiB/stream': perStreamKiB(livePeak),
      'finalize ms/stream': (1000 * finCpu) / n,
      'finalize kernel %': (100 * (cpuF.system - cpuE.system)) / Math.max(finCpu, 1e-9),
      'finalize RSS KiB/stream': perStreamKiB(finPeak),
      'daemon setup CPU s': cpuS.total - cpuA.total,
      's3rver setup CPU s': storeS === null ? null : storeS - storeA,
      'daemon live CPU s': liveCpu,
      's3rver live CPU s': storeL1 === null ? null : storeL1 - storeL0,
      'daemon finalize CPU s': finCpu,
      's3rver finalize CPU s': storeF === null ? null : storeF - storeE,
      'last part answered s': s3?.lastPartAnswered ?? null,
      'last complete sent s': s3?.lastCompleteSent ?? null,
      'last complete answered s': s3?.lastCompleteAnswered ?? null,
      'completes sent': s3?.completes ?? null,
      'S3 requests/stream (finalize)': s3 ? s3.requests / n : null,
      'finalize S3 ops': s3 ? Object.entries(s3.byOp).filter(([, v]) => v > 0).map(([k, v]) => `${k}:${v}`).join(' ') : null,
      'finalize wall s': fin.count < n + WARMUP ? null : ((fin.lastAtMs ?? tF) - endAtMs) / 1000,
      completed: fin.count - WARMUP,
      failed: fin.failed ?? 0,
      'whole ms/stream': (1000 * wholeCpu) / n,
      'whole RSS KiB/stream': perStreamKiB(Math.max(setupPeak, livePeak, finPeak)),
      'RSS peak MiB': Math.max(setupPeak, livePeak, finPeak) / MiB,
      'lag p99 ms': live.lagP99Ms,
      'finalize lag p99 ms': finLoop.lagP99Ms,
      'finalize lag max ms': finLoop.lagMaxMs ?? null,
      'frames lost': Math.round(lostBytes / 1920),
      'drops (live window)': live.drops ?? null,
      'sent MiB': sent / MiB,
      'chunk p99 ms (steady / all)': CHUNK_OBJECTS ? ((await server.latencyP99Ms()) ?? null) : null,
      'gen lag p99 ms': genResult.lagP99Ms,
      'gen cpu %': (100 * genResult.cpuSec) / ((tF - tA) / 1000),
      errors: errors.length,
      load1: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
    };
    if (cpuProf) row['profile windows'] = `setup ${mA}-${mS} live ${mL0}-${mL1} finalize ${mE}-${mF}`;
    if (errors.length) {
      row.firstError = errors[0].error ?? `close ${errors[0].closeCode}`;
      const streamErrors = errors.map((e) => ({ id: e.id, closeCode: e.closeCode, error: e.error, bytesSent: e.bytesSent }));
      process.stdout.write(`  streams that did not end normally: ${JSON.stringify(streamErrors.slice(0, 5))}\n`);
      for (const line of server.logTail?.() ?? []) process.stdout.write(`  ${target} log: ${line}\n`);
    }
    return row;
  } finally {
    await server.stop();
  }
}

async function startTarget(target, cpuProf) {
  if (/^daemon-(fs|s3)(:vad-off)?(@base)?$/.test(target)) return startDaemonTarget(target, cpuProf);
  if (target === 'ws-baseline') return startBaseline('ws-concat-server.mjs', 1);
  if (target === 'uws-raw') return startBaseline('uws-drain-server.mjs', 1);
  throw new Error(`unknown target ${target}`);
}

/** Daemon with per-chunk objects on (the chunk latency histogram needs them; the ws baseline writes chunks too). */
async function startDaemonTarget(target, cpuProf) {
  const onS3 = target.startsWith('daemon-s3');
  const s3ProfDir = onS3 && S3RVER_PROF ? tempDir('prof-s3rver') : undefined;
  const s3 = onS3 ? await startS3rver('bench', { memory: S3RVER_MEMORY, cpuProf: s3ProfDir }) : undefined;
  const profDir = cpuProf ? tempDir(`prof-${target.replace(/[^a-z0-9-]/g, '_')}`) : undefined;
  if (target.endsWith('@base') && !args['base-root']) throw new Error(`${target} needs --base-root <checkout>`);
  const timesFile = s3 ? join(tempDir('s3-times'), 'times.json') : undefined;
  const d = await startDaemon({
    storage: s3 ? { s3: { endpoint: s3.endpoint, bucket: s3.bucket } } : 'fs',
    config: {
      ...EXTRA_CONFIG,
      ...(target.includes(':vad-off') ? { vad: { ...(EXTRA_CONFIG.vad ?? {}), enabled: false } } : {}),
      storage: { ...(EXTRA_CONFIG.storage ?? {}), chunkObjects: CHUNK_OBJECTS },
    },
    cpuProf: profDir,
    ...(target.endsWith('@base') ? { root: String(args['base-root']) } : {}),
    ...(s3 ? { execArgv: ['--import', fileURLToPath(new URL('./lib/s3-request-times.mjs', import.meta.url))], env: { BENCH_S3_TIMES: timesFile } } : {}),
  });
  const s3c = s3 && new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  let before = new Map();
  const fin = { count: 0, failed: 0, lastAtMs: undefined };
  let eventsPos = 0;
  let eventsRest = '';
  let nStreams = 0;
  let lagP99Ms = NaN;
  let steady;
  const masters = async () => {
    const out = new Map(); // trackId → key
    if (s3c) {
      // One listing per track: s3rver cannot page a listing (its continuation token uses a cipher
      // OpenSSL 3 refuses, so any listing past 1 000 keys is an InternalError).
      for (let i = 0; i < nStreams; i += 25) {
        await Promise.all(Array.from({ length: Math.min(25, nStreams - i) }, async (_, k) => {
          const j = i + k;
          const r = await s3c.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `recordings/default/bench-room/p${j}/t${j}/` }));
          for (const o of r.Contents ?? []) if (!o.Key.includes('/chunks/') && o.Key.endsWith('.wav')) out.set(o.Key.split('/').at(-2), o.Key);
        }));
      }
    } else {
      for (const f of await readdir(join(d.dataDir, 'store/objects/recordings'), { recursive: true }).catch(() => [])) {
        if (!f.includes('/chunks/') && f.endsWith('.wav')) out.set(f.split('/').at(-2), join(d.dataDir, 'store/objects/recordings', f));
      }
    }
    return out;
  };
  const head = async (key) => {
    if (s3c) {
      const r = await s3c.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key, Range: 'bytes=0-4095' }));
      return Buffer.from(await r.Body.transformToByteArray());
    }
    const fh = await open(key, 'r');
    try {
      const b = Buffer.alloc(4096);
      const { bytesRead } = await fh.read(b, 0, 4096, 0);
      return b.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  };
  return {
    pid: d.pid,
    storePid: s3?.pid,
    logTail: () => d.logTail(),
    async streams(n, prefix = 't') {
      if (prefix === 't') nStreams = n;
      const out = [];
      for (let i = 0; i < n; i += 25) {
        const batch = [];
        for (let j = i; j < Math.min(n, i + 25); j++) batch.push(d.egressUrl('bench-room', `${prefix}${j}`, `p${prefix}${j}`).then((url) => ({ id: `${prefix}${j}`, url })));
        out.push(...(await Promise.all(batch)));
      }
      return out;
    },
    async resetLag() {
      before = await d.metrics(); // a scrape resets prom-client's event-loop histogram
    },
    /** The daemon's S3 requests sent from `sinceMs` on and answered: the last UploadPart answered, the last CompleteMultipartUpload sent and answered (s after `sinceMs`). */
    async s3Times(sinceMs) {
      if (!timesFile) return null;
      await sleep(1200); // the hook appends once a second
      let text;
      try {
        text = readFileSync(timesFile, 'utf8');
      } catch {
        return null;
      }
      const byOp = {};
      for (const line of text.split('\n')) {
        const [op, sent, answered] = line.split(' ');
        if (op && Number(sent) >= sinceMs) (byOp[op] ??= []).push([Number(sent), Number(answered)]);
      }
      const lastOf = (list = [], i) => (list.length === 0 ? null : (Math.max(...list.map((r) => r[i])) - sinceMs) / 1000);
      const completes = byOp.CompleteMultipartUpload ?? [];
      return {
        lastPartAnswered: lastOf(byOp.UploadPart, 1),
        lastCompleteSent: lastOf(completes, 0),
        lastCompleteAnswered: lastOf(completes, 1),
        completes: completes.length,
        requests: Object.values(byOp).reduce((sum, l) => sum + l.length, 0),
        byOp: Object.fromEntries(Object.entries(byOp).map(([op, l]) => [op, l.length])),
      };
    },
    /** recording.completed / .failed so far (events.ndjson, read on from where it was), and the last one's time. */
    async finalized() {
      let fh;
      try {
        fh = await open(join(d.dataDir, 'events.ndjson'), 'r');
      } catch {
        return fin;
      }
      try {
        for (;;) {
          const buf = Buffer.alloc(1 << 20);
          const { bytesRead } = await fh.read(buf, 0, buf.length, eventsPos);
          if (bytesRead === 0) break;
          const text = eventsRest + buf.toString('utf8', 0, bytesRead);
          eventsPos += bytesRead;
          const lines = text.split('\n');
          eventsRest = lines.pop();
          for (const line of lines) {
            if (!line.includes('"recording.')) continue;
            const e = JSON.parse(line);
            if (e.type === 'recording.completed') fin.count++;
            else if (e.type === 'recording.failed') {
              fin.count++;
              fin.failed++;
            } else continue;
            fin.lastAtMs = Math.max(fin.lastAtMs ?? 0, Date.parse(e.occurredAt));
          }
        }
      } finally {
        await fh.close();
      }
      return fin;
    },
    async sample() {
      const m = await d.metrics();
      lagP99Ms = m.get('audio_ingestd_nodejs_eventloop_lag_p99_seconds') * 1000;
      const lagMaxMs = m.get('audio_ingestd_nodejs_eventloop_lag_max_seconds') * 1000;
      steady = histogramQuantile(m, 'audio_ingestd_chunk_store_latency_seconds', 0.99, before);
      const drops = [...m].filter(([k, v]) => k.startsWith('audio_ingestd_frames_dropped_total{') && v > 0).map(([k, v]) => `${/reason="([^"]+)"/.exec(k)?.[1]}:${v}`);
      return { open: metricSum(m, 'audio_ingestd_streams_active'), lagP99Ms, lagMaxMs, drops: drops.join(' ') || null };
    },
    /** Data bytes of each stream's master, in input bytes (mono output: ×2). Waits for every master. */
    async stored(n) {
      const deadline = Date.now() + 60_000;
      // masters appear as their uploads complete: list again until every one is there or the deadline passes
      const list = () => masters().catch((err) => (Date.now() < deadline ? new Map() : Promise.reject(err)));
      let found = await list();
      while (found.size < n && Date.now() < deadline) {
        await sleep(500);
        found = await list();
      }
      const res = new Map();
      for (const [trackId, key] of found) {
        let h;
        for (let attempt = 0; !h; attempt++) h = await head(key).catch((err) => (attempt < 5 ? sleep(200).then(() => undefined) : Promise.reject(err)));
        res.set(trackId, wavDataBytes(h) * 2);
      }
      return res;
    },
    async latencyP99Ms() {
      // Upper bucket bound of p99: steady window / whole run (the end of every stream at once included).
      const show = (q) => (q.count ? (q.le === Infinity ? '>10000' : `≤${q.le * 1000}`) : '—');
      return `${show(steady)} / ${show(histogramQuantile(await d.metrics(), 'audio_ingestd_chunk_store_latency_seconds', 0.99))}`;
    },
    async stop() {
      await d.stop();
      await s3?.stop();
      if (profDir) process.stdout.write(`cpu profile of ${target}: ${profDir}\n`);
      if (s3ProfDir) process.stdout.write(`cpu profile of s3rver: ${s3ProfDir}\n`);
      removeAtExit(d.dataDir);
      removeAtExit(s3?.directory);
    },
  };
}

async function startBaseline(file, _unused) {
  const dir = tempDir('baseline');
  const child = fork(fileURLToPath(new URL(`./baselines/${file}`, import.meta.url)), [dir], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const [msg] = await once(child, 'message');
  const port = msg.port;
  const ask = async () => {
    child.send('stats');
    for (;;) {
      const [m] = await once(child, 'message');
      if (m.type === 'stats') return m;
    }
  };
  let last;
  let closedSeen = 0;
  let lastAtMs;
  return {
    pid: child.pid,
    async streams(n, prefix = 't') {
      return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, url: `ws://127.0.0.1:${port}/egress-audio?roomName=bench-room&trackId=${prefix}${i}` }));
    },
    async resetLag() {
      child.send('reset');
    },
    /** Streams closed so far (the baselines have nothing to finalize but their last chunk). */
    async finalized() {
      const st = await ask();
      const count = st.closed ?? 0;
      if (count > closedSeen) {
        closedSeen = count;
        lastAtMs = Date.now();
      }
      return { count, failed: 0, lastAtMs };
    },
    async sample() {
      last = await ask();
      return { open: last.open, lagP99Ms: last.lagP99Ms };
    },
    async stored(n, sent) {
      const want = new Map(sent.map((s) => [s.id, s.bytesSent]));
      const deadline = Date.now() + 30_000;
      let s = await ask();
      while (Date.now() < deadline && [...want].some(([id, b]) => (s.stored[id] ?? 0) < b)) {
        await sleep(250);
        s = await ask();
      }
      last = s;
      return new Map(Object.entries(s.stored));
    },
    async latencyP99Ms() {
      return last?.latencyP99Ms == null ? null : Math.round(last.latencyP99Ms);
    },
    async stop() {
      child.send('stop');
      await once(child, 'exit');
      removeAtExit(dir);
    },
  };
}

/** Size of the `data` chunk of a RIFF/WAVE header. */
function wavDataBytes(buf) {
  if (buf.length < 12 || buf.toString('ascii', 0, 4) !== 'RIFF') return 0;
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('ascii', pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    if (id === 'data') return size;
    pos += 8 + size + (size & 1);
  }
  return 0;
}

export function summarize(rows) {
  const at = (t, n, c) => rows.find((r) => r.target === t && r.N === n && r.client === c);
  const ratios = [];
  const x = (a, b) => (a == null || b == null || !(b > 0) ? null : a / b);
  for (const n of [...new Set(rows.map((r) => r.N))]) {
    for (const c of [...new Set(rows.map((r) => r.client))]) {
      const raw = at('uws-raw', n, c);
      const ws = at('ws-baseline', n, c);
      for (const t of [...new Set(rows.map((r) => r.target))].filter((x) => x.startsWith('daemon-'))) {
        const d = at(t, n, c);
        if (!d) continue;
        ratios.push({
          N: n,
          client: c,
          target: t,
          'live × raw (≤1.3)': x(d['live s/stream-h'], raw?.['live s/stream-h']),
          'whole × raw (≤1.5)': x(d['whole ms/stream'], raw?.['whole ms/stream']),
          'setup ms/stream (≤1)': d['setup ms/stream'],
          'finalize ms/stream (fs ≤3)': d['finalize ms/stream'],
          'max RSS KiB/stream (≤1024)': Math.max(d['setup RSS KiB/stream'], d['live RSS KiB/stream'], d['finalize RSS KiB/stream']),
          'finalize wall s (500: ≤10)': d['finalize wall s'],
          'ws-baseline / daemon live (≥3)': ws ? x(ws['live s/stream-h'], d['live s/stream-h']) : null,
        });
      }
    }
  }
  return ratios;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = [];
  const name = meeting ? 'meeting-ends' : 'live-streams';
  for (const n of NS) {
    for (const client of CLIENTS) {
      for (const t of TARGETS) {
        process.stdout.write(`${name}: ${t} N=${n} client=${client} (${SECONDS} s)…\n`);
        try {
          rows.push(await runLive(t, n, SECONDS, { cpuProf: Boolean(args['cpu-prof']), client }));
        } catch (err) {
          process.stdout.write(`  failed: ${err.stack ?? err}\n`);
          rows.push({ target: t, client, N: n, errors: String(err.message ?? err) });
        }
        process.stdout.write(`  ${JSON.stringify(rows.at(-1))}\n`);
        // let the next run start on a quiet filesystem and page cache (see removeAtExit)
        await sleep(3000);
      }
    }
  }
  const md = printTable(`${meeting ? 'Meeting ends' : 'Live streams'} (${SECONDS} s per stream, all ending together; chunk objects ${CHUNK_OBJECTS ? `on, ${CHUNK_SECONDS} s` : 'off'})`, rows);
  const ratios = summarize(rows);
  const mdr = ratios.length ? printTable('Against the raw drain of the same run, and the targets', ratios) : '';
  saveResults(name, { seconds: SECONDS, chunkObjects: CHUNK_OBJECTS, rows, ratios }, `${md}\n${mdr}`);
  if (args.json) await writeFile(String(args.json), JSON.stringify({ rows, ratios }, null, 2));
}
