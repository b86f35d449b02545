/**
 * Child process of the putFile crash tests: writes master-like files beside the store (same
 * filesystem, as the spool is) and moves each into the store with FsObjectStore.putFile and
 * metadata, `concurrency` at a time as a meeting's ends are (so they share groups of moves),
 * printing each index once its putFile resolved, as a `recording.completed` would be published.
 * The parent SIGKILLs it; nothing here cleans up on purpose.
 * argv: store root, spool folder, concurrency, layout: `flat` (`rec/m<i>/master.wav`, small
 * bodies, metadata seq and duration-sec) or `meeting` (`rec/meeting/p<i>/t<i>/master.wav`,
 * 1 MiB bodies, metadata seq)
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { journalBody } from './fs-journal-body.js';
import { masterBody } from './fs-master-body.js';

const [root, spool, concurrency, layout] = process.argv.slice(2) as [string, string, string, 'flat' | 'meeting'];
const flat = layout === 'flat';
// no checkpoint while it runs: the sidecars stay in the journal only
const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' }, journalSegmentMs: 3_600_000 });
await store.start();
let next = 0;
const one = async (): Promise<void> => {
  for (;;) {
    const i = next++;
    const path = join(spool, `part-${i}.pcm`);
    await writeFile(path, flat ? journalBody(i) : masterBody(i));
    const key = flat ? `rec/m${i}/master.wav` : `rec/meeting/p${i}/t${i}/master.wav`;
    await store.putFile(key, path, { contentType: 'audio/wav', metadata: flat ? { seq: String(i), 'duration-sec': '1.5' } : { seq: String(i) } });
    process.stdout.write(`${i}\n`);
  }
};
await Promise.all(Array.from({ length: Number(concurrency) }, one));
