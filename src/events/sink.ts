import type { AudioEvent } from './types.js';

/** What the outbox stores and hands to sinks. */
export type OutboxEvent = AudioEvent;

/** One event the delivery loop abandoned, as handed to `Sink.onGiveUp`. */
export interface GiveUp {
  sink: string;
  event: OutboxEvent;
  /** Delivery attempts of the batch holding the event, the last one included. */
  attempts: number;
  /** The last failure's message. */
  error: string;
  /** The destination's status code (HTTP) when it answered, else null. */
  status: number | null;
}

/**
 * A destination of events. The outbox gives each sink its own durable cursor and a delivery
 * loop; the sink only delivers a batch and says how it failed.
 */
export interface Sink {
  /** Stable name: the cursor file and metric label (letters, digits, `-`, `_`). */
  readonly name: string;
  /**
   * Resolves once the destination confirmed every event of the batch; rejects to retry it.
   * A `DeliveryError` says whether a retry can help (`permanent`) and how long to wait first
   * (`retryAfterMs`); any other error counts as retryable.
   */
  deliver(batch: OutboxEvent[]): Promise<void>;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
  /** Events this sink takes; the others count as confirmed for it. Default: all. */
  accepts?(event: OutboxEvent): boolean;
  /**
   * Why this sink can never deliver `event` (e.g. larger than the destination takes), or
   * undefined. A refused event is given up on its own (reported through {@link onGiveUp} with 0
   * attempts) and the rest of its batch delivered: one such event never holds up those after it.
   */
  refuses?(event: OutboxEvent): string | undefined;
  /** Largest batch this sink wants in one `deliver` call. Default: the outbox's batchSize. */
  readonly maxBatch?: number;
  /** Whether the destination is reachable right now (e.g. broker connected). */
  ready?(): boolean;
  /**
   * Attempts of one batch before a retryable failure gives it up. Default: no limit (the batch
   * is retried until the destination confirms it). A permanent failure gives up at once.
   */
  readonly maxAttempts?: number;
  /**
   * Told once per event given up, before the loop moves past it; a rejection keeps the events
   * in place and the report is retried (not the delivery), so no abandoned event goes unreported.
   */
  onGiveUp?(info: GiveUp): Promise<void> | void;
}
