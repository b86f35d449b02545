import t from 'tap';
import {
  StreamingNormalizer,
  dbToGain,
  loudnessDb,
  normalize,
  normalizationGain,
  peakLevel,
} from '../../src/audio/normalize.js';
import { concatInt16, db, noise, rms, tone } from '../helpers/audio-signal.js';

const RATE = 16000;

function fullScaleSquare(frames: number): Int16Array {
  const x = new Int16Array(frames);
  for (let i = 0; i < frames; i++) x[i] = Math.floor(i / 20) % 2 === 0 ? 32767 : -32768;
  return x;
}

t.test('peak normalization puts the loudest sample at the target', async (t) => {
  const x = tone(RATE, 440, 1, 0.1);
  const gain = normalize(x, RATE, 1, { mode: 'peak', targetDb: -3 });
  t.ok(gain > 6 && gain < 8, `gain ${gain}`);
  t.ok(Math.abs(db(peakLevel(x)) - -3) < 0.01, `peak ${db(peakLevel(x)).toFixed(3)} dBFS`);
});

t.test('loudness normalization reaches the RMS target', async (t) => {
  const x = tone(RATE, 440, 2, dbToGain(-30) * Math.SQRT2);
  t.ok(Math.abs(loudnessDb(x, RATE, 1) - -30) < 0.05, 'measured level of a −30 dBFS tone');
  normalize(x, RATE, 1, { mode: 'loudness', targetDb: -18 });
  t.ok(Math.abs(db(rms(x)) - -18) < 0.05, `rms ${db(rms(x)).toFixed(3)} dBFS`);
});

t.test('the loudness gate ignores silence between words', async (t) => {
  const speechLike = concatInt16([tone(RATE, 300, 1, 0.2), new Int16Array(RATE * 3), tone(RATE, 300, 1, 0.2)]);
  const level = loudnessDb(speechLike, RATE, 1);
  const toneLevel = db(0.2 / Math.SQRT2);
  t.ok(Math.abs(level - toneLevel) < 1.5, `gated ${level.toFixed(2)} vs tone ${toneLevel.toFixed(2)} (ungated ${db(rms(speechLike)).toFixed(2)})`);
  t.equal(loudnessDb(new Int16Array(RATE), RATE, 1), -Infinity, 'digital silence');
});

t.test('never clips: full-scale input with a loud target is turned down to the ceiling', async (t) => {
  for (const mode of ['peak', 'loudness'] as const) {
    const x = fullScaleSquare(RATE);
    normalize(x, RATE, 1, { mode, targetDb: 0, ceilingDb: -1 });
    t.ok(peakLevel(x) <= dbToGain(-1) + 1 / 32768, `${mode}: peak ${db(peakLevel(x)).toFixed(3)} dBFS`);
    const y = tone(RATE, 440, 1, 0.5);
    normalize(y, RATE, 1, { mode, targetDb: 20 });
    t.ok(peakLevel(y) <= dbToGain(-1) + 1 / 32768, `${mode}: an absurd target still stops at the ceiling`);
  }
});

t.test('quiet noise is not boosted beyond maxGainDb, silence is left alone', async (t) => {
  const hiss = noise(RATE, 0.005, 4); // about −52 dBFS RMS
  const g = normalizationGain(hiss, RATE, 1, { mode: 'loudness', targetDb: -20, maxGainDb: 12 });
  t.ok(Math.abs(db(g) - 12) < 1e-9, `gain capped at 12 dB (got ${db(g)})`);
  const belowGate = noise(RATE, 0.0005, 5); // about −72 dBFS: gated out, treated as silence
  t.equal(normalizationGain(belowGate, RATE, 1, { mode: 'loudness' }), 1);
  const silence = new Int16Array(1000);
  t.equal(normalize(silence, RATE, 1, { mode: 'peak' }), 1);
  t.ok(silence.every((v) => v === 0));
});

t.test('streaming: gain changes smoothly across chunk joins and converges to the target', async (t) => {
  const n = new StreamingNormalizer({ mode: 'loudness', targetDb: -20, sampleRate: RATE, channels: 1, maxStepDb: 3 });
  const chunk = 320; // 20 ms
  // A constant input makes the applied gain visible sample by sample.
  const level = 1000;
  const out: number[] = [];
  for (let c = 0; c < 100; c++) {
    const x = new Int16Array(chunk).fill(level);
    n.process(x);
    out.push(...x);
  }
  let worstJoin = 0;
  let worstInside = 0;
  for (let i = 1; i < out.length; i++) {
    const d = Math.abs(out[i]! - out[i - 1]!);
    if (i % chunk === 0) worstJoin = Math.max(worstJoin, d);
    else worstInside = Math.max(worstInside, d);
  }
  t.ok(worstJoin <= worstInside + 1, `largest step at a join ${worstJoin}, inside a chunk ${worstInside}`);
  t.ok(worstJoin < level * 0.02, 'no audible jump at joins');
  const finalDb = db(out[out.length - 1]! / 32768);
  t.ok(Math.abs(finalDb - -20) < 0.1, `converged to ${finalDb.toFixed(3)} dBFS`);
});

t.test('streaming never clips on a sudden full-scale onset', async (t) => {
  const n = new StreamingNormalizer({ mode: 'loudness', targetDb: -14, ceilingDb: -1, sampleRate: RATE, channels: 2 });
  const quiet = tone(RATE, 440, 0.02, 0.001, 2);
  let peak = 0;
  for (let c = 0; c < 150; c++) {
    const x = c < 100 ? quiet.slice() : fullScaleSquare(640);
    n.process(x);
    peak = Math.max(peak, peakLevel(x));
  }
  t.ok(n.currentGain < 1, 'gain turned down for the loud part');
  t.ok(peak <= dbToGain(-1) + 1 / 32768, `peak ${db(peak).toFixed(3)} dBFS`);
});

t.test('streaming peak mode follows a decaying peak', async (t) => {
  const n = new StreamingNormalizer({ mode: 'peak', targetDb: -6, sampleRate: RATE, channels: 1 });
  let last: Int16Array = new Int16Array(0);
  for (let c = 0; c < 60; c++) {
    last = tone(RATE, 500, 0.1, 0.1);
    n.process(last);
  }
  t.ok(Math.abs(db(peakLevel(last)) - -6) < 0.2, `peak ${db(peakLevel(last)).toFixed(2)} dBFS`);
});
