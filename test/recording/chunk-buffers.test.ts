import { createHash } from 'node:crypto';
import t from 'tap';
import type { BufferPool } from '../../src/audio/buffer-pool.js';
import { WAV_HEADER_BYTES } from '../../src/audio/wav.js';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { startReceiver } from '../helpers/events-http.js';
import { waitFor } from '../helpers/wait-for.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const CHUNK_SEC = 0.1;
const WAV_BYTES = WAV_HEADER_BYTES + CHUNK_SEC * 48000 * 2;

t.test('the chunk sinks\' WAV buffers go back to the pool once stored and sent, and carry later chunks intact', async (t) => {
  const rx = await startReceiver(t);
  const bodies = (): Buffer[] => rx.requests.map((r) => r.body);
  const warm = 10; // the warm-up stream's chunks (1 s), the first requests

  const h = await startTestApp({ storage: { chunkObjects: true, chunkUrls: false }, chunkDispatch: { url: rx.url, format: 'wav' }, livekit: { groupSeconds: CHUNK_SEC } });
  t.teardown(() => h.close());
  // a first stream starts what the store and the outbox start once (worker threads, files)
  await simulateEgress({ url: await egressUrl(h, { roomName: 'pooled', trackId: 'TR_w', participant: 'warm' }), pcm: randomStereo(48000, 40) });
  await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed'), 20_000, 'first completion');
  await waitFor(() => (bodies().length === warm ? true : undefined), 20_000, 'first stream dispatched');

  // every WAV-sized buffer the pool hands out, by identity
  const pool = (h.app.recordings as unknown as { pool: BufferPool }).pool;
  const handedOut = new Set<Buffer>();
  let acquired = 0;
  const acquire = pool.acquire.bind(pool);
  pool.acquire = (size: number) => {
    const buf = acquire(size);
    if (size === WAV_BYTES) {
      acquired++;
      handedOut.add(buf);
    }
    return buf;
  };

  // 3 s paced as egress does: each chunk is stored and sent long before the next few are cut
  await simulateEgress({ url: await egressUrl(h, { roomName: 'pooled', trackId: 'TR_p', participant: 'pia' }), pcm: randomStereo(48000 * 3, 41) });
  const completed = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.track_id === 'TR_p'), 20_000, 'completion');
  const chunkEvents = outboxEvents(h).filter((e) => e.type === 'recording.chunk' && e.recording_id === completed.recording_id).sort((a, b) => (a.seq as number) - (b.seq as number));
  t.equal(chunkEvents.length, 30, '30 chunks of 0.1 s');
  await waitFor(() => (bodies().length === warm + 30 ? true : undefined), 20_000, 'every chunk dispatched');

  t.equal(acquired, 30, 'every chunk took its WAV buffer from the pool');
  t.ok(handedOut.size < acquired / 2, `buffers were reused: ${handedOut.size} distinct for ${acquired} chunks`);

  const master = readWav(await h.app.store.get(completed.s3_key_master as string));
  const expected: string[] = [];
  for (const e of chunkEvents) {
    const slice = master.data.subarray((e.start_sample as number) * 2, ((e.start_sample as number) + (e.sample_count as number)) * 2);
    expected.push(md5(slice));
    t.ok(readWav(await h.app.store.get(e.s3_key as string)).data.equals(slice), `chunk ${e.seq as number}: the stored object is its slice of the master`);
  }
  t.same(bodies().slice(warm).map((b) => md5(readWav(b).data)).sort(), [...expected].sort(), 'every dispatch body is exactly one chunk of the master, each once');
});
