import t from 'tap';
import { createReadStream } from 'node:fs';
import { decodeAudio } from '../../src/audio/decode.js';
import * as fx from '../helpers/audio-fixtures.js';

/**
 * Every container that declares its length decodes to exactly that many samples: the encoder's
 * priming is gone from the start and its padding from the end. The fixtures are made by ffmpeg
 * from a WAV of known length at rates where padding is large (AAC at 16 kHz pads up to 64 ms),
 * so the declared length is the source's sample count.
 */

interface Case {
  name: string;
  rate: number;
  args: string[];
  ext: string;
}

const CASES: Case[] = [
  { name: 'AAC/M4A 16 kHz, moov at the end', rate: 16000, args: ['-c:a', 'aac', '-b:a', '32k'], ext: 'm4a' },
  { name: 'AAC/M4A 16 kHz, faststart', rate: 16000, args: ['-c:a', 'aac', '-b:a', '32k', '-movflags', '+faststart'], ext: 'm4a' },
  { name: 'AAC/M4A 22.05 kHz', rate: 22050, args: ['-c:a', 'aac', '-b:a', '48k'], ext: 'm4a' },
  { name: 'AAC/M4A 48 kHz', rate: 48000, args: ['-c:a', 'aac', '-b:a', '64k'], ext: 'm4a' },
  { name: 'MP3 16 kHz (LAME gapless)', rate: 16000, args: ['-c:a', 'libmp3lame', '-b:a', '32k'], ext: 'mp3' },
  { name: 'MP3 44.1 kHz (LAME gapless)', rate: 44100, args: ['-c:a', 'libmp3lame', '-b:a', '64k'], ext: 'mp3' },
  { name: 'WebM/Opus (CodecDelay, DiscardPadding)', rate: 48000, args: ['-c:a', 'libopus', '-b:a', '32k'], ext: 'webm' },
  { name: 'Ogg/Vorbis 16 kHz', rate: 16000, args: ['-c:a', 'libvorbis', '-q:a', '3'], ext: 'ogg' },
  { name: 'FLAC 16 kHz', rate: 16000, args: ['-c:a', 'flac'], ext: 'flac' },
  { name: 'WAV 16 kHz', rate: 16000, args: ['-c:a', 'pcm_s16le'], ext: 'wav' },
];

function samples(buf: Buffer): Int16Array {
  return new Int16Array(new Uint8Array(buf).buffer, 0, buf.length >> 1);
}

/** The lag (in samples, −max..max) at which `x` best matches `ref`: 0 when the priming was removed. */
function bestLag(x: Int16Array, ref: Int16Array, max: number): number {
  let best = 0;
  let bestScore = -Infinity;
  const n = Math.min(x.length, ref.length) - 2 * max;
  for (let lag = -max; lag <= max; lag++) {
    let s = 0;
    for (let i = max; i < n; i += 2) s += x[i + lag]! * ref[i]!;
    if (s > bestScore) {
      bestScore = s;
      best = lag;
    }
  }
  return best;
}

t.test('decoded length = declared length, sample-exact, at the source rate and resampled', async (t) => {
  for (const c of CASES) {
    const src = await fx.speechWavAt(c.rate);
    const srcFrames = fx.wavFrames(src).frames;
    const file = await fx.encodeSpeech(`exact-${c.rate}-${c.name.replace(/\W+/g, '-')}.${c.ext}`, c.args, { source: () => fx.speechWavAt(c.rate) });
    const same = await decodeAudio(createReadStream(file), { output: { sampleRate: c.rate, channels: 1 } });
    t.equal(same.frames, srcFrames, `${c.name}: ${same.frames} frames at ${c.rate} Hz, source ${srcFrames}`);
    for (const output of [{ sampleRate: 16000, channels: 1 }, { sampleRate: 48000, channels: 2 }]) {
      if (output.sampleRate === c.rate) continue;
      const r = await decodeAudio(createReadStream(file), { output });
      const want = (srcFrames * output.sampleRate) / c.rate;
      t.ok(Math.abs(r.frames - want) <= 1, `${c.name} → ${output.sampleRate} Hz: ${r.frames} frames, declared ${want}`);
    }
    // the priming is cut from the start, not from the end: the decode lines up with the source
    const ref = samples(fx.ffmpegPcm(src));
    t.equal(bestLag(samples(same.pcm), ref, 1200), 0, `${c.name}: aligned with the source`);
  }
});

t.test('a 6.000 s AAC note at 16 kHz is 96 000 samples, not 96 256', async (t) => {
  const file = await fx.encodeSpeech('tone-6s.m4a', ['-c:a', 'aac', '-b:a', '32k'], {
    source: async () => {
      const out = `${fx.fixtureDir()}/tone-6s.wav`;
      await fx.ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=440:duration=6:sample_rate=16000', '-c:a', 'pcm_s16le', out]);
      return out;
    },
  });
  const plain = fx.ffmpegPcm(file, { sampleRate: 16000, channels: 1 }).length / 2;
  t.ok(plain > 96000, `ffmpeg alone keeps the AAC end padding: ${plain} samples`);
  const r = await decodeAudio(createReadStream(file), { output: { sampleRate: 16000, channels: 1 } });
  t.equal(r.frames, 96000);
  t.equal(r.declaredFrames, 96000);
  t.equal(r.durationSec, 6);
});

t.test('formats that declare no length keep the decoded count', async (t) => {
  const r = await decodeAudio(createReadStream(await fx.amrNb()), { output: { sampleRate: 8000, channels: 1 } });
  t.equal(r.declaredFrames, undefined);
  t.equal(r.frames % 160, 0, 'whole 20 ms AMR frames');
  const adts = await decodeAudio(createReadStream(await fx.aacAdts()), { output: { sampleRate: 16000, channels: 1 } });
  t.equal(adts.declaredFrames, undefined);
});
