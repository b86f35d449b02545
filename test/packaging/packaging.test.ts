import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BIN } from '../helpers/daemon.js';

const root = join(import.meta.dirname, '..', '..');
const read = (p: string): string => readFileSync(join(root, p), 'utf8');

t.test('the systemd unit verifies and is hardened', async (t) => {
  const which = spawnSync('sh', ['-c', 'command -v systemd-analyze']);
  t.equal(which.status, 0, 'systemd-analyze is installed (.ci/run installs it)');
  const r = spawnSync('systemd-analyze', ['verify', join(root, 'systemd/audio-ingestd.service')], { encoding: 'utf8' });
  t.equal(r.status, 0, `systemd-analyze verify: ${r.stderr}`);
  t.equal(r.stderr.trim(), '', 'no warnings');
  const unit = read('systemd/audio-ingestd.service');
  for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'StateDirectory=audio-ingestd', 'Restart=on-failure', 'KillSignal=SIGTERM']) t.match(unit, line);
  t.match(unit, /LimitNOFILE=(\d+)/);
  t.ok(Number(/LimitNOFILE=(\d+)/.exec(unit)![1]) >= 65536, 'LimitNOFILE is high');
  const stop = Number(/TimeoutStopSec=(\d+)/.exec(unit)![1]);
  const drain = (JSON.parse(read('config/default.json')) as { shutdown: { drainSeconds: number } }).shutdown.drainSeconds;
  t.ok(stop > drain, `TimeoutStopSec (${stop}) above the drain timeout (${drain})`);
});

t.test('the Dockerfile has the essentials', async (t) => {
  const df = read('Dockerfile');
  const froms = df.match(/^FROM /gm) ?? [];
  t.ok(froms.length >= 2, 'multi-stage');
  t.match(df, /npm prune --omit=dev|npm ci --omit=dev/, 'production dependencies only');
  t.match(df, /^USER (?!root)\S+/m, 'runs as a non-root user');
  t.match(df, /^HEALTHCHECK .*\n?.*\/health/m, 'healthcheck on /health');
  t.match(df, /ffmpeg/, 'ffmpeg present');
  t.match(df, /tini/, 'an init as PID 1 forwards signals and reaps ffmpeg children');
  t.match(df, /^STOPSIGNAL SIGTERM/m);
  const lastCmd = df.split('\n').filter((l) => l.startsWith('CMD ')).pop()!;
  t.match(lastCmd, /^CMD \[/, 'exec form (signals reach node)');
  const ignored = read('.dockerignore');
  t.match(ignored, /node_modules/);
});

t.test('the package is installable as a CLI', async (t) => {
  const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>; type: string; scripts: Record<string, string>; dependencies: Record<string, string> };
  t.equal(pkg.type, 'module');
  t.equal(pkg.bin['audio-ingestd'], 'bin/audio-ingestd.js');
  t.match(read('bin/audio-ingestd.js'), /^#!\/usr\/bin\/env node/);
  t.equal(pkg.dependencies['uWebSockets.js'], 'npm:@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0');
  for (const s of ['build', 'start', 'test', 'lint', 'typecheck', 'bench']) t.ok(pkg.scripts[s], `script ${s}`);
  const out = execFileSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  t.match(out.trim(), /^\d+\.\d+\.\d+/);
});
