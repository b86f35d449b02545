import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { metricValue, startTestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { startReceiver } from '../helpers/events-http.js';
import { waitFor } from '../helpers/wait-for.js';

type Ev = Record<string, unknown>;

t.test('per-chunk objects: one WAV per chunk, announced with recording.chunk, together equal to the master', async (t) => {
  const h = await startTestApp({ storage: { chunkObjects: true }, livekit: { groupSeconds: 0.25 } });
  t.teardown(() => h.close());
  const pcm = randomStereo(48000 + 4321, 21);
  await simulateEgress({ url: await egressUrl(h, { roomName: 'chunky', trackId: 'TR_c', participant: 'dan' }), pcm, realtime: false });
  const completed = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed'), 10_000);
  const chunks = outboxEvents(h).filter((e) => e.type === 'recording.chunk').sort((a, b) => (a.seq as number) - (b.seq as number));
  t.equal(chunks.length, 5, '1.09 s in 0.25 s chunks');
  const master = readWav(await h.app.store.get(completed.s3_key_master as string));
  const parts: Buffer[] = [];
  let expectedStart = 0;
  for (const [i, c] of chunks.entries()) {
    t.equal(c.seq, i);
    t.equal(c.start_sample, expectedStart, `chunk ${i} starts where the previous ended`);
    t.match(c.s3_key, new RegExp(`^recordings/default/chunky/dan/TR_c/${completed.recording_id as string}/chunks/${String(i).padStart(6, '0')}\\.wav$`));
    t.match(c.url, /\/v1\/objects\//);
    const wav = readWav(await h.app.store.get(c.s3_key as string));
    t.equal(wav.dataSize / 2, c.sample_count);
    t.equal(wav.riffSize, 36 + wav.dataSize);
    parts.push(wav.data);
    expectedStart += c.sample_count as number;
  }
  t.ok(Buffer.concat(parts).equals(master.data), 'chunks concatenated == master');
  t.ok(master.data.equals(downmix(pcm)), 'master == downmixed input');
  const done = outboxEvents(h).map((e) => e.type);
  t.ok(done.indexOf('recording.completed') > done.lastIndexOf('recording.chunk'), 'every chunk announced before the completion');
  t.ok((await metricValue(h.baseUrl, 'audio_ingestd_chunk_store_latency_seconds_count')) >= 5, 'chunk latency observed');
});

t.test('chunk dispatch: every chunk reaches the analysis endpoint with the seed headers (wav and big-endian L16)', async (t) => {
  for (const format of ['wav', 'l16'] as const) {
    const receiver = await startReceiver(t, () => 200);
    const h = await startTestApp({ chunkDispatch: { url: receiver.url, apiKey: 'analysis-key', format }, livekit: { groupSeconds: 0.5 } });
    const pcm = randomStereo(48000, 5);
    await simulateEgress({ url: await egressUrl(h, { roomName: 'disp', trackId: 'TR_d', participant: 'erin', meetingId: 'M-1' }), pcm, realtime: false });
    await waitFor(() => receiver.requests.length === 2 || undefined, 10_000, `${format}: two chunks dispatched`);
    await h.close();
    const mono = downmix(pcm);
    const bodies: Buffer[] = [];
    for (const r of receiver.requests) {
      t.equal(r.headers['x-meeting-id'], 'M-1');
      t.equal(r.headers['x-participant-id'], 'erin');
      t.equal(r.headers['x-track-id'], 'TR_d');
      t.equal(r.headers['authorization'], 'Bearer analysis-key');
      if (format === 'wav') {
        t.equal(r.headers['content-type'], 'audio/wav');
        bodies.push(readWav(r.body).data);
      } else {
        t.match(r.headers['content-type'], /^audio\/L16;\s*rate=48000;\s*channels=1$/);
        bodies.push(Buffer.from(r.body).swap16());
      }
    }
    t.ok(Buffer.concat(bodies).equals(mono), `${format}: the dispatched audio is the recording`);
  }
});

t.test('a master the store refuses for good ends as recording.failed, reported with its reason', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  // A file where the room's folder must be: the final PUT fails in the real fs store.
  await mkdir(join(h.dataDir, 'store', 'objects', 'recordings', 'default'), { recursive: true });
  await writeFile(join(h.dataDir, 'store', 'objects', 'recordings', 'default', 'doomed'), 'not a folder');
  await simulateEgress({ url: await egressUrl(h, { roomName: 'doomed', trackId: 'TR_x' }), pcm: randomStereo(4800, 1), realtime: false });
  const failed = (await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.failed'), 30_000, 'recording.failed')) as Ev;
  t.equal(failed.status, 'failed');
  t.equal(failed.s3_key_master, null);
  t.equal(failed.end_reason, 'normal');
  t.ok(typeof failed.error === 'string' && (failed.error as string).length > 0, `reason given: ${failed.error as string}`);
  t.notOk(outboxEvents(h).some((e) => e.type === 'recording.completed'));
  const view = await fetch(`${h.baseUrl}/v1/recordings/${failed.recording_id as string}`, { headers: { apikey: 'test-api-key-0123456789abcdef' } });
  t.match(await view.json(), { state: 'failed' }, 'the catalog says failed too');
});
