/**
 * Encoded audio for tests, generated once per process from espeak-ng speech and cached in a
 * temp dir that is removed when the process exits. Every function returns a file path; use
 * `readFixture` for the bytes. Durations to compare against come from the source WAV.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/** The static ffmpeg from @ffmpeg-installer (it can encode AMR; Debian's cannot). */
export const STATIC_FFMPEG: string = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
/** The system ffmpeg (has libopus with -application voip, libvorbis, flac). */
export const SYSTEM_FFMPEG = 'ffmpeg';

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

async function ffmpeg(bin: string, args: string[]): Promise<void> {
  await run(bin, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args], { maxBuffer: 1 << 20 });
}

/** espeak-ng speech: a 22050 Hz mono 16-bit WAV. */
export function speechWav(text: string = DEFAULT_SPEECH): Promise<string> {
  const key = text === DEFAULT_SPEECH ? 'speech.wav' : `speech-${Buffer.from(text).toString('hex').slice(0, 32)}.wav`;
  return once(key, (out) => run('espeak-ng', ['-w', out, text]));
}

/** Duration in seconds of a 16-bit PCM WAV file (from its data chunk). */
export function wavDurationSec(path: string): number {
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
      // espeak-ng streams its WAV and may leave the size at 0x7fffffff: trust the file length
      size = Math.min(size, b.length - off - 8);
      return size / (2 * ch) / rate;
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

/** WhatsApp-like voice note: Ogg/Opus, 16 kHz input, mono, 24 kb/s, 20 ms frames, voip. */
export function opusVoiceNote(): Promise<string> {
  return once('note.ogg', async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'libopus', '-ar', '16000', '-ac', '1', '-b:a', '24k',
      '-frame_duration', '20', '-application', 'voip', out]);
  });
}

/** Ogg/Opus encoded from 48 kHz stereo (so decoders must downmix). */
export function opusStereo48k(): Promise<string> {
  return once('stereo48.ogg', async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '64k', out]);
  });
}

/** AAC in MP4; ffmpeg's default layout puts the moov atom at the end. */
export function aacM4a(opts: { faststart?: boolean } = {}): Promise<string> {
  const name = opts.faststart === true ? 'faststart.m4a' : 'moov-at-end.m4a';
  return once(name, async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'aac', '-b:a', '64k',
      ...(opts.faststart === true ? ['-movflags', '+faststart'] : []), out]);
  });
}

/** MP3 (libmp3lame, with an ID3v2 tag as ffmpeg writes by default). */
export function mp3(): Promise<string> {
  return once('speech.mp3', async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'libmp3lame', '-b:a', '64k', out]);
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
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'libvorbis', '-q:a', '3', out]);
  });
}

/** WebM with Opus audio. */
export function webmOpus(): Promise<string> {
  return once('speech.webm', async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'libopus', '-b:a', '32k', out]);
  });
}

/** FLAC. */
export function flac(): Promise<string> {
  return once('speech.flac', async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'flac', out]);
  });
}

/** Raw AAC in ADTS framing. */
export function aacAdts(): Promise<string> {
  return once('speech.aac', async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-i', src, '-c:a', 'aac', '-b:a', '64k', '-f', 'adts', out]);
  });
}

/** A long (about `seconds`) voice note, speech looped, Ogg/Opus like `opusVoiceNote`. */
export function longOpusVoiceNote(seconds: number): Promise<string> {
  return once(`long-${seconds}.ogg`, async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-stream_loop', '-1', '-i', src, '-t', String(seconds), '-c:a', 'libopus', '-ar', '16000',
      '-ac', '1', '-b:a', '24k', '-frame_duration', '20', '-application', 'voip', out]);
  });
}

/** A long AAC/M4A with the moov atom at the end (too big for ffmpeg's probe buffer on a pipe). */
export function longAacM4a(seconds: number): Promise<string> {
  return once(`long-${seconds}.m4a`, async (out) => {
    const src = await speechWav();
    await ffmpeg(SYSTEM_FFMPEG, ['-stream_loop', '-1', '-i', src, '-t', String(seconds), '-c:a', 'aac', '-b:a', '64k', out]);
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
