import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.js';
import { ffmpegPath } from './ffmpeg-binary.js';
import { abortError, FfmpegPool } from './ffmpeg-pool.js';
import { moovFirst } from './mp4-faststart.js';
import { bytesPerFrame, type PcmFormat } from './pcm-format.js';

/** Options of {@link decodeWithFfmpeg}. */
export interface FfmpegDecodeOptions {
  /** PCM to produce (ffmpeg downmixes and resamples with soxr). */
  output: PcmFormat;
  /** Kills the child and rejects with the signal's reason (an AppError) or CLIENT_ABORTED. */
  signal?: AbortSignal;
  /** Wall-clock limit once the child runs; DECODE_TIMEOUT past it. 30 000 unless told. */
  timeoutMs?: number;
  /** Limit on decoded PCM bytes; DURATION_TOO_LONG past it. Two hours of output unless told. */
  maxOutputBytes?: number;
  /** Limit on input bytes held in memory for MP4 (see `bufferWhole`); PAYLOAD_TOO_LARGE past it. 64 MiB unless told. */
  maxInputBytes?: number;
  /**
   * Read the whole input into memory before starting ffmpeg, moving an MP4's `moov` box first
   * (a pipe is not seekable and audio must not be spooled to disk). True for 'mp4' in decode.ts.
   */
  bufferWhole?: boolean;
  /** Bytes already read from `input` (e.g. by the sniffer) to send before the rest. */
  head?: Buffer;
  /** Concurrency limit shared by the daemon; a default pool (4 running, 64 waiting) unless given. */
  pool?: FfmpegPool;
  /** ffmpeg binary; {@link ffmpegPath}() unless told. */
  ffmpegPath?: string;
  /**
   * The demuxer ffmpeg must use (`-f`), chosen from the sniffed format so that probing can never
   * pick another one (an HLS or concat script behind an ID3 tag). Auto-detection only when absent.
   */
  demuxer?: string;
  /** CPU seconds the child may use (RLIMIT_CPU); the wall-clock limit rounded up, plus one, unless told. */
  cpuSeconds?: number;
  /** Address space of the child (RLIMIT_AS); 1 GiB unless told (Debian's ffmpeg maps ~300 MiB of libraries). */
  addressSpaceBytes?: number;
  /** Called with the child once it is spawned (tests use it to watch the pid). */
  onSpawn?: (child: ChildProcess) => void;
}

export interface FfmpegDecodeResult {
  pcm: Buffer;
  /** Whole sample-frames in `pcm`. */
  frames: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_INPUT = 64 * 1024 * 1024;
const STDERR_KEEP = 4096;

const DEFAULT_ADDRESS_SPACE = 1024 * 1024 * 1024;

export { ffmpegPath };

let defaultPool: FfmpegPool | undefined;

/**
 * The ffmpeg arguments for decoding stdin to raw PCM on stdout: only the `pipe` protocol may be
 * opened, the demuxer is forced when given, one thread, the first audio stream only.
 */
export function ffmpegArgs(output: PcmFormat, demuxer?: string): string[] {
  return [
    '-nostdin', '-hide_banner', '-loglevel', 'error', '-nostats',
    '-threads', '1', '-filter_threads', '1',
    '-protocol_whitelist', 'pipe',
    ...(demuxer === undefined ? [] : ['-f', demuxer]),
    '-i', 'pipe:0',
    '-map', '0:a:0',
    '-vn', '-sn', '-dn',
    '-af', 'aresample=resampler=soxr',
    '-f', 's16le', '-acodec', 'pcm_s16le',
    '-ac', String(output.channels), '-ar', String(output.sampleRate),
    'pipe:1',
  ];
}

/**
 * Runs `bin args…` under resource limits set by /bin/sh before it execs ffmpeg: CPU time,
 * address space, no core files, no file writes (pipes are not files), few descriptors.
 */
export function limitedCommand(bin: string, args: string[], limits: { cpuSeconds: number; addressSpaceBytes: number }): { file: string; args: string[] } {
  // soft = hard CPU limit: the kernel SIGKILLs at it (ffmpeg catches SIGXCPU and would exit 255)
  const script = 'ulimit -t "$1" && ulimit -v "$2" && ulimit -c 0 && ulimit -f 0 && ulimit -n 32 && shift 2 && exec "$@"';
  return {
    file: '/bin/sh',
    args: ['-c', script, 'ffmpeg-limits', String(limits.cpuSeconds), String(Math.floor(limits.addressSpaceBytes / 1024)), bin, ...args],
  };
}

/**
 * Decodes any container/codec ffmpeg knows by streaming `input` through a child process
 * (stdin → stdout), within a bounded pool. Every failure ends the child before the promise
 * settles: no process outlives its decode.
 */
export async function decodeWithFfmpeg(input: Readable, opts: FfmpegDecodeOptions): Promise<FfmpegDecodeResult> {
  const pool = opts.pool ?? (defaultPool ??= new FfmpegPool());
  const maxOutput = opts.maxOutputBytes ?? 7200 * opts.output.sampleRate * bytesPerFrame(opts.output);
  const signal = opts.signal;
  let whole: Buffer | undefined;
  if (opts.bufferWhole === true) {
    whole = moovFirst(await readWhole(input, opts.head, opts.maxInputBytes ?? DEFAULT_MAX_INPUT, signal));
  }
  await pool.acquire(signal);
  try {
    return await runChild(input, whole, opts, maxOutput);
  } finally {
    pool.release();
  }
}

/** Reads `head` and the rest of `input` into one buffer; PAYLOAD_TOO_LARGE past `max` bytes. */
export async function readWhole(input: Readable, head: Buffer | undefined, max: number, signal: AbortSignal | undefined): Promise<Buffer> {
  const parts: Buffer[] = head === undefined ? [] : [head];
  let total = head?.length ?? 0;
  const onAbort = (): void => {
    input.destroy(abortError(signal!));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted === true) throw abortError(signal);
    for await (const chunk of input) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      total += b.length;
      if (total > max) {
        input.destroy();
        throw new AppError('PAYLOAD_TOO_LARGE', `audio larger than ${max} bytes`, { details: { limit: max } });
      }
      parts.push(b);
    }
  } catch (err) {
    throw inputError(err, signal);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return Buffer.concat(parts, total);
}

function inputError(err: unknown, signal: AbortSignal | undefined): AppError {
  if (err instanceof AppError) return err;
  if (signal?.aborted === true) return abortError(signal);
  return new AppError('CLIENT_ABORTED', 'audio input ended with an error', { cause: err });
}

function runChild(input: Readable, whole: Buffer | undefined, opts: FfmpegDecodeOptions, maxOutput: number): Promise<FfmpegDecodeResult> {
  const signal = opts.signal;
  if (signal?.aborted === true) return Promise.reject(abortError(signal));
  return new Promise<FfmpegDecodeResult>((resolve, reject) => {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const cmd = limitedCommand(opts.ffmpegPath ?? ffmpegPath(), ffmpegArgs(opts.output, opts.demuxer), {
      cpuSeconds: opts.cpuSeconds ?? Math.ceil(timeoutMs / 1000) + 1,
      addressSpaceBytes: opts.addressSpaceBytes ?? DEFAULT_ADDRESS_SPACE,
    });
    // nothing of the daemon's environment (credentials, proxies, ffmpeg's own variables) reaches it
    const child = spawn(cmd.file, cmd.args, { stdio: ['pipe', 'pipe', 'pipe'], env: { LC_ALL: 'C' }, cwd: '/' });
    const out: Buffer[] = [];
    let outBytes = 0;
    let stderr = '';
    let failure: AppError | undefined;
    let exited = false;

    // The first failure wins; the promise settles only once the child is gone.
    const fail = (err: AppError): void => {
      if (failure !== undefined) return;
      failure = err;
      if (!exited) child.kill('SIGKILL');
      detachInput();
    };
    const onAbort = (): void => fail(abortError(signal!));
    const timer = setTimeout(() => fail(new AppError('DECODE_TIMEOUT', `audio decode took longer than ${timeoutMs} ms`)), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });

    const onInputError = (err: unknown): void => fail(inputError(err, signal));
    const detachInput = (): void => {
      if (whole === undefined) {
        input.unpipe(child.stdin);
        input.off('error', onInputError);
        // keep swallowing late errors of a source we no longer read
        input.on('error', () => {});
        if (failure !== undefined) input.destroy();
      }
    };

    child.on('error', (err) => fail(new AppError('INTERNAL', `cannot run ffmpeg: ${err.message}`, { cause: err })));
    // ffmpeg may stop reading early (bad data): EPIPE on stdin is expected, its exit code tells
    child.stdin.on('error', () => {});
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_KEEP);
    });
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > maxOutput) {
        fail(new AppError('DURATION_TOO_LONG', `decoded audio exceeds ${maxOutput} bytes`, { details: { limitBytes: maxOutput } }));
        return;
      }
      out.push(b);
    });
    opts.onSpawn?.(child);

    child.on('close', (code, sig) => {
      exited = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (failure !== undefined) return reject(failure);
      // we only SIGKILL after a failure was recorded: any other SIGKILL is the CPU limit (or the OOM killer)
      if (sig === 'SIGXCPU' || sig === 'SIGKILL' || /received signal 24/i.test(stderr)) {
        failure = new AppError('DECODE_TIMEOUT', 'audio decode used up its CPU time', { details: { decoder: 'ffmpeg' } });
        detachInput();
        return reject(failure);
      }
      if (code === 126 || code === 127) {
        // the shell could not exec the binary (missing, not executable)
        failure = new AppError('INTERNAL', `cannot run ffmpeg: ${lastLine(stderr) ?? `exit ${code}`}`);
        detachInput();
        return reject(failure);
      }
      if (code !== 0) {
        failure = new AppError('CORRUPT_AUDIO', 'audio could not be decoded');
        detachInput();
        const why = lastLine(stderr) ?? `exit ${code ?? sig}`;
        return reject(new AppError('CORRUPT_AUDIO', `audio could not be decoded: ${why}`, { details: { decoder: 'ffmpeg' } }));
      }
      const bpf = bytesPerFrame(opts.output);
      const frames = Math.floor(outBytes / bpf);
      if (frames === 0) return reject(new AppError('CORRUPT_AUDIO', 'no audio could be decoded', { details: { decoder: 'ffmpeg' } }));
      const pcm = Buffer.concat(out, outBytes);
      resolve({ pcm: pcm.length === frames * bpf ? pcm : pcm.subarray(0, frames * bpf), frames });
    });

    if (whole !== undefined) {
      child.stdin.end(whole);
    } else {
      input.on('error', onInputError);
      if (opts.head !== undefined && opts.head.length > 0) child.stdin.write(opts.head);
      input.pipe(child.stdin);
    }
  });
}

function lastLine(s: string): string | undefined {
  const lines = s.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length === 0 ? undefined : lines[lines.length - 1]!.slice(0, 300);
}
