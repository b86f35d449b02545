// Runs generator.mjs as a child and exposes its two messages as promises.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tempDir } from './daemon.mjs';

export function runGenerator({ streams, seconds, staggerMs }) {
  const jobFile = join(tempDir('gen'), 'job.json');
  writeFileSync(jobFile, JSON.stringify({ streams, seconds, staggerMs }));
  const child = spawn(process.execPath, ['--max-old-space-size=2048', fileURLToPath(new URL('./generator.mjs', import.meta.url)), jobFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout });
  let onStarted;
  let onDone;
  const started = new Promise((r) => (onStarted = r));
  const done = new Promise((resolve, reject) => {
    onDone = resolve;
    child.once('exit', (code) => reject(new Error(`generator exited with ${code} before reporting`)));
  });
  rl.on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.phase === 'started') onStarted();
    else onDone(msg);
  });
  return { pid: child.pid, started, done, kill: () => child.kill('SIGKILL') };
}
