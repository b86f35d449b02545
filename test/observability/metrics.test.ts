import t from 'tap';
import { Outbox, type OutboxEvent, type Sink } from '../../src/events/outbox.js';
import { recordingCompleted } from '../../src/events/types.js';
import { Metrics } from '../../src/observability/metrics.js';
import { FsObjectStore, verifyPresigned } from '../../src/storage/fs-store.js';
import { MeteredObjectStore } from '../../src/storage/metered-store.js';
import { completedEvent } from '../helpers/events-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';
import { runConformance } from '../helpers/storage-conformance.js';

const SECRET = 'metered-presign-secret';

/** Value of one series in the registry's text (labels in registry order), or undefined when absent. */
async function sample(metrics: Metrics, name: string, labels: string): Promise<number | undefined> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function freshFs(t: { teardown(fn: () => unknown): void }): Promise<FsObjectStore> {
  const root = await tempDir(t, 'metered-fs-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1:8080/', secret: SECRET } });
  await store.start();
  return store;
}

t.test('the metered store keeps the driver\'s semantics (conformance suite through it)', async (t) => {
  runConformance(t, async () => {
    const fs = await freshFs(t);
    return {
      store: new MeteredObjectStore(fs, new Metrics({ defaultMetrics: false })),
      async fetchPresigned(url) {
        const u = new URL(url);
        const key = u.pathname.replace(/^\/v1\/objects\//, '').split('/').map(decodeURIComponent).join('/');
        if (!verifyPresigned(SECRET, key, u.searchParams.get('expires') ?? '', u.searchParams.get('signature') ?? '')) throw new Error('signature refused');
        const opened = await fs.openRead(key);
        if (opened === null) throw new Error('missing');
        const chunks: Buffer[] = [];
        for await (const c of opened.stream) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      },
      async refusesTampered(url, key) {
        const u = new URL(url);
        t.notOk(verifyPresigned(SECRET, `${key}x`, u.searchParams.get('expires') ?? '', u.searchParams.get('signature') ?? ''));
      },
    };
  });
});

t.test('store operations are timed and counted by outcome; error series exist at 0 from the start', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false });
  const store = new MeteredObjectStore(await freshFs(t), metrics);
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="put",outcome="error"'), 0, 'put errors at 0 before any put');
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="completeMultipart",outcome="error"'), 0);

  await store.put('a/b.wav', Buffer.from('RIFF'), { contentType: 'audio/wav' });
  await store.put('a/c.wav', Buffer.from('RIFF'), { contentType: 'audio/wav' });
  t.same(await store.get('a/b.wav'), Buffer.from('RIFF'));
  await t.rejects(store.get('a/missing.wav'), { code: 'NOT_FOUND' });
  await t.rejects(store.put('../escape', Buffer.from('x'), { contentType: 'audio/wav' }));
  const listed: string[] = [];
  for await (const o of store.list('a/')) listed.push(o.key);
  t.same(listed, ['a/b.wav', 'a/c.wav']);

  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="put",outcome="ok"'), 2);
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="put",outcome="error"'), 1, 'a refused key is an error');
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="get",outcome="ok"'), 1);
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="get",outcome="not_found"'), 1, 'a missing object is not an error');
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="get",outcome="error"'), 0);
  t.equal(await sample(metrics, 'audio_ingestd_store_operations_total', 'driver="fs",op="list",outcome="ok"'), 1);
  t.equal(await sample(metrics, 'audio_ingestd_store_operation_seconds_count', 'driver="fs",op="put"'), 3, 'every put timed, whatever its outcome');
  t.equal(await sample(metrics, 'audio_ingestd_store_operation_seconds_count', 'driver="fs",op="list"'), 1);
  const sum = await sample(metrics, 'audio_ingestd_store_operation_seconds_sum', 'driver="fs",op="put"');
  t.ok(sum !== undefined && sum > 0 && sum < 60, `put seconds summed: ${sum}`);
});

/** A sink that refuses until `open` is set. */
class GatedSink implements Sink {
  readonly name = 'gated';
  open = false;
  delivered = 0;
  async deliver(batch: OutboxEvent[]): Promise<void> {
    if (!this.open) throw new Error('destination down');
    this.delivered += batch.length;
  }
}

t.test('outbox lag grows while a sink cannot deliver and returns to 0; delivery latency is observed per event', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false });
  const sink = new GatedSink();
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [sink], retry: { baseMs: 5, maxMs: 20 }, metrics });
  await outbox.start();
  t.teardown(() => outbox.stop());
  t.equal(await sample(metrics, 'audio_ingestd_outbox_lag_seconds', 'sink="gated"'), 0, 'caught up: 0');

  // an event written 90 s ago (occurredAt) that the sink cannot take yet
  const old = recordingCompleted({ ...fields(), completed_at: new Date(Date.now() - 90_000).toISOString() });
  await outbox.append(old);
  await outbox.append(completedEvent(2));
  await waitFor(() => outbox.stats().sinks.gated!.retries >= 2);
  const lag = await sample(metrics, 'audio_ingestd_outbox_lag_seconds', 'sink="gated"');
  t.ok(lag !== undefined && lag >= 90 && lag < 150, `lag while failing is the oldest event's age: ${lag}`);
  t.equal(await sample(metrics, 'audio_ingestd_event_delivery_seconds_count', 'sink="gated"'), undefined, 'nothing delivered yet');

  sink.open = true;
  await waitFor(() => outbox.stats().sinks.gated!.pending === 0);
  t.equal(await sample(metrics, 'audio_ingestd_outbox_lag_seconds', 'sink="gated"'), 0, 'back to 0 once confirmed');
  t.equal(await sample(metrics, 'audio_ingestd_event_delivery_seconds_count', 'sink="gated"'), 2);
  t.equal(await sample(metrics, 'audio_ingestd_event_delivery_seconds_bucket', 'le="60",sink="gated"'), 0, 'the 90 s old event is not within 60 s');
  t.equal(await sample(metrics, 'audio_ingestd_event_delivery_seconds_bucket', 'le="300",sink="gated"'), 1, 'it is within 300 s');
});

t.test('drop reasons are exported at 0 from the start', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false });
  for (const reason of ['spool_full', 'spool_slow', 'invalid', 'chunk_queue_full']) {
    t.equal(await sample(metrics, 'audio_ingestd_frames_dropped_total', `source="livekit",reason="${reason}"`), 0, reason);
  }
});

function fields(): Parameters<typeof recordingCompleted>[0] {
  return {
    recording_id: 'rec-lag',
    s3_key_master: 'recordings/t1/room/alice/TR_1/rec-lag.wav',
    tenant_id: 't1',
    user_id: 'alice',
    platform: 'livekit',
    duration_sec: 1,
    size_bytes: 44,
    completed_at: new Date().toISOString(),
    end_reason: 'normal',
    url: null,
    url_expires_at: null,
  };
}
