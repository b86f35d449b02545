import t from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { failedUploadsRoot, LIVE_PART_UPLOADS, MasterUpload, MIN_S3_PART_SIZE, type RecoveryOutcome } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import type { S3ObjectStore, S3ObjectStoreOptions } from '../../src/storage/s3-store.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { type ProxiedRequest, type RecordingProxy, type RecordingProxyOptions, startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { startS3rver, s3rverStore } from '../helpers/storage-s3rver.js';
import { assertMaster, runMasterCases, writeRecording } from '../helpers/storage-master-cases.js';
import { tempDir } from '../helpers/temp-dir.js';

const PART = MIN_S3_PART_SIZE;
const closers: (() => Promise<void>)[] = [];
t.teardown(async () => {
  for (const c of closers.reverse()) await c();
});

async function freshS3(): Promise<{ store: S3ObjectStore; endpoint: string; dir: string; port: number; close: () => Promise<void> }> {
  const dir = await tempDir(t, 'storage-s3master-');
  const server = await startS3rver(dir);
  const store = s3rverStore(server.endpoint);
  closers.push(async () => { await store.stop(); await server.close(); });
  return { store, endpoint: server.endpoint, dir, port: server.port, close: () => server.close() };
}

runMasterCases(t, async () => {
  const { store, endpoint } = await freshS3();
  return { store, partSize: PART, childStoreArgs: ['s3', endpoint] };
});

/** The write requests (PUT/POST) a proxy saw, and the UploadPart ones among them. */
function writesOf(proxy: RecordingProxy): { writes: ProxiedRequest[]; parts: ProxiedRequest[] } {
  const writes = proxy.requests.filter((r) => r.method === 'PUT' || r.method === 'POST');
  return { writes, parts: writes.filter((r) => r.method === 'PUT' && r.query.has('partNumber') && r.query.has('uploadId')) };
}

async function proxiedStore(options: RecordingProxyOptions = {}, extra: Partial<S3ObjectStoreOptions> = {}): Promise<{ store: S3ObjectStore; proxy: RecordingProxy }> {
  const { endpoint } = await freshS3();
  const proxy = await startRecordingProxy(endpoint, options);
  const store = s3rverStore(proxy.endpoint, extra);
  closers.push(async () => { await store.stop(); await proxy.close(); });
  return { store, proxy };
}

async function newUpload(store: S3ObjectStore, recordingId: string, stateDir?: string): Promise<{ upload: MasterUpload; stateDir: string; spool: Spool }> {
  const dir = stateDir ?? await tempDir(t, 'storage-state-');
  const spool = new Spool({ maxBytes: 256 * 1024 * 1024 });
  const upload = await MasterUpload.create({
    store, stateDir: dir, recordingId, key: `rec/${recordingId}.wav`, format: { sampleRate: 48000, channels: 2 },
    metadata: { tenant: 'acme' }, partSize: PART, spool, retry: { baseMs: 20, maxMs: 200 },
  });
  return { upload, stateDir: dir, spool };
}

t.test('17 MiB+ through a recording proxy: equal parts with the header in part 1, part 1 last, Content-MD5 on every write', async (t) => {
  const { store, proxy } = await proxiedStore();
  const { upload } = await newUpload(store, 'rec-proxy');
  const total = Math.ceil((17.25 * 1024 * 1024) / 3840) * 3840;
  await writeRecording(upload, total);
  const res = await upload.finish();
  const byTheUpload = proxy.requests.length;
  t.equal(res.parts, 4);
  await assertMaster(t, store, 'rec/rec-proxy.wav', total);

  const { writes, parts } = writesOf(proxy);
  t.equal(parts.length, 4, 'four UploadPart requests');
  t.same(parts.map((r) => Number(r.query.get('partNumber'))), [2, 3, 4, 1], 'part 1 uploaded last');
  const bySize = new Map(parts.map((p) => [Number(p.query.get('partNumber')), p.bodyBytes]));
  t.same([bySize.get(1), bySize.get(2), bySize.get(3)], [PART, PART, PART], 'every part but the last is exactly partSize, part 1 with the header in it');
  t.equal(bySize.get(4), MASTER_HEADER_BYTES + total - 3 * PART, 'the last part holds the rest');
  const completes = writes.filter((r) => r.method === 'POST' && r.query.has('uploadId'));
  t.equal(completes.length, 1, 'completed once');
  t.ok(proxy.requests.indexOf(completes[0]!) > proxy.requests.indexOf(parts[3]!), 'completion after part 1');
  t.equal(res.size, MASTER_HEADER_BYTES + total, 'the size reported is the object\'s');
  t.same(proxy.requests.slice(proxy.requests.indexOf(completes[0]!) + 1, byTheUpload).filter((r) => r.method === 'HEAD').map((r) => r.path), [], 'no HEAD after the completion: the size is the sum of the parts\' sizes');
  for (const p of parts) {
    t.equal(p.headers['content-md5'], p.bodyMd5, `part ${p.query.get('partNumber')} carries the Content-MD5 of its bytes`);
    t.equal(p.headers['content-length'], String(p.bodyBytes), 'sent with its length (not chunked)');
  }
});

t.test('a master of 3+ parts is accepted by a store that, like R2, wants equal non-trailing parts', async (t) => {
  const { store, proxy } = await proxiedStore({ r2PartRule: true });
  // the rule bites: unequal leading parts are refused with InvalidPart
  const id = await store.createMultipart('rule/check.wav', { contentType: 'audio/wav' });
  const a = await store.uploadPart('rule/check.wav', id, 1, Buffer.alloc(PART + 44, 1));
  const b = await store.uploadPart('rule/check.wav', id, 2, Buffer.alloc(PART, 2));
  const c = await store.uploadPart('rule/check.wav', id, 3, Buffer.alloc(1000, 3));
  await t.rejects(store.completeMultipart('rule/check.wav', id, [a, b, c]), { code: 'STORAGE_ERROR', details: { s3: 'InvalidPart' } }, 'the proxy refuses 5 MiB + 44 B / 5 MiB / …');

  const { upload, stateDir } = await newUpload(store, 'rec-r2');
  const total = Math.ceil((PART * 3.4) / 3840) * 3840;
  await writeRecording(upload, total);
  const res = await upload.finish({ 'duration-sec': '1' });
  t.equal(res.parts, 4);
  await assertMaster(t, store, 'rec/rec-r2.wav', total);
  const completes = writesOf(proxy).writes.filter((r) => r.method === 'POST' && r.path.endsWith('rec-r2.wav') && r.query.has('uploadId'));
  t.same(completes.map((r) => r.status), [200], 'CompleteMultipartUpload accepted at the first attempt');
  t.same(await readdir(join(stateDir, 'uploads')), [], 'spool removed');
});

t.test('short recording is one streamed PUT of header + data, from the spool file', async (t) => {
  const { store, proxy } = await proxiedStore();
  const { upload } = await newUpload(store, 'rec-one');
  await writeRecording(upload, 384_000);
  await upload.finish();
  const { writes } = writesOf(proxy);
  t.equal(writes.length, 1, 'one write request');
  t.equal(writes[0]!.method, 'PUT');
  t.notOk(writes[0]!.query.has('partNumber'));
  t.equal(writes[0]!.bodyBytes, 384_000 + MASTER_HEADER_BYTES);
  t.equal(writes[0]!.headers['content-length'], String(384_000 + MASTER_HEADER_BYTES), 'known length');
  t.equal(writes[0]!.headers['content-md5'], writes[0]!.bodyMd5, 'Content-MD5 of the bytes sent');
  await assertMaster(t, store, 'rec/rec-one.wav', 384_000);
});

t.test('a slow CreateMultipartUpload while the recording ends: one upload, every part and the completion under its id', async (t) => {
  // part 2 is handed to the uploader, whose CreateMultipartUpload is still unanswered when
  // finish() needs the upload too: both wait for the one being created
  const { store, proxy } = await proxiedStore({ delayCreateMultipartMs: 400 });
  const { upload } = await newUpload(store, 'rec-slow-create');
  const total = Math.ceil((PART * 2.2) / 3840) * 3840;
  await writeRecording(upload, total);
  const res = await upload.finish();
  t.equal(res.parts, 3);
  await assertMaster(t, store, 'rec/rec-slow-create.wav', total);
  const { writes, parts } = writesOf(proxy);
  const creates = writes.filter((r) => r.method === 'POST' && r.query.has('uploads'));
  t.equal(creates.length, 1, 'one CreateMultipartUpload');
  const ids = new Set([...parts, ...writes.filter((r) => r.method === 'POST' && r.query.has('uploadId'))].map((r) => r.query.get('uploadId')));
  t.equal(ids.size, 1, 'the parts and the completion name one upload');
  t.same(parts.map((r) => Number(r.query.get('partNumber'))).sort(), [1, 2, 3], 'each part once');
});

t.test('checksum crc32: x-amz-checksum-crc32 on every write, the upload declares CRC32 and completion quotes each part', async (t) => {
  const { store, proxy } = await proxiedStore({}, { checksum: 'crc32' });
  const { upload } = await newUpload(store, 'rec-crc');
  const total = Math.ceil((PART * 2.2) / 3840) * 3840;
  await writeRecording(upload, total);
  await upload.finish();
  await assertMaster(t, store, 'rec/rec-crc.wav', total);
  const { writes, parts } = writesOf(proxy);
  const create = writes.find((r) => r.method === 'POST' && r.query.has('uploads'));
  t.equal(create?.headers['x-amz-checksum-algorithm'], 'CRC32', 'CreateMultipartUpload declares CRC32');
  t.equal(parts.length, 3);
  for (const p of parts) {
    t.equal(p.headers['x-amz-checksum-crc32'], p.bodyCrc32, `part ${p.query.get('partNumber')} carries the CRC32 of its bytes`);
    t.equal(p.headers['content-md5'], undefined);
    t.notOk(String(p.headers['content-encoding'] ?? '').includes('aws-chunked'), 'in a header, not an aws-chunked trailer');
  }
  const complete = writes.find((r) => r.method === 'POST' && r.query.has('uploadId'));
  for (const p of parts) t.match(complete?.body ?? '', `<PartNumber>${p.query.get('partNumber')}</PartNumber>`);
  t.equal([...(complete?.body ?? '').matchAll(/<ChecksumCRC32>([^<]+)<\/ChecksumCRC32>/g)].length, 3, 'every part quoted with its CRC32');

  await store.put('small/x.bin', Buffer.from('hello'), { contentType: 'text/plain' });
  const put = proxy.requests[proxy.requests.length - 1]!;
  t.equal(put.headers['x-amz-checksum-crc32'], put.bodyCrc32, 'a buffer PUT too');
});

t.test('a store that refuses the completion for good: finish fails once, the upload is aborted and set aside, recovery never retries it', async (t) => {
  const { store, proxy } = await proxiedStore({ refuseComplete: 'InvalidPart' });
  const { upload, stateDir, spool } = await newUpload(store, 'rec-refused');
  await writeRecording(upload, Math.ceil((PART * 2.5) / 3840) * 3840);
  await t.rejects(upload.finish(), { code: 'STORAGE_ERROR' });
  t.equal(spool.usedBytes, 0, 'budget given back');
  t.same(await readdir(join(stateDir, 'uploads')), [], 'nothing left for recovery');
  t.same(await readdir(failedUploadsRoot(stateDir)), ['rec-refused'], 'the spool is kept aside');
  t.ok(proxy.requests.some((r) => r.method === 'DELETE' && r.query.has('uploadId')), 'the multipart upload was aborted');
  const before = proxy.requests.length;
  t.same(await MasterUpload.recover({ store, stateDir, spool }), [], 'recovery finds nothing');
  t.equal(proxy.requests.length, before, 'and asks the store nothing');
});

t.test('recovery of an upload the store refuses for good: recording failed announced once, set aside, never retried', async (t) => {
  // a process stops with the upload spooled (suspended); the next starts meet a store that refuses it
  const healthy = await proxiedStore();
  const { upload, stateDir } = await newUpload(healthy.store, 'rec-doomed');
  const total = Math.ceil((PART * 2.5) / 3840) * 3840;
  await writeRecording(upload, total);
  while (upload.stats.uploadedParts < 1) await new Promise((r) => setTimeout(r, 20));
  await upload.stop();

  const { store, proxy } = await proxiedStore({ refuseComplete: 'InvalidPart' });
  const announced: RecoveryOutcome[] = [];
  const announce = async (o: RecoveryOutcome): Promise<void> => { announced.push(o); };
  const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
  const first = await MasterUpload.recover({ store, stateDir, spool, retry: { baseMs: 10, maxMs: 50 }, announce });
  t.equal(first.length, 1);
  t.match(first[0], { status: 'failed', recordingId: 'rec-doomed', key: 'rec/rec-doomed.wav', metadata: { tenant: 'acme' } });
  t.equal(announced.length, 1, 'announced once');
  const failed = announced[0]!;
  if (failed.status !== 'failed') throw new Error('expected a failure');
  t.match(failed.error, /InvalidPart/);
  t.equal(failed.dataBytes, total, 'the PCM bytes the recording had');
  t.equal(spool.usedBytes, 0);
  t.same(await readdir(join(stateDir, 'uploads')), []);
  const aside = JSON.parse(await readFile(join(failedUploadsRoot(stateDir), 'rec-doomed', 'manifest.json'), 'utf8')) as { failure: { eventId: string } };
  t.equal(aside.failure.eventId, failed.eventId, 'the failure is recorded with its event id');

  const before = proxy.requests.length;
  t.same(await MasterUpload.recover({ store, stateDir, spool, announce }), [], 'the next start finds nothing to do');
  t.equal(announced.length, 1, 'still announced once');
  t.equal(proxy.requests.length, before, 'and the store is not asked again');
  t.equal(await store.head('rec/rec-doomed.wav'), null, 'no object');
});

t.test('a failure announcement cut by a crash is repeated with the same event id, and only then set aside', async (t) => {
  const healthy = await proxiedStore();
  const { upload, stateDir } = await newUpload(healthy.store, 'rec-twice');
  await writeRecording(upload, Math.ceil((PART * 2.2) / 3840) * 3840);
  await upload.stop();
  const { store } = await proxiedStore({ refuseComplete: 'InvalidPart' });
  const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
  const ids: string[] = [];
  await MasterUpload.recover({
    store, stateDir, spool, retry: { baseMs: 10, maxMs: 50 },
    announce: async (o) => { if (o.status === 'failed') ids.push(o.eventId); throw new Error('outbox unavailable'); },
  });
  t.same(await readdir(join(stateDir, 'uploads')), ['rec-twice'], 'kept while not announced');
  await MasterUpload.recover({ store, stateDir, spool, announce: async (o) => { if (o.status === 'failed') ids.push(o.eventId); } });
  t.equal(ids.length, 2);
  t.equal(ids[0], ids[1], 'the same event id both times');
  t.same(await readdir(join(stateDir, 'uploads')), []);
});

t.test('store outage mid-stream: audio spools, nothing is lost', async (t) => {
  const s3 = await freshS3();
  const stateDir = await tempDir(t, 'storage-state-');
  const lines: string[] = [];
  let onLine: () => void = () => undefined;
  const logger = pino({ level: 'warn' }, new Writable({
    write(chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); onLine(); cb(); },
  }));
  const upload = await MasterUpload.create({
    store: s3.store, stateDir, recordingId: 'rec-outage', key: 'rec/outage.wav', format: { sampleRate: 48000, channels: 2 },
    metadata: {}, partSize: PART, spool: new Spool({ maxBytes: 256 * 1024 * 1024 }), retry: { baseMs: 50, maxMs: 400 }, logger,
  });
  const partBytes = Math.ceil(PART / 3840) * 3840;
  await writeRecording(upload, partBytes * 2);
  while (upload.stats.uploadedParts < 1) await new Promise((r) => setTimeout(r, 20));
  await s3.close();
  // part 3 fills while the store is down; its upload must fail and be retried
  await writeRecording(upload, partBytes * 1.5, partBytes * 2);
  while (!lines.some((l) => l.includes('store call failed; retrying'))) await new Promise<void>((r) => { onLine = r; });
  const again = await startS3rver(s3.dir, s3.port);
  closers.push(() => again.close());
  await writeRecording(upload, partBytes * 0.5, partBytes * 3.5);
  const res = await upload.finish();
  const total = partBytes * 4;
  t.equal(res.dataBytes, total, 'every byte written is in the master');
  t.equal(res.droppedBytes, 0);
  await assertMaster(t, s3.store, 'rec/outage.wav', total);
});

t.test('parts of live recordings are uploaded a few at a time process-wide, however many fill at once (a meeting\'s streams)', async (t) => {
  const { store, proxy } = await proxiedStore();
  const n = 3 * LIVE_PART_UPLOADS;
  const uploads = await Promise.all(Array.from({ length: n }, (_, i) => newUpload(store, `rec-herd-${i}`)));
  // every recording fills parts 2 and 3 at about the same moment, and stays live while they go up
  const total = Math.ceil((PART * 3.1) / 3840) * 3840;
  await Promise.all(uploads.map(({ upload }) => writeRecording(upload, total)));
  while (uploads.some(({ upload }) => upload.stats.uploadedParts < 2)) await new Promise((r) => setTimeout(r, 20));
  const live = proxy.peakPartsInFlight;
  t.ok(live <= LIVE_PART_UPLOADS, `at most ${LIVE_PART_UPLOADS} part uploads in flight while live (saw ${live})`);
  t.ok(live >= 2, 'but more than one');
  const results = await Promise.all(uploads.map(({ upload }) => upload.finish()));
  t.same(results.map((r) => r.parts), Array.from({ length: n }, () => 4), 'every master complete');
  for (let i = 0; i < n; i++) await assertMaster(t, store, `rec/rec-herd-${i}.wav`, total);
});
