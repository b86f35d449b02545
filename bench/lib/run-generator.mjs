// Runs generator.mjs as a child and exposes its messages as promises.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tempDir } from './daemon.mjs';

/**
 * `client`: 'sim' (the project's egress simulator), 'ws' (a plain ws client) or 'raw' (a
 * WebSocket client on node:net with one shared timer, the cheapest; see generator.mjs). Every
 * stream ends at the same moment, `started`'s `endAtMs`.
 */
export function runGenerator({ streams, seconds, staggerMs, client = 'sim' }) {
  const jobFile = join(tempDir('gen'), 'job.json');
  writeFileSync(jobFile, JSON.stringify({ streams, seconds, staggerMs, client }));
  const child = spawn(process.execPath, ['--max-old-space-size=2048', fileURLToPath(new URL('./generator.mjs', import.meta.url)), jobFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout });
  let onStarted;
  let onOpen;
  let onDone;
  const started = new Promise((r) => (onStarted = r));
  const open = new Promise((r) => (onOpen = r));
  const done = new Promise((resolve, reject) => {
    onDone = resolve;
    child.once('exit', (code) => reject(new Error(`generator exited with ${code} before reporting`)));
  });
  rl.on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.phase === 'started') onStarted(msg);
    else if (msg.phase === 'open') onOpen(msg);
    else onDone(msg);
  });
  return { pid: child.pid, started, open, done, kill: () => child.kill('SIGKILL') };
}
