import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { BackoffOptions } from '../backoff.js';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { DeliveryLoop } from './delivery-loop.js';
import { SegmentLog } from './segment-log.js';
import { SinkCursor } from './sink-cursor.js';
import type { OutboxEvent, Sink } from './sink.js';

export type { GiveUp, OutboxEvent, Sink } from './sink.js';
export { DeliveryError } from './delivery-error.js';

export interface OutboxOptions {
  /** Directory of the outbox (`<dataDir>/outbox`); created when missing. */
  dir: string;
  /** Sinks; an event's segment is deleted once every one of them confirmed it. */
  sinks: Sink[];
  /** A segment file is closed and a new one started past this size. Default 8 MiB. */
  segmentBytes?: number;
  /** Most events handed to a sink at once. Default 256. */
  batchSize?: number;
  /** Retry backoff of a failing sink (`backoff.ts`). Default 200 ms .. 30 s. */
  retry?: BackoffOptions;
  /** The stop deadline when stop() is given none: this many ms after it is called. Default 10 000. */
  stopTimeoutMs?: number;
  /**
   * Longest a sink's confirmed position stays in memory only, in ms. Default 1 000: after a
   * crash a sink is sent again at most this much of what it had already confirmed (delivery
   * is at least once either way), instead of one cursor write per delivered batch.
   */
  cursorSyncMs?: number;
  metrics?: Metrics;
  logger?: Logger;
}

export interface SinkStats {
  /** Events appended and not yet confirmed by this sink. */
  pending: number;
  /** Highest sequence number this sink confirmed. */
  cursor: number;
  delivered: number;
  retries: number;
  consecutiveFailures: number;
  ready: boolean;
  lastError: string | null;
}

export interface OutboxStats {
  lastSeq: number;
  segments: number;
  appended: number;
  /** write+fsync rounds; lower than `appended` when concurrent appends were grouped. */
  flushes: number;
  /** Segment file reads by the delivery loops; a sink that keeps up is handed what was just committed from memory. */
  segmentReads: number;
  sinks: Record<string, SinkStats>;
}

const SINK_NAME_RE = /^[A-Za-z0-9_-]+$/;

/**
 * Durable local outbox: the segment log (`segment-log.ts`) every event is appended to, and per
 * sink a durable cursor (`sink-cursor.ts`) and a delivery loop (`delivery-loop.ts`) reading
 * the log past it, in order, at least once (from memory when it keeps up: the log holds its newest
 * lines). A segment is deleted once every sink is past it.
 */
export class Outbox {
  private readonly dir: string;
  private readonly batchSize: number;
  private readonly retry: BackoffOptions;
  private readonly stopTimeoutMs: number;
  private readonly cursorSyncMs: number;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger | undefined;
  private readonly sinks: Sink[];
  private readonly log: SegmentLog;
  private readonly loops = new Map<string, DeliveryLoop>();
  private readonly cursors = new Map<string, SinkCursor>();
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';

  constructor(options: OutboxOptions) {
    this.dir = options.dir;
    this.batchSize = options.batchSize ?? 256;
    this.retry = options.retry ?? {};
    this.stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.cursorSyncMs = options.cursorSyncMs ?? 1000;
    this.metrics = options.metrics;
    this.logger = options.logger;
    const names = new Set<string>();
    for (const sink of options.sinks) {
      if (!SINK_NAME_RE.test(sink.name)) {
        throw new TypeError(`outbox sink name "${sink.name}" must match ${SINK_NAME_RE}`);
      }
      if (names.has(sink.name)) {
        throw new TypeError(`outbox sink "${sink.name}" is configured twice`);
      }
      names.add(sink.name);
    }
    this.sinks = [...options.sinks];
    this.log = new SegmentLog({
      dir: this.dir,
      segmentBytes: options.segmentBytes,
      logger: this.logger,
      confirmedThrough: () => this.confirmedThrough(),
    });
    this.log.onFlush(() => {
      this.updatePendingGauge();
      for (const loop of this.loops.values()) loop.wake();
    });
  }

  /** Recovers the log and the cursors, starts the sinks and their delivery loops. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('outbox already started');
    await mkdir(this.dir, { recursive: true });
    for (const sink of this.sinks) {
      this.cursors.set(sink.name, await SinkCursor.open(this.dir, sink.name, { syncMs: this.cursorSyncMs, logger: this.logger }));
    }
    const stored = [...this.cursors.values()].map((c) => c.stored ?? 0);
    await this.log.open(Math.max(0, ...stored));
    for (const cursor of this.cursors.values()) {
      // a sink seen for the first time starts at the oldest retained event
      if (cursor.stored === null) await cursor.place(this.log.firstRetainedSeq - 1);
    }
    await this.log.deleteConfirmed();
    for (const sink of this.sinks) {
      this.loops.set(
        sink.name,
        new DeliveryLoop({
          sink,
          log: this.log,
          cursor: this.cursors.get(sink.name)!,
          batchSize: this.batchSize,
          retry: this.retry,
          metrics: this.metrics,
          logger: this.logger,
          onAdvance: async () => {
            await this.log.deleteConfirmed();
            this.updatePendingGauge();
          },
        }),
      );
    }
    this.state = 'running';
    if (this.metrics) this.metrics.outboxLagSource = () => this.lagBySink();
    for (const sink of this.sinks) this.metrics?.deliveryRetries.inc({ sink: sink.name }, 0);
    for (const sink of this.sinks) {
      try {
        await sink.start?.();
      } catch (err) {
        // a sink that cannot start yet (broker down) still gets retried by its loop
        this.logger?.warn({ sink: sink.name, err }, 'outbox sink failed to start');
      }
      this.loops.get(sink.name)!.start();
    }
    this.updatePendingGauge();
  }

  /**
   * Durably appends an event; resolves after its line is fsync'd. Rejects with DRAINING once
   * stop() began, or STORAGE_ERROR when the write failed (the event may then be delivered or not).
   * The event is the outbox's from here on: a sink that keeps up is handed this very object
   * (what it would parse back from the segment), so it must not be changed after the call.
   */
  append(event: OutboxEvent): Promise<void> {
    if (this.state !== 'running') {
      return Promise.reject(new AppError('DRAINING', 'outbox is not accepting events'));
    }
    return this.log.append(event);
  }

  /**
   * Stops by one deadline (ms since the epoch; default `stopTimeoutMs` from now): writes what
   * was appended, lets every sink deliver what it can until it is caught up or the deadline
   * passes, then ends the loops, writes the cursors and stops the sinks. What is left is
   * delivered after the next start.
   */
  async stop(deadline: number = Date.now() + this.stopTimeoutMs): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    await this.log.flushed();
    const expiry = new AbortController();
    const timer = setTimeout(() => expiry.abort(), Math.max(0, deadline - Date.now()));
    try {
      const ended = await Promise.all([...this.loops.values()].map((loop) => loop.stop(expiry.signal)));
      const inFlight = [...this.loops.keys()].filter((_, i) => !ended[i]);
      if (inFlight.length > 0) this.logger?.warn({ sinks: inFlight }, 'outbox stop: deliveries still in flight at the deadline');
    } finally {
      clearTimeout(timer);
    }
    for (const cursor of this.cursors.values()) await cursor.close();
    for (const sink of this.sinks) {
      try {
        await sink.stop?.();
      } catch (err) {
        this.logger?.warn({ sink: sink.name, err }, 'outbox sink failed to stop');
      }
    }
    await this.log.close();
    this.state = 'stopped';
  }

  stats(): OutboxStats {
    const sinks: Record<string, SinkStats> = {};
    for (const [name, loop] of this.loops) {
      const s = loop.stats();
      sinks[name] = {
        pending: loop.pending,
        cursor: this.cursors.get(name)!.seq,
        delivered: s.delivered,
        retries: s.retries,
        consecutiveFailures: s.consecutiveFailures,
        ready: loop.ready(),
        lastError: s.lastError,
      };
    }
    return {
      lastSeq: this.log.lastSeq,
      segments: this.log.segmentCount,
      appended: this.log.appended,
      flushes: this.log.flushes,
      segmentReads: this.log.segmentReads,
      sinks,
    };
  }

  /** Health bit for /ready: the named sink (or every sink) is reachable and not failing. */
  ready(sinkName?: string): boolean {
    if (this.state !== 'running') return false;
    if (sinkName !== undefined) return this.loops.get(sinkName)?.ready() ?? false;
    return [...this.loops.values()].every((loop) => loop.ready());
  }

  /** The highest seq every sink confirmed (the log's last seq when there is no sink). */
  private confirmedThrough(): number {
    if (this.cursors.size === 0) return this.log.lastSeq;
    let min = Infinity;
    for (const cursor of this.cursors.values()) min = Math.min(min, cursor.seq);
    return min;
  }

  private *lagBySink(): Iterable<readonly [string, number]> {
    const now = Date.now();
    for (const [name, loop] of this.loops) yield [name, loop.lagSeconds(now)] as const;
  }

  private updatePendingGauge(): void {
    if (!this.metrics) return;
    for (const [name, loop] of this.loops) this.metrics.outboxPending.set({ sink: name }, loop.pending);
  }
}
