import t from 'tap';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp, TEST_API_KEY } from '../helpers/app.js';
import { egressUrl, randomStereo } from '../helpers/egress.js';
import { endEgress, LiveConsumer, liveRecordingId, masterOf, resampleMaster, sendFrames } from '../helpers/live.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('a room subscription gets a participant who joins late, from the first sample, and closes when the room session ends', async (t) => {
  const h = await startTestApp({ live: { roomIdleSec: 1 } });
  t.teardown(() => h.close());
  const alice = await connectEgress(await egressUrl(h, { roomName: 'room-r', trackId: 'TR_alice', participant: 'alice' }));
  await sendFrames(alice, randomStereo(4800, 1));
  const aliceId = await liveRecordingId(h, 'TR_alice');
  const room = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-r`);
  const bobOnly = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-r&participant=bob`).opened.catch(() => undefined);
  await room.opened;
  const alicePcm = randomStereo(48000 * 2, 2);
  const aliceSending = sendFrames(alice, alicePcm, 1920, 5, 2);
  await new Promise((r) => setTimeout(r, 200));
  const bob = await connectEgress(await egressUrl(h, { roomName: 'room-r', trackId: 'TR_bob', participant: 'bob' }));
  const bobId = await liveRecordingId(h, 'TR_bob');
  await sendFrames(bob, randomStereo(48000 * 2 + 99, 3), 1920, 5, 2);
  await aliceSending;
  await Promise.all([endEgress(alice), endEgress(bob)]);
  await room.closed;
  await bobOnly;

  t.same(room.problems, []);
  t.equal(room.closeCode, 1000, 'closed with 1000 once the room session ended');
  t.equal(room.tracks.length, 2, 'two tracks');
  t.match(room.tracks[0], { index: 0, recordingId: aliceId, participant: 'alice', roomName: 'room-r', rate: 16000 });
  t.match(room.tracks[1], { index: 1, recordingId: bobId, participant: 'bob', trackId: 'TR_bob' });
  const bobMaster = await masterOf(h, bobId);
  t.equal(room.firstOffset.get(1), 0, 'the late participant from sample 0');
  t.ok(room.pcm(1).equals(resampleMaster(bobMaster.pcm, 48000, 16000)), 'the late participant: the whole master resampled');
  const aliceMaster = await masterOf(h, aliceId);
  const a16 = resampleMaster(aliceMaster.pcm, 48000, 16000);
  t.ok(room.pcm(0).equals(a16.subarray(room.firstOffset.get(0)! * 2)), 'the first participant from the live edge on');
  t.same(room.textsOf('end').map((e) => e.index).sort(), [0, 1], 'an end per track');
  t.equal(room.textsOf('end').find((e) => e.index === 1)!.samples, a16.length === 0 ? 0 : resampleMaster(bobMaster.pcm, 48000, 16000).length / 2);
});

t.test('mute and end messages at the right offsets; a subscriber joining during a mute hears of it first', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-m', trackId: 'TR_m' }));
  const pcm = randomStereo(48000, 4);
  await sendFrames(egress, pcm.subarray(0, 24000 * 4 + 480 * 4));
  const id = await liveRecordingId(h, 'TR_m');
  await waitFor(() => (h.app.recordings.get(id)!.frames === 24480 ? true : undefined), 10_000, 'first part');
  const early = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&from=0`);
  await early.opened;
  egress.send(JSON.stringify({ muted: true }));
  await waitFor(() => (h.app.recordings.get(id)!.isMuted ? true : undefined), 10_000, 'muted');
  const during = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&rate=48000`);
  await during.opened;
  await waitFor(() => (during.texts.length >= 2 ? true : undefined), 10_000, 'track and mute');
  t.same(during.order.slice(0, 2), ['track:0', 'mute:0'], 'muted:true right after the track message');
  t.same(during.textsOf('mute')[0], { type: 'mute', index: 0, muted: true, offset: 24480 });
  egress.send(JSON.stringify({ muted: false }));
  await sendFrames(egress, pcm.subarray(24480 * 4));
  await endEgress(egress);
  await Promise.all([early.closed, during.closed]);
  const { pcm: master, event } = await masterOf(h, id);
  const intervals = event.mute_intervals as { start_sample: number; end_sample: number }[];
  t.equal(intervals.length, 1);
  t.same(early.textsOf('mute'), [
    { type: 'mute', index: 0, muted: true, offset: Math.floor(intervals[0]!.start_sample / 3) },
    { type: 'mute', index: 0, muted: false, offset: Math.floor(intervals[0]!.end_sample / 3) },
  ]);
  const at16 = resampleMaster(master, 48000, 16000);
  t.same(early.textsOf('end'), [{ type: 'end', index: 0, endReason: 'normal', samples: at16.length / 2 }]);
  t.ok(early.pcm().equals(at16), 'audio around the mute is the master resampled');
  t.same(during.textsOf('mute').map((m) => m.muted), [true, false]);
  t.same(during.textsOf('end'), [{ type: 'end', index: 0, endReason: 'normal', samples: master.length / 2 }]);
  t.ok(during.pcm().equals(master.subarray(24480 * 2)), 'at 48 kHz, everything after the mute');
});

t.test('live URLs: a single-use token carries the selection and the rate', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-tok', trackId: 'TR_tok' }));
  await sendFrames(egress, randomStereo(9600, 5));
  const id = await liveRecordingId(h, 'TR_tok');
  const mint = async (body: Record<string, unknown>): Promise<Response> =>
    fetch(`${h.baseUrl}/v1/live/urls`, { method: 'POST', headers: { apikey: TEST_API_KEY, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const res = await mint({ recordingId: id, rate: 48000, ttlSeconds: 60 });
  t.equal(res.status, 201);
  const { url, expiresAt } = (await res.json()) as { url: string; expiresAt: string };
  t.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/v1\/live\?token=/);
  t.ok(Date.parse(expiresAt) > Date.now());
  t.equal((await mint({ recordingId: id, roomName: 'x' })).status, 400, 'one selection only');
  t.equal((await fetch(`${h.baseUrl}/v1/live/urls`, { method: 'POST', body: '{}' })).status, 401, 'API key required');

  const differs = new LiveConsumer(`${url}&rate=16000`, { headers: {} });
  await differs.opened.catch(() => undefined);
  t.equal(differs.refused?.status, 400, 'a query value that differs from the token is refused');
  const c = new LiveConsumer(url, { headers: {} });
  await c.opened;
  const again = new LiveConsumer(url, { headers: {} });
  await again.opened.catch(() => undefined);
  t.equal(again.refused?.status, 401, 'a token is single-use');
  t.match(JSON.parse(again.refused!.body), { error: { code: 'TOKEN_REPLAYED' } });
  await sendFrames(egress, randomStereo(9600, 6));
  await endEgress(egress);
  await c.closed;
  t.equal(c.tracks[0]!.rate, 48000, 'the rate of the token');
  t.equal(c.closeCode, 1000);

  // another tenant's recording is not found
  const other = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&from=0`, { headers: { apikey: 'not-a-key-0123456789' } });
  await other.opened.catch(() => undefined);
  t.equal(other.refused?.status, 401);
});

t.test('a room subscription lasts as long as the room session: rooms.idleSec after its last track ended', async (t) => {
  // live.roomIdleSec unset: the subscription follows the rooms part's idle gap (1 s here, 30 s by default)
  const h = await startTestApp({ rooms: { idleSec: 1 } });
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: 'room-session', trackId: 'TR_s1', participant: 'sam' }));
  await sendFrames(egress, randomStereo(4800, 11));
  await liveRecordingId(h, 'TR_s1');
  const room = new LiveConsumer(`${h.wsUrl}/v1/live?roomName=room-session`);
  await room.opened;
  await sendFrames(egress, randomStereo(9600, 12), 1920, 5, 2);
  await endEgress(egress);
  const endedAt = Date.now();
  const closed = await Promise.race([room.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
  t.ok(closed, `closed ${Date.now() - endedAt} ms after the last track ended (the session's 1 s gap, not live's own 30 s)`);
  t.equal(room.closeCode, 1000);
  t.equal(room.closeReason, 'room session ended');
  t.same(room.textsOf('end').map((e) => e.index), [0], 'the track ended first');
});
