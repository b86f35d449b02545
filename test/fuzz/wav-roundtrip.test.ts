import fc from 'fast-check';
import t from 'tap';
import { encodeWav, parseWav, wavHeader } from '../../src/audio/wav.js';
import { AppError } from '../../src/errors.js';

const format = fc.record({ sampleRate: fc.integer({ min: 1, max: 384_000 }), channels: fc.integer({ min: 1, max: 8 }) });

t.test('encodeWav → parseWav gives back the format and the exact samples', async (t) => {
  fc.assert(
    fc.property(format, fc.integer({ min: 0, max: 400 }), fc.integer(), (fmt, frames, seed) => {
      const pcm = Buffer.alloc(frames * fmt.channels * 2);
      for (let i = 0; i < pcm.length; i++) pcm[i] = (seed + i * 131) & 0xff;
      const wav = encodeWav(pcm, fmt);
      const parsed = parseWav(wav);
      return (
        parsed.format.sampleRate === fmt.sampleRate &&
        parsed.format.channels === fmt.channels &&
        parsed.dataBytes === pcm.length &&
        wav.subarray(parsed.dataOffset, parsed.dataOffset + parsed.dataBytes).equals(pcm)
      );
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

t.test('parseWav on any bytes returns or throws CORRUPT_AUDIO, nothing else', async (t) => {
  const check = (bytes: Uint8Array): boolean => {
    try {
      const p = parseWav(bytes);
      return p.dataOffset + p.dataBytes <= bytes.length;
    } catch (err) {
      return err instanceof AppError && err.code === 'CORRUPT_AUDIO';
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), check), { numRuns: 2000 });
  // mutated real files: one byte changed, or truncated / extended
  fc.assert(
    fc.property(format, fc.integer({ min: 0, max: 50 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: -20, max: 20 }), (fmt, frames, pos, value, resize) => {
      const wav = encodeWav(Buffer.alloc(frames * fmt.channels * 2, 7), fmt);
      const mutated = Buffer.from(wav);
      mutated[pos % mutated.length] = value;
      const sized = resize >= 0 ? Buffer.concat([mutated, Buffer.alloc(resize)]) : mutated.subarray(0, Math.max(0, mutated.length + resize));
      return check(sized);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

t.test('a header claiming more or fewer bytes than present is refused', async (t) => {
  fc.assert(
    fc.property(format, fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 1000 }), (fmt, frames, extra) => {
      const pcm = Buffer.alloc(frames * fmt.channels * 2);
      const lying = Buffer.concat([wavHeader(fmt, pcm.length + extra * 2), pcm]);
      try {
        parseWav(lying);
        return false;
      } catch (err) {
        return err instanceof AppError && err.code === 'CORRUPT_AUDIO';
      }
    }),
  );
  t.pass();
});
