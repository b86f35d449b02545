import type { Socket } from 'node:net';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
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
  /**
   * Called once nothing of the dispatcher reads `bytes` any more (so the caller may reuse the
   * buffer): at once for a chunk dropped unsent, after a delivery whose request is known to
   * have been written out. Not called when that cannot be told (a failed attempt, a busy socket,
   * a dispatcher given by the caller): the buffer is then left to the garbage collector.
   */
  release?: () => void;
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
  /** Where requests go: the caller's dispatcher, or an agent of this dispatcher's own whose sockets it sees. */
  private readonly agent: Dispatcher;
  /** The open sockets of {@link agent} when it is this dispatcher's own; undefined otherwise. */
  private readonly sockets: Set<Socket> | undefined;

  constructor(options: ChunkDispatcherOptions) {
    this.options = options;
    if (options.dispatcher) {
      this.agent = options.dispatcher;
      return;
    }
    const sockets = new Set<Socket>();
    const connector = buildConnector({});
    this.sockets = sockets;
    this.agent = new Agent({
      connect: (opts, callback) =>
        connector(opts, (...args) => {
          const socket = args[1];
          if (socket) {
            sockets.add(socket);
            socket.once('close', () => sockets.delete(socket));
          }
          callback(...args);
        }),
    });
  }

  /**
   * True when no socket of the own agent holds bytes not yet handed to the kernel. undici
   * writes a Buffer body with one `socket.write` and does not wait for it, so after an answer
   * (which a server may send before reading the whole body) the write can still be pending and
   * reading from the caller's buffer; a socket's `writableLength` counts such writes until
   * they complete (a socket leaves the set once closed: its handle reads nothing more). Any
   * socket, not only the request's: undici does not say which one carried it.
   */
  private writtenOut(): boolean {
    if (this.sockets === undefined) return false;
    for (const socket of this.sockets) if (socket.writableLength > 0) return false;
    return true;
  }

  /** Queues a chunk; false when it was dropped because the queue is full or dispatch stopped. */
  enqueue(chunk: DispatchChunk): boolean {
    if (this.stopController.signal.aborted || this.queuedBytes + chunk.bytes.length > (this.options.maxQueueBytes ?? 64 * 1024 * 1024)) {
      this.dropped++;
      chunk.release?.();
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
    for (const chunk of this.queue.splice(0)) chunk.release?.();
    this.queuedBytes = 0;
    if (this.sockets !== undefined) await this.agent.destroy().catch(() => undefined);
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
          if (this.writtenOut()) chunk.release?.();
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
        dispatcher: this.agent,
      });
      await res.body.dump();
      return res.statusCode;
    } finally {
      clearTimeout(timer);
      this.requests.delete(controller);
    }
  }
}
