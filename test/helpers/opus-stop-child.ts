/**
 * Child process of the Opus worker shutdown test: `cycles` times, starts `jobs` decodes of a
 * long voice note on a pool of two workers and stops the pool mid-decode after a varying
 * delay, then exits 70 the way the daemon's fatal stop does. A worker terminated while
 * libopus runs aborts the whole process (SIGABRT), which is what the parent looks for.
 * argv: long note path, short note path, cycles, jobs.
 */
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { OpusWorkerPool } from '../../src/audio/opus-workers.js';

const [notePath, shortPath, cyclesArg, jobsArg] = process.argv.slice(2) as [string, string, string, string];
const note = readFileSync(notePath);
const short = readFileSync(shortPath);
const output = { sampleRate: 16000, channels: 1 };
const HEAD = 64;

function body(of: Buffer): Readable {
  const parts: Buffer[] = [];
  for (let o = HEAD; o < of.length; o += 4096) parts.push(of.subarray(o, o + 4096));
  return Readable.from(parts);
}

let failedWith = new Set<string>();
for (let cycle = 0; cycle < Number(cyclesArg); cycle++) {
  const pool = new OpusWorkerPool({ size: 2 });
  // one whole decode first, so both workers have loaded and the stop below lands mid-decode
  await Promise.all([0, 1].map(() => pool.decode(body(short), { output, head: short.subarray(0, HEAD) })));
  const jobs = Array.from({ length: Number(jobsArg) }, () =>
    pool.decode(body(note), { output, head: note.subarray(0, HEAD) }).then(
      () => 'done',
      (err: { code?: string }) => err.code ?? 'unknown',
    ),
  );
  await sleep(2 + ((cycle * 37) % 60));
  await pool.stop();
  failedWith = new Set([...failedWith, ...(await Promise.all(jobs))]);
}
process.stdout.write(`${JSON.stringify({ outcomes: [...failedWith].sort() })}\n`);
process.exit(70);
