import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { AppError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { type OpenedRecording, RecordingCatalog } from '../../src/recording/recording-catalog.js';
import type { RecordingResult } from '../../src/recording/recording.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { ObjectKeys } from '../../src/storage/keys.js';
import type { BatchItem, ObjectStore, PutOptions } from '../../src/storage/object-store.js';
import { metricValue, startTestApp, TEST_API_KEY } from '../helpers/app.js';
import { egressUrl, outboxEvents, readWav } from '../helpers/egress.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

const logger = createLogger({ level: 'silent' });

/** A real fs store under a temp dir. */
async function fsStore(t: Test): Promise<FsObjectStore> {
  const root = await tempDir(t, 'aid-catalog-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1:1', secret: 's' } });
  await store.start();
  return store;
}

/**
 * The real store with `put` replaced (fault injection) and without group commit, as a store
 * without `putBatch` (S3) is: the catalog writes each object with `put`. Every other call goes
 * to the store.
 */
function withPut(store: ObjectStore, put: (key: string, body: Buffer, options: PutOptions, real: ObjectStore['put']) => Promise<{ key: string; size: number }>): ObjectStore {
  const real = store.put.bind(store);
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'put') return (key: string, body: Buffer, options: PutOptions) => put(key, body, options, real);
      if (prop === 'putBatch') return undefined;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function opened(recordingId: string, over: Partial<OpenedRecording['identity']> = {}, startedAt = new Date()): OpenedRecording {
  return {
    identity: { recordingId, tenant: 'acme', roomName: 'room-1', meetingId: 'meet-1', participant: 'alice', trackId: 'TR_1', source: 'livekit', ...over },
    key: `recordings/acme/meet-1/alice/TR_1/${recordingId}.wav`,
    chunkPrefix: `recordings/acme/meet-1/alice/TR_1/${recordingId}/chunks/`,
    sampleRate: 48000,
    channels: 1,
    startedAt,
  };
}

function result(key: string, over: Partial<RecordingResult> = {}): RecordingResult {
  return { status: 'completed', endReason: 'normal', key, sizeBytes: 96044, durationSec: 1, frames: 48000, droppedBytes: 0, muteIntervals: [], error: null, ...over };
}

t.test('writes are serialized per recording: a slow first write never overwrites the final state', async (t) => {
  const store = await fsStore(t);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let first = true;
  const slow = withPut(store, async (key, body, options, real) => {
    if (first) {
      first = false;
      await held;
    }
    return real(key, body, options);
  });
  const catalog = new RecordingCatalog({ store: slow, keys: new ObjectKeys(), logger, metrics: new Metrics() });
  const o = opened('rec-1');
  catalog.opened(o);
  void catalog.finished(o.identity, result(o.key)); // never rejects; whenIdle() below waits for both
  void catalog.finished(o.identity, result(o.key, { status: 'failed' }));
  release();
  await catalog.whenIdle();
  const record = await catalog.get('acme', 'rec-1');
  t.match(record, { recordingId: 'rec-1', tenant: 'acme', state: 'completed', endReason: 'normal', durationSec: 1, sizeBytes: 96044, meetingId: 'meet-1', roomName: 'room-1' });
  t.equal(catalog.failedWrites, 0);
  t.not(await store.head('catalog/recordings/acme/rec-1.json'), null, 'record under catalog/recordings/<tenant>/');
  const index: string[] = [];
  for await (const o2 of store.list('catalog/')) if (!o2.key.startsWith('catalog/recordings/')) index.push(o2.key);
  t.match(index, [/^catalog\/meetings\/acme\/meet-1\/\d{8}T\d{9}Z_rec-1$/, /^catalog\/rooms\/acme\/room-1\/\d{8}T\d{9}Z_rec-1$/], 'one index entry per meeting and per room');
});

t.test('a store that is briefly unavailable is retried; a store error is given up, logged and counted', async (t) => {
  const store = await fsStore(t);
  let failuresLeft = 2;
  const flaky = withPut(store, async (key, body, options, real) => {
    if (failuresLeft-- > 0) throw new AppError('STORAGE_UNAVAILABLE', 'down', { retryAfterSec: 5, retryable: true });
    return real(key, body, options);
  });
  const metrics = new Metrics();
  const catalog = new RecordingCatalog({ store: flaky, keys: new ObjectKeys(), logger, metrics, retryDelaysMs: [1, 1, 1] });
  catalog.opened(opened('rec-2'));
  await catalog.whenIdle();
  t.match(await catalog.get('acme', 'rec-2'), { state: 'recording', endedAt: null, durationSec: null });
  t.equal(catalog.failedWrites, 0);

  const broken = withPut(store, async () => {
    throw new AppError('STORAGE_ERROR', 'refused');
  });
  const lines: Record<string, unknown>[] = [];
  const captured = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const failing = new RecordingCatalog({ store: broken, keys: new ObjectKeys(), logger: captured, metrics, retryDelaysMs: [1] });
  const o = opened('rec-3');
  failing.opened(o);
  void failing.finished(o.identity, result(o.key)); // never rejects; whenIdle() waits for it
  await failing.whenIdle();
  t.equal(failing.failedWrites, 2, 'each given-up write counted');
  t.equal((await metrics.registry.getSingleMetric('audio_ingestd_errors_total')!.get()).values.find((v) => v.labels.code === 'STORAGE_ERROR')?.value, 2);
  t.ok(lines.some((l) => l.msg?.toString().startsWith('catalog write failed') && l.recordingId === 'rec-3'), 'logged with the recording id');
});

/** The real store with `putBatch` wrapped (fault injection, call counts); every other call goes to the store. */
function withBatch(store: FsObjectStore, putBatch: (items: BatchItem[], real: (items: BatchItem[]) => Promise<void>) => Promise<void>): ObjectStore {
  const real = store.putBatch.bind(store);
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'putBatch') return (items: BatchItem[]) => putBatch(items, real);
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

t.test('on a store with group commit, the records written in one tick go in one batch; each is complete', async (t) => {
  const store = await fsStore(t);
  const batches: number[] = [];
  const counted = withBatch(store, async (items, real) => {
    batches.push(items.length);
    return real(items);
  });
  const catalog = new RecordingCatalog({ store: counted, keys: new ObjectKeys(), logger, metrics: new Metrics() });
  const recs = Array.from({ length: 40 }, (_, i) => opened(`rec-b${i}`));
  for (const o of recs) catalog.opened(o);
  await catalog.whenIdle();
  t.same(batches, [120], '40 records × (record + room entry + meeting entry) in one putBatch');
  // a meeting ending: every finished() of one tick, one batch, then the final states
  await Promise.all(recs.map((o) => catalog.finished(o.identity, result(o.key))));
  t.same(batches, [120, 120]);
  for (const o of recs) t.match(await catalog.get('acme', o.identity.recordingId), { state: 'completed', durationSec: 1 });
  const rooms: string[] = [];
  for await (const e of store.list('catalog/rooms/acme/room-1/')) rooms.push(e.key);
  t.equal(rooms.length, 40, 'one room entry per recording');
  t.equal(catalog.failedWrites, 0);
});

t.test('on the fs store every catalog object is one file: no sidecar, its type from its name, the tenant in the key and the body', async (t) => {
  const root = await tempDir(t, 'aid-catalog-');
  const store = new FsObjectStore({ root });
  await store.start();
  const catalog = new RecordingCatalog({ store, keys: new ObjectKeys(), logger, metrics: new Metrics() });
  catalog.opened(opened('rec-s1'));
  await catalog.whenIdle();
  const objects: string[] = [];
  for await (const o of store.list('catalog/')) {
    objects.push(o.key);
    const head = await store.head(o.key);
    t.same({ contentType: head?.contentType, metadata: head?.metadata }, { contentType: o.key.endsWith('.json') ? 'application/json' : 'application/octet-stream', metadata: {} }, o.key);
  }
  t.equal(objects.length, 3, 'the record and its room and meeting entries');
  t.notOk(existsSync(join(root, '.meta', 'catalog')), 'no sidecar written for any of them');
});

t.test('a batch the store refuses for good is written object by object: only the record it refuses is lost', async (t) => {
  const store = await fsStore(t);
  const batches: number[] = [];
  const keys = new ObjectKeys();
  const metrics = new Metrics();
  const catalog = new RecordingCatalog({ store: withBatch(store, async (items, real) => {
    batches.push(items.length);
    // the store refuses one object for good (as S3 does a key or a header it will not take): the whole batch it is in
    if (items.some((it) => it.key === catalog.recordKey('acme', 'rec-bad'))) throw new AppError('INVALID_PARAMETER', 'refused by the store');
    return real(items);
  }), keys, logger, metrics, retryDelaysMs: [1] });
  catalog.opened(opened('rec-ok1'));
  catalog.opened(opened('rec-bad'));
  catalog.opened(opened('rec-ok2'));
  await catalog.whenIdle();
  t.same(batches, [9, 1, 1, 1, 1, 1, 1, 1, 1, 1], 'the refused batch, then each object alone');
  t.match(await catalog.get('acme', 'rec-ok1'), { state: 'recording' });
  t.match(await catalog.get('acme', 'rec-ok2'), { state: 'recording' });
  t.equal(await catalog.get('acme', 'rec-bad'), null, 'the refused record is lost');
  t.ok((await catalog.list('acme', { roomName: 'room-1' })).records.length === 2, "its index entries were stored (they point at nothing: the list skips them)");
  t.equal(catalog.failedWrites, 1, 'the refused record counted once');
});

t.test('get and list: per tenant, by meeting or room, oldest first, bounded, skipping dangling entries', async (t) => {
  const store = await fsStore(t);
  const catalog = new RecordingCatalog({ store, keys: new ObjectKeys({ prefix: 'env/eu' }), logger, metrics: new Metrics() });
  const t0 = Date.parse('2024-05-01T10:00:00Z');
  const specs: [string, Partial<OpenedRecording['identity']>][] = [
    ['r-c', {}],
    ['r-a', {}],
    ['r-b', { meetingId: undefined }],
    ['r-d', { roomName: 'room-2', meetingId: undefined }],
    ['r-e', { tenant: 'other' }],
  ];
  specs.forEach(([id, over], i) => catalog.opened(opened(id, over, new Date(t0 + i * 1000))));
  await catalog.whenIdle();
  t.ok((await store.head('env/eu/catalog/recordings/acme/r-a.json')) !== null, 'under the storage prefix');

  const ids = (r: { records: { recordingId: string }[] }): string[] => r.records.map((x) => x.recordingId);
  t.same(ids(await catalog.list('acme', { meetingId: 'meet-1' })), ['r-c', 'r-a'], 'start order, not id order');
  t.same(ids(await catalog.list('acme', { roomName: 'room-1' })), ['r-c', 'r-a', 'r-b']);
  t.same(ids(await catalog.list('acme', { roomName: 'room-2' })), ['r-d']);
  t.same(ids(await catalog.list('other', { roomName: 'room-1' })), ['r-e']);
  t.same(await catalog.list('acme', { roomName: 'room-1' }, 2), { records: [await catalog.get('acme', 'r-c'), await catalog.get('acme', 'r-a')], truncated: true });
  t.equal(await catalog.get('other', 'r-a'), null, "another tenant's id");
  t.equal(await catalog.get('acme', 'r-e'), null);
  t.equal(await catalog.get('acme', '../r-a'), null, 'a hostile id stays inside the catalog and is not found');

  await store.delete('env/eu/catalog/recordings/acme/r-a.json');
  t.same(ids(await catalog.list('acme', { meetingId: 'meet-1' })), ['r-c'], 'an index entry without its record is skipped');
  // a room whose sanitized name collides with another's lists only its own recordings
  catalog.opened(opened('r-f', { roomName: 'room/1', meetingId: undefined }, new Date(t0 + 9000)));
  await catalog.whenIdle();
  t.same(ids(await catalog.list('acme', { roomName: 'room/1' })), ['r-f']);
  t.notOk(ids(await catalog.list('acme', { roomName: 'room_1' })).includes('r-f'));
});

t.test('in the daemon: catalog writes failing never fail the recording', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  // a file where the catalog folder should be: every catalog put fails in the real fs store
  await writeFile(join(h.dataDir, 'store', 'objects', 'catalog'), 'not a folder');
  const url = await egressUrl(h, { roomName: 'room-f', trackId: 'TR_f' });
  await simulateEgress({ url, pcm: tonePcm(1), realtime: false });
  const ev = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed'), 10_000, 'recording.completed');
  t.equal(ev.status, 'completed');
  const wav = readWav(await h.app.store.get(ev.s3_key_master as string));
  t.equal(wav.dataSize, 96000, 'the master is whole');
  await h.app.catalog.whenIdle();
  t.equal(h.app.catalog.failedWrites, 2, 'the start and the end write were given up');
  t.ok(h.logs.some((l) => l.msg === 'catalog write failed: the recording is unaffected, its catalog entry is incomplete' && l.recordingId === ev.recording_id));
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_errors_total', 'code="STORAGE_ERROR"'), 2);
  const res = await fetch(`${h.baseUrl}/v1/recordings/${ev.recording_id as string}`, { headers: { apikey: TEST_API_KEY } });
  t.equal(res.status, 404, 'no catalog entry, so not found (the event still carries everything)');
});
