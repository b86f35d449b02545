import t from 'tap';
import fc from 'fast-check';
import { downmixStereoInto, remix, remixInto } from '../../src/audio/downmix.js';

t.test('stereo with equal channels downmixes to exactly that channel', async () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -32768, max: 32767 }), { maxLength: 500 }), (mono) => {
      const stereo = new Int16Array(mono.length * 2);
      mono.forEach((v, i) => {
        stereo[2 * i] = v;
        stereo[2 * i + 1] = v;
      });
      const out = remix(stereo, 2, 1);
      return out.length === mono.length && out.every((v, i) => v === mono[i]);
    }),
  );
});

t.test('stereo downmix is (L+R)/2 rounded and stays in range', async (t) => {
  const src = Int16Array.from([32767, 32767, -32768, -32768, 32767, -32768, 1, 2, -1, -2, 100, 0]);
  const dst = new Int16Array(8).fill(7);
  downmixStereoInto(src, 6, dst, 1);
  t.same(Array.from(dst), [7, 32767, -32768, 0, 2, -1, 50, 7]);
  fc.assert(
    fc.property(fc.integer({ min: -32768, max: 32767 }), fc.integer({ min: -32768, max: 32767 }), (l, r) => {
      const out = remix(Int16Array.from([l, r]), 2, 1)[0]!;
      return Math.abs(out - (l + r) / 2) <= 0.5;
    }),
  );
});

t.test('mono to stereo duplicates, more channels to mono averages', async (t) => {
  t.same(Array.from(remix(Int16Array.from([5, -6]), 1, 2)), [5, 5, -6, -6]);
  t.same(Array.from(remix(Int16Array.from([3, 4, 5, 300, 300, 301]), 3, 1)), [4, 300]);
  const dst = new Int16Array(4);
  remixInto(Int16Array.from([9, 8]), 2, 1, 1, dst, 2);
  t.same(Array.from(dst), [0, 0, 9, 8]);
});
