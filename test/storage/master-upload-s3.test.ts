import t from 'tap';
import { rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MasterUpload, MIN_S3_PART_SIZE } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import type { S3ObjectStore } from '../../src/storage/s3-store.js';
import { startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { startS3rver, s3rverStore } from '../helpers/storage-s3rver.js';
import { assertMaster, runMasterCases, tempDir, writeRecording } from '../helpers/storage-master-cases.js';

const PART = MIN_S3_PART_SIZE;
const dirs: string[] = [];
const closers: (() => Promise<void>)[] = [];
t.teardown(async () => {
  for (const c of closers.reverse()) await c();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function freshS3(): Promise<{ store: S3ObjectStore; endpoint: string; dir: string; port: number; close: () => Promise<void> }> {
  const dir = await tempDir('storage-s3master-');
  dirs.push(dir);
  const server = await startS3rver(dir);
  const store = s3rverStore(server.endpoint);
  closers.push(async () => { await store.stop(); await server.close(); });
  return { store, endpoint: server.endpoint, dir, port: server.port, close: () => server.close() };
}

runMasterCases(t, async () => {
  const { store, endpoint } = await freshS3();
  return { store, partSize: PART, childStoreArgs: ['s3', endpoint] };
});

t.test('17 MiB+ through a recording proxy: parts ≥ 5 MiB but the last, part 1 uploaded last', async (t) => {
  const { endpoint } = await freshS3();
  const proxy = await startRecordingProxy(endpoint);
  const store = s3rverStore(proxy.endpoint);
  closers.push(async () => { await store.stop(); await proxy.close(); });
  const stateDir = await tempDir('storage-state-');
  dirs.push(stateDir);
  const total = Math.ceil((17.25 * 1024 * 1024) / 3840) * 3840;
  const upload = await MasterUpload.create({
    store, stateDir, recordingId: 'rec-proxy', key: 'rec/proxy.wav', format: { sampleRate: 48000, channels: 2 },
    metadata: { tenant: 'acme' }, partSize: PART, spool: new Spool({ maxBytes: 256 * 1024 * 1024 }),
  });
  await writeRecording(upload, total);
  const res = await upload.finish();
  t.equal(res.parts, 4);
  await assertMaster(t, store, 'rec/proxy.wav', total);

  const parts = proxy.requests.filter((r) => r.method === 'PUT' && r.query.has('partNumber') && r.query.has('uploadId'));
  t.equal(parts.length, 4, 'four UploadPart requests');
  const numbers = parts.map((r) => Number(r.query.get('partNumber')));
  t.same(numbers, [2, 3, 4, 1], 'part 1 uploaded last');
  const last = Math.max(...numbers);
  for (const p of parts) {
    if (Number(p.query.get('partNumber')) !== last) t.ok(p.bodyBytes >= PART, `part ${p.query.get('partNumber')} has ${p.bodyBytes} bytes ≥ 5 MiB`);
  }
  t.equal(parts[3]!.bodyBytes, PART + 44, 'part 1 = header + one part of data');
  const completes = proxy.requests.filter((r) => r.method === 'POST' && r.query.has('uploadId'));
  t.equal(completes.length, 1, 'completed once');
  t.ok(proxy.requests.indexOf(completes[0]!) > proxy.requests.indexOf(parts[3]!), 'completion after part 1');
});

t.test('short recording is a single PUT', async (t) => {
  const { endpoint } = await freshS3();
  const proxy = await startRecordingProxy(endpoint);
  const store = s3rverStore(proxy.endpoint);
  closers.push(async () => { await store.stop(); await proxy.close(); });
  const stateDir = await tempDir('storage-state-');
  dirs.push(stateDir);
  const upload = await MasterUpload.create({
    store, stateDir, recordingId: 'rec-one', key: 'rec/one.wav', format: { sampleRate: 48000, channels: 2 },
    metadata: {}, partSize: PART, spool: new Spool({ maxBytes: 64 * 1024 * 1024 }),
  });
  await writeRecording(upload, 384_000);
  await upload.finish();
  const writes = proxy.requests.filter((r) => r.method === 'PUT' || r.method === 'POST');
  t.equal(writes.length, 1, 'one write request');
  t.equal(writes[0]!.method, 'PUT');
  t.notOk(writes[0]!.query.has('partNumber'));
  t.equal(writes[0]!.bodyBytes, 384_044);
  await assertMaster(t, store, 'rec/one.wav', 384_000);
});

t.test('store outage mid-stream: audio spools, nothing is lost', async (t) => {
  const s3 = await freshS3();
  const stateDir = await tempDir('storage-state-');
  dirs.push(stateDir);
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
