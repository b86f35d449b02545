import { Readable, Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { decodeOggOpus, opusHeadSupported, parseOpusHead, TRUNCATION_SEC } from './decode-opus.js';
import { checkFacts, declaredOutputFrames, FFMPEG_DEMUXER, headFacts, id3v2End, mp4Facts, type ContainerFacts } from './container-facts.js';
import { decodeWithFfmpeg, readWhole, type FfmpegDecodeResult } from './decode-ffmpeg.js';
import type { FfmpegPool } from './ffmpeg-pool.js';
import type { OpusWorkerPool } from './opus-workers.js';
import { abortError } from './ffmpeg-pool.js';
import { moovFirst } from './mp4-faststart.js';
import { OggEndTap } from './ogg-end.js';
import { bytesPerFrame, type PcmFormat } from './pcm-format.js';
import { SNIFF_BYTES, sniffFormat, type SniffedFormat } from './sniff.js';

/** Options of {@link decodeAudio}. */
export interface DecodeOptions {
  /** PCM to produce (rate and channels). */
  output: PcmFormat;
  /** Aborts the decode (kills ffmpeg); rejects with the reason when it is an AppError, else CLIENT_ABORTED. */
  signal?: AbortSignal;
  /** Limit on encoded input bytes; PAYLOAD_TOO_LARGE past it. 64 MiB unless told. */
  maxBytes?: number;
  /** Wall-clock limit for the whole decode; DECODE_TIMEOUT past it. 30 000 unless told. */
  timeoutMs?: number;
  /** Limit on decoded PCM bytes; DURATION_TOO_LONG past it. Two hours of output unless told. */
  maxOutputBytes?: number;
  /** CPU seconds an ffmpeg child may use; the wall-clock limit rounded up, plus one, unless told. */
  cpuSeconds?: number | undefined;
  /** Address space of an ffmpeg child in bytes; 1 GiB unless told. */
  addressSpaceBytes?: number | undefined;
  /** Shared ffmpeg concurrency limit; a process-wide default pool unless given. */
  pool?: FfmpegPool;
  /** Observes `audio_ingestd_decode_seconds` by decoder. */
  metrics?: Metrics;
  /** Worker threads for Ogg/Opus; without them it is decoded on the calling thread. */
  opusWorkers?: OpusWorkerPool | undefined;
}

export interface DecodedAudio {
  /** s16le interleaved in `output` format. */
  pcm: Buffer;
  frames: number;
  durationSec: number;
  format: SniffedFormat;
  decoder: 'opus' | 'ffmpeg';
  /** Frames the container declares at the output rate (what `frames` was cut to), when it declares a length. */
  declaredFrames?: number;
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;
const FACTS_HEAD_MAX = 1024 * 1024;
/**
 * Head read before ffmpeg starts, so the headers' facts are known: enough for each format's
 * headers (MP3's LAME/Xing frame follows the ID3 tag; WebM's Tracks follow SeekHead and Info),
 * and no more, so a decode starts while a slow upload is still arriving.
 */
function factsHeadBytes(format: SniffedFormat, head: Buffer): number {
  switch (format) {
    case 'mp3':
    case 'aac-adts':
      return Math.min(FACTS_HEAD_MAX, id3v2End(head) + 2048);
    case 'webm':
    case 'wav':
      return 8192;
    default:
      return 4096;
  }
}

/** Fails the stream with PAYLOAD_TOO_LARGE once more than `max` bytes went through. */
class ByteLimit extends Transform {
  private seen = 0;
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) {
      cb(new AppError('PAYLOAD_TOO_LARGE', `audio larger than ${this.max} bytes`, { details: { limit: this.max } }));
      return;
    }
    cb(null, chunk);
  }
}

/**
 * Reads up to `want` bytes without consuming the rest: resolves with the head and whether the
 * stream already ended. Only `read()`/'readable' are used, so the stream stays paused after.
 */
function readHead(input: Readable, want: number): Promise<{ head: Buffer; ended: boolean }> {
  return new Promise((resolve, reject) => {
    // an earlier read may have seen the end already: no event would come now
    if (input.readableEnded) return resolve({ head: Buffer.alloc(0), ended: true });
    const parts: Buffer[] = [];
    let n = 0;
    const done = (ended: boolean): void => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
      input.off('error', onError);
      resolve({ head: Buffer.concat(parts, n), ended });
    };
    const onReadable = (): void => {
      for (let c: Buffer | null = input.read() as Buffer | null; c !== null; c = input.read() as Buffer | null) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
        parts.push(b);
        n += b.length;
        if (n >= want) return done(false);
      }
    };
    const onEnd = (): void => done(true);
    const onError = (err: unknown): void => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
      reject(err instanceof AppError ? err : new AppError('CLIENT_ABORTED', 'audio input ended with an error', { cause: err }));
    };
    input.on('readable', onReadable);
    input.once('end', onEnd);
    input.once('error', onError);
  });
}

/**
 * Sniffs the first bytes and decodes: Ogg/Opus in-process, everything else through ffmpeg
 * (MP4 is read whole into memory first so its index can be moved in front). Zero bytes →
 * EMPTY_BODY; not a known audio format → UNKNOWN_FORMAT.
 */
export async function decodeAudio(input: Readable, opts: DecodeOptions): Promise<DecodedAudio> {
  const started = process.hrtime.bigint();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timeout = new AbortController();
  const timer = setTimeout(
    () => timeout.abort(new AppError('DECODE_TIMEOUT', `audio decode took longer than ${timeoutMs} ms`)),
    timeoutMs,
  );
  const signal = opts.signal === undefined ? timeout.signal : AbortSignal.any([opts.signal, timeout.signal]);
  const limited = new ByteLimit(opts.maxBytes ?? DEFAULT_MAX_BYTES);
  input.on('error', (err) => limited.destroy(err));
  // Readers see a failure through their own read or pipeline; this listener only keeps an error
  // that arrives while nobody reads (before the sniff, after the decode) from crashing the process.
  limited.on('error', () => undefined);
  input.pipe(limited);
  const onAbort = (): void => {
    limited.destroy(abortError(signal));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    let { head, ended } = await readHead(limited, SNIFF_BYTES);
    if (head.length === 0) throw new AppError('EMPTY_BODY', 'the audio body is empty');
    const format = sniffFormat(head);
    if (format === 'unknown') throw new AppError('UNKNOWN_FORMAT', 'the body is not a recognised audio format');
    let decoded: { pcm: Buffer; frames: number; declaredFrames?: number | undefined };
    let decoder: 'opus' | 'ffmpeg';
    if (format === 'ogg-opus' && opusInProcess(head)) {
      decoder = 'opus';
      // the head is handed back to the decoder; a finished stream is replaced by an empty one
      const rest = ended ? Readable.from([]) : limited;
      const opusOpts = { output: opts.output, signal, head, maxOutputBytes: opts.maxOutputBytes };
      decoded = await (opts.opusWorkers === undefined ? decodeOggOpus(rest, opusOpts) : opts.opusWorkers.decode(rest, opusOpts));
    } else {
      decoder = 'ffmpeg';
      const want = format === 'mp4' ? 0 : factsHeadBytes(format, head);
      if (!ended && head.length < want) {
        const more = await readHead(limited, want - head.length);
        head = Buffer.concat([head, more.head]);
        ended = more.ended;
      }
      decoded = await viaFfmpeg(format, head, ended ? Readable.from([]) : limited, opts, signal, timeoutMs);
    }
    opts.metrics?.decodeSeconds.observe({ decoder }, Number(process.hrtime.bigint() - started) / 1e9);
    return {
      pcm: decoded.pcm,
      frames: decoded.frames,
      durationSec: decoded.frames / opts.output.sampleRate,
      format,
      decoder,
      ...(decoded.declaredFrames === undefined ? {} : { declaredFrames: decoded.declaredFrames }),
    };
  } catch (err) {
    limited.destroy();
    if (err instanceof AppError) throw err;
    throw new AppError('CORRUPT_AUDIO', 'audio could not be decoded', { cause: err });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The ffmpeg path: the container's facts first (absurd channels or rates, or a declared length
 * past the output limit, are refused before a process starts), then a decode with the demuxer
 * forced, then the PCM cut to the declared length (encoder priming and padding excluded).
 */
async function viaFfmpeg(
  format: Exclude<SniffedFormat, 'unknown'>,
  head: Buffer,
  rest: Readable,
  opts: DecodeOptions,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<FfmpegDecodeResult & { declaredFrames?: number | undefined }> {
  const { output } = opts;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxOutputBytes = opts.maxOutputBytes ?? 7200 * output.sampleRate * bytesPerFrame(output);
  let facts: ContainerFacts;
  let input = rest;
  let tap: OggEndTap | undefined;
  if (format === 'mp4') {
    // a pipe cannot seek: the whole file is held in memory and its index moved first
    const whole = await readWhole(rest, head, maxBytes, signal);
    facts = mp4Facts(whole);
    head = moovFirst(whole);
    input = Readable.from([]);
  } else {
    facts = headFacts(format, head);
  }
  checkFacts(facts);
  const declared = declaredOutputFrames(facts, output.sampleRate);
  if (declared !== undefined && declared * bytesPerFrame(output) > maxOutputBytes) {
    throw new AppError('DURATION_TOO_LONG', `the container declares ${(declared / output.sampleRate).toFixed(3)} s, more than allowed`, {
      details: { declaredSec: declared / output.sampleRate, limitBytes: maxOutputBytes },
    });
  }
  if (format === 'ogg' || format === 'ogg-opus') {
    // the declared length of an Ogg stream is in its last page: read the headers on the way
    const t = (tap = new OggEndTap());
    t.observe(head);
    rest.on('error', (err) => t.destroy(err));
    input = rest.pipe(t);
  }
  const r = await decodeWithFfmpeg(input, {
    output,
    signal,
    head,
    timeoutMs,
    demuxer: FFMPEG_DEMUXER[format],
    maxInputBytes: maxBytes,
    maxOutputBytes,
    pool: opts.pool,
    ...(opts.cpuSeconds === undefined ? {} : { cpuSeconds: opts.cpuSeconds }),
    ...(opts.addressSpaceBytes === undefined ? {} : { addressSpaceBytes: opts.addressSpaceBytes }),
  });
  return fitToDeclared(r, tap === undefined ? declared : declaredOutputFrames(tap.facts(), output.sampleRate), output);
}

/** Cuts a decode to the declared length; TRUNCATED_AUDIO when far less came out than declared. */
function fitToDeclared(r: FfmpegDecodeResult, declared: number | undefined, output: PcmFormat): FfmpegDecodeResult & { declaredFrames?: number } {
  if (declared === undefined) return r;
  if (r.frames > declared) {
    return { pcm: r.pcm.subarray(0, declared * bytesPerFrame(output)), frames: declared, declaredFrames: declared };
  }
  if (declared - r.frames > TRUNCATION_SEC * output.sampleRate) {
    throw new AppError('TRUNCATED_AUDIO', `the container declares ${(declared / output.sampleRate).toFixed(3)} s but holds ${(r.frames / output.sampleRate).toFixed(3)} s`, {
      details: { declaredSec: declared / output.sampleRate, decodedSec: r.frames / output.sampleRate },
    });
  }
  return { ...r, declaredFrames: declared };
}

/** Mapping family 0 with 1–2 channels is decoded in-process; multichannel Opus goes to ffmpeg. */
function opusInProcess(head: Buffer): boolean {
  const at = 27 + head[26]!;
  try {
    return opusHeadSupported(parseOpusHead(head.subarray(at)));
  } catch {
    return false;
  }
}
