// Scenario 1 — live streams: N concurrent simulated LiveKit egress streams (real-time pacing,
// generator in its own process) through the whole daemon to the fs store and to s3rver, against
// a plain `ws` + Buffer.concat + fs.writeFile receiver and a uWS server that only counts bytes.
//
//   node bench/live-streams.mjs [--quick] [--n 50,200,500] [--seconds 25]
//        [--targets daemon-fs,daemon-s3,ws-baseline,uws-raw] [--cpu-prof] [--no-chunk-objects] [--json out.json]
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
const NS = String(args.n ?? (quick ? '50,200' : '50,200,500')).split(',').map(Number);
const SECONDS = Number(args.seconds ?? (quick ? 15 : 25));
const TARGETS = String(args.targets ?? 'uws-raw,ws-baseline,daemon-fs,daemon-s3').split(',');
const CHUNK_SECONDS = 2;

/** Runs one target at one N; returns a result row. */
export async function runLive(target, n, seconds, { cpuProf = false } = {}) {
  const staggerMs = Math.min(3000, n * 6);
  const server = await startTarget(target, cpuProf);
  try {
    await sleep(1000);
    const rss0 = rssBytes(server.pid);
    const streams = await server.streams(n);
    const gen = runGenerator({ streams, seconds, staggerMs });
    await gen.started;
    await sleep(1000);
    await server.resetLag();
    const cpu0 = cpuSplit(server.pid);
    const t0 = performance.now();
    const rss = rssSampler(server.pid);
    const windowMs = seconds * 1000 - staggerMs - 2500;
    await sleep(windowMs);
    const cpu1 = cpuSplit(server.pid);
    const elapsed = (performance.now() - t0) / 1000;
    const peak = rss.stop();
    const live = await server.sample();
    const genResult = await gen.done;
    const stored = await server.stored(n, genResult.streams);
    const sent = genResult.streams.reduce((s, x) => s + x.bytesSent, 0);
    const errors = genResult.streams.filter((s) => s.error || (s.closeCode !== 1000 && s.closeCode !== 1005));
    let lostBytes = 0;
    for (const s of genResult.streams) lostBytes += Math.max(0, s.bytesSent - (stored.get(s.id) ?? 0));
    const cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system;
    const row = {
      target,
      N: n,
      open: live.open,
      'cpu s/stream-h': (cpu / (n * elapsed)) * 3600,
      'kernel %': (100 * (cpu1.system - cpu0.system)) / Math.max(cpu, 1e-9),
      'cpu %': (100 * cpu) / elapsed,
      'RSS MiB': peak / MiB,
      'RSS/stream KiB': ((peak - rss0) / n) / 1024,
      'lag p99 ms': live.lagP99Ms,
      'frames lost': Math.round(lostBytes / 1920),
      'sent MiB': sent / MiB,
      'chunk p99 ms (steady / all)': (await server.latencyP99Ms()) ?? null,
      'gen lag p99 ms': genResult.lagP99Ms,
      'gen cpu %': (100 * genResult.cpuSec) / seconds,
      errors: errors.length,
      load1: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
    };
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
  if (target === 'daemon-fs' || target === 'daemon-s3') return startDaemonTarget(target, cpuProf);
  if (target === 'ws-baseline') return startBaseline('ws-concat-server.mjs', 1);
  if (target === 'uws-raw') return startBaseline('uws-drain-server.mjs', 1);
  throw new Error(`unknown target ${target}`);
}

/** Daemon with per-chunk objects on (the chunk latency histogram needs them; the ws baseline writes chunks too). */
async function startDaemonTarget(target, cpuProf) {
  const s3 = target === 'daemon-s3' ? await startS3rver('bench') : undefined;
  const profDir = cpuProf ? tempDir(`prof-${target}`) : undefined;
  const d = await startDaemon({
    storage: s3 ? { s3: { endpoint: s3.endpoint, bucket: s3.bucket } } : 'fs',
    config: { storage: { chunkObjects: !args['no-chunk-objects'] } },
    cpuProf: profDir,
  });
  const s3c = s3 && new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  let before = new Map();
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
    logTail: () => d.logTail(),
    async streams(n) {
      nStreams = n;
      const out = [];
      for (let i = 0; i < n; i += 25) {
        const batch = [];
        for (let j = i; j < Math.min(n, i + 25); j++) batch.push(d.egressUrl('bench-room', `t${j}`, `p${j}`).then((url) => ({ id: `t${j}`, url })));
        out.push(...(await Promise.all(batch)));
      }
      return out;
    },
    async resetLag() {
      before = await d.metrics(); // a scrape resets prom-client's event-loop histogram
    },
    async sample() {
      const m = await d.metrics();
      lagP99Ms = m.get('audio_ingestd_nodejs_eventloop_lag_p99_seconds') * 1000;
      steady = histogramQuantile(m, 'audio_ingestd_chunk_store_latency_seconds', 0.99, before);
      return { open: metricSum(m, 'audio_ingestd_streams_active'), lagP99Ms };
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
  return {
    pid: child.pid,
    async streams(n) {
      return Array.from({ length: n }, (_, i) => ({ id: `t${i}`, url: `ws://127.0.0.1:${port}/egress-audio?roomName=bench-room&trackId=t${i}` }));
    },
    async resetLag() {
      child.send('reset');
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
  const at = (t, n) => rows.find((r) => r.target === t && r.N === n);
  const ratios = [];
  for (const n of [...new Set(rows.map((r) => r.N))]) {
    const raw = at('uws-raw', n);
    const ws = at('ws-baseline', n);
    for (const t of ['daemon-fs', 'daemon-s3']) {
      const d = at(t, n);
      if (!d) continue;
      ratios.push({
        N: n,
        target: t,
        'cpu vs uws-raw (×, ≤1.5)': raw ? d['cpu s/stream-h'] / raw['cpu s/stream-h'] : null,
        'ws-baseline / daemon cpu (×, ≥3)': ws ? ws['cpu s/stream-h'] / d['cpu s/stream-h'] : null,
      });
    }
  }
  return ratios;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = [];
  for (const n of NS) {
    for (const t of TARGETS) {
      process.stdout.write(`live-streams: ${t} N=${n} (${SECONDS} s)…\n`);
      try {
        rows.push(await runLive(t, n, SECONDS, { cpuProf: Boolean(args['cpu-prof']) }));
      } catch (err) {
        process.stdout.write(`  failed: ${err.stack ?? err}\n`);
        rows.push({ target: t, N: n, errors: String(err.message ?? err) });
      }
      process.stdout.write(`  ${JSON.stringify(rows.at(-1))}\n`);
    }
  }
  const md = printTable(`Live streams (${SECONDS} s per run, chunk ${CHUNK_SECONDS} s)`, rows);
  const ratios = summarize(rows);
  const mdr = ratios.length ? printTable('Ratios', ratios) : '';
  saveResults('live-streams', { seconds: SECONDS, rows, ratios }, `${md}\n${mdr}`);
  if (args.json) await writeFile(String(args.json), JSON.stringify({ rows, ratios }, null, 2));
}
