import { randomUUID } from 'node:crypto';
import t from 'tap';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { endEgress, LiveConsumer, resampleMaster, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

const REDIS_URL = 'redis://127.0.0.1:6379';

t.test('two daemons sharing Redis: a subscriber at the wrong host is sent to the owner with 307, and follows it', async (t) => {
  const a = await startTestApp({ rateLimit: { redisUrl: REDIS_URL } });
  t.teardown(() => a.close());
  const b = await startTestApp({ rateLimit: { redisUrl: REDIS_URL } });
  t.teardown(() => b.close());
  const room = `room-hosts-${randomUUID()}`;
  const egress = await connectEgress(await egressUrl(a, { roomName: room, trackId: 'TR_h', participant: 'carol' }));
  await sendFrames(egress, randomStereo(9600, 1));
  const id = await waitFor(() => a.app.recordings.all().find((r) => r.identity.roomName === room)?.identity.recordingId, 10_000, 'recording on A');

  // the raw answer: 307 with the owner's URL and the same query
  const raw = await waitFor(async () => {
    const c = new LiveConsumer(`${b.wsUrl}/v1/live?recordingId=${id}&rate=48000&from=0`);
    await c.opened.catch(() => undefined);
    if (c.refused?.status === 307) return c.refused;
    c.ws.terminate();
    return undefined;
  }, 10_000, 'a redirect from B');
  t.equal(raw.headers.location, `${a.wsUrl}/v1/live?recordingId=${id}&rate=48000&from=0`, 'Location: the owner, same query');
  const roomRaw = new LiveConsumer(`${b.wsUrl}/v1/live?roomName=${room}`);
  await roomRaw.opened.catch(() => undefined);
  t.equal(roomRaw.refused?.status, 307, 'a room with no track here is redirected too');
  t.equal(roomRaw.refused?.headers.location, `${a.wsUrl}/v1/live?roomName=${room}`);

  // a client that follows redirects keeps its apikey header and gets the audio from A
  const followed = new LiveConsumer(`${b.wsUrl}/v1/live?recordingId=${id}&rate=48000&from=0`, { followRedirects: true });
  await followed.opened;
  const rest = randomStereo(48000, 2);
  await sendFrames(egress, rest, 1920, 10, 2);
  await endEgress(egress);
  await followed.closed;
  t.equal(followed.closeCode, 1000);
  const ev = await waitFor(() => outboxEvents(a).find((e) => e.type === 'recording.completed' && e.recording_id === id), 20_000, 'completed on A');
  const master = readWav(await a.app.store.get(ev.s3_key_master as string)).data;
  t.ok(followed.pcm().equals(resampleMaster(master, 48000, 48000)), 'the whole recording through the redirect');
  t.same(followed.problems, []);

  // unknown everywhere: 404 from B, no redirect
  const unknown = new LiveConsumer(`${b.wsUrl}/v1/live?recordingId=${randomUUID()}`);
  await unknown.opened.catch(() => undefined);
  t.equal(unknown.refused?.status, 404);
});
