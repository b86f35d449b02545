import t from 'tap';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { metricValue, startTestApp } from '../helpers/app.js';
import { egressUrl, randomStereo } from '../helpers/egress.js';
import { endEgress, LiveConsumer, liveRecordingId, masterOf, resampleMaster, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

// A room subscriber gets a message per track each live tick; the tick holds them and writes
// them in one go. These check that what it holds keeps its order and its queue bound.

t.test('a room subscriber of two live tracks: each mute message comes with the audio up to its offset, not ahead of it, and both tracks are exact', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const a = await connectEgress(await egressUrl(h, { roomName: 'room-k', trackId: 'TR_ka', participant: 'a' }));
  const b = await connectEgress(await egressUrl(h, { roomName: 'room-k', trackId: 'TR_kb', participant: 'b' }));
  await Promise.all([sendFrames(a, randomStereo(4800, 11)), sendFrames(b, randomStereo(4800, 12))]);
  const [aId, bId] = [await liveRecordingId(h, 'TR_ka'), await liveRecordingId(h, 'TR_kb')];
  // where track 0's audio stood when each mute message arrived
  const next = new Map<number, number>();
  const atMute: { index: number; offset: number; receivedTo: number }[] = [];
  const room = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-k&from=${aId}:0,${bId}:0`, {
    onBinary: (index, offset, pcm) => next.set(index, offset + pcm.length / 2),
  });
  room.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) return;
    const m = JSON.parse(data.toString('utf8')) as { type: string; index: number; offset: number };
    if (m.type === 'mute') atMute.push({ index: m.index, offset: m.offset, receivedTo: next.get(m.index) ?? 0 });
  });
  await room.opened;
  // both tracks in real time (10 ms frames), track a muted twice on the way
  const pa = randomStereo(48000 * 3, 13);
  const pb = randomStereo(48000 * 3, 14);
  const sendingB = sendFrames(b, pb, 1920, 1, 10);
  for (let k = 0; k < 3; k++) {
    await sendFrames(a, pa.subarray(k * 192000, k * 192000 + 96000), 1920, 1, 10);
    a.send(JSON.stringify({ muted: true }));
    await new Promise((r) => setTimeout(r, 150));
    a.send(JSON.stringify({ muted: false }));
    await sendFrames(a, pa.subarray(k * 192000 + 96000, (k + 1) * 192000), 1920, 1, 10);
  }
  await sendingB;
  await Promise.all([endEgress(a), endEgress(b)]);
  await waitFor(() => (room.textsOf('end').length === 2 ? true : undefined), 20_000, 'both ends');
  room.ws.close();
  await room.closed;

  t.same(room.problems, [], 'no gap, no overlap, no audio before its track message');
  const [ma, mb] = [await masterOf(h, aId), await masterOf(h, bId)];
  const idx = (id: string) => room.tracks.find((x) => x.recordingId === id)!.index;
  t.ok(room.pcm(idx(aId)).equals(resampleMaster(ma.pcm, 48000, 16000)), 'track a: its master resampled, whole');
  t.ok(room.pcm(idx(bId)).equals(resampleMaster(mb.pcm, 48000, 16000)), 'track b: its master resampled, whole');
  const intervals = ma.event.mute_intervals as { start_sample: number; end_sample: number }[];
  t.equal(intervals.length, 3, 'three mutes in the master');
  const want = intervals.flatMap((i) => [Math.floor(i.start_sample / 3), Math.floor(i.end_sample / 3)]);
  t.same(atMute.map((m) => m.offset), want, 'mute messages at the master\'s mute offsets, in order');
  for (const m of atMute) {
    t.equal(m.index, idx(aId));
    // sent once the feed's input passed the mute: after the message that took the output to
    // within the resampler's lookahead (half its filter: 18 samples at 16 kHz) of the offset, before
    // any later one (a message holds ≤ 40 ms: 640 samples). Sent ahead of the tick's held audio, it
    // would arrive a message (320 samples) early.
    t.ok(m.receivedTo >= m.offset - 32 && m.receivedTo - m.offset <= 640, `mute at ${m.offset}: arrived with track a's audio received up to ${m.receivedTo}`);
  }
});

t.test('a room subscriber that never reads is closed with 4008 after an overflow message naming both tracks; resuming there continues both exactly', async (t) => {
  const h = await startTestApp({ live: { queueSeconds: 0.5 } });
  t.teardown(() => h.close());
  const a = await connectEgress(await egressUrl(h, { roomName: 'room-v', trackId: 'TR_va', participant: 'a' }));
  const b = await connectEgress(await egressUrl(h, { roomName: 'room-v', trackId: 'TR_vb', participant: 'b' }));
  const pa = randomStereo(48000 * 90, 21);
  const pb = randomStereo(48000 * 90, 22);
  await Promise.all([sendFrames(a, pa.subarray(0, 19200)), sendFrames(b, pb.subarray(0, 19200))]);
  const [aId, bId] = [await liveRecordingId(h, 'TR_va'), await liveRecordingId(h, 'TR_vb')];
  const stalled = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-v&rate=48000`);
  await stalled.opened;
  await waitFor(() => (stalled.tracks.length === 2 ? true : undefined), 10_000, 'both track messages');
  stalled.ws.pause();
  // ten times real time on both tracks
  const sending = Promise.all([sendFrames(a, pa.subarray(19200), 1920, 10, 10), sendFrames(b, pb.subarray(19200), 1920, 10, 10)]);
  await waitFor(async () => (((await h.app.metrics.liveOverflows.get()).values[0]?.value ?? 0) >= 1 ? true : undefined), 30_000, 'an overflow');
  stalled.ws.resume();
  await stalled.closed;
  t.equal(stalled.closeCode, 4008, 'closed with 4008');
  const overflow = stalled.textsOf('overflow');
  t.equal(overflow.length, 1, 'one overflow message');
  t.equal(stalled.order[stalled.order.length - 1], 'overflow:', 'the last message');
  const received = (id: string) => {
    const i = stalled.tracks.find((x) => x.recordingId === id)!.index;
    return stalled.pcm(i).length / 2 + (stalled.firstOffset.get(i) ?? 0);
  };
  const offsets = { [aId]: received(aId), [bId]: received(bId) };
  t.same((overflow[0] as { resume: { offsets: unknown } }).resume.offsets, offsets, 'resume offsets: the first sample not received, per track');
  const from = (overflow[0] as { resume: { from: string } }).resume.from;
  t.same(new Set(from.split(',')), new Set([`${aId}:${offsets[aId]}`, `${bId}:${offsets[bId]}`]), 'from= names both tracks');

  const resumed = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-v&rate=48000&from=${from}`);
  await resumed.opened;
  await sending;
  await Promise.all([endEgress(a), endEgress(b)]);
  await waitFor(() => (resumed.textsOf('end').length === 2 ? true : undefined), 60_000, 'both ends');
  resumed.ws.close();
  for (const [id, pcm] of [[aId, pa], [bId, pb]] as const) {
    const { pcm: master, event } = await masterOf(h, id);
    t.equal(master.length, pcm.length / 2, `${id}: the master holds every frame`);
    t.equal(event.dropped_bytes, 0, `${id}: ingest dropped nothing`);
    const si = stalled.tracks.find((x) => x.recordingId === id)!.index;
    const ri = resumed.tracks.find((x) => x.recordingId === id)!.index;
    t.equal(resumed.firstOffset.get(ri), offsets[id], `${id}: resumed at its offset`);
    const joined = Buffer.concat([stalled.pcm(si), resumed.pcm(ri)]);
    t.ok(joined.equals(master.subarray(stalled.firstOffset.get(si)! * 2)), `${id}: overflowed + resumed = the master from the first offset on`);
  }
  t.same(resumed.problems, []);
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_live_overflows_total'), 1, 'one overflow counted');
});
