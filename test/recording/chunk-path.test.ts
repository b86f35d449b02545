import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { waitFor } from '../helpers/wait-for.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

t.test('chunk objects and dispatch together: a slow analysis endpoint still gets every chunk intact while the pool recycles buffers; objects concatenate to the master', async (t) => {
  // answers after 150 ms: bodies wait in the dispatcher while the master spools (and gives its buffers back to the pool)
  const bodies: Buffer[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => setTimeout(() => {
      bodies.push(Buffer.concat(parts));
      res.end();
    }, 150));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/analyze`;

  const h = await startTestApp({ storage: { chunkObjects: true, chunkUrls: false }, chunkDispatch: { url, format: 'wav' }, livekit: { groupSeconds: 0.1 } });
  t.teardown(() => h.close());
  const pcm = randomStereo(48000 * 4 + 480, 33);
  // two streams at once, so buffers of one are recycled while the other's chunks are in flight
  await Promise.all([
    simulateEgress({ url: await egressUrl(h, { roomName: 'path', trackId: 'TR_a', participant: 'ann' }), pcm, realtime: false }),
    simulateEgress({ url: await egressUrl(h, { roomName: 'path', trackId: 'TR_b', participant: 'bob' }), pcm: randomStereo(48000 * 4 + 480, 34), realtime: false }),
  ]);
  const completed = await waitFor(() => { const c = outboxEvents(h).filter((e) => e.type === 'recording.completed'); return c.length === 2 ? c : undefined; }, 20_000, 'two completions');
  const chunkEvents = outboxEvents(h).filter((e) => e.type === 'recording.chunk');
  t.equal(chunkEvents.length, 82, '41 chunks of 0.1 s per stream');
  await waitFor(() => (bodies.length === 82 ? true : undefined), 30_000, 'every chunk dispatched');

  const expected: string[] = [];
  for (const c of completed) {
    const master = readWav(await h.app.store.get(c.s3_key_master as string));
    const mine = chunkEvents.filter((e) => e.recording_id === c.recording_id).sort((a, b) => (a.seq as number) - (b.seq as number));
    const parts: Buffer[] = [];
    for (const e of mine) {
      t.equal(e.url, null, 'storage.chunkUrls false: no presigned URL');
      const wav = readWav(await h.app.store.get(e.s3_key as string));
      parts.push(wav.data);
      expected.push(md5(master.data.subarray((e.start_sample as number) * 2, ((e.start_sample as number) + (e.sample_count as number)) * 2)));
    }
    t.ok(Buffer.concat(parts).equals(master.data), `${c.track_id as string}: chunk objects concatenated == master, byte for byte`);
  }
  const first = readWav(await h.app.store.get(completed.find((c) => c.track_id === 'TR_a')!.s3_key_master as string));
  t.ok(first.data.equals(downmix(pcm)), 'master == downmixed input');
  const got = bodies.map((b) => md5(readWav(b).data));
  t.same([...got].sort(), [...expected].sort(), 'every dispatch body is exactly one chunk of the master, each once');
});
