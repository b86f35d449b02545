import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';

/** Options of {@link FfmpegPool}. */
export interface FfmpegPoolOptions {
  /** ffmpeg processes allowed to run at once; 4 unless told. */
  maxConcurrent?: number;
  /** Decodes allowed to wait for a slot; beyond that a decode fails at once with OVERLOADED. 64 unless told. */
  maxQueue?: number;
  /** Seconds suggested to clients refused because the queue is full; 2 unless told. */
  retryAfterSec?: number;
  /** Reports running processes on `audio_ingestd_ffmpeg_processes`. */
  metrics?: Metrics;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/**
 * A counting semaphore for ffmpeg children: at most `maxConcurrent` run, at most `maxQueue`
 * wait in FIFO order, a waiter leaves the queue when its signal aborts.
 */
export class FfmpegPool {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  private readonly retryAfterSec: number;
  private readonly metrics: Metrics | undefined;
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(opts: FfmpegPoolOptions = {}) {
    this.maxConcurrent = opts.maxConcurrent ?? 4;
    this.maxQueue = opts.maxQueue ?? 64;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) {
      throw new RangeError(`maxConcurrent must be a positive integer, got ${this.maxConcurrent}`);
    }
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0) {
      throw new RangeError(`maxQueue must be a non-negative integer, got ${this.maxQueue}`);
    }
    this.retryAfterSec = opts.retryAfterSec ?? 2;
    this.metrics = opts.metrics;
  }

  /** Processes running now. */
  get running(): number {
    return this.active;
  }

  /** Decodes waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Waits for a slot; the caller must call `release()` exactly once afterwards. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    if (this.active < this.maxConcurrent) {
      this.take();
      return Promise.resolve();
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new AppError('OVERLOADED', 'too many audio decodes in progress', { retryAfterSec: this.retryAfterSec }));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          reject(abortError(signal!));
        },
      };
      signal?.addEventListener('abort', w.onAbort, { once: true });
      this.queue.push(w);
    });
  }

  release(): void {
    this.active--;
    this.metrics?.ffmpegActive.dec();
    const next = this.queue.shift();
    if (next !== undefined) {
      next.signal?.removeEventListener('abort', next.onAbort);
      this.take();
      next.resolve();
    }
  }

  private take(): void {
    this.active++;
    this.metrics?.ffmpegActive.inc();
  }
}

/** The AppError an aborted signal stands for: its reason when that is one, else CLIENT_ABORTED. */
export function abortError(signal: AbortSignal): AppError {
  const r: unknown = signal.reason;
  if (r instanceof AppError) return r;
  return new AppError('CLIENT_ABORTED', 'decode aborted', { cause: r });
}
