import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { HistoryReader } from '../../src/live/history.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { tempDir } from '../helpers/temp-dir.js';

/** A master's bytes (header, then frame f = f mod 65 536 as s16 mono) laid out as spool parts of S bytes. */
async function spool(stateDir: string, recordingId: string, frames: number, S: number): Promise<Buffer> {
  const master = Buffer.alloc(MASTER_HEADER_BYTES + frames * 2);
  for (let f = 0; f < frames; f++) master.writeUInt16LE(f & 0xffff, MASTER_HEADER_BYTES + 2 * f);
  const dir = join(stateDir, 'uploads', recordingId);
  await mkdir(dir, { recursive: true });
  for (let k = 1, o = 0; o < master.length; k++, o += S) await writeFile(join(dir, `part-${String(k).padStart(6, '0')}.pcm`), master.subarray(o, o + S));
  return master;
}

const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;

t.test('a session reads what read() reads, across spool parts, with one file open at a time, and goes on reading a file the spool lets go of', async (t) => {
  const stateDir = await tempDir(t);
  const store = new FsObjectStore({ root: join(stateDir, 'store'), presign: { baseUrl: 'http://x', secret: 's' } });
  await store.start();
  t.teardown(() => store.stop());
  const S = 64 * 1024;
  const frames = 100_000; // three parts of 64 KiB and a short fourth
  const master = await spool(stateDir, 'rec-1', frames, S);
  const reader = new HistoryReader({ store, stateDir, fileBytes: S });
  const m = { recordingId: 'rec-1', key: 'recordings/x/rec-1.wav', channels: 1 };
  const expect = (from: number, count: number) => master.subarray(MASTER_HEADER_BYTES + 2 * from, MASTER_HEADER_BYTES + 2 * (from + count));

  const fds0 = await openFds();
  const session = reader.session(m);
  let maxOpen = 0;
  // blocks that cross part boundaries, as a catch-up reads them
  for (let from = 0; from < frames; from += 12_000) {
    const count = Math.min(12_000, frames - from);
    const [a, b] = [await session.read(from, count), await reader.read(m, from, count)];
    t.ok(a.equals(expect(from, count)) && b.equals(a), `frames ${from}…${from + count}: the master's bytes`);
    maxOpen = Math.max(maxOpen, (await openFds()) - fds0);
  }
  t.equal(maxOpen, 1, 'one spool file open at a time during the session');
  t.equal((await openFds()) - fds0, 1, 'the part last read stays open for the next read');

  // the spool lets go of the last part (moved away as a master into the store, or removed once uploaded)
  const dir = join(stateDir, 'uploads', 'rec-1');
  await rename(join(dir, 'part-000004.pcm'), join(stateDir, 'moved.pcm'));
  await rm(join(stateDir, 'moved.pcm'));
  const tailFrom = Math.ceil((3 * S - MASTER_HEADER_BYTES) / 2);
  t.ok((await session.read(tailFrom, frames - tailFrom)).equals(expect(tailFrom, frames - tailFrom)), 'the open file still reads');
  await t.rejects(reader.read(m, tailFrom, frames - tailFrom), { code: 'RESUME_UNAVAILABLE' }, 'a fresh read finds neither the spool file nor the stored master');
  await session.close();
  t.equal((await openFds()) - fds0, 0, 'closed: no file left open');
  await session.close(); // twice is harmless
});
