import t from 'tap';
import fc from 'fast-check';
import { Resampler } from '../../src/audio/resample.js';
import { concatInt16, db, randomSizes, rms, tone, toneAmplitude, noise } from '../helpers/audio-signal.js';

const PAIRS = [
  [48000, 16000],
  [48000, 24000],
  [16000, 48000],
  [44100, 16000],
  [48000, 44100],
] as const;

function resampleAll(inputRate: number, outputRate: number, pcm: Int16Array, channels = 1): Int16Array {
  const r = new Resampler({ inputRate, outputRate, channels });
  return concatInt16([r.process(pcm), r.flush()]);
}

/** Middle 60 % of a signal, away from the start and end transients. */
function middle(frames: number): [number, number] {
  return [Math.floor(frames * 0.2), Math.floor(frames * 0.8)];
}

t.test('a 1 kHz tone passes within 0.5 dB for every rate pair', async (t) => {
  for (const [fin, fout] of PAIRS) {
    const x = tone(fin, 1000, 1, 0.5);
    const y = resampleAll(fin, fout, x);
    const [a, b] = middle(y.length);
    const gain = db(toneAmplitude(y, fout, 1000, a, b) / 0.5);
    t.ok(Math.abs(gain) < 0.5, `${fin}→${fout}: 1 kHz gain ${gain.toFixed(3)} dB`);
  }
});

t.test('tones above the output Nyquist rate are attenuated by more than 40 dB', async (t) => {
  // Each would fold back into the band if the filter did not remove it (9 kHz → 7 kHz at 16 kHz).
  const cases = [
    [48000, 16000, 9000],
    [48000, 16000, 12000],
    [48000, 16000, 20000],
    [48000, 24000, 13000],
    [44100, 16000, 10000],
    [48000, 44100, 23000],
  ] as const;
  for (const [fin, fout, hz] of cases) {
    const x = tone(fin, hz, 1, 0.5);
    const y = resampleAll(fin, fout, x);
    const [a, b] = middle(y.length);
    const alias = Math.abs(fout - hz);
    const level = db(rms(y, a, b) / rms(x));
    t.ok(level < -40, `${fin}→${fout}: ${hz} Hz comes out at ${level.toFixed(1)} dB`);
    t.ok(db(toneAmplitude(y, fout, alias, a, b) / 0.5) < -40, `${fin}→${fout}: no ${alias} Hz alias`);
  }
});

t.test('upsampling removes the spectral images', async (t) => {
  const x = tone(16000, 1000, 1, 0.5);
  const y = resampleAll(16000, 48000, x);
  const [a, b] = middle(y.length);
  for (const image of [15000, 17000]) {
    const level = db(toneAmplitude(y, 48000, image, a, b) / 0.5);
    t.ok(level < -40, `image at ${image} Hz is ${level.toFixed(1)} dB`);
  }
});

t.test('N calls give bit-exactly the output of one call, and the tail comes from flush', async (t) => {
  for (const [fin, fout] of PAIRS) {
    for (const channels of [1, 2]) {
      const x = new Int16Array(fin * 0.5 * channels);
      x.set(noise(x.length, 0.6, fin + channels));
      const whole = resampleAll(fin, fout, x, channels);
      t.equal(whole.length / channels, Math.ceil((x.length / channels) * (fout / fin)), `${fin}→${fout}×${channels}: length`);
      const r = new Resampler({ inputRate: fin, outputRate: fout, channels });
      const parts: Int16Array[] = [];
      let off = 0;
      for (const frames of randomSizes(x.length / channels, fin + fout + channels, 700)) {
        parts.push(r.process(x.subarray(off * channels, (off + frames) * channels)));
        off += frames;
      }
      parts.push(r.flush());
      t.same(concatInt16(parts), whole, `${fin}→${fout}×${channels}: chunked == whole`);
    }
  }
});

t.test('any split of the input gives the same output (property)', async () => {
  const x = noise(4000, 0.9, 7);
  const whole = resampleAll(48000, 16000, x);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 12 }), (cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), 4000];
      const r = new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1 });
      const parts: Int16Array[] = [];
      for (let i = 1; i < points.length; i++) parts.push(r.process(x.subarray(points[i - 1], points[i])));
      parts.push(r.flush());
      const got = concatInt16(parts);
      return got.length === whole.length && got.every((v, i) => v === whole[i]);
    }),
    { numRuns: 60 },
  );
});

t.test('the filter delay is compensated: an impulse keeps its time', async (t) => {
  for (const [fin, fout] of PAIRS) {
    const x = new Int16Array(fin / 5); // 200 ms
    const at = fin / 10; // 100 ms
    x[at] = 30000;
    const y = resampleAll(fin, fout, x);
    let best = 0;
    for (let i = 1; i < y.length; i++) if (Math.abs(y[i]!) > Math.abs(y[best]!)) best = i;
    t.ok(Math.abs(best - fout / 10) <= 1, `${fin}→${fout}: peak at ${best}, expected ${fout / 10}`);
  }
});

t.test('a constant stays exactly constant (unity DC gain in every phase)', async (t) => {
  for (const [fin, fout] of PAIRS) {
    const x = new Int16Array(fin / 2).fill(12345);
    const y = resampleAll(fin, fout, x);
    const [a, b] = middle(y.length);
    t.ok(y.subarray(a, b).every((v) => v === 12345), `${fin}→${fout}`);
  }
});

t.test('full-scale input saturates instead of wrapping', async (t) => {
  // A full-scale square wave rings above full scale through any sinc filter: must clamp, not wrap.
  const x = new Int16Array(48000);
  for (let i = 0; i < x.length; i++) x[i] = Math.floor(i / 60) % 2 === 0 ? 32767 : -32768;
  const y = resampleAll(48000, 16000, x);
  // Away from the edges every output sample must keep its plateau's sign; a wrap would flip it.
  let checked = 0;
  let flipped = 0;
  for (let i = 0; i < y.length; i++) {
    const at = i * 3;
    const d = Math.min(at % 60, 60 - (at % 60));
    if (d < 6 || at >= x.length) continue;
    checked++;
    if (Math.sign(y[i]!) !== Math.sign(x[at]!)) flipped++;
  }
  t.ok(checked > 5000, `checked ${checked} samples`);
  t.equal(flipped, 0, 'no sample wrapped around');
  t.ok(y.some((v) => v === 32767) && y.some((v) => v === -32768), 'clamped at the rails');
});

t.test('same rate is a pass-through copy', async (t) => {
  const x = noise(1000, 1, 3);
  const r = new Resampler({ inputRate: 16000, outputRate: 16000, channels: 1 });
  t.equal(r.passThrough, true);
  const y = r.process(x);
  t.same(y, x);
  t.not(y.buffer, x.buffer, 'a copy, not the caller buffer');
  t.equal(r.flush().length, 0);
});

t.test('flush resets: the next signal starts fresh', async (t) => {
  const x = noise(3000, 0.5, 9);
  const r = new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1 });
  const first = concatInt16([r.process(x), r.flush()]);
  const second = concatInt16([r.process(x), r.flush()]);
  t.same(second, first);
});

t.test('bad options are refused with the value given', async (t) => {
  t.throws(() => new Resampler({ inputRate: 0, outputRate: 16000, channels: 1 }), /inputRate.*got 0/);
  t.throws(() => new Resampler({ inputRate: 48000, outputRate: 16000.5, channels: 1 }), /outputRate/);
  t.throws(() => new Resampler({ inputRate: 48000, outputRate: 16000, channels: 0 }), /channels/);
  t.throws(() => new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1, passband: 1.2 }), /passband/);
});

t.test('a long call holds no more memory than short ones: seconds at once go through in pieces, with the samples of short calls', async (t) => {
  for (const [fin, fout] of [[48000, 16000], [16000, 48000]] as const) {
    const x = noise(fin * 20, 0.7, fin + fout); // 20 s at once: a subscriber resuming from the spool
    const short = new Resampler({ inputRate: fin, outputRate: fout, channels: 1 });
    const parts: Int16Array[] = [];
    for (let off = 0; off < x.length; off += 480) parts.push(short.process(x.subarray(off, off + 480)));
    const expected = concatInt16(parts);

    const r = new Resampler({ inputRate: fin, outputRate: fout, channels: 1 });
    const out = new Int16Array(r.maxOutputFrames(x.length));
    const before = process.memoryUsage().arrayBuffers;
    const n = r.processInto(x, 0, x.length, out, 0);
    const grown = process.memoryUsage().arrayBuffers - before;
    t.ok(grown < 256 * 1024, `${fin}→${fout}: the resampler's memory grew by ${grown} B for a 20 s call (its input alone is ${x.byteLength} B)`);
    t.same(out.subarray(0, n), expected, `${fin}→${fout}: the same samples as 10 ms calls`);
  }
});
