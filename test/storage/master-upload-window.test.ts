import t from 'tap';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { failedUploadsRoot, MasterUpload, MIN_S3_PART_SIZE } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import type { S3ObjectStore } from '../../src/storage/s3-store.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { type RecordingProxy, type RecordingProxyOptions, startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { startS3rver, s3rverStore } from '../helpers/storage-s3rver.js';
import { assertMaster, writeRecording } from '../helpers/storage-master-cases.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

// The resume window of live audio out on S3: uploaded parts keep their spool files while within
// keepUploadedSec of the live edge. 48 kHz stereo: 192 000 B/s, a 5 MiB part is 27.3 s.
const PART = MIN_S3_PART_SIZE;
const BYTES_PER_SEC = 48000 * 4;
const closers: (() => Promise<void>)[] = [];
t.teardown(async () => {
  for (const c of closers.reverse()) await c();
});

async function proxiedStore(options: RecordingProxyOptions = {}): Promise<{ store: S3ObjectStore; proxy: RecordingProxy }> {
  const dir = await tempDir(t, 'storage-s3window-');
  const server = await startS3rver(dir);
  const proxy = await startRecordingProxy(server.endpoint, options);
  const store = s3rverStore(proxy.endpoint);
  closers.push(async () => { await store.stop(); await proxy.close(); await server.close(); });
  return { store, proxy };
}

async function newUpload(store: S3ObjectStore, recordingId: string, keepUploadedSec: number): Promise<{ upload: MasterUpload; stateDir: string; spool: Spool; spoolDir: string }> {
  const stateDir = await tempDir(t, 'storage-state-');
  const spool = new Spool({ maxBytes: 256 * 1024 * 1024 });
  const upload = await MasterUpload.create({
    store, stateDir, recordingId, key: `rec/${recordingId}.wav`, format: { sampleRate: 48000, channels: 2 },
    metadata: { tenant: 'acme' }, partSize: PART, spool, retry: { baseMs: 20, maxMs: 200 }, keepUploadedSec,
  });
  return { upload, stateDir, spool, spoolDir: join(stateDir, 'uploads', recordingId) };
}

/** UploadPart requests per part number. */
function partUploads(proxy: RecordingProxy): Map<number, number> {
  const m = new Map<number, number>();
  for (const r of proxy.requests) {
    if (r.method !== 'PUT' || !r.query.has('partNumber') || !r.query.has('uploadId')) continue;
    const n = Number(r.query.get('partNumber'));
    m.set(n, (m.get(n) ?? 0) + 1);
  }
  return m;
}

const pcmFiles = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.pcm')).sort();

t.test('uploaded parts within the window are kept and counted in the spool, older ones deleted; finish removes them all', async (t) => {
  const { store, proxy } = await proxiedStore();
  const { upload, spool, spoolDir } = await newUpload(store, 'rec-window', 30);
  // 4.5 parts: the edge is at 23.6 MB of the object; 30 s = 5.76 MB. Parts 2 and 3 end more than
  // that behind it, part 4 (ends at 21 MB) less
  const total = Math.ceil((4.5 * PART) / 3840) * 3840;
  await writeRecording(upload, total);
  await upload.flush();
  await waitFor(() => upload.stats.uploadedParts === 3, 30_000, 'parts 2-4 uploaded');
  // a part's bytes go back to the spool once its file is gone (after the unlink's callback, so
  // a directory listing can see the file gone first): wait for the budget, then look at the files
  await waitFor(() => spool.usedBytes === total - 3 * PART + PART, 10_000, 'the bytes of parts 2 and 3 given back');
  t.same(await pcmFiles(spoolDir), ['part-000001.pcm', 'part-000004.pcm', 'part-000005.pcm'], 'part 1, the kept part 4 and the part being filled; the spool counts these, not the deleted ones');
  const edge = MASTER_HEADER_BYTES + total;
  t.ok(4 * PART + 30 * BYTES_PER_SEC > edge && 3 * PART + 30 * BYTES_PER_SEC <= edge, 'part 4 inside the window, part 3 out of it');
  const res = await upload.finish();
  t.equal(res.parts, 5);
  await assertMaster(t, store, 'rec/rec-window.wav', total);
  t.same([...partUploads(proxy).entries()].sort((a, b) => a[0] - b[0]), [[1, 1], [2, 1], [3, 1], [4, 1], [5, 1]], 'every part uploaded once');
  t.same(await pcmFiles(spoolDir), [], 'no part file left');
  t.equal(spool.usedBytes, 0, 'budget given back');
});

t.test('window 0: each part file is deleted once uploaded (the spool holds part 1 and the part being filled)', async (t) => {
  const { store } = await proxiedStore();
  const { upload, spool, spoolDir } = await newUpload(store, 'rec-nowindow', 0);
  const total = Math.ceil((3.5 * PART) / 3840) * 3840;
  await writeRecording(upload, total);
  await upload.flush();
  await waitFor(() => upload.stats.uploadedParts === 2, 30_000, 'parts 2-3 uploaded');
  await waitFor(() => spool.usedBytes === total - 2 * PART, 10_000, 'the bytes of the uploaded parts given back');
  t.same(await pcmFiles(spoolDir), ['part-000001.pcm', 'part-000004.pcm'], 'the uploaded parts deleted; the spool counts part 1 and the part being filled');
  await upload.finish();
  await assertMaster(t, store, 'rec/rec-nowindow.wav', total);
});

t.test('a crash with kept parts: recovery completes the master without uploading or counting the kept parts again', async (t) => {
  const { store, proxy } = await proxiedStore();
  const { upload, stateDir, spoolDir } = await newUpload(store, 'rec-kept-crash', 600);
  const total = Math.ceil((3.5 * PART) / 3840) * 3840;
  await writeRecording(upload, total);
  await upload.flush();
  await waitFor(() => upload.stats.uploadedParts === 2, 30_000, 'parts 2-3 uploaded');
  t.same(await pcmFiles(spoolDir), ['part-000001.pcm', 'part-000002.pcm', 'part-000003.pcm', 'part-000004.pcm'], 'the uploaded parts are kept');
  // the process stops here (as after kill -9: the manifest and every spool file stay)
  await upload.stop();
  const spool = new Spool({ maxBytes: 256 * 1024 * 1024 });
  const outcomes = await MasterUpload.recover({ store, stateDir, spool });
  t.match(outcomes, [{ status: 'completed', recordingId: 'rec-kept-crash', dataBytes: total, size: MASTER_HEADER_BYTES + total }], 'completed, each byte counted once');
  await assertMaster(t, store, 'rec/rec-kept-crash.wav', total);
  t.same([...partUploads(proxy).entries()].sort((a, b) => a[0] - b[0]), [[1, 1], [2, 1], [3, 1], [4, 1]], 'the kept parts were not uploaded again');
  t.same(await readdir(join(stateDir, 'uploads')), [], 'spool removed');
  t.equal(spool.usedBytes, 0, 'the new spool budget is back to 0');
});

t.test('a store that refuses the completion for good: the kept parts are deleted, the rest set aside, the failure counts each byte once', async (t) => {
  const { store } = await proxiedStore({ refuseComplete: 'InvalidPart' });
  const { upload, stateDir, spool } = await newUpload(store, 'rec-kept-refused', 600);
  const total = Math.ceil((3.5 * PART) / 3840) * 3840;
  await writeRecording(upload, total);
  await upload.flush();
  await waitFor(() => upload.stats.uploadedParts === 2, 30_000, 'parts 2-3 uploaded');
  await t.rejects(upload.finish(), { code: 'STORAGE_ERROR' });
  t.equal(spool.usedBytes, 0, 'budget given back');
  const aside = join(failedUploadsRoot(stateDir), 'rec-kept-refused');
  t.same(await pcmFiles(aside), ['part-000001.pcm'], 'set aside without the kept copies of uploaded parts (part 1 was uploaded last, kept with the header)');
});
