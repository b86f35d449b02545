/**
 * Child process of the putFile crash test: writes master-like files beside the store (same
 * filesystem, as the spool is) and moves each into the store with FsObjectStore.putFile and
 * metadata, printing each index once putFile resolved. Several run at once, as a meeting's
 * ends do. The parent SIGKILLs it; nothing here cleans up on purpose.
 * argv: store root, spool folder
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { journalBody } from './fs-journal-body.js';

const [root, spool] = process.argv.slice(2) as [string, string];
// no checkpoint while it runs: the sidecars stay in the journal only
const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' }, journalSegmentMs: 3_600_000 });
await store.start();
let next = 0;
const one = async (): Promise<void> => {
  for (;;) {
    const i = next++;
    const path = join(spool, `part-${i}.pcm`);
    await writeFile(path, journalBody(i));
    await store.putFile(`rec/m${i}/master.wav`, path, { contentType: 'audio/wav', metadata: { seq: String(i), 'duration-sec': '1.5' } });
    process.stdout.write(`${i}\n`);
  }
};
await Promise.all([one(), one(), one(), one()]);
