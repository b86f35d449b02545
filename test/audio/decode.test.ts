import t from 'tap';
import { createReadStream } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { AppError } from '../../src/errors.js';
import { Metrics } from '../../src/observability/metrics.js';
import { decodeAudio } from '../../src/audio/decode.js';
import { encodeWav } from '../../src/audio/wav.js';
import * as fx from '../helpers/audio-fixtures.js';

const mono16k = { sampleRate: 16000, channels: 1 };

t.test('every format decodes to the source duration (within 50 ms)', async (t) => {
  const src = fx.wavDurationSec(await fx.speechWav());
  const cases: [string, () => Promise<string>, string, string][] = [
    ['voice note', fx.opusVoiceNote, 'ogg-opus', 'opus'],
    ['48k stereo opus', fx.opusStereo48k, 'ogg-opus', 'opus'],
    ['m4a moov at end', () => fx.aacM4a(), 'mp4', 'ffmpeg'],
    ['m4a faststart', () => fx.aacM4a({ faststart: true }), 'mp4', 'ffmpeg'],
    ['mp3', fx.mp3, 'mp3', 'ffmpeg'],
    ['amr-nb', fx.amrNb, 'amr', 'ffmpeg'],
    ['vorbis', fx.oggVorbis, 'ogg', 'ffmpeg'],
    ['webm', fx.webmOpus, 'webm', 'ffmpeg'],
    ['flac', fx.flac, 'flac', 'ffmpeg'],
    ['wav', fx.speechWav, 'wav', 'ffmpeg'],
  ];
  for (const [name, make, format, decoder] of cases) {
    for (const output of [mono16k, { sampleRate: 48000, channels: 2 }]) {
      const r = await decodeAudio(createReadStream(await make()), { output });
      t.equal(r.format, format, `${name} format`);
      t.equal(r.decoder, decoder, `${name} decoder`);
      t.equal(r.pcm.length, r.frames * output.channels * 2);
      t.equal(r.durationSec, r.frames / output.sampleRate);
      t.ok(Math.abs(r.durationSec - src) < 0.05, `${name} @${output.sampleRate}: ${r.durationSec.toFixed(4)}s vs ${src.toFixed(4)}s`);
    }
  }
});

t.test('raw ADTS has no encoder-delay info: within 100 ms', async (t) => {
  const src = fx.wavDurationSec(await fx.speechWav());
  const r = await decodeAudio(createReadStream(await fx.aacAdts()), { output: mono16k });
  t.equal(r.format, 'aac-adts');
  t.ok(Math.abs(r.durationSec - src) < 0.1, `${r.durationSec}`);
});

t.test('the decoded speech is not silence and is the same audio whatever the path', async (t) => {
  const opus = await decodeAudio(createReadStream(await fx.opusVoiceNote()), { output: mono16k });
  let peak = 0;
  for (let i = 0; i < opus.pcm.length; i += 2) peak = Math.max(peak, Math.abs(opus.pcm.readInt16LE(i)));
  t.ok(peak > 3000, `peak ${peak}`);
});

t.test('input shorter than the sniff window still decodes', async (t) => {
  const pcm = Buffer.alloc(16 * 2);
  for (let i = 0; i < 16; i++) pcm.writeInt16LE(i * 100, i * 2);
  const wav = encodeWav(pcm, mono16k);
  t.ok(wav.length < 64 + 16);
  const r = await decodeAudio(Readable.from([wav]), { output: mono16k });
  t.equal(r.format, 'wav');
  t.equal(r.frames, 16);
  t.ok(r.pcm.equals(pcm), 'same-format WAV is bit-exact');
});

t.test('empty and non-audio bodies', async (t) => {
  await t.rejects(decodeAudio(Readable.from([]), { output: mono16k }), { code: 'EMPTY_BODY' });
  await t.rejects(decodeAudio(Readable.from([Buffer.from('{"not":"audio"} '.repeat(20))]), { output: mono16k }), { code: 'UNKNOWN_FORMAT' });
  await t.rejects(decodeAudio(Readable.from([Buffer.from('%PDF')]), { output: mono16k }), { code: 'UNKNOWN_FORMAT' });
});

t.test('size limit is PAYLOAD_TOO_LARGE on both decoders', async (t) => {
  await t.rejects(decodeAudio(createReadStream(await fx.opusVoiceNote()), { output: mono16k, maxBytes: 5000 }), { code: 'PAYLOAD_TOO_LARGE' });
  await t.rejects(decodeAudio(createReadStream(await fx.mp3()), { output: mono16k, maxBytes: 5000 }), { code: 'PAYLOAD_TOO_LARGE' });
  await t.rejects(decodeAudio(createReadStream(await fx.aacM4a()), { output: mono16k, maxBytes: 5000 }), { code: 'PAYLOAD_TOO_LARGE' });
});

t.test('a stalled body ends with DECODE_TIMEOUT (Opus, ffmpeg, and before the head is complete)', async (t) => {
  for (const [name, head] of [
    ['opus', fx.readFixture(await fx.opusVoiceNote()).subarray(0, 3000)],
    ['mp3', fx.readFixture(await fx.mp3()).subarray(0, 3000)],
    ['m4a', fx.readFixture(await fx.aacM4a()).subarray(0, 3000)],
    ['short head', Buffer.from('Og')],
  ] as const) {
    const input = new PassThrough();
    input.write(head);
    await t.rejects(decodeAudio(input, { output: mono16k, timeoutMs: 300 }), { code: 'DECODE_TIMEOUT' }, name);
  }
});

t.test('abort reason is passed through when it is an AppError', async (t) => {
  const input = new PassThrough();
  input.write(fx.readFixture(await fx.mp3()).subarray(0, 3000));
  const ac = new AbortController();
  const p = decodeAudio(input, { output: mono16k, signal: ac.signal });
  setTimeout(() => ac.abort(new AppError('DRAINING', 'shutting down')), 100);
  await t.rejects(p, { code: 'DRAINING' });
});

t.test('an input stream error is reported, not swallowed', async (t) => {
  const input = new PassThrough();
  input.write(fx.readFixture(await fx.opusVoiceNote()).subarray(0, 3000));
  setTimeout(() => input.destroy(new Error('socket reset')), 50);
  await t.rejects(decodeAudio(input, { output: mono16k }), { code: 'CLIENT_ABORTED' });
});

t.test('decode time is observed per decoder', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false });
  await decodeAudio(createReadStream(await fx.opusVoiceNote()), { output: mono16k, metrics });
  await decodeAudio(createReadStream(await fx.mp3()), { output: mono16k, metrics });
  const text = await metrics.registry.metrics();
  t.match(text, /audio_ingestd_decode_seconds_count\{decoder="opus"\} 1/);
  t.match(text, /audio_ingestd_decode_seconds_count\{decoder="ffmpeg"\} 1/);
});
