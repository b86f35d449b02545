// Starts audio-ingestd (bin/audio-ingestd.js serve) as a child process for a benchmark run.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from './proc.mjs';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const OUT = join(ROOT, 'bench', '.out');

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Writes a scenario's results as `bench/.out/<name>.json` and `<name>.md` (what run-all.mjs collects). */
export function saveResults(name, data, md) {
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, `${name}.json`), JSON.stringify(data, null, 2));
  writeFileSync(join(OUT, `${name}.md`), md);
}

/**
 * A temp folder under bench/.out, or under `BENCH_DATA_ROOT` for the daemons' data (to measure
 * another filesystem, e.g. a journaled ext4 mounted from a loop file).
 */
export function tempDir(prefix) {
  const root = prefix === 'daemon' && process.env.BENCH_DATA_ROOT ? process.env.BENCH_DATA_ROOT : OUT;
  mkdirSync(root, { recursive: true });
  return mkdtempSync(join(root, `${prefix}-`));
}

const toRemove = new Set();
let exitHook = false;

/**
 * Removes a run's directory when the process exits, not between runs: on a filesystem without
 * a journal (this machine's ext4) the inode allocator skips inodes freed in the last minutes,
 * so deleting one run's thousands of files just before the next run would slow every file the
 * next run creates and bias it against whoever runs second.
 */
export function removeAtExit(dir) {
  if (!dir) return;
  if (process.env.BENCH_CLEANUP_LIST) {
    // run-all.mjs removes them after the last scenario, not between scenarios
    appendFileSync(process.env.BENCH_CLEANUP_LIST, `${dir}\n`);
    return;
  }
  toRemove.add(dir);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const d of toRemove) rmSync(d, { recursive: true, force: true });
  });
}

/**
 * Spawns the daemon. `storage`: 'fs' | { s3: { endpoint, bucket } }. `config` is merged into the
 * `--config` file (no secrets there). `cpuProf` writes a V8 CPU profile into that directory on exit;
 * `execArgv`: more node flags (e.g. an `--import` of a bench hook). `root`: the checkout whose
 * build runs (default this one; another build for A/B runs).
 */
export async function startDaemon({ storage = 'fs', config = {}, env = {}, cpuProf, execArgv = [], root = ROOT } = {}) {
  const port = await freePort();
  const dataDir = tempDir('daemon');
  const apiKey = 'bench-api-key-0123456789';
  const configFile = join(dataDir, 'bench-config.json');
  writeFileSync(configFile, JSON.stringify({
    tenantDefaults: { maxStreams: 5000, requestsPerMinute: 1_000_000 },
    livekit: { maxStreams: 5000 },
    shutdown: { drainSeconds: 1 },
    ...config,
    storage: { ...(config.storage ?? {}) },
  }));
  const childEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    API_KEY: apiKey,
    EGRESS_TOKEN_SECRET: 'bench-egress-secret-0123456789abcdef',
    LOG_LEVEL: 'warn',
    STORAGE_DRIVER: storage === 'fs' ? 'fs' : 's3',
    ...(storage === 'fs' ? {} : {
      S3_ENDPOINT: storage.s3.endpoint,
      S3_BUCKET: storage.s3.bucket,
      S3_FORCE_PATH_STYLE: 'true',
      S3_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    }),
    // e.g. BENCH_DAEMON_NODE_OPTIONS=--perf-basic-prof for `perf record -p <daemon pid>`
    ...(process.env.BENCH_DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_DAEMON_NODE_OPTIONS } : {}),
    ...env,
  };
  // flags NODE_OPTIONS refuses (e.g. --log-ic), space-separated
  const extraArgv = (process.env.BENCH_DAEMON_EXEC_ARGV ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] : []), ...execArgv, ...extraArgv, join(root, 'bin/audio-ingestd.js'), 'serve', '--config', configFile], {
    cwd: root,
    env: childEnv,
    // its log (warnings and errors) goes to a file of the run, read back when a run goes wrong
    stdio: ['ignore', openSync(join(dataDir, 'daemon.log'), 'a'), 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited during start: ${stderr.slice(-2000)}`);
    try {
      const r = await fetch(`${base}/ready`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`daemon not ready within 30 s: ${stderr.slice(-2000)}`);
    }
    await sleep(200);
  }
  return {
    pid: child.pid,
    port,
    base,
    dataDir,
    apiKey,
    get stderr() { return stderr; },
    /** The daemon's log lines at warn and above (JSON), the last `max` of them. */
    logTail(max = 20) {
      try {
        return readFileSync(join(dataDir, 'daemon.log'), 'utf8').trim().split('\n').filter(Boolean).slice(-max);
      } catch {
        return [];
      }
    },
    /** A single-use egress WebSocket URL for one stream. */
    async egressUrl(roomName, trackId, participant) {
      const r = await fetch(`${base}/v1/egress/urls`, {
        method: 'POST',
        headers: { apikey: apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ roomName, trackId, participant }),
      });
      if (r.status !== 201 && r.status !== 200) throw new Error(`POST /v1/egress/urls: ${r.status} ${await r.text()}`);
      return (await r.json()).websocketUrl;
    },
    async metrics() {
      // a kept-alive connection the daemon closed as idle fails the request once ("other side
      // closed", seen under load after the streams' setup): a second try opens a new one
      for (let attempt = 1; ; attempt++) {
        try {
          return parseMetrics(await (await fetch(`${base}/metrics`)).text());
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
    },
    /** SIGTERM, then SIGKILL after `graceMs`. */
    async stop(graceMs = 20_000) {
      if (child.exitCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/** Prometheus text → Map of `name{labels}` → value. */
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

/** Sum of every series of a metric (all label sets). */
export function metricSum(map, name) {
  let s = 0;
  for (const [k, v] of map) if (k === name || k.startsWith(`${name}{`)) s += v;
  return s;
}

/** p-quantile upper bound from a cumulative histogram `<name>_bucket{le=…}` (Infinity when above the last bucket). */
export function histogramQuantile(map, name, q, before = new Map()) {
  const buckets = [];
  for (const [k, v] of map) {
    const m = new RegExp(`^${name}_bucket\\{(?:.*,)?le="([^"]+)"`).exec(k);
    if (m) buckets.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), n: v - (before.get(k) ?? 0) });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.n ?? 0;
  if (total === 0) return { count: 0, le: NaN };
  const want = q * total;
  for (const b of buckets) if (b.n >= want) return { count: total, le: b.le };
  return { count: total, le: Infinity };
}
