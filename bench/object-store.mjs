// Scenario 3 — object store: MiB/s and peak memory of uploading 10 concurrent 1-hour recordings
// (48 kHz mono s16le masters) to s3rver through the daemon's MasterUpload (spool files →
// multipart parts), versus one PutObject per recording of the same bytes held in memory.
//
//   node bench/object-store.mjs [--quick] [--recordings 10] [--minutes 60]
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { saveResults, removeAtExit, tempDir } from './lib/daemon.mjs';
import { MiB } from './lib/proc.mjs';
import { startS3rver } from './lib/s3rver.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const RECORDINGS = Number(args.recordings ?? 10);
const MINUTES = Number(args.minutes ?? (args.quick ? 5 : 60));
const BYTES = MINUTES * 60 * 48000 * 2;

async function once(mode) {
  const s3 = await startS3rver('bench');
  const stateDir = tempDir('objstore');
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--max-old-space-size=8192', fileURLToPath(new URL('./lib/object-store-child.mjs', import.meta.url)), mode, s3.endpoint, s3.bucket, String(RECORDINGS), String(BYTES), stateDir],
      { maxBuffer: 1 << 20, timeout: 600_000 },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1));
  } finally {
    await s3.stop();
    removeAtExit(stateDir);
    removeAtExit(s3.directory);
  }
}

export async function runObjectStore() {
  const rows = [];
  for (const mode of ['put', 'multipart']) {
    const r = await once(mode);
    rows.push({
      path: mode === 'put' ? 'PutObject per recording (in memory)' : 'MasterUpload: spool → multipart 5 MiB',
      recordings: RECORDINGS,
      'MiB each': BYTES / MiB,
      'MiB/s': r.bytes / MiB / r.secs,
      'peak RSS MiB': r.peakRssBytes / MiB,
      'RSS growth MiB': (r.peakRssBytes - r.baseRssBytes) / MiB,
      'cpu s': r.cpuSec,
      parts: r.parts,
    });
  }
  rows[1]['vs put MiB/s'] = rows[1]['MiB/s'] / rows[0]['MiB/s'];
  rows[1]['vs put memory'] = rows[1]['RSS growth MiB'] / rows[0]['RSS growth MiB'];
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await runObjectStore();
  const md = printTable(`Object store: ${RECORDINGS} concurrent ${MINUTES}-minute recordings to s3rver`, rows);
  saveResults('object-store', { rows }, md);
}
