import { Readable, Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { decodeOggOpus, opusHeadSupported, parseOpusHead } from './decode-opus.js';
import { decodeWithFfmpeg } from './decode-ffmpeg.js';
import type { FfmpegPool } from './ffmpeg-pool.js';
import type { OpusWorkerPool } from './opus-workers.js';
import { abortError } from './ffmpeg-pool.js';
import type { PcmFormat } from './pcm-format.js';
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
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

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
    const { head, ended } = await readHead(limited, SNIFF_BYTES);
    if (head.length === 0) throw new AppError('EMPTY_BODY', 'the audio body is empty');
    const format = sniffFormat(head);
    if (format === 'unknown') throw new AppError('UNKNOWN_FORMAT', 'the body is not a recognised audio format');
    // the head is handed back to the decoder; a finished stream is replaced by an empty one
    const rest = ended ? Readable.from([]) : limited;
    let decoded: { pcm: Buffer; frames: number };
    let decoder: 'opus' | 'ffmpeg';
    if (format === 'ogg-opus' && opusInProcess(head)) {
      decoder = 'opus';
      const opusOpts = { output: opts.output, signal, head, maxOutputBytes: opts.maxOutputBytes };
      decoded = await (opts.opusWorkers === undefined ? decodeOggOpus(rest, opusOpts) : opts.opusWorkers.decode(rest, opusOpts));
    } else {
      decoder = 'ffmpeg';
      decoded = await decodeWithFfmpeg(rest, {
        output: opts.output,
        signal,
        head,
        timeoutMs,
        bufferWhole: format === 'mp4',
        maxInputBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES,
        maxOutputBytes: opts.maxOutputBytes,
        pool: opts.pool,
      });
    }
    opts.metrics?.decodeSeconds.observe({ decoder }, Number(process.hrtime.bigint() - started) / 1e9);
    return {
      pcm: decoded.pcm,
      frames: decoded.frames,
      durationSec: decoded.frames / opts.output.sampleRate,
      format,
      decoder,
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

/** Mapping family 0 with 1–2 channels is decoded in-process; multichannel Opus goes to ffmpeg. */
function opusInProcess(head: Buffer): boolean {
  const at = 27 + head[26]!;
  try {
    return opusHeadSupported(parseOpusHead(head.subarray(at)));
  } catch {
    return false;
  }
}
