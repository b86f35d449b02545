import t from 'tap';
import { Resampler } from '../../src/audio/resample.js';
import { concatInt16 } from '../helpers/audio-signal.js';

function noise(n: number, seed: number): Int16Array {
  let x = seed >>> 0;
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = ((x >>> 16) & 0xffff) - 32768;
  }
  return out;
}

function whole(input: Int16Array, from: number, to: number): Int16Array {
  const r = new Resampler({ inputRate: from, outputRate: to, channels: 1 });
  const a = r.process(input);
  const b = r.flush();
  const out = new Int16Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

t.test('startAt(n) then the input from the frame it names gives exactly outputs n… of a whole run', async (t) => {
  const input = noise(48000 + 17, 3);
  for (const [from, to] of [[48000, 16000], [48000, 8000], [48000, 24000], [16000, 48000], [16000, 24000], [48000, 44100], [24000, 16000]] as const) {
    const ref = whole(input, from, to);
    t.equal(ref.length, Math.ceil((input.length * to) / from), `${from}→${to}: ceil(N·L/M) outputs`);
    for (const n of [0, 1, 2, 3, 100, 4801, Math.floor(ref.length / 2), ref.length - 5, ref.length]) {
      const r = new Resampler({ inputRate: from, outputRate: to, channels: 1 });
      const first = r.startAt(n);
      t.ok(first >= 0 && first <= input.length, `${from}→${to} @${n}: starts at input ${first}`);
      // fed in uneven pieces, as live audio comes
      const parts: Int16Array[] = [];
      for (let off = first, step = 1; off < input.length; off += step, step = (step * 7 + 3) % 997 + 1) {
        parts.push(r.process(input.subarray(off, Math.min(input.length, off + step))));
      }
      parts.push(r.flush());
      const got = concatInt16(parts);
      const want = ref.subarray(n);
      t.equal(got.length, want.length, `${from}→${to} @${n}: length`);
      t.ok(got.every((v, i) => v === want[i]), `${from}→${to} @${n}: identical`);
    }
  }
});
