import type { Logger } from 'pino';
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js';
import type { Metrics } from '../observability/metrics.js';
import { DeliveryError, MAX_RETRY_AFTER_MS } from './delivery-error.js';
import type { LogPosition, LogRead, SegmentLog } from './segment-log.js';
import type { SinkCursor } from './sink-cursor.js';
import type { GiveUp, OutboxEvent, Sink } from './sink.js';

export interface DeliveryLoopOptions {
  sink: Sink;
  /** Where the events are read from. */
  log: SegmentLog;
  /** The sink's position; advanced after each confirmed (or given up) batch. */
  cursor: SinkCursor;
  /** Most events handed to the sink at once (the sink's own `maxBatch` may lower it). */
  batchSize: number;
  /** Retry backoff of a failing sink (`backoff.ts`). */
  retry?: BackoffOptions;
  /** Called after the cursor moved: the outbox deletes what every sink is past, updates gauges. */
  onAdvance?: () => Promise<void> | void;
  metrics?: Metrics;
  logger?: Logger;
}

export interface DeliveryStats {
  delivered: number;
  retries: number;
  consecutiveFailures: number;
  lastError: string | null;
}

/** The head batch a failure is counted against: its first seq, attempts so far, a give-up waiting to be reported. */
interface Head {
  firstSeq: number;
  attempts: number;
  gaveUp: DeliveryError | null;
  /** The batch's events the sink refuses were reported (once per batch, not per retry of the rest). */
  refusedReported: boolean;
}

/**
 * One sink's delivery: reads batches past its cursor, hands them to the sink, and alone decides
 * what a failure means: retry after the backoff (or the destination's Retry-After, whichever is
 * later), or give up (a permanent failure, or `sink.maxAttempts` reached) and report each event
 * to `sink.onGiveUp` before moving past it. In order, at least once.
 */
export class DeliveryLoop {
  readonly sink: Sink;
  private readonly log: SegmentLog;
  private readonly cursor: SinkCursor;
  private readonly max: number;
  private readonly retry: BackoffOptions;
  private readonly onAdvance: (() => Promise<void> | void) | undefined;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger | undefined;
  /** Aborted at the stop deadline: backoff sleeps end, no new batch is started. */
  private readonly halt = new AbortController();

  private pos: LogPosition | null = null;
  private head: Head | null = null;
  private delivered = 0;
  private retries = 0;
  private failures = 0;
  private lastError: string | null = null;
  private wakeUp: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  /** Once set, the loop ends when it is caught up instead of waiting for more. */
  private draining = false;
  /** occurredAt (ms) of the oldest event read and not yet confirmed; null when none. */
  private headAt: number | null = null;
  private ended = false;

  constructor(options: DeliveryLoopOptions) {
    this.sink = options.sink;
    this.log = options.log;
    this.cursor = options.cursor;
    this.max = Math.max(1, Math.min(options.sink.maxBatch ?? options.batchSize, options.batchSize));
    this.retry = options.retry ?? {};
    this.onAdvance = options.onAdvance;
    this.metrics = options.metrics;
    this.logger = options.logger;
  }

  /** Starts delivering; runs until `stop`. */
  start(): void {
    this.loop ??= this.run();
  }

  /** New events were appended: a loop waiting for them reads again. */
  wake(): void {
    this.wakeUp?.();
  }

  /**
   * Delivers what the log holds until caught up or until `deadline` aborts, whichever is first,
   * then ends the loop. Resolves true when the loop ended, false when a delivery was still in
   * flight at the deadline (its outcome then only moves the in-memory cursor).
   */
  async stop(deadline: AbortSignal): Promise<boolean> {
    this.draining = true;
    const onDeadline = (): void => {
      this.halt.abort();
      this.wake();
    };
    let reached!: () => void;
    const deadlineReached = new Promise<void>((r) => (reached = r));
    const listener = (): void => {
      onDeadline();
      reached();
    };
    if (deadline.aborted) listener();
    else deadline.addEventListener('abort', listener, { once: true });
    this.wake();
    const loop = this.loop ?? Promise.resolve();
    try {
      await Promise.race([loop, deadlineReached]);
      // a loop the deadline found sleeping or waiting ends within its next few microtasks
      if (!this.ended) await Promise.race([loop, new Promise<void>((r) => setImmediate(r))]);
      return this.ended || this.loop === null;
    } finally {
      deadline.removeEventListener('abort', listener);
    }
  }

  /** Events past the cursor that the log holds. */
  get pending(): number {
    return Math.max(0, this.log.lastSeq - this.cursor.seq);
  }

  /** Not failing and, when the sink can tell, reachable. */
  ready(): boolean {
    return this.failures === 0 && this.sink.ready?.() !== false;
  }

  stats(): DeliveryStats {
    return { delivered: this.delivered, retries: this.retries, consecutiveFailures: this.failures, lastError: this.lastError };
  }

  /** Seconds since the oldest unconfirmed event was written (0 when caught up). */
  lagSeconds(now = Date.now()): number {
    return this.pending > 0 && this.headAt !== null && Number.isFinite(this.headAt) ? Math.max(0, now - this.headAt) / 1000 : 0;
  }

  private async run(): Promise<void> {
    const signal = this.halt.signal;
    const name = this.sink.name;
    try {
      while (!signal.aborted) {
        const flushesSeen = this.log.flushes;
        let batch: LogRead;
        try {
          batch = await this.log.read(this.cursor.seq, this.pos, this.max);
        } catch (err) {
          this.logger?.error({ sink: name, err }, 'outbox read failed');
          await sleep(backoffDelay(++this.failures, this.retry), signal);
          continue;
        }
        if (batch.firstSeq === undefined) {
          this.pos = batch.next;
          this.failures = 0;
          if (this.draining) break;
          await new Promise<void>((resolve) => {
            this.wakeUp = () => {
              this.wakeUp = null;
              resolve();
            };
            // a flush that landed while we were reading must not be slept through
            if (signal.aborted || this.draining || this.log.flushes !== flushesSeen) this.wakeUp();
          });
          continue;
        }
        if (this.head?.firstSeq !== batch.firstSeq) this.head = { firstSeq: batch.firstSeq, attempts: 0, gaveUp: null, refusedReported: false };
        const head = this.head;
        const accepts = this.sink.accepts?.bind(this.sink);
        let deliverable = accepts ? batch.events.filter((e) => accepts(e)) : batch.events;
        const refuses = this.sink.refuses?.bind(this.sink);
        if (refuses !== undefined) {
          const refused: { event: OutboxEvent; why: string }[] = [];
          deliverable = deliverable.filter((event) => {
            const why = refuses(event);
            if (why !== undefined) refused.push({ event, why });
            return why === undefined;
          });
          if (refused.length > 0 && !head.refusedReported) {
            if (!(await this.reportRefused(refused, signal))) continue;
            head.refusedReported = true;
          }
        }
        this.headAt = deliverable.length > 0 ? Date.parse(deliverable[0]!.occurredAt) : null;
        if (head.gaveUp === null && deliverable.length > 0) {
          try {
            head.attempts++;
            await this.sink.deliver(deliverable);
          } catch (err) {
            const e = DeliveryError.from(err);
            if (e.permanent || head.attempts >= (this.sink.maxAttempts ?? Infinity)) {
              head.gaveUp = e;
            } else {
              await this.retryLater(e, signal);
              continue;
            }
          }
        }
        if (head.gaveUp !== null && !(await this.reportGiveUp(deliverable, head, signal))) continue;
        this.confirmed(deliverable);
        this.head = null;
        this.cursor.advance(batch.lastSeq);
        this.pos = batch.next;
        try {
          await this.onAdvance?.();
        } catch (err) {
          this.logger?.error({ sink: name, err }, 'outbox segment cleanup failed');
        }
      }
    } finally {
      this.ended = true;
    }
  }

  private async retryLater(e: DeliveryError, signal: AbortSignal): Promise<void> {
    this.failures++;
    this.retries++;
    this.lastError = e.message;
    this.metrics?.deliveryRetries.inc({ sink: this.sink.name });
    // a destination that said when to come back (Retry-After) is not asked sooner, within reason
    const wait = Math.max(backoffDelay(this.failures, this.retry), Math.min(e.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS));
    this.logger?.warn({ sink: this.sink.name, attempt: this.failures, retryInMs: wait, err: e.message }, 'event delivery failed; retrying');
    await sleep(wait, signal);
  }

  /** Reports each event the sink refuses outright; false (after a backoff) when a report failed and must be retried. */
  private reportRefused(refused: { event: OutboxEvent; why: string }[], signal: AbortSignal): Promise<boolean> {
    return this.report(
      refused.map(({ event, why }) => ({ sink: this.sink.name, event, attempts: 0, error: why, status: null })),
      'event refused by the sink: given up',
      signal,
    );
  }

  /** Tells the sink about each event given up; false (after a backoff) when the report failed and must be retried. */
  private reportGiveUp(events: OutboxEvent[], head: Head, signal: AbortSignal): Promise<boolean> {
    const e = head.gaveUp!;
    return this.report(
      events.map((event) => ({ sink: this.sink.name, event, attempts: head.attempts, error: e.message, status: e.status })),
      'event delivery given up',
      signal,
    );
  }

  /** Logs and hands each give-up to the sink, in order; false (after a backoff) when one report failed. */
  private async report(giveUps: GiveUp[], message: string, signal: AbortSignal): Promise<boolean> {
    try {
      for (const g of giveUps) {
        this.logger?.error({ sink: g.sink, eventId: g.event.id, type: g.event.type, attempts: g.attempts, status: g.status, error: g.error }, message);
        await this.sink.onGiveUp?.(g);
      }
      return true;
    } catch (err) {
      this.failures++;
      this.lastError = err instanceof Error ? err.message : String(err);
      this.logger?.error({ sink: this.sink.name, err }, 'give-up report failed; retrying the report');
      await sleep(backoffDelay(this.failures, this.retry), signal);
      return false;
    }
  }

  /** Bookkeeping of a batch the loop is done with (confirmed, or given up and reported). */
  private confirmed(events: OutboxEvent[]): void {
    this.failures = 0;
    this.lastError = null;
    this.delivered += events.length;
    this.headAt = null;
    const now = Date.now();
    for (const e of events) {
      this.metrics?.eventsDelivered.inc({ sink: this.sink.name, type: e.type });
      this.metrics?.eventDelivery.observe({ sink: this.sink.name }, Math.max(0, now - Date.parse(e.occurredAt)) / 1000);
    }
  }
}
