/**
 * Child process of the group-commit crash test: stores batches of chunk-like objects through
 * FsObjectStore.putBatch and prints the index of the last object of each batch once the batch
 * is acknowledged. The parent SIGKILLs it; nothing here cleans up on purpose.
 * argv: store root
 */
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { journalBody } from './fs-journal-body.js';

const [root] = process.argv.slice(2) as [string];
// no checkpoint while it runs: every acknowledged object stays in the journal only
const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' }, journalSegmentMs: 3_600_000 });
await store.start();
let next = 0;
for (;;) {
  const items = [];
  for (let i = 0; i < 16; i++, next++) {
    items.push({ key: `rec/r1/chunks/${String(next).padStart(6, '0')}.wav`, body: journalBody(next), options: { contentType: 'audio/wav', metadata: { seq: String(next) } } });
  }
  await store.putBatch(items);
  process.stdout.write(`${next - 1}\n`);
}
