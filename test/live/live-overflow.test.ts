import t from 'tap';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { metricValue, startTestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { endEgress, LiveConsumer, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('a consumer that never reads is closed with 4008 after an overflow message; ingest and the master are untouched', async (t) => {
  const h = await startTestApp({ live: { queueSeconds: 0.5 } });
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-o', trackId: 'TR_o' }));
  // two minutes of 48 kHz audio, sent as fast as the socket takes it: far more than kernel buffers hold
  const pcm = randomStereo(48000 * 120, 8);
  await sendFrames(egress, pcm.subarray(0, 1920 * 10));
  const id = await waitFor(() => h.app.recordings.all().find((r) => r.identity.trackId === 'TR_o')?.identity.recordingId, 10_000, 'recording');
  const stalled = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&rate=48000`);
  await stalled.opened;
  stalled.ws.pause(); // reads nothing from here on
  const reader = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&rate=48000`);
  await reader.opened;
  // ten times real time: faster than egress, slow enough for the spool of a loaded test machine
  const sending = sendFrames(egress, pcm.subarray(1920 * 10), 1920, 10, 10);
  // watched in-process and resumed at once: a peer that reads nothing for long after the close is cut (uWS's close timeout)
  await waitFor(async () => (((await h.app.metrics.liveOverflows.get()).values[0]?.value ?? 0) >= 1 ? true : undefined), 30_000, 'an overflow');
  t.equal(stalled.closeCode, 0, 'not closed yet as far as the consumer knows');
  stalled.ws.resume();
  await stalled.closed;
  t.equal(stalled.closeCode, 4008, 'closed with 4008');
  const overflow = stalled.textsOf('overflow');
  t.equal(overflow.length, 1, 'one overflow message');
  const received = stalled.pcm().length / 2 + (stalled.firstOffset.get(0) ?? 0);
  t.same(overflow[0], { type: 'overflow', resume: { from: String(received), offsets: { [id]: received } } }, 'resume offsets: the first sample not received');
  t.equal(stalled.order[stalled.order.length - 1], 'overflow:', 'overflow is the last message');

  // resuming there continues without gap or overlap
  const resumed = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&rate=48000&from=${received}`);
  await resumed.opened;
  await sending;
  await endEgress(egress);
  await Promise.all([resumed.closed, reader.closed]);
  const ev = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id === id), 30_000, 'completed');
  const master = readWav(await h.app.store.get(ev.s3_key_master as string)).data;
  t.equal(master.length, pcm.length / 2, 'the master holds every frame');
  t.ok(master.equals(downmix(pcm)), 'the master is sample-exact');
  t.equal(ev.dropped_bytes, 0, 'ingest dropped nothing');
  const start = stalled.firstOffset.get(0)!;
  const joined = Buffer.concat([stalled.pcm(), resumed.pcm()]);
  const want = master.subarray(start * 2);
  t.ok(joined.equals(want), 'overflowed + resumed = the master from the first offset on');
  t.equal(reader.closeCode, 1000, 'the consumer that reads is unaffected');
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_live_overflows_total'), 1, 'one overflow counted');
  t.ok(reader.pcm().equals(master.subarray(reader.firstOffset.get(0)! * 2)), 'and got every sample');
  t.same(reader.problems, []);
});
