import t from 'tap';
import { mixSampleFn, plainSample } from '../../src/rooms/mix-law.js';
import { mixToStore } from '../../src/rooms/mixer.js';
import { placeTracks, roomSampleOf, speakers, type TrackFacts } from '../../src/rooms/placement.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { masterHeader } from '../../src/audio/wav.js';
import { readWav } from '../helpers/egress.js';
import type { Tap } from '../helpers/storage-conformance.js';
import { burstPcm, referenceMix, referencePlace } from '../helpers/room-reference.js';
import { tempDir } from '../helpers/temp-dir.js';

const RATE = 48000;

async function fsStore(t: Tap): Promise<FsObjectStore> {
  const root = await tempDir(t, 'aid-rooms-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1:1', secret: 'x'.repeat(32) } });
  await store.start();
  t.teardown(() => store.stop());
  return store;
}

function masterBytes(pcm: Int16Array): Buffer {
  return Buffer.concat([masterHeader({ sampleRate: RATE, channels: 1 }, pcm.length * 2), Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength)]);
}

function facts(id: string, participant: string, samples: number, startedAt: string, timeline?: TrackFacts['timeline']): TrackFacts {
  return { recordingId: id, participant, trackId: `TR_${id}`, key: `m/${id}.wav`, sampleRate: RATE, channels: 1, samples, startedAt, timeline, mutes: [], speech: [], driftPpm: null };
}

t.test('the limiter never clips and is the identity below its knee', async (t) => {
  const f = mixSampleFn({ headroomDb: 6, knee: 0.5 });
  t.equal(f(0), 0);
  t.equal(f(50 * 32767), 32767, 'fifty full-scale tracks stay at full scale');
  t.equal(f(-50 * 32768), -32767);
  t.ok(f(3 * 32767) < 32767, 'three full-scale tracks are below full scale');
  const g = 10 ** (-6 / 20);
  t.equal(f(10000), Math.round(((g * 10000) / 32768) * 32767), 'linear below the knee');
  let prev = -Infinity;
  let monotone = true;
  for (let s = -200000; s <= 200000; s += 97) {
    const v = f(s);
    if (v < prev || Math.abs(v) > 32767) monotone = false;
    prev = v;
  }
  t.ok(monotone, 'monotone and within ±32767 over ±6 full scales');
  t.equal(plainSample(40000), 32767);
  t.equal(plainSample(-123), -123);
});

t.test('placement: offsets from sample 0 wall clocks, runs at their own wall clock, never overlapping', async (t) => {
  const p = placeTracks(
    [
      facts('b', 'bob', 48000, '2026-01-01T00:00:02.300Z'),
      facts('a', 'alice', 96000, '2026-01-01T00:00:00.000Z'),
      facts('c', 'carol', 96000, '2026-01-01T00:00:07.100Z', [
        { start: 0, samples: 48000, wall_clock: '2026-01-01T00:00:07.100Z' },
        // stalled 1 s after its first second
        { start: 48000, samples: 48000, wall_clock: '2026-01-01T00:00:09.100Z' },
      ]),
      // its second run's wall clock would overlap the first: it starts where the first ends
      facts('d', 'dave', 20, '2026-01-01T00:00:01.000Z', [
        { start: 0, samples: 10, wall_clock: '2026-01-01T00:00:01.000Z' },
        { start: 10, samples: 10, wall_clock: '2026-01-01T00:00:01.000Z' },
      ]),
    ],
    RATE,
  );
  const by = Object.fromEntries(p.tracks.map((x) => [x.facts.participant, x]));
  t.equal(by.alice!.offset, 0);
  t.equal(by.bob!.offset, Math.round(2.3 * RATE));
  t.equal(by.carol!.offset, Math.round(7.1 * RATE));
  t.same(by.carol!.runs.map((r) => r.roomOffset), [Math.round(7.1 * RATE), Math.round(9.1 * RATE)]);
  t.same(by.dave!.runs.map((r) => r.roomOffset), [RATE, RATE + 10]);
  t.equal(p.samples, Math.round(9.1 * RATE) + 48000);
  t.equal(roomSampleOf(by.carol!, 48000 + 5), Math.round(9.1 * RATE) + 5);
  t.same(p.tracks.map((x) => x.facts.participant), ['bob', 'alice', 'carol', 'dave'], 'input order kept');
});

t.test('speakers: speech on the room timeline, merged per participant', async (t) => {
  const a = facts('a', 'alice', 96000, '2026-01-01T00:00:00.000Z');
  a.speech = [{ start: 0, end: 4800 }, { start: 4800, end: 9600 }, { start: 48000, end: 50000 }];
  const b = facts('b', 'bob', 48000, '2026-01-01T00:00:00.500Z');
  b.speech = [{ start: 0, end: 24000 }];
  const list = speakers(placeTracks([a, b], RATE));
  t.same(list, [
    { participant: 'alice', startMs: 0, endMs: 200 },
    { participant: 'bob', startMs: 500, endMs: 1000 },
    { participant: 'alice', startMs: 1000, endMs: 1041.667 },
  ]);
});

t.test('streamed mix equals the reference mixer, across windows and parts; dual channels equal their participants', async (t) => {
  const store = await fsStore(t);
  const pcm = { a: burstPcm(RATE * 5, 1), b: burstPcm(RATE * 3, 2), c: burstPcm(RATE * 4 + 17, 3) };
  for (const [id, p] of Object.entries(pcm)) await store.put(`m/${id}.wav`, masterBytes(p), { contentType: 'audio/wav' });
  const placement = placeTracks(
    [
      facts('a', 'alice', pcm.a.length, '2026-01-01T00:00:00.000Z'),
      facts('b', 'bob', pcm.b.length, '2026-01-01T00:00:02.300Z', [
        { start: 0, samples: RATE, wall_clock: '2026-01-01T00:00:02.300Z' },
        { start: RATE, samples: RATE * 2, wall_clock: '2026-01-01T00:00:06.300Z' },
      ]),
      facts('c', 'carol', pcm.c.length, '2026-01-01T00:00:07.100Z'),
    ],
    RATE,
  );
  const refTracks = placement.tracks.map((x) => ({ pcm: pcm[x.facts.recordingId as 'a'], runs: x.runs }));
  const inputs = placement.tracks.map((x, i) => ({ key: x.facts.key, out: i === 2 ? 1 : 0, runs: x.runs }));
  const mixed = await mixToStore({
    store, inputs: inputs.map((i) => ({ ...i, out: 0 })), samples: placement.samples, sampleRate: RATE, outChannels: 1,
    combine: mixSampleFn({ headroomDb: 6, knee: 0.5 }), key: 'rooms/mix.wav', partBytes: 64 * 1024, windowSamples: 12_345,
  });
  t.equal(mixed.samples, placement.samples);
  const wav = readWav(await store.get('rooms/mix.wav'));
  t.equal(wav.sampleRate, RATE);
  t.equal(wav.channels, 1);
  const got = new Int16Array(wav.data.buffer.slice(wav.data.byteOffset, wav.data.byteOffset + wav.data.length));
  const want = referenceMix(refTracks, placement.samples);
  t.equal(got.length, want.length);
  t.ok(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), 'sample-exact');
  t.ok(want.some((v) => Math.abs(v) > 16384), 'the fixture reaches the limiter');

  // dual: alice left, carol right, bob dropped
  const dualInputs = [{ ...inputs[0]!, out: 0 }, { ...inputs[2]!, out: 1 }];
  await mixToStore({ store, inputs: dualInputs, samples: placement.samples, sampleRate: RATE, outChannels: 2, combine: plainSample, key: 'rooms/dual.wav', partBytes: 64 * 1024, windowSamples: 5000 });
  const dual = readWav(await store.get('rooms/dual.wav'));
  t.equal(dual.channels, 2);
  const frames = dual.data.length / 4;
  t.equal(frames, placement.samples);
  const left = new Int16Array(frames);
  const right = new Int16Array(frames);
  for (let i = 0; i < frames; i++) {
    left[i] = dual.data.readInt16LE(i * 4);
    right[i] = dual.data.readInt16LE(i * 4 + 2);
  }
  t.ok(Buffer.from(left.buffer).equals(Buffer.from(referencePlace(refTracks[0]!, frames).buffer)), 'left is alice');
  t.ok(Buffer.from(right.buffer).equals(Buffer.from(referencePlace(refTracks[2]!, frames).buffer)), 'right is carol');
});
