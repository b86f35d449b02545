/**
 * Encoded audio for tests, generated once per process and cached in a temp dir that is removed
 * when the process exits. Every function returns a file path; use `readFixture` for the bytes.
 * Durations to compare against come from the source WAV.
 *
 * Nothing here needs an apt tool: speech comes from eSpeak NG compiled to WebAssembly (an npm
 * dev dependency), and encoding uses the system ffmpeg when PATH has one, else the static
 * ffmpeg the project depends on (@ffmpeg-installer, which has libopus, libmp3lame, libvorbis,
 * AMR, AAC and FLAC encoders).
 */
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import createEspeak from '@echogarden/espeak-ng-emscripten';
import { oggCrc } from '../../src/audio/ogg-reader.js';
import { encodeWav } from '../../src/audio/wav.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/** `name` as an executable file in one of PATH's directories, or undefined. */
export function findOnPath(name: string, path: string = process.env.PATH ?? ''): string | undefined {
  for (const d of path.split(delimiter)) {
    if (d === '') continue;
    const f = join(d, name);
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The static ffmpeg from @ffmpeg-installer (it can encode AMR; Debian's cannot). */
export const STATIC_FFMPEG: string = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
/** The ffmpeg on PATH (Debian's where installed), else undefined. */
export const PATH_FFMPEG: string | undefined = findOnPath('ffmpeg');
/** The ffmpeg that makes fixtures: the one on PATH when there is one, else the static one. */
export const ENCODER_FFMPEG: string = PATH_FFMPEG ?? STATIC_FFMPEG;
/** @deprecated the same as {@link ENCODER_FFMPEG} (the name predates fixtures without a system ffmpeg). */
export const SYSTEM_FFMPEG: string = ENCODER_FFMPEG;

export const DEFAULT_SPEECH =
  'Hello, this is a voice note for the audio ingest daemon. It says a few sentences, so that it lasts several seconds.';

let dir: string | undefined;
const cache = new Map<string, Promise<string>>();

/** The per-process fixture directory (created on first use, removed on exit). */
export function fixtureDir(): string {
  if (dir === undefined) {
    const d = mkdtempSync(join(tmpdir(), 'audio-fixtures-'));
    dir = d;
    process.once('exit', () => rmSync(d, { recursive: true, force: true }));
  }
  return dir;
}

function once(name: string, make: (out: string) => Promise<unknown>): Promise<string> {
  let p = cache.get(name);
  if (p === undefined) {
    const out = join(fixtureDir(), name);
    p = make(out).then(() => out);
    cache.set(name, p);
  }
  return p;
}

/** Runs ffmpeg (the {@link ENCODER_FFMPEG} unless told) quietly, overwriting outputs. */
export async function ffmpeg(bin: string, args: string[]): Promise<void>;
export async function ffmpeg(args: string[]): Promise<void>;
export async function ffmpeg(a: string | string[], b?: string[]): Promise<void> {
  const [bin, args] = typeof a === 'string' ? [a, b!] : [ENCODER_FFMPEG, a];
  await run(bin, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args], { maxBuffer: 1 << 20 });
}

/**
 * Decodes a file to s16le PCM with the {@link ENCODER_FFMPEG} (a reference decode for tests
 * that compare against ffmpeg), resampling with soxr when a rate is given.
 */
export function ffmpegPcm(path: string, opts: { sampleRate?: number; channels?: number; inputArgs?: string[] } = {}): Buffer {
  return execFileSync(ENCODER_FFMPEG, [
    '-nostdin', '-hide_banner', '-loglevel', 'error', ...(opts.inputArgs ?? []), '-i', path,
    ...(opts.sampleRate === undefined ? [] : ['-ar', String(opts.sampleRate), '-af', 'aresample=resampler=soxr']),
    ...(opts.channels === undefined ? [] : ['-ac', String(opts.channels)]),
    '-f', 's16le', 'pipe:1',
  ], { maxBuffer: 256 * 1024 * 1024 });
}

let espeak: ReturnType<typeof createEspeak> | undefined;

/**
 * eSpeak NG speech (WebAssembly build, voice `en-us`) as 16-bit mono samples at its native
 * 22 050 Hz. The same text gives the same samples on every machine.
 */
export async function synthesizeSpeech(text: string): Promise<{ samples: Int16Array; sampleRate: number }> {
  const mod = await (espeak ??= createEspeak());
  const worker = new mod.eSpeakNGWorker();
  try {
    worker.set_voice('en-us');
    const parts: Int16Array[] = [];
    worker.synthesize(text, (samples) => {
      parts.push(samples.slice());
      return false;
    });
    const samples = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      samples.set(p, off);
      off += p.length;
    }
    return { samples, sampleRate: worker.get_samplerate() };
  } finally {
    worker.__destroy__();
  }
}

/** Speech as a 22050 Hz mono 16-bit WAV file. */
export function speechWav(text: string = DEFAULT_SPEECH): Promise<string> {
  const key = text === DEFAULT_SPEECH ? 'speech.wav' : `speech-${Buffer.from(text).toString('hex').slice(0, 32)}.wav`;
  return once(key, async (out) => {
    const { samples, sampleRate } = await synthesizeSpeech(text);
    const pcm = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
    writeFileSync(out, encodeWav(pcm, { sampleRate, channels: 1 }));
  });
}

/** Speech resampled to `sampleRate` mono as a WAV (the source of the exact-duration fixtures). */
export function speechWavAt(sampleRate: number): Promise<string> {
  return once(`speech-${sampleRate}.wav`, async (out) => {
    await ffmpeg(['-i', await speechWav(), '-af', 'aresample=resampler=soxr', '-ar', String(sampleRate), '-ac', '1', '-c:a', 'pcm_s16le', out]);
  });
}

/**
 * The speech encoded once with the given ffmpeg output arguments (codec, rate, container…),
 * named `name` (its extension picks the container unless `-f` is among the arguments).
 */
export function encodeSpeech(name: string, outputArgs: string[], opts: { source?: () => Promise<string>; bin?: string } = {}): Promise<string> {
  return once(name, async (out) => {
    const src = await (opts.source ?? speechWav)();
    await ffmpeg(opts.bin ?? ENCODER_FFMPEG, ['-i', src, ...outputArgs, out]);
  });
}

/** Number of sample frames in a 16-bit PCM WAV file (from its data chunk). */
export function wavFrames(path: string): { frames: number; sampleRate: number; channels: number } {
  const b = readFileSync(path);
  let off = 12;
  let rate = 0;
  let ch = 1;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') {
      ch = b.readUInt16LE(off + 10);
      rate = b.readUInt32LE(off + 12);
    } else if (id === 'data') {
      // a streamed WAV may leave the size at 0x7fffffff or 0xffffffff: trust the file length
      size = Math.min(size, b.length - off - 8);
      return { frames: Math.floor(size / (2 * ch)), sampleRate: rate, channels: ch };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

/** Duration in seconds of a 16-bit PCM WAV file (from its data chunk). */
export function wavDurationSec(path: string): number {
  const { frames, sampleRate } = wavFrames(path);
  return frames / sampleRate;
}

/**
 * The static ffmpeg (2018) writes an Opus pre-skip counted at the encoder's input rate instead
 * of 48 kHz (104 instead of 312 from 16 kHz input), so its files declare 208 samples too many
 * and decode misaligned. Rewrites the OpusHead of such a file with the 48 kHz count (and the
 * page CRC), so fixtures declare the true length whichever ffmpeg made them.
 */
async function fixStaticOpusPreSkip(path: string): Promise<void> {
  if (ENCODER_FFMPEG !== STATIC_FFMPEG) return;
  const buf = readFileSync(path);
  const nseg = buf[26]!;
  const head = 27 + nseg;
  if (buf.toString('latin1', 0, 4) !== 'OggS' || buf.toString('latin1', head, head + 8) !== 'OpusHead') throw new Error(`${path}: not Ogg/Opus`);
  const inputRate = buf.readUInt32LE(head + 12);
  const encoderRate = [8000, 12000, 16000, 24000, 48000].find((r) => r >= inputRate) ?? 48000;
  if (encoderRate === 48000) return;
  buf.writeUInt16LE((buf.readUInt16LE(head + 10) * 48000) / encoderRate, head + 10);
  let pageLen = head;
  for (let i = 0; i < nseg; i++) pageLen += buf[27 + i]!;
  buf.writeUInt32LE(oggCrc(buf.subarray(0, pageLen)), 22);
  writeFileSync(path, buf);
}

/** Encodes Ogg/Opus with ffmpeg and fixes the static build's pre-skip (see above). */
async function encodeOggOpus(out: string, args: string[]): Promise<void> {
  await ffmpeg([...args, out]);
  await fixStaticOpusPreSkip(out);
}

/** WhatsApp-like voice note: Ogg/Opus, 16 kHz input, mono, 24 kb/s, 20 ms frames, voip. */
export function opusVoiceNote(): Promise<string> {
  return once('note.ogg', async (out) => {
    const src = await speechWav();
    await encodeOggOpus(out, ['-i', src, '-c:a', 'libopus', '-ar', '16000', '-ac', '1', '-b:a', '24k',
      '-frame_duration', '20', '-application', 'voip']);
  });
}

/** Ogg/Opus encoded from 48 kHz stereo (so decoders must downmix). */
export function opusStereo48k(): Promise<string> {
  return once('stereo48.ogg', async (out) => {
    const src = await speechWav();
    await encodeOggOpus(out, ['-i', src, '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '64k']);
  });
}

/** AAC in MP4; ffmpeg's default layout puts the moov atom at the end. */
export function aacM4a(opts: { faststart?: boolean } = {}): Promise<string> {
  const name = opts.faststart === true ? 'faststart.m4a' : 'moov-at-end.m4a';
  return once(name, async (out) => {
    const src = await speechWav();
    await ffmpeg(['-i', src, '-c:a', 'aac', '-b:a', '64k',
      ...(opts.faststart === true ? ['-movflags', '+faststart'] : []), out]);
  });
}

/** MP3 (libmp3lame, with an ID3v2 tag as ffmpeg writes by default). */
export function mp3(): Promise<string> {
  return once('speech.mp3', async (out) => {
    const src = await speechWav();
    await ffmpeg(['-i', src, '-c:a', 'libmp3lame', '-b:a', '64k', out]);
  });
}

/** AMR-NB, 8 kHz mono, 12.2 kb/s (encoded by the static ffmpeg). */
export function amrNb(): Promise<string> {
  return once('speech.amr', async (out) => {
    const src = await speechWav();
    await ffmpeg(STATIC_FFMPEG, ['-i', src, '-c:a', 'libopencore_amrnb', '-ar', '8000', '-ac', '1', '-b:a', '12.2k', out]);
  });
}

/** Ogg/Vorbis (an Ogg that is not Opus). */
export function oggVorbis(): Promise<string> {
  return once('speech-vorbis.ogg', async (out) => {
    const src = await speechWav();
    await ffmpeg(['-i', src, '-c:a', 'libvorbis', '-q:a', '3', out]);
  });
}

/** WebM with Opus audio. */
export function webmOpus(): Promise<string> {
  return once('speech.webm', async (out) => {
    const src = await speechWav();
    // from 48 kHz: the static ffmpeg's CodecDelay is only right at that rate (see fixStaticOpusPreSkip)
    await ffmpeg(['-i', src, '-c:a', 'libopus', '-ar', '48000', '-b:a', '32k', out]);
  });
}

/** FLAC. */
export function flac(): Promise<string> {
  return once('speech.flac', async (out) => {
    const src = await speechWav();
    await ffmpeg(['-i', src, '-c:a', 'flac', out]);
  });
}

/** Raw AAC in ADTS framing. */
export function aacAdts(): Promise<string> {
  return once('speech.aac', async (out) => {
    const src = await speechWav();
    await ffmpeg(['-i', src, '-c:a', 'aac', '-b:a', '64k', '-f', 'adts', out]);
  });
}

/** A long (about `seconds`) voice note, speech looped, Ogg/Opus like `opusVoiceNote`. */
export function longOpusVoiceNote(seconds: number): Promise<string> {
  return once(`long-${seconds}.ogg`, async (out) => {
    const src = await speechWav();
    await encodeOggOpus(out, ['-stream_loop', '-1', '-i', src, '-t', String(seconds), '-c:a', 'libopus', '-ar', '16000',
      '-ac', '1', '-b:a', '24k', '-frame_duration', '20', '-application', 'voip']);
  });
}

/** A long AAC/M4A with the moov atom at the end (too big for ffmpeg's probe buffer on a pipe). */
export function longAacM4a(seconds: number): Promise<string> {
  return once(`long-${seconds}.m4a`, async (out) => {
    const src = await speechWav();
    await ffmpeg(['-stream_loop', '-1', '-i', src, '-t', String(seconds), '-c:a', 'aac', '-b:a', '64k', out]);
  });
}

export function readFixture(path: string): Buffer {
  return readFileSync(path);
}

/**
 * Ogg/Opus facts read straight from the file: the OpusHead pre-skip and the last page's
 * granule position, so tests can check decoders against granule − pre-skip.
 */
export function oggOpusFacts(buf: Buffer): { preSkip: number; lastGranule: bigint; channels: number; inputRate: number } {
  let off = 0;
  let preSkip = -1;
  let channels = 0;
  let inputRate = 0;
  let lastGranule = -1n;
  while (off + 27 <= buf.length && buf.toString('ascii', off, off + 4) === 'OggS') {
    const granule = buf.readBigInt64LE(off + 6);
    const nseg = buf[off + 26]!;
    let body = 0;
    for (let i = 0; i < nseg; i++) body += buf[off + 27 + i]!;
    const data = off + 27 + nseg;
    if (preSkip < 0 && buf.toString('ascii', data, data + 8) === 'OpusHead') {
      channels = buf[data + 9]!;
      preSkip = buf.readUInt16LE(data + 10);
      inputRate = buf.readUInt32LE(data + 12);
    }
    if (granule >= 0n) lastGranule = granule;
    off = data + body;
  }
  if (preSkip < 0) throw new Error('no OpusHead');
  return { preSkip, lastGranule, channels, inputRate };
}
