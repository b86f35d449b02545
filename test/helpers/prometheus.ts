import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

/** Whether `name` is on PATH (.ci/run installs Debian's prometheus package, which brings both). */
export function onPath(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface RunningPrometheus {
  url: string;
  child: ChildProcess;
  output(): string;
  /** Instant query; rejects when Prometheus refuses it (bad PromQL), resolves with the series. */
  query(promql: string): Promise<PromSample[]>;
  /** GET an API path and return `data`. */
  api<T>(path: string): Promise<T>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Runs the real `prometheus` server on 127.0.0.1 and a random port, with `config` (an object
 * written as YAML into a temporary directory, which also holds the TSDB). `stop()` ends that
 * process (by its handle) and removes the directory.
 */
export async function startPrometheus(config: Record<string, unknown>): Promise<RunningPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'aid-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, stringify(config));
  let lastError: unknown;
  // a free port may be taken between the probe and prometheus binding it: try a few
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn('prometheus', [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const url = `http://127.0.0.1:${port}`;
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    };
    try {
      await waitReady(url, child, () => out);
      const api = async <T>(path: string): Promise<T> => {
        const res = await fetch(`${url}${path}`);
        const body = (await res.json()) as { status: string; data: T; error?: string };
        if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? res.status}`);
        return body.data;
      };
      return {
        url,
        child,
        output: () => out,
        api,
        query: async (promql) => (await api<{ result: PromSample[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`)).result,
        stop,
      };
    } catch (err) {
      lastError = err;
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

async function waitReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${output()}`);
    try {
      if ((await fetch(`${url}/-/ready`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`prometheus not ready in 30 s:\n${output()}`);
}
