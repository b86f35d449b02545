import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MIN_WAIT_MS } from './wait-for.js';

// The daemon child runs the built dist/ (source-mapped to src/). Its coverage would be merged
// with the in-process coverage of the same src files from a different compilation, and the
// merge keeps only one of them: leave the children out of coverage.
process.env._TAPJS_PROCESSINFO_EXCLUDE_ = String(/(^|[\\/])(node_modules|\.tap|tests?|dist|bin|bench)([\\/]|$)/i);

export const BIN = join(import.meta.dirname, '..', '..', 'bin', 'audio-ingestd.js');

export interface Daemon {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  dataDir: string;
  output: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

/**
 * Runs the built daemon (`bin/audio-ingestd.js`, i.e. dist/) as a child process on a free
 * port and waits until it says it is ready. The test script builds dist/ before tap runs.
 */
export async function startDaemon(env: Record<string, string> = {}, args: string[] = ['serve']): Promise<Daemon> {
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'aid-daemon-'));
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, API_KEY: 'e2e-api-key-0123456789', EGRESS_TOKEN_SECRET: 'e2e-egress-secret-0123456789abcdef0123', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const port = await new Promise<number>((resolve, reject) => {
    // a bound on a daemon that hangs, not a timing assertion (MIN_WAIT_MS, as every wait); the
    // child is killed with it, so a test that failed here never waits for tap's own timeout
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`daemon not ready in ${MIN_WAIT_MS / 1000} s:\n${out}`));
    }, MIN_WAIT_MS);
    const check = (): void => {
      const m = /"port":(\d+)[^\n]*"msg":"audio-ingestd ready"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before ready:\n${out}`));
    });
  });
  return { child, port, baseUrl: `http://127.0.0.1:${port}`, dataDir, output: () => out, exited };
}

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
