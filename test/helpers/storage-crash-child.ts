/**
 * Child process of the crash-recovery test: writes a patterned recording through MasterUpload
 * and reports, after each flush, how many bytes are in the spool and how many parts uploaded.
 * The parent SIGKILLs it; nothing here cleans up on purpose.
 * argv: driver (fs|s3), store location (root | endpoint), stateDir, recordingId, key, partSize
 */
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { MasterUpload } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import { s3rverStore } from './storage-s3rver.js';
import { patternBytes } from './storage-wav.js';

const [driver, where, stateDir, recordingId, key, partSizeArg] = process.argv.slice(2) as [string, string, string, string, string, string];
const partSize = Number(partSizeArg);
const store = driver === 'fs' ? new FsObjectStore({ root: where, presign: { baseUrl: 'http://x', secret: 's' } }) : s3rverStore(where);
await store.start();
const upload = await MasterUpload.create({
  store, stateDir, recordingId, key, format: { sampleRate: 48000, channels: 2 }, metadata: { tenant: 'crash' },
  partSize, spool: new Spool({ maxBytes: 1024 * 1024 * 1024 }), retry: { baseMs: 20, maxMs: 200 },
});
const burst = 96_000;
let offset = 0;
for (;;) {
  // 5 frames of 20 ms per burst member, the way a live stream arrives
  for (let i = 0; i < burst; i += 3840) upload.write(patternBytes(offset + i, 3840));
  offset += burst;
  await upload.flush();
  const s = upload.stats;
  process.stdout.write(`${JSON.stringify({ spooled: s.spooledBytes, uploadedParts: s.uploadedParts, dropped: s.droppedBytes })}\n`);
  if (offset > partSize * 6) {
    // enough audio: keep reporting (part uploads still finish) until the parent kills this process
    setInterval(() => {
      const st = upload.stats;
      process.stdout.write(`${JSON.stringify({ spooled: st.spooledBytes, uploadedParts: st.uploadedParts, dropped: st.droppedBytes })}\n`);
    }, 100);
    await new Promise(() => undefined);
  }
  await new Promise((r) => setImmediate(r));
}
