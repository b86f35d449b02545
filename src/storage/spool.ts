import type { Metrics } from '../observability/metrics.js';

/** Options of {@link Spool}. */
export interface SpoolOptions {
  /** Byte budget shared by every upload spooling to the state directory (memory queues included). */
  maxBytes: number;
  metrics?: Metrics;
}

/**
 * The shared byte budget of the local spool. Uploads reserve bytes before queueing them and
 * release them once the store has them; a refused reservation means the caller drops the audio
 * and counts it, so a long store outage fills the disk up to `maxBytes` and no further.
 */
export class Spool {
  readonly maxBytes: number;
  private used = 0;
  private readonly metrics: Metrics | undefined;

  constructor(options: SpoolOptions) {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0) {
      throw new RangeError(`spool maxBytes must be a positive integer, got ${options.maxBytes}`);
    }
    this.maxBytes = options.maxBytes;
    this.metrics = options.metrics;
  }

  /** Bytes currently reserved by all uploads. */
  get usedBytes(): number {
    return this.used;
  }

  /** Reserves `n` bytes if they fit in the budget; false means drop. */
  tryReserve(n: number): boolean {
    if (this.used + n > this.maxBytes) return false;
    this.used += n;
    this.metrics?.spoolBytes.set(this.used);
    return true;
  }

  /** Accounts bytes that already exist on disk (found by recovery), even beyond the budget. */
  adopt(n: number): void {
    this.used += n;
    this.metrics?.spoolBytes.set(this.used);
  }

  /** Gives back `n` reserved bytes. */
  release(n: number): void {
    this.used = Math.max(0, this.used - n);
    this.metrics?.spoolBytes.set(this.used);
  }
}
