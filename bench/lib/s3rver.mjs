// Starts s3rver as a child process and returns its endpoint.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tempDir } from './daemon.mjs';

export async function startS3rver(bucket = 'bench') {
  const directory = tempDir('s3rver');
  const child = spawn(process.execPath, [fileURLToPath(new URL('./s3rver-child.mjs', import.meta.url)), directory, bucket], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout });
  const [line] = await once(rl, 'line');
  const { port } = JSON.parse(line);
  return {
    pid: child.pid,
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    directory,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}
