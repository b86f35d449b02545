/**
 * Past 4 GiB on the S3 driver: a sparse spool of a 13-hour recording (part files extended with
 * holes, patterns written at known places) is recovered through a recording proxy into s3rver.
 * The master is RF64 with its ds64 sizes, every part but the last is exactly partSize, part 1
 * carries the header, and the PCM is where it was; nothing is read into memory on the way
 * (the process's RSS stays far below one part, let alone the object).
 */
import t from 'tap';
import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { MasterUpload, type RecoveryOutcome } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import { MASTER_HEADER_BYTES, RIFF_MAX_DATA_BYTES } from '../../src/audio/wav.js';
import { startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { s3rverStore, startS3rver } from '../helpers/storage-s3rver.js';
import { tempDir } from '../helpers/temp-dir.js';
import { parseMasterHeader, patternBytes } from '../helpers/storage-wav.js';

const MiB = 1024 * 1024;
// s3rver writes the parts and then the object: 8 GiB through one process on a shared disk
t.setTimeout(900_000);

t.test('s3: a sparse 4.1 GiB spool is recovered into an RF64 master of equal parts (ds64 sizes, PCM where it was, constant memory)', async (t) => {
  const s3Dir = await tempDir(t, 'storage-s3rf64-');
  const state = await tempDir(t, 'storage-state-');
  const server = await startS3rver(s3Dir);
  const proxy = await startRecordingProxy(server.endpoint, { hashBodies: false });
  // Large parts keep the request count small; the bodies still stream from the spool files.
  // Checksums (tested with real parts elsewhere) would add a pass over 4 GiB to s3rver's own two.
  const store = s3rverStore(proxy.endpoint, { requestTimeoutMs: 600_000, checksum: 'none' });
  t.teardown(async () => { await store.stop(); await proxy.close(); await server.close(); });

  const partSize = 512 * MiB;
  const dataBytes = 2 ** 32 + 1_000_000; // just past the 32-bit limit: 12.4 h of 48 kHz mono
  const objectBytes = MASTER_HEADER_BYTES + dataBytes;
  const parts = Math.ceil(objectBytes / partSize);
  const recordingId = 'rec-s3-rf64';
  const key = `rec/${recordingId}.wav`;

  // the real upload spools its first audio, then stops (a crash or a shutdown with the store down)
  const upload = await MasterUpload.create({
    store, stateDir: state, recordingId, key, format: { sampleRate: 48000, channels: 1 }, metadata: { tenant: 'long' }, partSize, spool: new Spool({ maxBytes: 64 * MiB }),
  });
  upload.write(patternBytes(0, 1920));
  await upload.stop();
  // …and the rest of the recording is laid out as the spool would hold it: part-k holds object bytes [(k-1)·S, k·S)
  const dir = join(state, 'uploads', recordingId);
  const fileOf = (part: number): string => join(dir, `part-${String(part).padStart(6, '0')}.pcm`);
  for (let part = 1; part <= parts; part++) {
    // the last one ends with one byte of a torn frame
    await truncate(fileOf(part), part < parts ? partSize : objectBytes - (parts - 1) * partSize + 1).catch(async (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await (await open(fileOf(part), 'w')).close();
      await truncate(fileOf(part), part < parts ? partSize : objectBytes - (parts - 1) * partSize + 1);
    });
  }
  // marks at data offsets (none across a part boundary): in part 2, either side of the RIFF limit, at the very end
  const marks = [partSize + 4096, RIFF_MAX_DATA_BYTES - 5000, RIFF_MAX_DATA_BYTES + 1000, dataBytes - 4096];
  for (const at of marks) {
    const o = MASTER_HEADER_BYTES + at;
    const part = Math.floor(o / partSize) + 1;
    const fh = await open(fileOf(part), 'r+');
    await fh.write(patternBytes(at, 4096), 0, 4096, o - (part - 1) * partSize);
    await fh.close();
  }

  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
  const announced: RecoveryOutcome[] = [];
  const outcomes = await MasterUpload.recover({
    store, stateDir: state, spool: new Spool({ maxBytes: 64 * MiB }), announce: async (o) => { announced.push(o); },
  }).finally(() => clearInterval(sampler));
  t.match(outcomes, [{ status: 'completed', recordingId, key, dataBytes, size: objectBytes }], 'completed, the torn byte cut');
  t.equal(announced.length, 1, 'announced once');

  const uploads = proxy.requests.filter((r) => r.method === 'PUT' && r.query.has('partNumber') && r.query.has('uploadId') && r.status === 200);
  const sizes = new Map(uploads.map((r) => [Number(r.query.get('partNumber')), r.bodyBytes]));
  t.equal(sizes.size, parts, `${parts} parts uploaded`);
  for (let part = 1; part < parts; part++) t.equal(sizes.get(part), partSize, `part ${part} is exactly partSize`);
  t.equal(sizes.get(parts), objectBytes - (parts - 1) * partSize, 'the last part holds the rest');
  const part1 = uploads.find((r) => r.query.get('partNumber') === '1')!;
  t.same(parseMasterHeader(part1.head), { container: 'RF64', sampleRate: 48000, channels: 1, bitsPerSample: 16, fileBytes: objectBytes, dataBytes }, 'part 1 went out with the RF64 header');
  t.ok(uploads.indexOf(part1) === uploads.length - 1, 'part 1 last, once its header was written');

  t.equal((await store.head(key))?.size, objectBytes, 'the object has every byte');
  const h = parseMasterHeader(await store.getRange(key, 0, MASTER_HEADER_BYTES - 1));
  t.same(h, { container: 'RF64', sampleRate: 48000, channels: 1, bitsPerSample: 16, fileBytes: objectBytes, dataBytes }, 'RF64 · ds64 sizes in the stored object');
  t.ok((await store.getRange(key, MASTER_HEADER_BYTES, MASTER_HEADER_BYTES + 1919)).equals(patternBytes(0, 1920)), 'the first audio');
  for (const at of marks) {
    t.ok((await store.getRange(key, MASTER_HEADER_BYTES + at, MASTER_HEADER_BYTES + at + 4095)).equals(patternBytes(at, 4096)), `PCM at data offset ${at}`);
  }
  // s3rver runs in this process too and streams as well: the bound is half of one part, so
  // holding a part (let alone the object) in memory anywhere on the way fails it
  t.ok(peak - rss0 < partSize / 2, `RSS grew by ${((peak - rss0) / MiB).toFixed(1)} MiB for a ${(objectBytes / 2 ** 30).toFixed(2)} GiB master`);
});
