import { readFileSync } from 'node:fs';
import t from 'tap';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { BIN, runCli, startDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/temp-dir.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

t.test('--help and --version', async (t) => {
  const help = await runCli(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: audio-ingestd \[command\]/);
  t.match(help.stdout, /serve/);
  t.match(help.stdout, /simulate-egress/);
  const version = await runCli(['--version']);
  t.equal(version.code, 0);
  t.equal(version.stdout.trim(), pkg.version);
  const unknown = await runCli(['frobnicate']);
  t.equal(unknown.code, 64);
  t.match(unknown.stderr, /unknown command 'frobnicate'/);
});

t.test('a bad configuration exits non-zero with one clear message per bad value', async (t) => {
  const r = await runCli(['serve'], { PORT: 'eighty', STORAGE_DRIVER: 'tape', API_KEY: 'tiny-secret' });
  t.equal(r.code, 78, 'EX_CONFIG');
  t.match(r.stderr, /PORT \(server\.port\): got "eighty"; allowed: an integer/);
  t.match(r.stderr, /storage\.driver: got "tape"/);
  t.match(r.stderr, /auth\.apiKey: got <redacted>/);
  t.notMatch(r.stderr + r.stdout, /tiny-secret/, 'the secret is not printed');
});

t.test('serves health, logs JSON without secrets, and exits 0 on SIGTERM after finalizing a live stream', async (t) => {
  const d = await startDaemon({ DRAIN_SECONDS: '1', LOG_LEVEL: 'debug' });
  t.teardown(() => void d.child.kill('SIGKILL'));
  t.equal((await fetch(`${d.baseUrl}/health`)).status, 200);
  const res = await fetch(`${d.baseUrl}/v1/egress/urls`, { method: 'POST', headers: { apikey: 'e2e-api-key-0123456789' }, body: JSON.stringify({ roomName: 'e2e' }) });
  const { websocketUrl } = (await res.json()) as { websocketUrl: string };
  const live = await simulateEgress({ url: websocketUrl, pcm: tonePcm(0.5), realtime: false, end: 'none' });
  const started = Date.now();
  d.child.kill('SIGTERM');
  const code = await d.exited;
  const tookMs = Date.now() - started;
  t.equal(code, 0, 'exit 0');
  t.ok(tookMs < 1000 + 5000, `stopped after the 1 s drain window (${tookMs} ms)`);
  t.equal(live.socket?.readyState === 1, false, 'stream closed by the daemon');
  const lines = d.output().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(lines.every((l) => typeof l.level === 'string' && typeof l.time === 'string'), 'every line is structured JSON');
  t.ok(lines.find((l) => l.msg === 'recording completed' && l.endReason === 'shutdown'), 'recording finalized with end reason shutdown');
  t.ok(lines.find((l) => l.msg === 'stopped'));
  t.notMatch(d.output(), /e2e-api-key-0123456789|e2e-egress-secret/, 'no secret in any log line');
});

t.test('a second signal forces the exit', async (t) => {
  const d = await startDaemon({ DRAIN_SECONDS: '30' });
  t.teardown(() => void d.child.kill('SIGKILL'));
  const res = await fetch(`${d.baseUrl}/v1/egress/urls`, { method: 'POST', headers: { apikey: 'e2e-api-key-0123456789' }, body: JSON.stringify({ roomName: 'e2e' }) });
  const { websocketUrl } = (await res.json()) as { websocketUrl: string };
  const live = await simulateEgress({ url: websocketUrl, pcm: tonePcm(0.1), realtime: false, end: 'none' });
  d.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  d.child.kill('SIGINT');
  t.equal(await d.exited, 130);
  live.socket?.terminate();
});

t.test('egress-url and simulate-egress CLI commands drive a running daemon', async (t) => {
  const d = await startDaemon();
  t.teardown(() => void d.child.kill('SIGKILL'));
  const env = { DATA_DIR: d.dataDir, EGRESS_TOKEN_SECRET: 'e2e-egress-secret-0123456789abcdef0123' };
  const minted = await runCli(['egress-url', '--room', 'cli-room', '--track', 'TR_cli', '--participant', 'carol', '--base-url', d.baseUrl], env);
  t.equal(minted.code, 0, minted.stderr);
  const { websocketUrl } = JSON.parse(minted.stdout) as { websocketUrl: string };
  t.match(websocketUrl, /^ws:\/\/127\.0\.0\.1:\d+\/egress-audio\?token=/);
  const sim = await runCli(['simulate-egress', '--url', websocketUrl, '--tone', '300', '--seconds', '0.5', '--fast']);
  t.equal(sim.code, 0, sim.stderr);
  t.match(JSON.parse(sim.stdout), { bytesSent: 96000, closeCode: 1005 });
  const bad = await runCli(['egress-url', '--room', '../x'], env);
  t.equal(bad.code, 64);
  t.match(bad.stderr, /roomName/);
  d.child.kill('SIGTERM');
  t.equal(await d.exited, 0);
  t.match(d.output(), /"participant":"carol"[^\n]*"recording started"/);
});

t.test('LOG_PRETTY gives human-readable lines', async (t) => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', DATA_DIR: await tempDir(t, 'aid-pretty-'), LOG_PRETTY: 'true', API_KEY: 'pretty-api-key-0123456789' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line:\n${out}`)), 15_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('audio-ingestd ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  t.match(out, /INFO.*audio-ingestd ready/, 'level and message as text');
  t.notMatch(out, /^\{"level"/m, 'not JSON');
  child.kill('SIGTERM');
  t.equal(await new Promise((r) => child.once('exit', r)), 0);
});
