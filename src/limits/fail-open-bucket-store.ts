import type { Metrics } from '../observability/metrics.js';
import { MemoryBucketStore } from './memory-bucket-store.js';
import type { BucketRef, TakeResult, TokenBucketStore } from './token-bucket-store.js';

/** The part of a pino logger this store uses. */
export interface FallbackLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** Options of {@link FailOpenBucketStore}. */
export interface FailOpenBucketStoreOptions {
  /** The shared store (usually Redis). */
  primary: TokenBucketStore;
  /** Used while the primary fails; default a fresh {@link MemoryBucketStore}. */
  fallback?: TokenBucketStore;
  logger?: FallbackLogger;
  /** Each take served by the fallback counts in `errors{code="STORAGE_UNAVAILABLE"}`. */
  metrics?: Metrics;
}

/**
 * Fails open: when the shared store cannot answer (Redis down, slow or refusing), takes are
 * served by a local in-memory bucket, so an outage of the optional shared limiter never
 * refuses traffic; each host then enforces the budget on its own (the shared budget can be
 * exceeded up to once per host) until the shared store answers again. One warning is logged
 * when the outage starts and one line when it ends; every fallback take is counted.
 */
export class FailOpenBucketStore implements TokenBucketStore {
  private readonly primary: TokenBucketStore;
  private readonly fallback: TokenBucketStore;
  private readonly logger: FallbackLogger | undefined;
  private readonly metrics: Metrics | undefined;
  private failing = false;
  private fallbackCount = 0;

  constructor(options: FailOpenBucketStoreOptions) {
    this.primary = options.primary;
    this.fallback = options.fallback ?? new MemoryBucketStore();
    this.logger = options.logger;
    this.metrics = options.metrics;
  }

  /** Whether the last take was served by the fallback. */
  get degraded(): boolean {
    return this.failing;
  }

  /** Takes served by the fallback since start. */
  get fallbackTakes(): number {
    return this.fallbackCount;
  }

  async take(buckets: readonly BucketRef[], n: number): Promise<TakeResult[]> {
    let results: TakeResult[];
    try {
      results = await this.primary.take(buckets, n);
    } catch (err) {
      if (!this.failing) {
        this.failing = true;
        this.logger?.warn({ err }, 'shared rate-limit store unavailable; using local buckets (fail open)');
      }
      this.fallbackCount++;
      this.metrics?.errors.inc({ code: 'STORAGE_UNAVAILABLE' });
      return this.fallback.take(buckets, n);
    }
    if (this.failing) {
      this.failing = false;
      this.logger?.info({ fallbackTakes: this.fallbackCount }, 'shared rate-limit store available again');
    }
    return results;
  }

  async stop(): Promise<void> {
    await Promise.all([this.primary.stop(), this.fallback.stop()]);
  }
}
