import t from 'tap';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { endEgress, LiveConsumer, resampleMaster, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

async function liveRecordingId(h: TestApp, trackId: string): Promise<string> {
  return waitFor(() => h.app.recordings.all().find((r) => r.identity.trackId === trackId)?.identity.recordingId, 10_000, `recording of ${trackId}`);
}

async function masterPcm(h: TestApp, recordingId: string): Promise<Buffer> {
  const ev = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id === recordingId), 20_000, 'recording.completed');
  return readWav(await h.app.store.get(ev.s3_key_master as string)).data;
}

async function ingested(h: TestApp, recordingId: string, frames: number): Promise<void> {
  await waitFor(() => (h.app.recordings.get(recordingId)!.frames >= frames ? true : undefined), 10_000, `${frames} frames ingested`);
}

t.test('subscribers of one recording at one rate share its resampler at the live edge and each still gets the exact timeline', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const first = await connectEgress(await egressUrl(h, { roomName: 'room-share', trackId: 'TR_first', participant: 'ann' }));
  await sendFrames(first, randomStereo(4800, 5));
  const firstId = await liveRecordingId(h, 'TR_first');
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-share', trackId: 'TR_shared', participant: 'bea' }));
  const pcm = randomStereo(48000 * 4 + 31, 17);
  const at = (s: number): number => Math.floor(48000 * s) * 4;
  await sendFrames(egress, pcm.subarray(0, at(0.5)));
  const id = await liveRecordingId(h, 'TR_shared');
  await ingested(h, id, at(0.5) / 4);

  const q = `${h.wsUrl}/v1/live?recordingId=${id}`;
  const early = new LiveConsumer(q);
  const at8 = new LiveConsumer(`${q}&rate=8000`);
  // the room subscription reads this track as index 1 (the other recording of the room is 0)
  const room = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-share`);
  await Promise.all([early.opened, at8.opened, room.opened]);
  const paced = (from: number, to: number): Promise<void> => sendFrames(egress, pcm.subarray(at(from), at(to)), 1920, 5, 2);
  await paced(0.5, 1.5);
  const track = h.app.live.known(id)!;
  t.equal(track.resamplers, 2, 'three subscribers at the live edge, two rates: two resamplers');

  const late = new LiveConsumer(q);
  const replay = new LiveConsumer(`${q}&from=0`);
  let dropped = 0;
  const quitter: LiveConsumer = new LiveConsumer(q, { onBinary: () => (++dropped === 10 ? quitter.ws.terminate() : undefined) });
  await Promise.all([late.opened, replay.opened, quitter.opened]);
  await paced(1.5, 3);
  await quitter.closed;
  await waitFor(() => (replay.binaryMessages > 0 && track.resamplers === 2 ? true : undefined), 10_000, 'the late and the replaying subscriber in the group');
  t.equal(track.resamplers, 2, 'joiners (live edge, caught up from the spool) take the group\'s output; one that left is gone from it');
  await sendFrames(egress, pcm.subarray(at(3)), 1920, 5, 2);
  await endEgress(egress);
  await Promise.all([early.closed, at8.closed, late.closed, replay.closed]);
  await sendFrames(first, randomStereo(4800, 6));
  await endEgress(first);
  await room.closed;

  const master = await masterPcm(h, id);
  const at16 = resampleMaster(master, 48000, 16000);
  const eight = resampleMaster(master, 48000, 8000);
  for (const [name, c, want, index] of [
    ['early', early, at16, 0],
    ['8 kHz', at8, eight, 0],
    ['room', room, at16, 1],
    ['late', late, at16, 0],
    ['replay', replay, at16, 0],
    ['quitter', quitter, at16, 0],
  ] as const) {
    t.same(c.problems, [], `${name}: offsets contiguous`);
    const from = c.firstOffset.get(index)!;
    const got = c.pcm(index);
    t.ok(got.length > 0, `${name}: audio from ${from}`);
    t.ok(got.equals(want.subarray(from * 2, from * 2 + got.length)), `${name}: the master resampled, sample for sample`);
    if (name !== 'quitter') {
      t.equal(from * 2 + got.length, want.length, `${name}: to the end`);
      t.same(c.textsOf('end').find((e) => e.index === index), { type: 'end', index, endReason: 'normal', samples: want.length / 2 }, `${name}: end`);
    }
  }
  t.equal(replay.firstOffset.get(0), 0);
  t.match(room.tracks, [{ index: 0, recordingId: firstId }, { index: 1, recordingId: id }]);
  t.ok(late.firstOffset.get(0)! > early.firstOffset.get(0)!, 'the late subscriber starts later');
  // live audio goes out live.batchMs (20 ms) at a time: 320 samples at 16 kHz per message in the steady state
  const sizes = early.audio.get(0)!.map((b) => b.length / 2).sort((a, b) => a - b);
  t.ok(sizes[Math.floor(sizes.length / 2)]! >= 320, `median message ${sizes[Math.floor(sizes.length / 2)]} samples`);
});
