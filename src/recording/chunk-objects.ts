import type { PcmFormat } from '../audio/pcm-format.js';
import { backoffDelay, sleep } from '../backoff.js';
import { isRetryable } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { ObjectKeys } from '../storage/keys.js';
import type { ObjectStore, PutOptions } from '../storage/object-store.js';
import { chunkEvent, type ChunkSink, type EventAppender, type RecordingIdentity } from './recording.js';

export interface ChunkObjectsOptions {
  store: ObjectStore;
  keys: ObjectKeys;
  events: EventAppender;
  presign: (key: string) => Promise<{ url: string; expiresAt: Date } | null>;
  logger: Logger;
  metrics: Metrics;
  /** Bytes of chunks waiting to be stored across all recordings; beyond it chunks are dropped (the master still has them). */
  maxPendingBytes?: number;
  /** Uploads in flight at once. */
  concurrency?: number;
  /** Attempts per chunk while the store is unavailable. */
  maxAttempts?: number;
  /** Presign each chunk's URL into its `recording.chunk` (`url`); false leaves it null and saves the signing. Default true. */
  urls?: boolean;
  /** Group commits of a store with `putBatch` under way at once (default 4). */
  batchesInFlight?: number;
  /** Most chunks in one group commit of a store with `putBatch` (default 128). */
  batchMax?: number;
  /**
   * How long a chunk waits for others to share its group commit (store with `putBatch`), ms.
   * Chunks of different streams arrive spread over time, one every few ms, so without a wait
   * each went alone: its own journal write and fdatasync, worker message, outbox and sink
   * fsyncs. Default 50 (a 2 s chunk is stored ≤ 50 ms later; the master is not delayed).
   */
  commitMs?: number;
}

/** Retries of a chunk while the store is unavailable: 200–400 ms first, at most 10 s. */
const CHUNK_RETRY = { baseMs: 400, maxMs: 10_000 };

interface Job {
  identity: RecordingIdentity;
  seq: number;
  wav: Buffer;
  format: PcmFormat;
  startFrame: number;
  frames: number;
  receivedAt: number;
  /** Gives `wav` back to the recording (see ChunkSink); not called after a failed attempt. */
  release: () => void;
  /** An attempt failed: a request that carried `wav` may still be writing it (an S3 error answered early). */
  failed: boolean;
}

/**
 * Stores each chunk as its own object and announces it with `recording.chunk`. Secondary to
 * the master (which has every sample), so it is bounded: a full queue drops the chunk object,
 * counted, rather than holding memory without limit.
 */
export class ChunkObjects implements ChunkSink {
  private readonly queue: Job[] = [];
  private pendingBytes = 0;
  private running = 0;
  private readonly perRecording = new Map<string, { count: number; waiters: (() => void)[] }>();
  /** The commit window of the oldest waiting chunk, while one is open. */
  private gather: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ChunkObjectsOptions) {}

  chunk(identity: RecordingIdentity, seq: number, wav: Buffer, format: PcmFormat, startFrame: number, frames: number, release: () => void): void {
    const max = this.opts.maxPendingBytes ?? 64 * 1024 * 1024;
    if (this.pendingBytes + wav.length > max) {
      release();
      this.opts.metrics.framesDropped.inc({ source: identity.source, reason: 'chunk_queue_full' });
      this.opts.logger.warn({ recordingId: identity.recordingId, seq }, 'chunk object dropped: queue full');
      return;
    }
    this.pendingBytes += wav.length;
    const entry = this.perRecording.get(identity.recordingId) ?? { count: 0, waiters: [] };
    entry.count += 1;
    this.perRecording.set(identity.recordingId, entry);
    this.queue.push({ identity, seq, wav, format, startFrame, frames, receivedAt: Date.now(), release, failed: false });
    this.pump();
  }

  whenIdle(recordingId: string): Promise<void> {
    const entry = this.perRecording.get(recordingId);
    if (!entry || entry.count === 0) return Promise.resolve();
    return new Promise((resolve) => entry.waiters.push(resolve));
  }

  private pump(): void {
    const batching = this.opts.store.putBatch !== undefined;
    // group commit: while batches are being made durable, the next chunks gather for the next one;
    // a batch goes through stages that wait on each other (journal write and sync, placement on
    // the place worker, the events' outbox commit), so several in flight keep every stage busy
    // instead of the next batch waiting for the last one's events
    const concurrency = batching ? (this.opts.batchesInFlight ?? 4) : (this.opts.concurrency ?? 8);
    while (this.running < concurrency && this.queue.length > 0) {
      if (batching && this.gathering()) return;
      const jobs = this.queue.splice(0, batching ? (this.opts.batchMax ?? 128) : 1);
      this.running += 1;
      void (batching ? this.storeBatch(jobs) : this.store(jobs[0]!)).finally(() => { // neither rejects: a chunk not stored is logged and counted
        this.running -= 1;
        for (const job of jobs) this.settled(job);
        this.pump();
      });
    }
  }

  /** True while the oldest waiting chunk's commit window is open and the batch is not full (a timer ends it). */
  private gathering(): boolean {
    const windowMs = this.opts.commitMs ?? 50;
    if (windowMs <= 0 || this.queue.length >= (this.opts.batchMax ?? 128)) return false;
    const left = this.queue[0]!.receivedAt + windowMs - Date.now();
    if (left <= 0) return false;
    if (this.gather === null) {
      this.gather = setTimeout(() => {
        this.gather = null;
        this.pump();
      }, left);
    }
    return true;
  }

  private settled(job: Job): void {
    this.pendingBytes -= job.wav.length;
    if (!job.failed) job.release();
    const entry = this.perRecording.get(job.identity.recordingId);
    if (entry) {
      entry.count -= 1;
      if (entry.count === 0) {
        this.perRecording.delete(job.identity.recordingId);
        for (const w of entry.waiters) w();
      }
    }
  }

  private keyOf(job: Job): string {
    const id = job.identity;
    return this.opts.keys.chunk(
      { tenant: id.tenant, meetingId: id.meetingId, roomName: id.roomName, participant: id.participant ?? '_', trackId: id.trackId ?? '_', recordingId: id.recordingId },
      job.seq,
    );
  }

  private putOptions(job: Job): PutOptions {
    const id = job.identity;
    return {
      contentType: 'audio/wav',
      metadata: {
        tenant: id.tenant,
        source: id.source,
        'recording-id': id.recordingId,
        'sample-rate': String(job.format.sampleRate),
        channels: String(job.format.channels),
        'duration-sec': String(job.frames / job.format.sampleRate),
        seq: String(job.seq),
      },
    };
  }

  /** One group commit for many chunks (retried whole while the store is unavailable), then their events. */
  private async storeBatch(jobs: Job[]): Promise<void> {
    const items = jobs.map((job) => ({ key: this.keyOf(job), body: job.wav, options: this.putOptions(job) }));
    const attempts = this.opts.maxAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.opts.store.putBatch!(items);
        break;
      } catch (err) {
        for (const job of jobs) job.failed = true;
        if (attempt >= attempts || !isRetryable(err)) {
          for (const job of jobs) this.opts.metrics.framesDropped.inc({ source: job.identity.source, reason: 'chunk_store_failed' });
          this.opts.logger.error({ err, chunks: jobs.length }, 'chunk objects not stored');
          return;
        }
        await sleep(backoffDelay(attempt, CHUNK_RETRY));
      }
    }
    await Promise.all(jobs.map((job, i) => this.announce(job, items[i]!.key)));
  }

  private async store(job: Job): Promise<void> {
    const key = this.keyOf(job);
    const attempts = this.opts.maxAttempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.opts.store.put(key, job.wav, this.putOptions(job));
        break;
      } catch (err) {
        job.failed = true;
        if (attempt >= attempts || !isRetryable(err)) {
          this.opts.metrics.framesDropped.inc({ source: job.identity.source, reason: 'chunk_store_failed' });
          this.opts.logger.error({ err, recordingId: job.identity.recordingId, seq: job.seq }, 'chunk object not stored');
          return;
        }
        await sleep(backoffDelay(attempt, CHUNK_RETRY));
      }
    }
    await this.announce(job, key);
  }

  /** Stored: the latency, then `recording.chunk` (the outbox group-commits the appends of one tick). */
  private async announce(job: Job, key: string): Promise<void> {
    const id = job.identity;
    this.opts.metrics.chunkLatency.observe((Date.now() - job.receivedAt) / 1000);
    const link = this.opts.urls === false ? null : await this.opts.presign(key).catch(() => null);
    await this.opts.events
      .append(chunkEvent(id, job.seq, key, job.format, job.startFrame, job.frames, job.wav.length, link))
      .catch((err: unknown) => this.opts.logger.error({ err, recordingId: id.recordingId }, 'recording.chunk could not be written to the outbox'));
  }
}
