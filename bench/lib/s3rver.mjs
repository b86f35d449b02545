// Starts s3rver as a child process and returns its endpoint.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tempDir } from './daemon.mjs';

/**
 * `memory`: s3rver's directory on tmpfs (/dev/shm) instead of the bench's disk. s3rver stands in
 * for a store on other machines, whose disks are not the daemon's: on the daemon's disk its
 * part files and the copy of every part into the object at completion compete with the
 * daemon's spool for the same device and page cache. Its CPU (hashing, copying) is the same.
 * `cpuProf`: a V8 CPU profile of s3rver into that directory when it stops.
 */
export async function startS3rver(bucket = 'bench', { memory = false, cpuProf } = {}) {
  const directory = memory && existsSync('/dev/shm') ? mkdtempSync(join('/dev/shm', 'audio-ingestd-bench-s3rver-')) : tempDir('s3rver');
  const child = spawn(process.execPath, [...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] : []), fileURLToPath(new URL('./s3rver-child.mjs', import.meta.url)), directory, bucket], { stdio: ['ignore', 'pipe', 'inherit'] });
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
