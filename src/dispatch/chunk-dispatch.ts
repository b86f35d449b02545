import { request, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js';

/** One chunk to send to the analysis endpoint. */
export interface DispatchChunk {
  meetingId: string;
  participantId: string;
  trackId: string;
  /** WAV file bytes (`format: 'wav'`) or raw s16le PCM (`format: 'l16'`). */
  bytes: Buffer;
  format: 'wav' | 'l16';
  sampleRate: number;
  channels: number;
  /** `Date.now()` when the chunk was cut (its last frame arrived), for the latency metric. */
  cutAt?: number;
}

export interface ChunkDispatcherOptions {
  /** Analysis endpoint the chunks are POSTed to. */
  url: string;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string;
  /**
   * Bytes of chunks waiting to be sent; a chunk that would go beyond it is dropped (and
   * counted). Default 64 MiB: bounded by memory, not by a count, so the burst of a meeting
   * ending (every stream's last, shorter chunk in the same second) fits.
   */
  maxQueueBytes?: number;
  /** Requests in flight at once. Default 16 (one per connection: a slow answer holds one, not the queue). */
  concurrency?: number;
  /** Attempts per chunk (network errors, 408, 429, 5xx). Default 4. */
  maxAttempts?: number;
  /** Per-request timeout, ms. Default 10 000. */
  timeoutMs?: number;
  /** Backoff between attempts (full jitter). Default 200 ms .. 5 s. */
  retry?: BackoffOptions;
  dispatcher?: Dispatcher;
  logger?: Logger;
  /** Told of every chunk the endpoint accepted (2xx). */
  onSent?: (chunk: DispatchChunk) => void;
}

export interface ChunkDispatchStats {
  queued: number;
  inFlight: number;
  sent: number;
  failed: number;
  dropped: number;
}

/** Content-Type of a chunk: WAV, or big-endian-named L16 with its rate and channels. */
export function chunkContentType(chunk: Pick<DispatchChunk, 'format' | 'sampleRate' | 'channels'>): string {
  return chunk.format === 'wav' ? 'audio/wav' : `audio/L16;rate=${chunk.sampleRate};channels=${chunk.channels}`;
}

/**
 * Best-effort per-chunk HTTP dispatch. `enqueue` never blocks the live path: it returns at once,
 * and a full queue drops the chunk (counted) rather than growing without bound.
 */
export class ChunkDispatcher {
  private readonly options: ChunkDispatcherOptions;
  private readonly queue: DispatchChunk[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private sent = 0;
  private failed = 0;
  private dropped = 0;
  private readonly stopController = new AbortController();
  /** The requests in flight, each with its own controller: stop() aborts them (one listener on the stop signal, not one per request). */
  private readonly requests = new Set<AbortController>();
  private idleWaiters: (() => void)[] = [];

  constructor(options: ChunkDispatcherOptions) {
    this.options = options;
  }

  /** Queues a chunk; false when it was dropped because the queue is full or dispatch stopped. */
  enqueue(chunk: DispatchChunk): boolean {
    if (this.stopController.signal.aborted || this.queuedBytes + chunk.bytes.length > (this.options.maxQueueBytes ?? 64 * 1024 * 1024)) {
      this.dropped++;
      return false;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.bytes.length;
    this.pump();
    return true;
  }

  stats(): ChunkDispatchStats {
    return { queued: this.queue.length, inFlight: this.inFlight, sent: this.sent, failed: this.failed, dropped: this.dropped };
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking chunks; waits for the queue to drain up to `timeoutMs`, then abandons the rest. */
  async stop(timeoutMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.stopController.abort();
    for (const r of this.requests) r.abort(this.stopController.signal.reason);
    this.dropped += this.queue.length;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private pump(): void {
    while (this.inFlight < (this.options.concurrency ?? 16) && this.queue.length > 0) {
      const chunk = this.queue.shift()!;
      this.queuedBytes -= chunk.bytes.length;
      this.inFlight++;
      void this.send(chunk).finally(() => { // send() never rejects: a chunk given up is logged and counted
        this.inFlight--;
        this.pump();
        if (this.queue.length === 0 && this.inFlight === 0) {
          for (const w of this.idleWaiters.splice(0)) w();
        }
      });
    }
  }

  private async send(chunk: DispatchChunk): Promise<void> {
    const maxAttempts = this.options.maxAttempts ?? 4;
    const signal = this.stopController.signal;
    for (let attempt = 1; attempt <= maxAttempts && !signal.aborted; attempt++) {
      let outcome: string;
      try {
        const status = await this.post(chunk);
        if (status >= 200 && status < 300) {
          this.sent++;
          this.options.onSent?.(chunk);
          return;
        }
        outcome = `HTTP ${status}`;
        if (status >= 400 && status < 500 && status !== 408 && status !== 429) break; // not worth retrying
      } catch (err) {
        outcome = (err as Error).message;
      }
      this.options.logger?.warn({ meetingId: chunk.meetingId, trackId: chunk.trackId, attempt, outcome }, 'chunk dispatch failed');
      if (attempt < maxAttempts) await sleep(backoffDelay(attempt, { baseMs: 200, maxMs: 5_000, ...this.options.retry }), signal);
    }
    this.failed++;
  }

  private async post(chunk: DispatchChunk): Promise<number> {
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const headers: Record<string, string> = {
      'content-type': chunkContentType(chunk),
      'x-meeting-id': chunk.meetingId,
      'x-participant-id': chunk.participantId,
      'x-track-id': chunk.trackId,
    };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    // one controller and one timer per request: AbortSignal.any over AbortSignal.timeout cost
    // ~35 µs a request and left a 10 s timer behind each
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException(`chunk dispatch timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
    this.requests.add(controller);
    try {
      const res = await request(this.options.url, {
        method: 'POST',
        body: chunk.bytes,
        headers,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: controller.signal,
        ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
      });
      await res.body.dump();
      return res.statusCode;
    } finally {
      clearTimeout(timer);
      this.requests.delete(controller);
    }
  }
}
