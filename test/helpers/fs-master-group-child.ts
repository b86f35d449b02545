/**
 * Child process of the test of masters ending together: `concurrency` masters of 1 MiB at a
 * time are written beside the store and moved in with FsObjectStore.putFile (so they share
 * groups of moves), each index printed once its putFile resolved, as a `recording.completed`
 * would be published. The parent SIGKILLs it mid-group; nothing here cleans up on purpose.
 * argv: store root, spool folder, concurrency
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { masterBody } from './fs-master-body.js';

const [root, spool, concurrency] = process.argv.slice(2) as [string, string, string];
const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' }, journalSegmentMs: 3_600_000 });
await store.start();
let next = 0;
const one = async (): Promise<void> => {
  for (;;) {
    const i = next++;
    const path = join(spool, `part-${i}.pcm`);
    await writeFile(path, masterBody(i));
    await store.putFile(`rec/meeting/p${i}/t${i}/master.wav`, path, { contentType: 'audio/wav', metadata: { seq: String(i) } });
    process.stdout.write(`${i}\n`);
  }
};
await Promise.all(Array.from({ length: Number(concurrency) }, one));
