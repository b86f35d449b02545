import t, { type Test } from 'tap';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { OpusWorkerPool } from '../../src/audio/opus-workers.js';
import { AppError } from '../../src/errors.js';
import type { OutboxEvent } from '../../src/events/outbox.js';
import { DurationFilter } from '../../src/limits/duration-filter.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { ObjectKeys } from '../../src/storage/keys.js';
import { IdempotencyStore } from '../../src/voicenotes/idempotency-store.js';
import { type VoiceNoteAnswer, VoiceNoteService } from '../../src/voicenotes/voice-note-service.js';
import * as fx from '../helpers/audio-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The outbox's append, failing while `down` is set (a local disk that refuses the write). */
class Appender {
  readonly events: OutboxEvent[] = [];
  down = false;
  async append(e: OutboxEvent): Promise<void> {
    if (this.down) throw new AppError('STORAGE_ERROR', 'outbox write failed');
    this.events.push(e);
  }
}

async function setup(t: Test, opusWorkers?: OpusWorkerPool): Promise<{ svc: VoiceNoteService; events: Appender; root: string }> {
  const root = await tempDir(t, 'vn-svc-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1:1/', secret: 's' } });
  await store.start();
  const events = new Appender();
  const svc = new VoiceNoteService({
    store,
    keys: new ObjectKeys(),
    events,
    filter: await DurationFilter.open({ defaults: { minSec: 1, maxSec: 600 } }),
    idempotency: new IdempotencyStore<VoiceNoteAnswer>({ store, prefix: 'idempotency/' }),
    opusWorkers,
    sampleRate: 16000,
    maxBytes: 1 << 24,
    keepOriginal: false,
    decodeTimeoutSec: 30,
    normalize: { mode: 'none' },
    presignTtlSec: 60,
    logger: createLogger({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
  });
  return { svc, events, root };
}

const request = (note: Buffer) => ({
  tenant: 't1', instance: 'inst', chatId: 'c@s.whatsapp.net', messageId: 'MSG1', idempotencyKey: 'inst:MSG1',
  declared: {}, body: Readable.from([note]),
});

t.test('an event that cannot be written takes the idempotency record back: the retry stores and announces the note', async (t) => {
  const note = fx.readFixture(await fx.opusVoiceNote());
  const { svc, events, root } = await setup(t);
  events.down = true;
  await t.rejects(svc.ingest(request(note)), { code: 'STORAGE_ERROR' });
  await new Promise((r) => setTimeout(r, 300)); // any record write still under way has landed by now
  t.same(await readdir(join(root, 'objects', 'idempotency')).catch(() => []), [], 'no record left behind');
  events.down = false;
  const retry = await svc.ingest(request(note));
  t.equal(retry.status, 201, 'stored again, not answered as a repeat');
  t.equal(events.events.length, 1);
  t.equal(events.events[0]!.type, 'voicenote.stored');
  const again = await svc.ingest(request(note));
  t.equal(again.status, 200, 'now a repeat');
  t.same(again.body, retry.body);
  t.equal(events.events.length, 1, 'announced once');
});

t.test('with worker threads the stored WAV is the same as decoded on the event loop', async (t) => {
  const note = fx.readFixture(await fx.opusVoiceNote());
  const pool = new OpusWorkerPool({ size: 2 });
  t.teardown(() => pool.stop());
  const here = await setup(t);
  const there = await setup(t, pool);
  const a = await here.svc.ingest(request(note));
  const b = await there.svc.ingest(request(note));
  t.equal(a.body.durationSec, b.body.durationSec);
  const read = (root: string, key: string) => import('node:fs/promises').then((f) => f.readFile(join(root, 'objects', ...key.split('/'))));
  t.ok((await read(here.root, a.body.key)).equals(await read(there.root, b.body.key)), 'same WAV bytes');
});
