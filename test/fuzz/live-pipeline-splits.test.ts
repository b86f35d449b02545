import fc from 'fast-check';
import t from 'tap';
import { LivePcmPipeline } from '../../src/audio/live-pipeline.js';
import type { PcmFormat } from '../../src/audio/pcm-format.js';

/** Runs bytes through a pipeline cut at `cuts` and returns every chunk, concatenated, with the chunk sizes. */
function run(input: PcmFormat, output: PcmFormat, chunkFrames: number, bytes: Buffer, cuts: number[]): { pcm: Buffer; sizes: number[]; firsts: number[] } {
  const parts: Buffer[] = [];
  const firsts: number[] = [];
  const p = new LivePcmPipeline({ input, output, chunkFrames, onChunk: (pcm, first) => (parts.push(pcm), firsts.push(first)) });
  let off = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    const at = Math.min(bytes.length, c);
    if (at > off) p.push(bytes.subarray(off, at));
    off = Math.max(off, at);
  }
  if (off < bytes.length) p.push(bytes.subarray(off));
  p.flush();
  return { pcm: Buffer.concat(parts), sizes: parts.map((b) => b.length), firsts };
}

const formats = fc.constantFrom<[PcmFormat, PcmFormat]>(
  [{ sampleRate: 48000, channels: 2 }, { sampleRate: 48000, channels: 1 }],
  [{ sampleRate: 48000, channels: 2 }, { sampleRate: 16000, channels: 1 }],
  [{ sampleRate: 16000, channels: 1 }, { sampleRate: 48000, channels: 2 }],
  [{ sampleRate: 44100, channels: 2 }, { sampleRate: 48000, channels: 1 }],
);

t.test('any split of the input (odd lengths, 1-byte pushes, empty pushes) gives the output of one push', async (t) => {
  fc.assert(
    fc.property(formats, fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 0, max: 6000 }), fc.array(fc.nat({ max: 24_000 }), { maxLength: 40 }), fc.integer(), ([input, output], chunkFrames, frames, cuts, seed) => {
      const bytes = Buffer.alloc(frames * input.channels * 2 + (seed & 3));
      let x = seed >>> 0;
      for (let i = 0; i < bytes.length; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        bytes[i] = x >>> 24;
      }
      const whole = run(input, output, chunkFrames, bytes, []);
      const split = run(input, output, chunkFrames, bytes, cuts);
      if (!split.pcm.equals(whole.pcm)) return false;
      // chunks: all of chunkFrames but the last, offsets consecutive
      const frameBytes = output.channels * 2;
      return split.sizes.every((s, i) => (i < split.sizes.length - 1 ? s === chunkFrames * frameBytes : s > 0 && s <= chunkFrames * frameBytes)) && split.firsts.every((f, i) => f === i * chunkFrames);
    }),
    { numRuns: 300 },
  );
  t.pass();
});

t.test('at the same rate, mono output is the (L+R)/2 downmix of every whole input frame', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: -32768, max: 32767 }), fc.integer({ min: -32768, max: 32767 })), { maxLength: 2000 }), fc.array(fc.nat({ max: 8000 }), { maxLength: 20 }), (frames, cuts) => {
      const bytes = Buffer.alloc(frames.length * 4);
      frames.forEach(([l, r], i) => (bytes.writeInt16LE(l, i * 4), bytes.writeInt16LE(r, i * 4 + 2)));
      const out = run({ sampleRate: 48000, channels: 2 }, { sampleRate: 48000, channels: 1 }, 960, bytes, cuts).pcm;
      return out.length === frames.length * 2 && frames.every(([l, r], i) => out.readInt16LE(i * 2) === (l + r + 1) >> 1);
    }),
  );
  t.pass();
});
