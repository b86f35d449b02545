import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp, TEST_API_KEY, type TestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, readWav } from '../helpers/egress.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { burstPcm, referenceMix, referencePlace } from '../helpers/room-reference.js';
import { s3rverStorage } from '../helpers/storage-s3rver.js';
import { waitFor } from '../helpers/wait-for.js';

const RATE = 48000;
const REDIS_URL = 'redis://127.0.0.1:6379';

/** Mono samples sent as egress's 48 kHz stereo with equal channels (so the master's downmix is exact). */
function stereo(mono: Int16Array): Buffer {
  const out = Buffer.alloc(mono.length * 4);
  for (let i = 0; i < mono.length; i++) {
    out.writeInt16LE(mono[i]!, i * 4);
    out.writeInt16LE(mono[i]!, i * 4 + 2);
  }
  return out;
}

function int16(data: Buffer): Int16Array {
  const copy = Buffer.from(data);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length >> 1);
}

interface Manifest {
  sessionId: string;
  tenant: string;
  roomName: string;
  startedAt: string;
  endedAt: string;
  sampleRate: number;
  tracks: { recordingId: string; participant: string; key: string; offset: { samples: number; ms: number }; samples: number; timeline: { start: number; samples: number; roomOffset: number; wallClock: string }[]; mutes: unknown[]; speech: unknown[]; driftPpm: number | null }[];
  speakers: unknown[];
  mix: { key: string; samples: number };
  dual: { key: string } | null;
}


function roomEvents(...apps: TestApp[]): Record<string, unknown>[] {
  return apps.flatMap((h) => outboxEvents(h)).filter((e) => e.type === 'room.completed');
}

t.test('three participants joining at 0, 2.3 s and 7.1 s, one muted 3 s, one stalled 1 s: manifest, mix, dual, event, API', async (t) => {
  const { storage } = await s3rverStorage(t, 'aid-rooms-s3-');
  const h = await startTestApp({ storage, rooms: { idleSec: 1, dual: { left: 'alice', right: 'carol' } } } as never);
  t.teardown(() => h.close());
  // every read of the real store, by key: a room on one host examines its tracks from what it wrote
  const reads: string[] = [];
  const get = h.app.store.get.bind(h.app.store);
  h.app.store.get = (key: string) => {
    reads.push(key);
    return get(key);
  };
  const room = `standup-${Date.now()}`;
  const pcm = { alice: burstPcm(RATE * 6, 11), bob: burstPcm(RATE * 6, 12), carol: burstPcm(RATE * 4, 13) };
  const urls = {
    alice: await egressUrl(h, { roomName: room, trackId: 'TR_A', participant: 'alice' }),
    bob: await egressUrl(h, { roomName: room, trackId: 'TR_B', participant: 'bob' }),
    carol: await egressUrl(h, { roomName: room, trackId: 'TR_C', participant: 'carol' }),
  };
  const t0 = Date.now();
  const at = (ms: number) => sleep(Math.max(0, t0 + ms - Date.now()));
  const runs = await Promise.all([
    simulateEgress({ url: urls.alice, pcm: stereo(pcm.alice) }),
    at(2300).then(() => simulateEgress({ url: urls.bob, pcm: stereo(pcm.bob), mutes: [{ atSec: 1, durationSec: 3 }] })),
    at(7100).then(() => simulateEgress({ url: urls.carol, pcm: stereo(pcm.carol), stall: { atSec: 1, durationSec: 1, catchUp: false } })),
  ]);
  const started = { alice: runs[0].startedAtMs!, bob: runs[1].startedAtMs!, carol: runs[2].startedAtMs! };

  const event = await waitFor(() => roomEvents(h)[0], 30_000, 'room.completed');
  t.same(validate(loadSchema('room.completed'), event), [], 'room.completed matches its schema');
  t.same(reads.filter((k) => k.includes('/tracks/')), [], 'no track record read back from the store: the host knows the records it wrote');
  const m = JSON.parse((await h.app.store.get(event.manifest_key as string)).toString('utf8')) as Manifest;
  t.equal(m.roomName, room);
  t.equal(m.sessionId, event.session_id);
  t.equal(m.sampleRate, RATE);
  t.equal(m.tracks.length, 3);
  const track = (p: string) => m.tracks.find((x) => x.participant === p)!;
  const expectAt = (p: 'alice' | 'bob' | 'carol', extraMs = 0) => ((started[p] - started.alice + extraMs) * RATE) / 1000;
  const within = (got: number, want: number, what: string) => t.ok(Math.abs(got - want) <= 0.02 * RATE, `${what}: ${((got - want) / RATE * 1000).toFixed(1)} ms off (≤ 20 ms)`);
  within(track('alice').offset.samples, 0, 'alice at 0');
  within(track('bob').offset.samples, expectAt('bob'), 'bob at 2.3 s');
  within(track('carol').offset.samples, expectAt('carol'), 'carol at 7.1 s');
  // where a track sample landed on the room timeline (its run's roomOffset plus its place in the run)
  const roomAt = (p: string, sample: number): number => {
    const run = track(p).timeline.find((r) => sample >= r.start && sample < r.start + r.samples)!;
    return run.roomOffset + (sample - run.start);
  };
  within(roomAt('alice', 5 * RATE), 5 * RATE, 'alice, who never paused: her 5th second at 5 s');
  t.ok(track('bob').timeline.length >= 2, 'bob: the unfilled mute splits his master in runs');
  within(roomAt('bob', RATE), expectAt('bob', 4000), "bob's first sample after the 3 s mute");
  t.equal(track('bob').samples, RATE * 3, 'bob stored 3 s');
  t.ok(track('carol').timeline.length >= 2, 'carol: the stall without catch-up starts a new run');
  within(roomAt('carol', RATE), expectAt('carol', 2000), "carol's first sample after the stall, shifted by 1 s");
  within(roomAt('carol', 4 * RATE - 1), expectAt('carol', 5000) - 1, "carol's last sample");
  t.equal(track('carol').samples, RATE * 4);

  // who spoke when: each track's speech (from its recording.completed) on the room timeline, per participant
  const speakers = m.speakers as { participant: string; startMs: number; endMs: number }[];
  t.ok(speakers.every((x, i) => x.endMs > x.startMs && (i === 0 || speakers[i - 1]!.startMs <= x.startMs)), 'speaker turns are ordered and non-empty');
  for (const x of m.tracks) {
    const speech = x.speech as { start: number; end: number }[];
    const turns = speakers.filter((y) => y.participant === x.participant);
    t.equal(turns.length > 0, speech.length > 0, `${x.participant}: turns exactly when the VAD found speech (${speech.length} intervals)`);
    if (speech.length > 0) {
      const first = speech[0]!.start;
      const run = x.timeline.find((r) => first >= r.start && first < r.start + r.samples)!;
      t.equal(turns[0]!.startMs, Math.round(((run.roomOffset + first - run.start) * 1_000_000) / RATE) / 1000, `${x.participant}: first turn starts where the first speech sample lands`);
    }
  }

  // mix.wav against the reference mixer applied to the three masters at the manifest's placement
  const masters = new Map<string, Int16Array>();
  for (const x of m.tracks) masters.set(x.participant, int16(readWav(await h.app.store.get(x.key)).data));
  t.ok(Buffer.from(masters.get('alice')!.buffer).equals(Buffer.from(pcm.alice.buffer)), "alice's master holds what she sent");
  const ref = m.tracks.map((x) => ({ pcm: masters.get(x.participant)!, runs: x.timeline }));
  const mix = readWav(await h.app.store.get(m.mix.key));
  t.equal(mix.channels, 1);
  t.equal(mix.sampleRate, RATE);
  t.equal(m.mix.samples, mix.data.length / 2);
  const want = referenceMix(ref, m.mix.samples);
  t.ok(Buffer.from(int16(mix.data).buffer).equals(Buffer.from(want.buffer)), 'mix.wav is sample-exact');
  const end = Math.max(...m.tracks.flatMap((x) => x.timeline.map((r) => r.roomOffset + r.samples)));
  t.equal(m.mix.samples, end, 'the room ends with its last sample');

  // dual.wav: alice left, carol right, bob dropped
  t.ok(m.dual, 'dual.wav made');
  const dual = readWav(await h.app.store.get(m.dual!.key));
  t.equal(dual.channels, 2);
  const frames = dual.data.length / 4;
  const left = new Int16Array(frames);
  const right = new Int16Array(frames);
  for (let i = 0; i < frames; i++) {
    left[i] = dual.data.readInt16LE(i * 4);
    right[i] = dual.data.readInt16LE(i * 4 + 2);
  }
  t.ok(Buffer.from(left.buffer).equals(Buffer.from(referencePlace(ref.find((_, i) => m.tracks[i]!.participant === 'alice')!, frames).buffer)), 'left channel is alice');
  t.ok(Buffer.from(right.buffer).equals(Buffer.from(referencePlace(ref.find((_, i) => m.tracks[i]!.participant === 'carol')!, frames).buffer)), 'right channel is carol');

  // the event's presigned URLs and the API
  const viaUrl = await fetch(event.url as string);
  t.equal(viaUrl.status, 200);
  t.same(await viaUrl.json(), m, 'the presigned manifest URL serves the manifest');
  t.equal((await fetch(event.mix_url as string)).status, 200);
  t.equal(event.mix_key, m.mix.key);
  t.equal(event.dual_key, m.dual!.key);
  t.match(event.manifest_key, new RegExp(`^rooms/default/${room}/${m.sessionId}/manifest\\.json$`));
  const one = await fetch(`${h.baseUrl}/v1/rooms/${m.sessionId}`, { headers: { apikey: TEST_API_KEY } });
  t.equal(one.status, 200);
  const body = (await one.json()) as { sessionId: string; manifest: Manifest; mixUrl: string; tracks: unknown[] };
  t.equal(body.sessionId, m.sessionId);
  t.same(body.manifest, m);
  t.equal(body.tracks.length, 3);
  const list = (await (await fetch(`${h.baseUrl}/v1/rooms?roomName=${room}`, { headers: { apikey: TEST_API_KEY } })).json()) as { sessions: { sessionId: string }[] };
  t.same(list.sessions.map((s) => s.sessionId), [m.sessionId]);
  t.equal((await fetch(`${h.baseUrl}/v1/rooms/nope`, { headers: { apikey: TEST_API_KEY } })).status, 404);
  t.equal((await fetch(`${h.baseUrl}/v1/rooms/${m.sessionId}`)).status, 401, 'API key required');
  const state = async (): Promise<string[] | undefined> => {
    const keys: string[] = [];
    for await (const o of h.app.store.list(`rooms-state/default/${room}/`)) keys.push(o.key);
    return keys.length === 0 ? keys : undefined;
  };
  t.same(await waitFor(state, 10_000, 'track records removed'), [], "the session's track records are removed once it is announced");
});

t.test('two daemons, a room split across them: one mix, one room.completed; a claim held by a dead host is taken over when its lease expires', async (t) => {
  const { storage } = await s3rverStorage(t, 'aid-rooms-s3-');
  const opts = { storage, rateLimit: { redisUrl: REDIS_URL }, rooms: { idleSec: 1, leaseSec: 2 } } as never;
  const a = await startTestApp(opts);
  const b = await startTestApp(opts);
  const redis = new Redis(REDIS_URL);
  t.teardown(async () => {
    await a.close();
    await b.close();
    redis.disconnect();
  });

  const split = async (room: string): Promise<void> => {
    await Promise.all([
      simulateEgress({ url: await egressUrl(a, { roomName: room, trackId: 'TR_1', participant: 'ann' }), pcm: stereo(burstPcm(RATE * 2, 21)) }),
      sleep(300).then(async () => simulateEgress({ url: await egressUrl(b, { roomName: room, trackId: 'TR_2', participant: 'ben' }), pcm: stereo(burstPcm(RATE * 2, 22)) })),
    ]);
  };
  const sessions = async (room: string): Promise<string[]> => {
    const out: string[] = [];
    for await (const o of a.app.store.list(`rooms/default/${room}/`)) out.push(o.key);
    return out;
  };

  const room = `split-${Date.now()}`;
  await split(room);
  const ev = await waitFor(() => roomEvents(a, b).find((e) => e.room_name === room), 30_000, 'room.completed');
  await sleep(4000); // both hosts have looked at the room again since
  t.equal(roomEvents(a, b).filter((e) => e.room_name === room).length, 1, 'exactly one room.completed');
  t.equal(roomEvents(a).filter((e) => e.room_name === room).length + roomEvents(b).filter((e) => e.room_name === room).length, 1);
  const keys = await sessions(room);
  t.same(keys.map((k) => k.split('/').slice(3).join('/')).sort(), [`${ev.session_id as string}/manifest.json`, `${ev.session_id as string}/mix.wav`], 'exactly one session folder with one mix');
  const m = JSON.parse((await a.app.store.get(ev.manifest_key as string)).toString('utf8')) as Manifest;
  t.same(m.tracks.map((x) => x.participant).sort(), ['ann', 'ben'], 'both hosts\' tracks in the one mix');

  // a host that died holding the room's claim: nobody mixes until its lease expires, then exactly one does
  const dead = `dead-${Date.now()}`;
  const expires = Date.now() + 6000;
  await redis.set(`audio-ingestd:room-lease:default\u0000${dead}`, 'a-host-that-died', 'PX', 6000);
  await split(dead);
  const ev2 = await waitFor(() => roomEvents(a, b).find((e) => e.room_name === dead), 40_000, 'room.completed after the dead claim');
  t.ok(Date.parse(ev2.occurredAt as string) >= expires, 'mixed only after the dead host\'s lease expired');
  await sleep(3000);
  t.equal(roomEvents(a, b).filter((e) => e.room_name === dead).length, 1, 'and only once');
});

t.test('room_finished ends the session at once, with streams still open and a long idle window', async (t) => {
  const { storage } = await s3rverStorage(t, 'aid-rooms-s3-');
  const h = await startTestApp({ storage, rooms: { idleSec: 600 } } as never);
  t.teardown(() => h.close());
  const room = `finished-${Date.now()}`;
  const open = await Promise.all(
    // the egress URLs claim the channels of dual.wav (no rooms.dual config here)
    ['ann', 'ben'].map(async (p, i) => simulateEgress({ url: await egressUrl(h, { roomName: room, trackId: `TR_${i}`, participant: p, channel: i === 0 ? 'right' : 'left' }), pcm: stereo(burstPcm(RATE * 2, 30 + i)), end: 'none' })),
  );
  await h.app.roomSignals.publishRoomFinished({ tenant: '*', roomName: room });
  const ev = await waitFor(() => roomEvents(h).find((e) => e.room_name === room), 30_000, 'room.completed after room_finished');
  for (const o of open) o.socket?.close();
  const completed = outboxEvents(h).filter((e) => e.type === 'recording.completed' && e.room_name === room);
  t.same(completed.map((e) => e.end_reason), ['room_finished', 'room_finished'], 'the streams ended by room_finished');
  t.same((ev.tracks as { participant: string }[]).map((x) => x.participant).sort(), ['ann', 'ben'], 'both in the session, without waiting 600 s');
  // the event is appended first, then the session's state is tidied up
  const left = async (): Promise<string[]> => {
    const keys: string[] = [];
    for await (const o of h.app.store.list(`rooms-state/default/${room}/`)) keys.push(o.key);
    return keys;
  };
  t.same(await waitFor(async () => ((await left()).length === 0 ? [] : undefined), 10_000, 'state tidied'), [], 'the finished marker and track records are consumed with the session');
  const m = JSON.parse((await h.app.store.get(ev.manifest_key as string)).toString('utf8')) as Manifest;
  t.ok(m.dual, 'dual.wav from the channel claims');
  const dual = readWav(await h.app.store.get(m.dual!.key));
  const frames = dual.data.length / 4;
  const side = (c: number): Buffer => {
    const out = new Int16Array(frames);
    for (let i = 0; i < frames; i++) out[i] = dual.data.readInt16LE(i * 4 + c * 2);
    return Buffer.from(out.buffer);
  };
  const placed = async (p: string): Promise<Buffer> => {
    const x = m.tracks.find((y) => y.participant === p)!;
    return Buffer.from(referencePlace({ pcm: int16(readWav(await h.app.store.get(x.key)).data), runs: x.timeline }, frames).buffer);
  };
  t.ok(side(0).equals(await placed('ben')), 'left is ben, who claimed left');
  t.ok(side(1).equals(await placed('ann')), 'right is ann, who claimed right');
  const bad = await fetch(`${h.baseUrl}/v1/egress/urls`, { method: 'POST', headers: { apikey: TEST_API_KEY, 'content-type': 'application/json' }, body: JSON.stringify({ roomName: room, channel: 'middle' }) });
  t.equal(bad.status, 400, 'channel is left or right');
});
