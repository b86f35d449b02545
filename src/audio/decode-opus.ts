import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';
import { remix } from './downmix.js';
import { abortError } from './ffmpeg-pool.js';
import { OggReader } from './ogg-reader.js';
import { bytesPerFrame, int16ToBuffer, int16View, type PcmFormat } from './pcm-format.js';
import { Resampler } from './resample.js';

/** Options of {@link decodeOggOpus}. */
export interface OpusDecodeOptions {
  /** PCM to produce; decoded natively at 8/12/16/24/48 kHz, else at 48 kHz and resampled. */
  output: PcmFormat;
  /** Stops reading and rejects with the signal's reason (an AppError) or CLIENT_ABORTED. */
  signal?: AbortSignal;
  /** Limit on decoded PCM bytes; DURATION_TOO_LONG past it. Two hours of output unless told. */
  maxOutputBytes?: number;
  /** Bytes already read from `input` (e.g. by the sniffer), decoded before the rest. */
  head?: Buffer;
}

export interface OpusDecodeResult {
  pcm: Buffer;
  /** Sample-frames in `pcm`: (last granule − pre-skip) scaled to the output rate. */
  frames: number;
  /** Facts from the OpusHead. */
  preSkip: number;
  inputRate: number;
  /** Channels coded in the stream. */
  streamChannels: number;
}

/** The fields of an OpusHead packet (RFC 7845 §5.1). */
export interface OpusHead {
  version: number;
  channels: number;
  preSkip: number;
  inputRate: number;
  outputGainDb: number;
  mappingFamily: number;
}

/** Rates libopus decodes to directly. */
export const OPUS_RATES: readonly number[] = [8000, 12000, 16000, 24000, 48000];

export function parseOpusHead(p: Buffer): OpusHead {
  if (p.length < 19 || p.toString('latin1', 0, 8) !== 'OpusHead') throw new AppError('CORRUPT_AUDIO', 'missing OpusHead');
  const version = p[8]!;
  if (version >> 4 !== 0) throw new AppError('CORRUPT_AUDIO', `unsupported OpusHead version ${version}`);
  const head: OpusHead = {
    version,
    channels: p[9]!,
    preSkip: p.readUInt16LE(10),
    inputRate: p.readUInt32LE(12),
    outputGainDb: p.readInt16LE(16) / 256,
    mappingFamily: p[18]!,
  };
  if (head.channels === 0) throw new AppError('CORRUPT_AUDIO', 'OpusHead declares 0 channels');
  return head;
}

/** Whether {@link decodeOggOpus} handles this stream (one Opus stream, 1 or 2 channels); others go to ffmpeg. */
export function opusHeadSupported(head: OpusHead): boolean {
  return head.mappingFamily === 0 && head.channels <= 2;
}

interface PacketDecoder {
  decode(packet: Buffer): Buffer;
}

type OpusCtor = new (rate: number, channels: number) => PacketDecoder;
let nativeCtor: OpusCtor | null | undefined;

/** @discordjs/opus (native libopus) when it loads, else opusscript (wasm), as prism-media picks. */
function createDecoder(rate: number, channels: number): PacketDecoder {
  const require = createRequire(import.meta.url);
  if (nativeCtor === undefined) {
    try {
      nativeCtor = (require('@discordjs/opus') as { OpusEncoder: OpusCtor }).OpusEncoder;
    } catch {
      nativeCtor = null;
    }
  }
  if (nativeCtor !== null) return new nativeCtor(rate, channels);
  const OpusScript = require('opusscript') as new (rate: number, channels: number) => { decode(p: Buffer): Buffer };
  return new OpusScript(rate, channels);
}

/** A decode shorter than the declared length by more than this (seconds) is a truncated file (every decoder). */
export const TRUNCATION_SEC = 0.1;

/**
 * Decodes an Ogg/Opus stream in-process. The OpusHead pre-skip is dropped from the start and
 * the end is cut at the last page's granule position, so exactly granule − pre-skip samples
 * (at 48 kHz, scaled to the output rate) come out, as RFC 7845 §4 prescribes. Errors are
 * AppErrors: CORRUPT_AUDIO (bad pages, CRC, packets), TRUNCATED_AUDIO (input cut short,
 * no EOS page, or a final granule {@link TRUNCATION_SEC} or more past the packets' audio),
 * DURATION_TOO_LONG (decoded or declared past the output limit), or the abort reason.
 */
export async function decodeOggOpus(input: Readable, opts: OpusDecodeOptions): Promise<OpusDecodeResult> {
  const { output, signal } = opts;
  const maxOutput = opts.maxOutputBytes ?? 7200 * output.sampleRate * bytesPerFrame(output);
  const decodeRate = OPUS_RATES.includes(output.sampleRate) ? output.sampleRate : 48000;
  const decodeChannels = output.channels === 1 ? 1 : 2;
  const reader = new OggReader();
  const chunks: Buffer[] = [];
  let decodedFrames = 0;
  let serial = -1;
  let head: OpusHead | undefined;
  let tagsSeen = false;
  let decoder: PacketDecoder | undefined;
  let lastGranule = -1n;
  let eos = false;
  const bpf = decodeChannels * 2;
  const limitFrames = Math.ceil(maxOutput / bytesPerFrame(output) * (decodeRate / output.sampleRate)) + 5760;

  const drain = (): void => {
    for (let p = reader.next(); p !== undefined; p = reader.next()) {
      if (head === undefined) {
        if (!p.bos) throw new AppError('CORRUPT_AUDIO', 'Ogg stream does not start with a BOS page');
        if (p.data.toString('latin1', 0, 8) !== 'OpusHead') continue; // another codec's stream
        head = parseOpusHead(p.data);
        if (!opusHeadSupported(head)) {
          throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Opus channel mapping ${head.mappingFamily} with ${head.channels} channels`);
        }
        serial = p.serial;
        continue;
      }
      if (p.serial !== serial) continue;
      if (eos) throw new AppError('CORRUPT_AUDIO', 'Opus packets after the EOS page');
      if (!tagsSeen) {
        if (p.data.toString('latin1', 0, 8) !== 'OpusTags') throw new AppError('CORRUPT_AUDIO', 'missing OpusTags');
        tagsSeen = true;
        continue;
      }
      decoder ??= createDecoder(decodeRate, decodeChannels);
      let pcm: Buffer;
      try {
        pcm = decoder.decode(p.data);
      } catch (err) {
        throw new AppError('CORRUPT_AUDIO', `Opus packet cannot be decoded: ${(err as Error).message}`, { cause: err });
      }
      chunks.push(pcm);
      decodedFrames += pcm.length / bpf;
      if (decodedFrames > limitFrames) {
        throw new AppError('DURATION_TOO_LONG', `decoded audio exceeds ${maxOutput} bytes`, { details: { limitBytes: maxOutput } });
      }
      if (p.granule >= 0n) lastGranule = p.granule;
      if (p.eos) eos = true;
    }
  };

  const onAbort = (): void => {
    input.destroy(abortError(signal!));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted === true) throw abortError(signal);
    if (opts.head !== undefined && opts.head.length > 0) {
      reader.push(opts.head);
      drain();
    }
    for await (const chunk of input) {
      reader.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
      drain();
    }
    reader.end();
  } catch (err) {
    input.destroy();
    if (err instanceof AppError) throw err;
    if (signal?.aborted === true) throw abortError(signal);
    throw new AppError('CLIENT_ABORTED', 'audio input ended with an error', { cause: err });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (head === undefined) throw new AppError('CORRUPT_AUDIO', 'no Opus stream in the Ogg input');
  if (!eos) throw new AppError('TRUNCATED_AUDIO', 'Ogg/Opus input ends without its EOS page');
  if (lastGranule < 0n || decodedFrames === 0) throw new AppError('CORRUPT_AUDIO', 'Ogg/Opus stream holds no audio');

  // RFC 7845 §4: drop pre-skip samples, keep up to the final granule (both counted at 48 kHz)
  const scale = decodeRate / 48000;
  const skip = Math.round(head.preSkip * scale);
  const wanted48 = Number(lastGranule) - head.preSkip;
  if (wanted48 <= 0) throw new AppError('CORRUPT_AUDIO', 'Ogg/Opus final granule precedes the pre-skip');
  // the final granule declares the length: past the output limit, or far more than the packets
  // hold (a last page that lies), the note is refused as the ffmpeg path refuses it
  const declaredFrames = Math.round(wanted48 * scale);
  const declaredSec = wanted48 / 48000;
  const heldFrames = decodedFrames - skip;
  if (declaredSec * output.sampleRate * bytesPerFrame(output) > maxOutput) {
    throw new AppError('DURATION_TOO_LONG', `the Ogg/Opus stream declares ${declaredSec.toFixed(3)} s, past the output limit of ${maxOutput} bytes`, {
      details: { declaredSec, limitBytes: maxOutput },
    });
  }
  if (declaredFrames - heldFrames > TRUNCATION_SEC * decodeRate) {
    throw new AppError('TRUNCATED_AUDIO', `the Ogg/Opus stream declares ${declaredSec.toFixed(3)} s but holds ${(heldFrames / decodeRate).toFixed(3)} s`, {
      details: { declaredSec, decodedSec: heldFrames / decodeRate },
    });
  }
  const keep = Math.min(declaredFrames, heldFrames);
  if (keep <= 0) throw new AppError('CORRUPT_AUDIO', 'Ogg/Opus stream holds no audio after pre-skip');
  const all = Buffer.concat(chunks, decodedFrames * bpf);
  let samples = int16View(all.subarray(skip * bpf, (skip + keep) * bpf));
  if (head.outputGainDb !== 0) samples = applyOutputGain(samples, head.outputGainDb);
  if (decodeChannels !== output.channels) samples = remix(samples, decodeChannels, output.channels);
  if (decodeRate !== output.sampleRate) {
    const r = new Resampler({ inputRate: decodeRate, outputRate: output.sampleRate, channels: output.channels });
    const a = r.process(samples);
    const b = r.flush();
    const joined = new Int16Array(a.length + b.length);
    joined.set(a);
    joined.set(b, a.length);
    samples = joined;
  }
  const pcm = int16ToBuffer(samples);
  const frames = pcm.length / bytesPerFrame(output);
  if (pcm.length > maxOutput) {
    throw new AppError('DURATION_TOO_LONG', `decoded audio exceeds ${maxOutput} bytes`, { details: { limitBytes: maxOutput } });
  }
  return { pcm, frames, preSkip: head.preSkip, inputRate: head.inputRate, streamChannels: head.channels };
}

/** The OpusHead output gain (RFC 7845 §5.1), applied with saturation. */
function applyOutputGain(src: Int16Array, db: number): Int16Array {
  const g = 10 ** (db / 20);
  const out = new Int16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = Math.round(src[i]! * g);
    out[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
  }
  return out;
}
