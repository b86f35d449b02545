import t from 'tap';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { LIVE_FILTERS } from '../../src/live/live-hub.js';
import { startTestApp, TEST_API_KEY, type TestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav, speechEgressPcm } from '../helpers/egress.js';
import { endEgress, LiveConsumer, resampleMaster, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

type Ev = Record<string, unknown>;

async function liveRecordingId(h: TestApp, trackId: string): Promise<string> {
  return waitFor(() => h.app.recordings.all().find((r) => r.identity.trackId === trackId)?.identity.recordingId, 10_000, `recording of ${trackId}`);
}

async function completedEvent(h: TestApp, recordingId: string): Promise<Ev> {
  return waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id === recordingId), 20_000, 'recording.completed');
}

async function masterPcm(h: TestApp, recordingId: string): Promise<Buffer> {
  const ev = await completedEvent(h, recordingId);
  return readWav(await h.app.store.get(ev.s3_key_master as string)).data;
}

t.test('from=0 while the egress streams: 48 kHz is the master sample for sample, 16 kHz the master through the resampler', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-live', trackId: 'TR_exact', participant: 'alice' });
  const egress = await connectEgress(url);
  const pcm = Buffer.concat([await speechEgressPcm(), randomStereo(48000 * 3 + 77, 9)]);
  const split = 48000 * 4 + 333 * 4; // the subscribers join somewhere in the middle of a chunk
  await sendFrames(egress, pcm.subarray(0, split));
  const recordingId = await liveRecordingId(h, 'TR_exact');
  await waitFor(() => (h.app.recordings.get(recordingId)!.frames >= split / 4 ? true : undefined), 10_000, 'first part ingested');
  const q = `${h.wsUrl}/v1/live?recordingId=${recordingId}&from=0`;
  const c48 = new LiveConsumer(`${q}&rate=48000`);
  const c16 = new LiveConsumer(`${q}`, { headers: { authorization: `Bearer ${TEST_API_KEY}` } });
  const edge = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}&rate=24000`);
  await Promise.all([c48.opened, c16.opened, edge.opened]);
  await sendFrames(egress, pcm.subarray(split), 1920, 20, 1);
  await endEgress(egress);
  await Promise.all([c48.closed, c16.closed, edge.closed]);

  const master = await masterPcm(h, recordingId);
  t.equal(master.length, pcm.length / 2, 'master holds every frame');
  t.ok(master.equals(downmix(pcm)), 'master is the downmixed input');
  for (const c of [c48, c16, edge]) {
    t.same(c.problems, [], 'offsets contiguous, audio after its track message');
    t.equal(c.closeCode, 1000, 'closed with 1000 after the end');
    t.equal(c.tracks.length, 1);
    t.match(c.tracks[0], { type: 'track', index: 0, recordingId, roomName: 'room-live', participant: 'alice', trackId: 'TR_exact' });
    t.equal(c.order[0], 'track:0', 'the track message comes first');
    t.equal(c.order[c.order.length - 1], 'end:0', 'the end message comes last');
  }
  t.equal(c48.tracks[0]!.rate, 48000);
  t.equal(c48.firstOffset.get(0), 0);
  t.equal(c48.pcm().length, master.length, '48 kHz: as many samples as the master');
  t.ok(c48.pcm().equals(master), '48 kHz: sample-exact');
  const at16 = resampleMaster(master, 48000, 16000);
  t.equal(c16.tracks[0]!.rate, 16000, 'default rate 16 kHz');
  t.equal(c16.pcm().length / 2, Math.ceil(master.length / 2 / 3), '16 kHz: ceil(N/3) samples');
  t.ok(c16.pcm().equals(at16), '16 kHz: the master through the daemon\'s resampler, bit-exact');
  t.same(c16.textsOf('end')[0], { type: 'end', index: 0, endReason: 'normal', samples: at16.length / 2 });

  // the live-edge consumer got a tail of the same timeline
  const at24 = resampleMaster(master, 48000, 24000);
  const first = edge.firstOffset.get(0)!;
  t.ok(first > 0, `live edge starts where the recording was (${first})`);
  t.ok(edge.pcm().equals(at24.subarray(first * 2)), '24 kHz from the live edge: the same samples as the whole master resampled');
  t.same(edge.textsOf('end')[0], { type: 'end', index: 0, endReason: 'normal', samples: at24.length / 2 });
});

t.test("live.filter archive: the output is the master through the stored audio's 80 dB filter, from 0 and from any offset; the default speech filter gives other samples", async (t) => {
  const h = await startTestApp({ live: { filter: 'archive' } });
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-arch', trackId: 'TR_arch' }));
  const pcm = randomStereo(48000 * 3 + 5, 21);
  await sendFrames(egress, pcm);
  const recordingId = await liveRecordingId(h, 'TR_arch');
  await endEgress(egress);
  const master = await masterPcm(h, recordingId);
  const archive = resampleMaster(master, 48000, 16000, LIVE_FILTERS.archive);
  t.notOk(archive.equals(resampleMaster(master, 48000, 16000)), 'the two designs give other samples');
  for (const from of [0, 16000 + 4321]) {
    const c = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}&rate=16000&from=${from}`);
    await c.opened;
    await c.closed;
    t.equal(c.closeCode, 1000, `from=${from}: replayed to the end`);
    t.same(c.problems, []);
    t.ok(c.pcm().equals(archive.subarray(from * 2)), `from=${from}: the master through the archive filter, bit-exact`);
  }
});

t.test('a consumer that drops at random points and resumes with from= gets the whole recording, no gap, no overlap', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-resume', trackId: 'TR_resume' });
  const egress = await connectEgress(url);
  const pcm = randomStereo(48000 * 6 + 5, 21);
  await sendFrames(egress, pcm.subarray(0, 1920 * 20));
  const recordingId = await liveRecordingId(h, 'TR_resume');
  const sending = sendFrames(egress, pcm.subarray(1920 * 20), 1920, 5, 2).then(() => endEgress(egress));

  let seed = 12345;
  const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const parts: Buffer[] = [];
  let received = 0;
  let ended: Ev | undefined;
  let sessions = 0;
  while (ended === undefined && sessions < 400) {
    sessions++;
    const dropAfter = 1 + Math.floor(rand() * 40);
    let messages = 0;
    const from = received;
    const c: LiveConsumer = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}&rate=16000&from=${from}`, {
      onBinary: () => {
        if (++messages === dropAfter) c.ws.terminate();
      },
    });
    await c.opened;
    await c.closed;
    t.same(c.problems, [], `session ${sessions}: contiguous`);
    if (c.binaryMessages > 0) t.equal(c.firstOffset.get(0), from, `session ${sessions} starts at from=${from}`);
    const got = c.pcm();
    parts.push(got);
    received += got.length / 2;
    ended = c.textsOf('end')[0];
  }
  await sending;
  t.ok(ended, `the end arrived after ${sessions} sessions`);
  t.ok(sessions > 2, 'the consumer really reconnected');
  const master = await masterPcm(h, recordingId);
  const expected = resampleMaster(master, 48000, 16000);
  const all = Buffer.concat(parts);
  t.equal(all.length, expected.length, 'as many samples as the whole recording');
  t.ok(all.equals(expected), 'identical to the whole recording resampled');
  t.equal(ended!.samples, expected.length / 2);

  // finished: replay with from= from the stored master; without from= it is gone
  const replay = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}&rate=48000&from=1000`);
  await replay.opened;
  await replay.closed;
  t.ok(replay.pcm().equals(master.subarray(2000)), 'a finished recording replays from the stored master');
  t.equal(replay.closeCode, 1000);
  const gone = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}`);
  await gone.opened.catch(() => undefined);
  t.equal(gone.refused?.status, 410);
  t.match(JSON.parse(gone.refused!.body), { error: { code: 'RECORDING_ENDED' } });
});

t.test('the only consumer leaves while the recording is live; one that comes after its end replays it to the end', async (t) => {
  // the track the first consumer used must not outlive it: it no longer hears the recording, and
  // a later subscription on it waited for live audio that never came
  const h = await startTestApp();
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-left', trackId: 'TR_left' }));
  const pcm = randomStereo(48000 * 3 + 11, 23);
  await sendFrames(egress, pcm.subarray(0, 1920 * 50));
  const recordingId = await liveRecordingId(h, 'TR_left');
  const first = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}&rate=16000`);
  await first.opened;
  await sendFrames(egress, pcm.subarray(1920 * 50, 1920 * 100), 1920, 5, 2);
  await waitFor(() => (first.binaryMessages > 0 ? true : undefined), 60_000, 'live audio to the first consumer');
  first.ws.terminate();
  await first.closed;
  await waitFor(() => (h.app.live.subscriberCount === 0 ? true : undefined), 60_000, 'the daemon saw it leave');

  await sendFrames(egress, pcm.subarray(1920 * 100), 1920, 5, 2);
  await endEgress(egress);
  const master = await masterPcm(h, recordingId);
  const later = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${recordingId}&rate=16000&from=0`);
  await later.opened;
  await waitFor(() => (later.closeCode !== 0 ? true : undefined), 60_000, 'the replay to end');
  t.equal(later.closeCode, 1000, 'closed with 1000 after the end');
  t.same(later.problems, []);
  t.ok(later.pcm().equals(resampleMaster(master, 48000, 16000)), 'the whole recording, resampled');
  t.equal(later.textsOf('end').length, 1, 'one end message');
});

t.test('refusals before the upgrade carry the JSON error body', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const cases: [string, Record<string, string> | undefined, number, string][] = [
    ['recordingId=nope', { apikey: 'wrong-key-0123456789' }, 401, 'INVALID_API_KEY'],
    ['recordingId=nope', {}, 401, 'UNAUTHORIZED'],
    ['recordingId=00000000-0000-0000-0000-000000000000', undefined, 404, 'NOT_FOUND'],
    ['recordingId=a&roomName=b', undefined, 400, 'INVALID_PARAMETER'],
    ['roomName=b&rate=44100', undefined, 400, 'INVALID_PARAMETER'],
    ['recordingId=a&from=x', undefined, 400, 'INVALID_PARAMETER'],
    ['recordingId=a&bogus=1', undefined, 400, 'INVALID_PARAMETER'],
    ['roomName=b&rate=16000&rate=48000', undefined, 400, 'INVALID_PARAMETER'],
    ['roomName=empty', undefined, 404, 'NOT_FOUND'],
    ['token=abc', {}, 401, 'INVALID_TOKEN'],
  ];
  for (const [q, headers, status, code] of cases) {
    const c = new LiveConsumer(`${h.wsUrl}/v1/live?${q}`, headers ? { headers } : {});
    await c.opened.catch(() => undefined);
    t.equal(c.refused?.status, status, `${q}: ${status}`);
    const body = JSON.parse(c.refused?.body ?? '{}') as { error?: { code?: string } };
    if (code === 'UNAUTHORIZED') t.match(body.error?.code, /UNAUTHORIZED|INVALID_API_KEY/, `${q}: ${body.error?.code}`);
    else t.equal(body.error?.code, code, `${q}: ${code}`);
  }
});
