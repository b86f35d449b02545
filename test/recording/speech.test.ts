import t from 'tap';
import { simulateEgress } from '../../src/clients/egress-simulator.js';
import { fvadHangoverMs, SpeechSegmenter, type SpeechEdge } from '../../src/recording/speech.js';
import { configSchema } from '../../src/config/schema.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, readWav, speechEgressPcm } from '../helpers/egress.js';
import { voicedSpan } from '../helpers/audio-signal.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { waitFor } from '../helpers/wait-for.js';

type Ev = Record<string, unknown>;
type Interval = { start: number; end: number };

const RATE = 48000;
const TEXTS = ['The quick brown fox jumps over the lazy dog', 'Every meeting has a beginning and an end', 'Thank you all for coming today'];
/** Silence before the first utterance and after each one, in seconds. */
const LEAD = 0.5;
const PAUSES = [1.2, 1.5, 0.8];

/**
 * Three utterances (eSpeak NG, 48 kHz stereo as egress sends) with pauses of known length in
 * digital silence, and where the speech is in the resulting stream's samples.
 */
async function fixture(): Promise<{ pcm: Buffer; speech: Interval[] }> {
  const parts: Buffer[] = [Buffer.alloc(LEAD * RATE * 4)];
  const speech: Interval[] = [];
  let at = LEAD * RATE;
  for (let k = 0; k < TEXTS.length; k++) {
    const stereo = await speechEgressPcm(TEXTS[k]);
    const mono = downmix(stereo);
    const v = voicedSpan(new Int16Array(mono.buffer, mono.byteOffset, mono.length / 2), RATE);
    parts.push(stereo.subarray(v.start * 4, v.end * 4));
    speech.push({ start: at, end: at + v.end - v.start });
    at += v.end - v.start;
    parts.push(Buffer.alloc(PAUSES[k]! * RATE * 4));
    at += PAUSES[k]! * RATE;
  }
  return { pcm: Buffer.concat(parts), speech };
}

function completed(h: TestApp, trackId: string): Ev | undefined {
  return outboxEvents(h).find((e) => e.type === 'recording.completed' && e.track_id === trackId);
}

t.test('SpeechSegmenter: pauses under minSilence are bridged, then speech under minSpeech is dropped, the hangover taken off', async (t) => {
  const run = (pattern: string): { intervals: Interval[]; edges: SpeechEdge[] } => {
    const edges: SpeechEdge[] = [];
    // 10-sample frames; min speech 30, min silence 30, hangover 10
    const seg = new SpeechSegmenter(30, 30, (e) => edges.push(e), 10);
    for (let i = 0; i < pattern.length; i++) seg.frame(i * 10, 10, pattern[i] === '1');
    return { intervals: seg.finish(), edges };
  };
  // speech 20..70 (less the hangover: ..60), a one-frame pause (20 with the hangover) bridged,
  // speech 80..120 (..110): one interval; a lone frame at 180 is all hangover: nothing; 260..320 → ..310
  t.same(run('00111110111100000010000000111111000000'), {
    intervals: [
      { start: 20, end: 110 },
      { start: 260, end: 310 },
    ],
    edges: [
      { on: true, offset: 20 },
      { on: false, offset: 110 },
      { on: true, offset: 260 },
      { on: false, offset: 310 },
    ],
  });
  // a two-frame pause is 30 with the hangover: not bridged; 90..130 → 90..120 is just long enough
  t.same(run('0011111001111000000').intervals, [
    { start: 20, end: 60 },
    { start: 90, end: 120 },
  ]);
  // speech still open at the end is closed there, whole
  t.same(run('000111').intervals, [{ start: 30, end: 60 }]);
  t.equal(fvadHangoverMs(2, 10), 90);
  t.equal(fvadHangoverMs(0, 30), 150);
});

t.test('speech intervals in recording.completed match speech with pauses of known length within 100 ms', async (t) => {
  const h = await startTestApp({ vad: { enabled: true, liveEvents: true } });
  t.teardown(() => h.close());
  const { pcm, speech } = await fixture();
  const url = await egressUrl(h, { roomName: 'room-vad', trackId: 'TR_vad', participant: 'alice' });
  await simulateEgress({ url, pcm, realtime: false });
  const ev = await waitFor(() => completed(h, 'TR_vad'), 60_000, 'completed');
  t.same(validate(loadSchema('recording.completed'), ev), [], 'the event matches the schema');
  const found = ev.speech as Interval[];
  t.equal(found.length, speech.length, `one interval per utterance: ${JSON.stringify(found)}`);
  const ms = (n: number): number => Math.round((n * 1000) / RATE);
  for (let i = 0; i < speech.length; i++) {
    const want = speech[i]!;
    const got = found[i] ?? { start: -1e9, end: -1e9 };
    t.ok(Math.abs(got.start - want.start) <= RATE / 10, `utterance ${i} starts at ${ms(want.start)} ms, found ${ms(got.start)} ms`);
    t.ok(Math.abs(got.end - want.end) <= RATE / 10, `utterance ${i} ends at ${ms(want.end)} ms, found ${ms(got.end)} ms`);
  }
  const master = readWav(await h.app.store.get(ev.s3_key_master as string));
  t.ok(found.every((x) => x.end <= master.data.length / 2), 'intervals lie inside the master');

  await t.test('recording.speech events, when enabled, give the same edges live', async (t) => {
    const live = outboxEvents(h).filter((e) => e.type === 'recording.speech' && e.track_id === 'TR_vad');
    for (const e of live) t.same(validate(loadSchema('recording.speech'), e), [], 'recording.speech matches its schema');
    t.same(
      live.map((e) => [e.speech, e.offset]),
      found.flatMap((x) => [
        ['on', x.start],
        ['off', x.end],
      ]),
      'one on and one off per interval, at its offsets',
    );
    t.ok(live.every((e) => e.sample_rate === RATE && e.recording_id === ev.recording_id));
  });
});

t.test('VAD off: speech is null; on without live events: intervals, no recording.speech', async (t) => {
  const h = await startTestApp({ vad: { enabled: false } });
  t.teardown(() => h.close());
  const { pcm } = await fixture();
  const url = await egressUrl(h, { roomName: 'room-novad', trackId: 'TR_off' });
  await simulateEgress({ url, pcm: pcm.subarray(0, RATE * 4 * 3), realtime: false });
  const ev = await waitFor(() => completed(h, 'TR_off'), 60_000, 'completed');
  t.equal(ev.speech, null);
  t.equal(configSchema.parse({}).vad.enabled, true, 'the VAD is on by default');
  t.equal(configSchema.parse({}).vad.liveEvents, false, 'live speech events are off by default');
  const h2 = await startTestApp({ vad: { enabled: true } });
  t.teardown(() => h2.close());
  const url2 = await egressUrl(h2, { roomName: 'room-default', trackId: 'TR_on' });
  await simulateEgress({ url: url2, pcm: pcm.subarray(0, RATE * 4 * 3), realtime: false });
  const ev2 = await waitFor(() => completed(h2, 'TR_on'), 60_000, 'completed');
  t.ok(Array.isArray(ev2.speech) && (ev2.speech as Interval[]).length === 1, `speech found: ${JSON.stringify(ev2.speech)}`);
  t.equal(outboxEvents(h2).filter((e) => e.type === 'recording.speech').length, 0, 'no live events unless asked for');
});
