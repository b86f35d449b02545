import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import wavefile from 'wavefile';
import { encodeWav, MASTER_HEADER_BYTES, masterHeader, parseWav, RIFF_MAX_DATA_BYTES, wavHeader, WAV_HEADER_BYTES } from '../../src/audio/wav.js';
import { ENCODER_FFMPEG, speechWav } from '../helpers/audio-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);

function ramp(n: number): Buffer {
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(((i * 37) % 65536) - 32768, i * 2);
  return b;
}

t.test('header is the canonical 44 bytes', async (t) => {
  const h = wavHeader({ sampleRate: 16000, channels: 1 }, 32000);
  t.equal(h.length, WAV_HEADER_BYTES);
  t.equal(h.toString('ascii', 0, 4), 'RIFF');
  t.equal(h.readUInt32LE(4), 36 + 32000);
  t.equal(h.toString('ascii', 8, 16), 'WAVEfmt ');
  t.equal(h.readUInt32LE(16), 16);
  t.equal(h.readUInt16LE(20), 1);
  t.equal(h.readUInt16LE(22), 1);
  t.equal(h.readUInt32LE(24), 16000);
  t.equal(h.readUInt32LE(28), 32000);
  t.equal(h.readUInt16LE(32), 2);
  t.equal(h.readUInt16LE(34), 16);
  t.equal(h.toString('ascii', 36, 40), 'data');
  t.equal(h.readUInt32LE(40), 32000);
  t.throws(() => wavHeader({ sampleRate: 16000, channels: 1 }, -1), RangeError);
  t.throws(() => wavHeader({ sampleRate: 16000, channels: 1 }, 2 ** 32), RangeError);
});

t.test('the 80-byte master header: RIFF with JUNK up to 4 GiB, RF64 beyond, PCM at byte 80 either way', async (t) => {
  const format = { sampleRate: 48000, channels: 2 };
  const riff = masterHeader(format, 38_400);
  t.equal(riff.length, MASTER_HEADER_BYTES);
  t.equal(riff.toString('ascii', 0, 4), 'RIFF');
  t.equal(riff.readUInt32LE(4), MASTER_HEADER_BYTES - 8 + 38_400);
  t.equal(riff.toString('ascii', 8, 16), 'WAVEJUNK');
  t.equal(riff.readUInt32LE(16), 28);
  t.ok(riff.subarray(20, 48).every((b) => b === 0), 'JUNK is zeros');
  t.equal(riff.toString('ascii', 48, 52), 'fmt ');
  t.equal(riff.readUInt16LE(58), 2);
  t.equal(riff.readUInt32LE(60), 48000);
  t.equal(riff.readUInt32LE(64), 192_000);
  t.equal(riff.toString('ascii', 72, 76), 'data');
  t.equal(riff.readUInt32LE(76), 38_400);
  const parsed = parseWav(Buffer.concat([riff, Buffer.alloc(38_400)]));
  t.same(parsed, { format, dataOffset: MASTER_HEADER_BYTES, dataBytes: 38_400 }, 'our own reader takes it');

  const big = RIFF_MAX_DATA_BYTES + 4 - ((RIFF_MAX_DATA_BYTES + 4) % 4);
  const rf64 = masterHeader(format, big);
  t.equal(rf64.toString('ascii', 0, 4), 'RF64');
  t.equal(rf64.readUInt32LE(4), 0xffffffff);
  t.equal(rf64.toString('ascii', 12, 16), 'ds64');
  t.equal(rf64.readBigUInt64LE(20), BigInt(MASTER_HEADER_BYTES - 8 + big));
  t.equal(rf64.readBigUInt64LE(28), BigInt(big));
  t.equal(rf64.readBigUInt64LE(36), BigInt(big / 4));
  t.equal(rf64.readUInt32LE(76), 0xffffffff);
  t.equal(masterHeader(format, RIFF_MAX_DATA_BYTES - (RIFF_MAX_DATA_BYTES % 4)).toString('ascii', 0, 4), 'RIFF', 'the largest RIFF size stays RIFF');
});

t.test('both headers check every value against the field it goes in', async (t) => {
  const format = { sampleRate: 48000, channels: 2 };
  t.throws(() => masterHeader(format, 3), RangeError, 'a master is whole frames');
  t.throws(() => masterHeader(format, -4), RangeError);
  t.throws(() => masterHeader(format, 2 ** 60), RangeError, 'past a safe integer');
  for (const bad of [{ sampleRate: 0, channels: 1 }, { sampleRate: 1.5, channels: 1 }, { sampleRate: 48000, channels: 0 }, { sampleRate: 48000, channels: 70_000 }, { sampleRate: 2 ** 31, channels: 2 }]) {
    t.throws(() => masterHeader(bad, 0), RangeError, `master ${JSON.stringify(bad)}`);
    t.throws(() => wavHeader(bad, 0), RangeError, `wav ${JSON.stringify(bad)}`);
  }
});

t.test('wavefile reads our output with the same format and samples', async (t) => {
  for (const format of [{ sampleRate: 48000, channels: 2 }, { sampleRate: 16000, channels: 1 }, { sampleRate: 44100, channels: 1 }]) {
    const pcm = ramp(3000 * format.channels);
    const wav = encodeWav(pcm, format);
    const wf = new wavefile.WaveFile(wav);
    const fmt = wf.fmt as { numChannels: number; sampleRate: number; bitsPerSample: number; audioFormat: number };
    t.equal(fmt.numChannels, format.channels);
    t.equal(fmt.sampleRate, format.sampleRate);
    t.equal(fmt.bitsPerSample, 16);
    t.equal(fmt.audioFormat, 1);
    const samples = wf.getSamples(true, Int16Array) as unknown as Int16Array;
    t.same(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength), pcm);
    t.same(parseWav(wav), { format, dataOffset: 44, dataBytes: pcm.length });
  }
});

t.test('parses WAV written by ffmpeg (extra LIST chunk before data)', async (t) => {
  const dir = await tempDir(t, 'audio-wav-');
  const out = join(dir, 'x.wav');
  await run(ENCODER_FFMPEG, ['-nostdin', '-loglevel', 'error', '-i', await speechWav(), '-ar', '16000', '-ac', '2', out]);
  const buf = readFileSync(out);
  const p = parseWav(buf);
  t.same(p.format, { sampleRate: 16000, channels: 2 });
  t.equal(p.dataOffset + p.dataBytes, buf.length);
  t.ok(p.dataOffset > 44, 'ffmpeg writes a LIST chunk');
});

t.test('size mismatches are CORRUPT_AUDIO', async (t) => {
  const wav = encodeWav(ramp(100), { sampleRate: 16000, channels: 1 });
  const bad = (b: Buffer, why: string): void => {
    t.throws(() => parseWav(b), { name: 'AppError', code: 'CORRUPT_AUDIO' }, why);
  };
  bad(wav.subarray(0, wav.length - 2), 'truncated data');
  bad(Buffer.concat([wav, Buffer.alloc(4)]), 'trailing garbage');
  const stale = Buffer.from(wav);
  stale.writeUInt32LE(0, 40);
  stale.writeUInt32LE(36, 4);
  bad(stale, 'header of an unfinished stream (sizes 0) but data present');
  const riff = Buffer.from(wav);
  riff.writeUInt32LE(riff.readUInt32LE(4) + 10, 4);
  bad(riff, 'RIFF size too big');
  const notWave = Buffer.from(wav);
  notWave.write('AVI ', 8, 'ascii');
  bad(notWave, 'not WAVE');
  const float = Buffer.from(wav);
  float.writeUInt16LE(3, 20);
  bad(float, 'float format');
  bad(Buffer.alloc(0), 'empty');
  const odd = encodeWav(ramp(101), { sampleRate: 16000, channels: 2 });
  bad(odd, '101 samples are not whole stereo frames');
});
