import t from 'tap';
import { readFileSync } from 'node:fs';
import initWabt from 'wabt';
import { Resampler } from '../../src/audio/resample.js';
import { firKernel, RESAMPLE_FIR_WASM } from '../../src/audio/resample-simd.js';
import { concatInt16, noise, randomSizes } from '../helpers/audio-signal.js';

t.test('the embedded module is resample-fir.wat compiled with wabt', async (t) => {
  const wabt = await initWabt();
  const wat = readFileSync(new URL('../../src/audio/resample-fir.wat', import.meta.url), 'utf8');
  const compiled = Buffer.from(wabt.parseWat('resample-fir.wat', wat, { simd: true }).toBinary({}).buffer);
  t.ok(compiled.equals(RESAMPLE_FIR_WASM), `embedded bytes match the .wat (compiled: ${compiled.toString('base64')})`);
});

/** Full-scale noise with runs of the rails (the sums' worst cases) and silence. */
function hard(frames: number, channels: number, seed: number): Int16Array {
  const x = noise(frames * channels, 1, seed);
  for (let i = 0; i < x.length; i++) {
    const run = Math.floor(i / (97 * channels)) % 5;
    if (run === 1) x[i] = 32767;
    else if (run === 2) x[i] = -32768;
    else if (run === 3) x[i] = Math.floor(i / (7 * channels)) % 2 === 0 ? 32767 : -32768;
  }
  return x;
}

function run(r: Resampler, x: Int16Array, sizes: number[]): Int16Array {
  const parts: Int16Array[] = [];
  let off = 0;
  for (const frames of sizes) {
    parts.push(r.process(x.subarray(off * r.channels, (off + frames) * r.channels)));
    off += frames;
  }
  parts.push(r.flush());
  return concatInt16(parts);
}

t.test('the SIMD kernel gives exactly the scalar loop’s samples, for every rate pair, channel count and split', async (t) => {
  t.not(firKernel, null, 'WebAssembly SIMD runs in this Node');
  const pairs = [[48000, 16000], [48000, 8000], [48000, 24000], [16000, 48000], [8000, 48000], [44100, 16000], [48000, 44100], [24000, 16000]] as const;
  for (const [fin, fout] of pairs) {
    for (const channels of [1, 2]) {
      const frames = fin / 2 + 13;
      const x = hard(frames, channels, fin + fout + channels);
      const sizes = randomSizes(frames, fin * channels + fout, 5000);
      const simd = run(new Resampler({ inputRate: fin, outputRate: fout, channels }), x, sizes);
      const scalar = run(new Resampler({ inputRate: fin, outputRate: fout, channels, scalar: true }), x, [frames]);
      t.equal(simd.length, scalar.length, `${fin}→${fout}×${channels}: length`);
      let diff = 0;
      for (let i = 0; i < simd.length; i++) if (simd[i] !== scalar[i]) diff++;
      t.equal(diff, 0, `${fin}→${fout}×${channels}: identical samples`);
      t.ok(simd.includes(32767) && simd.includes(-32768), `${fin}→${fout}×${channels}: the rails are reached (clamped, not wrapped)`);
    }
  }
});

t.test('startAt through the kernel equals the scalar loop from the same offset', async (t) => {
  const x = hard(48000, 1, 5);
  for (const n of [0, 1, 7, 4801, 15000]) {
    const a = new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1 });
    const b = new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1, scalar: true });
    const first = a.startAt(n);
    t.equal(b.startAt(n), first);
    const ya = run(a, x.subarray(first), [480, 1, 2000, x.length - first - 2481]);
    const yb = run(b, x.subarray(first), [x.length - first]);
    t.same(ya, yb, `@${n}`);
  }
});
