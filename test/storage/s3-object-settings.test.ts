import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { objectSettingsOf, type S3ObjectSettings, taggingOf } from '../../src/storage/s3-store.js';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { runCli, startDaemon } from '../helpers/daemon.js';
import { randomStereo, readWav } from '../helpers/egress.js';
import { configFile, daemonEgressUrl, E2E_API_KEY, ndjsonEvents, openEgress, sendPaced } from '../helpers/reliability.js';
import { type ProxiedRequest, type RecordingProxy, startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { S3RVER_BUCKET, s3rverStore, startS3rver } from '../helpers/storage-s3rver.js';
import { audioHeaders, postAudio } from '../helpers/whatsapp-app.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

const KMS_KEY = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

const closers: (() => Promise<void>)[] = [];
t.teardown(async () => {
  for (const c of closers.reverse()) await c();
});

async function proxiedS3(): Promise<{ endpoint: string; proxy: RecordingProxy }> {
  const dir = await tempDir(t, 'aid-s3opts-');
  const server = await startS3rver(dir);
  const proxy = await startRecordingProxy(server.endpoint);
  closers.push(async () => { await proxy.close(); await server.close(); });
  return { endpoint: server.endpoint, proxy };
}

/** Writes that create an object or an upload: PutObject, CreateMultipartUpload, CopyObject. */
function objectWrites(proxy: RecordingProxy): ProxiedRequest[] {
  return proxy.requests.filter((r) => (r.method === 'PUT' && !r.query.has('uploadId')) || (r.method === 'POST' && r.query.has('uploads')));
}

function uploadParts(proxy: RecordingProxy): ProxiedRequest[] {
  return proxy.requests.filter((r) => r.method === 'PUT' && r.query.has('uploadId') && r.query.has('partNumber'));
}

/** The key of a path-style request (`/<bucket>/<key…>`), decoded. */
function keyOf(r: ProxiedRequest): string {
  return decodeURIComponent(r.path.slice(`/${S3RVER_BUCKET}/`.length));
}

function tagsOf(r: ProxiedRequest): Record<string, string> {
  const raw = r.headers['x-amz-tagging'];
  if (typeof raw !== 'string') return {};
  return Object.fromEntries(raw.split('&').map((p) => p.split('=').map(decodeURIComponent) as [string, string]));
}

t.test('taggingOf: tenant and source from the metadata, extra tags over them, every part URL-encoded, refused tags left out', async (t) => {
  t.equal(taggingOf({ tenant: 'acme', source: 'livekit', 'recording-id': 'r1' }, undefined), 'tenant=acme&source=livekit');
  t.equal(taggingOf({ tenant: 'acme' }, { source: 'whatsapp' }), 'tenant=acme&source=whatsapp');
  t.equal(taggingOf({}, { 'cost center': 'a b/c=d+e@f:g' }), 'cost%20center=a%20b%2Fc%3Dd%2Be%40f%3Ag', 'space is %20, never +');
  t.equal(taggingOf({ tenant: 'a&b' }, undefined), undefined, '& is not allowed in S3 tags');
  t.equal(taggingOf({}, { 'aws:x': 'y' }), undefined, 'aws: names are reserved');
  t.equal(taggingOf(undefined, undefined), undefined);
});

t.test('config: SSE, KMS key, bucket key, storage class and tags from the environment; contradictions refused at start', async (t) => {
  const dir = await tempDir(t, 'aid-s3cfg-');
  const defaults = join(dir, 'default.json');
  await writeFile(defaults, '{}');
  const ok = loadConfig({ defaultFile: defaults, env: { S3_SSE: 'aws:kms', S3_SSE_KMS_KEY_ID: KMS_KEY, S3_SSE_BUCKET_KEY: 'true', S3_STORAGE_CLASS: 'STANDARD_IA', S3_TAG_OBJECTS: '1', S3_CHECKSUM: 'crc32' } });
  t.match(ok.storage.s3, { sse: 'aws:kms', kmsKeyId: KMS_KEY, bucketKey: true, storageClass: 'STANDARD_IA', tagObjects: true, checksum: 'crc32' });
  t.same(objectSettingsOf(ok.storage.s3), { encryption: 'aws:kms', kmsKeyId: KMS_KEY, bucketKey: true, storageClass: 'STANDARD_IA', tagObjects: true } satisfies S3ObjectSettings);
  t.same(objectSettingsOf(loadConfig({ defaultFile: defaults, env: {} }).storage.s3), {}, 'defaults send nothing');
  t.same(objectSettingsOf(loadConfig({ defaultFile: defaults, env: { S3_SSE: 'AES256' } }).storage.s3), { encryption: 'AES256' });

  const refused = (env: Record<string, string>, re: RegExp, what: string): void => {
    t.throws(() => loadConfig({ defaultFile: defaults, env }), { name: 'ConfigError', message: re }, what);
  };
  refused({ S3_SSE_KMS_KEY_ID: KMS_KEY }, /storage\.s3\.kmsKeyId: a KMS key needs KMS encryption; set S3_SSE/, 'KMS key without aws:kms');
  refused({ S3_SSE: 'AES256', S3_SSE_KMS_KEY_ID: KMS_KEY }, /KMS key needs KMS encryption.*got AES256/, 'KMS key with SSE-S3');
  refused({ S3_SSE_BUCKET_KEY: 'true' }, /storage\.s3\.bucketKey: an S3 Bucket Key applies to KMS encryption only/, 'bucket key without KMS');
  refused({ S3_STORAGE_CLASS: 'GLACIER' }, /GLACIER objects must be restored before they can be read/, 'archive class');
  refused({ S3_STORAGE_CLASS: 'standard' }, /storage\.s3\.storageClass: got "standard"/, 'unknown class');
  refused({ S3_SSE: 'kms' }, /storage\.s3\.sse: got "kms".*\(env S3_SSE\)/, 'unknown encryption');

  // the daemon itself: exit 78 with the message, before it listens
  const res = await runCli(['serve'], { DATA_DIR: dir, STORAGE_DRIVER: 's3', S3_SSE_KMS_KEY_ID: KMS_KEY, API_KEY: E2E_API_KEY });
  t.equal(res.code, 78, 'EX_CONFIG');
  t.match(res.stdout + res.stderr, /storage\.s3\.kmsKeyId: a KMS key needs KMS encryption/);
});

t.test('every kind of object a real daemon writes carries SSE-KMS, bucket key, storage class, tags and its CRC32 on the wire', async (t) => {
  const { endpoint, proxy } = await proxiedS3();
  const d = await startDaemon({
    STORAGE_DRIVER: 's3',
    S3_ENDPOINT: proxy.endpoint,
    S3_BUCKET: S3RVER_BUCKET,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    S3_SSE: 'aws:kms',
    S3_SSE_KMS_KEY_ID: KMS_KEY,
    S3_SSE_BUCKET_KEY: 'true',
    S3_STORAGE_CLASS: 'STANDARD_IA',
    S3_TAG_OBJECTS: 'true',
    S3_CHECKSUM: 'crc32',
    AUDIO_INGEST_CONFIG: configFile({ storage: { partSizeMiB: 5, chunkObjects: true }, livekit: { groupSeconds: 2 }, output: { channels: 2 }, whatsapp: { keepOriginal: true } }),
  });
  closers.push(async () => {
    d.child.kill('SIGTERM');
    await d.exited;
  });

  // a 32 s stereo stream: a master of 5.9 MiB (a multipart upload of two parts) and 16 chunk
  // objects, sent at 2× (the master's 1 MiB queue then rides out 2.7 s of a slow disk)
  const pcm = randomStereo(48000 * 32, 18);
  const { ws, closed } = await openEgress(await daemonEgressUrl(d.port, { roomName: 'secure-room', trackId: 'TR_sec', participant: 'pat' }));
  await sendPaced(ws, pcm, { speed: 2 });
  ws.close();
  await closed;
  const completed = await waitFor(() => ndjsonEvents(d.dataDir).find((e) => e.type === 'recording.completed'), 60_000, 'recording.completed');
  const chunks = await waitFor(() => { const c = ndjsonEvents(d.dataDir).filter((e) => e.type === 'recording.chunk'); return c.length === 16 ? c : undefined; }, 30_000, '16 recording.chunk');

  // a voice note, with its original kept, and its idempotency record
  const note = readFixture(await opusVoiceNote());
  const answer = await postAudio(d.baseUrl, note, audioHeaders({ apikey: E2E_API_KEY, 'idempotency-key': 'note-1' }));
  t.equal(answer.status, 201, JSON.stringify(answer.body));
  const stored = await waitFor(() => ndjsonEvents(d.dataDir).find((e) => e.type === 'voicenote.stored'), 30_000, 'voicenote.stored');
  // the idempotency record is written while the event is
  await waitFor(() => proxy.requests.find((r) => r.path.includes('/idempotency/') && r.status !== undefined), 10_000, 'the idempotency record');

  const writes = objectWrites(proxy);
  const masterKey = completed.s3_key_master as string;
  const byKind = {
    master: writes.filter((r) => keyOf(r) === masterKey),
    chunk: writes.filter((r) => /\/chunks\/\d{6}\.wav$/.test(keyOf(r))),
    voiceNote: writes.filter((r) => keyOf(r) === stored.key),
    original: writes.filter((r) => keyOf(r).startsWith('whatsapp/') && keyOf(r).endsWith('.ogg')),
    // the catalog's records and index entries, and the rooms' track records
    catalog: writes.filter((r) => !keyOf(r).startsWith('recordings/') && !keyOf(r).startsWith('whatsapp/') && !keyOf(r).startsWith('idempotency/')),
    idempotency: writes.filter((r) => keyOf(r).startsWith('idempotency/')),
  };
  t.equal(completed.dropped_bytes, 0, 'nothing dropped');
  t.equal(byKind.master.length, 1, 'the master: one CreateMultipartUpload');
  t.ok(byKind.master[0]!.query.has('uploads'), 'the master is a multipart upload');
  t.equal(byKind.chunk.length, 16, 'every chunk object');
  t.equal(byKind.voiceNote.length, 1, 'the voice note');
  t.equal(byKind.original.length, 1, 'the original');
  t.ok(byKind.catalog.length >= 2, `catalog records and index entries (${byKind.catalog.map(keyOf).join(', ')})`);
  t.equal(byKind.idempotency.length, 1, 'the idempotency record');
  t.equal(writes.length, Object.values(byKind).reduce((n, l) => n + l.length, 0), 'no other object written');

  const source = (kind: string): string => (kind === 'voiceNote' || kind === 'original' || kind === 'idempotency' ? 'whatsapp' : 'livekit');
  for (const [kind, list] of Object.entries(byKind)) {
    for (const r of list) {
      const what = `${kind} ${keyOf(r)}`;
      const h = r.headers;
      if (h['x-amz-server-side-encryption'] !== 'aws:kms' || h['x-amz-server-side-encryption-aws-kms-key-id'] !== KMS_KEY || h['x-amz-server-side-encryption-bucket-key-enabled'] !== 'true') {
        t.fail(`${what}: SSE-KMS headers`, { found: h });
      }
      if (h['x-amz-storage-class'] !== 'STANDARD_IA') t.fail(`${what}: storage class`, { found: h['x-amz-storage-class'] });
      t.same(tagsOf(r), { tenant: 'default', source: source(kind) }, `${what}: tags`);
      if (r.method === 'PUT' && h['x-amz-checksum-crc32'] !== r.bodyCrc32) t.fail(`${what}: CRC32 of its bytes`, { header: h['x-amz-checksum-crc32'], body: r.bodyCrc32 });
      if (r.method === 'POST' && h['x-amz-checksum-algorithm'] !== 'CRC32') t.fail(`${what}: the upload declares CRC32`, { found: h['x-amz-checksum-algorithm'] });
      if (r.status !== 200) t.fail(`${what}: the store accepted it`, { status: r.status });
    }
  }
  const parts = uploadParts(proxy);
  t.equal(parts.length, 2, 'two parts of the master');
  for (const p of parts) {
    t.equal(p.headers['x-amz-checksum-crc32'], p.bodyCrc32, `part ${p.query.get('partNumber')}: CRC32 of its bytes`);
    t.equal(p.headers['x-amz-server-side-encryption'], undefined, 'UploadPart carries no SSE header (S3 takes it from the upload)');
    t.equal(p.headers['x-amz-storage-class'], undefined);
  }
  t.pass(`checked ${writes.length} object writes and ${parts.length} parts`);

  // what was stored is intact, and s3rver kept the class
  const store = s3rverStore(endpoint);
  closers.push(() => store.stop());
  const master = readWav(await store.get(masterKey));
  t.ok(master.data.equals(pcm), 'master == input');
  const chunkData = [];
  for (const c of chunks.sort((a, b) => (a.seq as number) - (b.seq as number))) chunkData.push(readWav(await store.get(c.s3_key as string)).data);
  t.ok(Buffer.concat(chunkData).equals(master.data), 'chunks concatenated == master');
  const head = await fetch(`${endpoint}/${S3RVER_BUCKET}/${masterKey.split('/').map(encodeURIComponent).join('/')}`, { method: 'HEAD' });
  t.equal(head.headers.get('x-amz-storage-class'), 'STANDARD_IA', 's3rver stored the class');
});

t.test('the store sends SSE-S3, tags (URL-encoded) and class on PutObject, streamed puts and metadata copies, and nothing by default', async (t) => {
  const { proxy } = await proxiedS3();
  const store = s3rverStore(proxy.endpoint, { checksum: 'md5', objects: { encryption: 'AES256', storageClass: 'ONEZONE_IA', tagObjects: true, kmsKeyId: 'ignored-without-kms', bucketKey: true } });
  const plain = s3rverStore(proxy.endpoint);
  closers.push(async () => { await store.stop(); await plain.stop(); });
  await store.put('a/buf.bin', Buffer.from('hello'), { contentType: 'application/octet-stream', metadata: { tenant: 't1', source: 'livekit' }, tags: { 'cost center': 'a b/c' } });
  // a streamed body over one 8 MiB part: a multipart upload
  const big = Buffer.alloc(9 * 1024 * 1024, 7);
  await store.put('a/stream.bin', Readable.from([big.subarray(0, 5 << 20), big.subarray(5 << 20)]), { contentType: 'application/octet-stream', metadata: { tenant: 't1' } });
  await store.replaceMetadata('a/buf.bin', { contentType: 'text/plain', metadata: { tenant: 't1' } });
  await plain.put('a/plain.bin', Buffer.from('x'), { contentType: 'application/octet-stream', metadata: { tenant: 't1' } });

  const w = objectWrites(proxy);
  t.same(w.map((r) => [r.method, keyOf(r)]), [['PUT', 'a/buf.bin'], ['POST', 'a/stream.bin'], ['PUT', 'a/buf.bin'], ['PUT', 'a/plain.bin']]);
  const [put, create, copy, plainPut] = w as [ProxiedRequest, ProxiedRequest, ProxiedRequest, ProxiedRequest];
  for (const r of [put, create, copy]) {
    t.equal(r.headers['x-amz-server-side-encryption'], 'AES256');
    t.equal(r.headers['x-amz-server-side-encryption-aws-kms-key-id'], undefined, 'no KMS key with SSE-S3');
    t.equal(r.headers['x-amz-server-side-encryption-bucket-key-enabled'], undefined);
    t.equal(r.headers['x-amz-storage-class'], 'ONEZONE_IA');
  }
  t.equal(put.headers['x-amz-tagging'], 'tenant=t1&source=livekit&cost%20center=a%20b%2Fc');
  t.equal(put.headers['content-md5'], put.bodyMd5);
  t.equal(create.headers['x-amz-tagging'], 'tenant=t1');
  t.ok(copy.headers['x-amz-copy-source'], 'the metadata change is a CopyObject');
  t.equal(copy.headers['x-amz-tagging'], undefined, 'a copy keeps the tags it has (TaggingDirective COPY)');
  for (const h of ['x-amz-server-side-encryption', 'x-amz-storage-class', 'x-amz-tagging']) t.equal(plainPut.headers[h], undefined, `default: no ${h}`);
  const parts = uploadParts(proxy);
  t.equal(parts.length, 2);
  for (const p of parts) t.equal(p.headers['x-amz-server-side-encryption'], undefined, 'no SSE header on UploadPart');
});
