import t from 'tap';
import { spawn } from 'node:child_process';
import { startS3rver } from '../helpers/storage-s3rver.js';
import { tempDir } from '../helpers/temp-dir.js';

const PART = 5 * 1024 * 1024;
const QUEUE = 4;
/** What a finalization may hold (stream buffers, a request, a socket), and a slack for the allocator. */
const PER_FINALIZATION = 1024 * 1024;
const SLACK = 8 * 1024 * 1024;

interface Measured {
  streams: number;
  dataBytes: number;
  parts: number;
  stored: number;
  rssGrowth: number;
  externalGrowth: number;
  cpuMsPerStream: number;
}

async function measure(driver: 'fs' | 's3', where: string, streams: number, dataBytes: number): Promise<Measured> {
  const state = await tempDir(t, 'storage-finalize-state-');
  const child = spawn(process.execPath, [...process.execArgv, '--expose-gc', 'test/helpers/storage-finalize-child.ts', driver, where, state, String(streams), String(dataBytes), String(QUEUE), '5'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`finalize child exited ${code}`);
  return JSON.parse(out) as Measured;
}

/**
 * Many masters finished at once: RSS may grow by what the queue's finalizations hold, whatever
 * the recordings' length (the whole part 1 and every part used to be read into memory).
 */
for (const driver of ['fs', 's3'] as const) {
  t.test(`${driver}: finishing many masters at once grows RSS by a bound of the queue size, not of their length`, async (t) => {
    let where: string;
    if (driver === 'fs') {
      where = await tempDir(t, 'storage-finalize-fs-');
    } else {
      const dir = await tempDir(t, 'storage-finalize-s3-');
      const server = await startS3rver(dir);
      t.teardown(() => server.close());
      where = server.endpoint;
    }
    const streams = driver === 'fs' ? 24 : 12;
    const bound = SLACK + QUEUE * PER_FINALIZATION;
    for (const parts of [1.4, 3.4]) {
      const dataBytes = Math.floor((parts * PART) / 1920) * 1920;
      const m = await measure(driver, where, streams, dataBytes);
      t.equal(m.stored, streams * dataBytes, `${parts} parts × ${streams}: every byte stored`);
      t.equal(m.parts, driver === 'fs' ? 1 : Math.ceil(parts), 'in the expected number of parts');
      t.ok(m.rssGrowth <= bound, `${parts} parts × ${streams} streams, queue ${QUEUE}: RSS grew ${(m.rssGrowth / 2 ** 20).toFixed(1)} MiB ≤ ${(bound / 2 ** 20).toFixed(0)} MiB`);
      t.comment(`${driver} ${parts} parts: ${m.cpuMsPerStream.toFixed(1)} ms CPU per finalization, buffers held at most ${(m.externalGrowth / 2 ** 20).toFixed(1)} MiB`);
    }
  });
}
