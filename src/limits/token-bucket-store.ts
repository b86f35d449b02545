/** How big a bucket is and how fast it fills back up. */
export interface BucketLimit {
  /** Most tokens the bucket holds; a full bucket allows a burst of this many takes. */
  capacity: number;
  /** Tokens added back per minute, spread evenly (lazily computed, no timers). */
  refillPerMinute: number;
}

/** One bucket to draw from: its key in the store and its limit. */
export interface BucketRef {
  key: string;
  limit: BucketLimit;
}

/** The outcome of a take for one bucket. */
export interface TakeResult {
  /** Whether this bucket held enough tokens for the take. */
  ok: boolean;
  /** Whole tokens left in this bucket after the take (or without it, when refused). */
  remaining: number;
  /** Seconds until this bucket holds enough tokens; 0 when ok, otherwise at least 1. */
  retryAfterSec: number;
}

/**
 * Where bucket states live. A take is all-or-nothing across the given buckets: tokens are
 * taken from every bucket, or from none when any one of them lacks them, so that a request
 * refused by one scope does not spend the budget of the others.
 */
export interface TokenBucketStore {
  /** Takes `n` tokens from each bucket; results are in the order of `buckets`. */
  take(buckets: readonly BucketRef[], n: number): Promise<TakeResult[]>;
  /** Releases connections or memory held by the store. */
  stop(): Promise<void>;
}
