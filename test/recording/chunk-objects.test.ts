import t from 'tap';
import { encodeWav } from '../../src/audio/wav.js';
import type { AudioEvent } from '../../src/events/types.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { ChunkObjects } from '../../src/recording/chunk-objects.js';
import type { RecordingIdentity } from '../../src/recording/recording.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { ObjectKeys } from '../../src/storage/keys.js';
import type { BatchItem } from '../../src/storage/object-store.js';
import { tempDir } from '../helpers/temp-dir.js';

const format = { sampleRate: 16000, channels: 1 };
const identity = (i: number): RecordingIdentity => ({ recordingId: `rec-${i}`, tenant: 'default', roomName: 'room', participant: `p${i}`, trackId: `TR_${i}`, source: 'livekit' });
const pcmOf = (i: number): Buffer => Buffer.alloc(3200, i + 1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A real fs store whose group commits are counted. */
async function countingStore(t: { teardown(fn: () => unknown): void }): Promise<{ store: FsObjectStore; batches: number[] }> {
  const store = new FsObjectStore({ root: await tempDir(t, 'aid-chunk-objects-'), presign: { baseUrl: 'http://127.0.0.1', secret: 's' } });
  await store.start();
  t.teardown(() => store.stop());
  const batches: number[] = [];
  const putBatch = store.putBatch.bind(store);
  store.putBatch = (items: BatchItem[]) => {
    batches.push(items.length);
    return putBatch(items);
  };
  return { store, batches };
}

/** Hands one chunk of each of `n` streams over, `gapMs` apart (streams' chunks arrive spread over time), and waits until all are stored. */
async function feed(sink: ChunkObjects, n: number, gapMs: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    sink.chunk(identity(i), 0, encodeWav(pcmOf(i), format), format, 0, 1600, () => undefined);
    await sleep(gapMs);
  }
  for (let i = 0; i < n; i++) await sink.whenIdle(`rec-${i}`);
}

t.test('chunk objects arriving a few ms apart share one group commit within chunkCommitMs; every object and event is the chunk handed over', async (t) => {
  const { store, batches } = await countingStore(t);
  const events: AudioEvent[] = [];
  const sink = new ChunkObjects({
    store,
    keys: new ObjectKeys(),
    events: { append: async (e) => void events.push(e) },
    presign: async () => null,
    urls: false,
    commitMs: 2000,
    logger: createLogger({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
  });
  await feed(sink, 6, 10);
  t.same(batches, [6], 'six chunks, one putBatch');
  t.equal(events.length, 6, 'six recording.chunk events');
  for (const e of events) {
    const ev = e as unknown as { recording_id: string; s3_key: string };
    const i = Number(ev.recording_id.slice(4));
    t.ok((await store.get(ev.s3_key)).equals(encodeWav(pcmOf(i), format)), `rec-${i}: object is its chunk`);
  }
});

t.test('chunkCommitMs 0: a chunk arriving to an idle store goes at once, alone', async (t) => {
  const { store, batches } = await countingStore(t);
  const sink = new ChunkObjects({
    store,
    keys: new ObjectKeys(),
    events: { append: async () => undefined },
    presign: async () => null,
    urls: false,
    commitMs: 0,
    logger: createLogger({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
  });
  await feed(sink, 3, 100);
  t.same(batches, [1, 1, 1], 'one putBatch per chunk');
});

t.test('group commits overlap: while the events of earlier batches wait, up to batchesInFlight batches are written, and each recording\'s chunks are announced in order', async (t) => {
  const { store, batches } = await countingStore(t);
  const announced: number[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const sink = new ChunkObjects({
    store,
    keys: new ObjectKeys(),
    // a slow outbox commit: no event is durable until the test releases them
    events: { append: async (e) => { await held; announced.push((e as unknown as { seq: number }).seq); } },
    presign: async () => null,
    urls: false,
    commitMs: 0,
    logger: createLogger({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
  });
  for (let seq = 0; seq < 6; seq++) {
    sink.chunk(identity(0), seq, encodeWav(pcmOf(seq), format), format, seq * 1600, 1600, () => undefined);
    await sleep(50);
  }
  t.equal(batches.length, 4, 'four group commits under way while their events wait (the default), the rest queued');
  release();
  await sink.whenIdle('rec-0');
  t.same(batches, [1, 1, 1, 1, 2], 'the queued chunks leave together once a batch is done');
  t.same(announced, [0, 1, 2, 3, 4, 5], 'recording.chunk events in seq order');
  for (let seq = 0; seq < 6; seq++) t.ok((await store.get(new ObjectKeys().chunk({ tenant: 'default', roomName: 'room', participant: 'p0', trackId: 'TR_0', recordingId: 'rec-0' }, seq))).equals(encodeWav(pcmOf(seq), format)), `chunk ${seq} stored as handed over`);
});
