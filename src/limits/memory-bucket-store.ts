import { performance } from 'node:perf_hooks';
import { msUntil, msUntilFull, refilledTokens, resultFor, type BucketState } from './bucket-math.js';
import type { BucketRef, TakeResult, TokenBucketStore } from './token-bucket-store.js';

/** Options of {@link MemoryBucketStore}. */
export interface MemoryBucketStoreOptions {
  /**
   * Most buckets kept at once; the least recently used one is dropped beyond it (it comes
   * back full, which errs on the side of letting traffic through). Default 10 000.
   */
  maxKeys?: number;
  /** Monotonic clock in milliseconds; default `performance.now`. Injectable for tests. */
  now?: () => number;
}

interface Entry extends BucketState {
  /** When this bucket is full again if left alone; past that, forgetting it changes nothing. */
  fullAtMs: number;
}

/** Idle buckets checked for expiry on each take; keeps cleanup amortised without timers. */
const SWEEP_PER_TAKE = 2;

/** Token buckets in this process's memory: one host's budget, bounded in size. */
export class MemoryBucketStore implements TokenBucketStore {
  private readonly buckets = new Map<string, Entry>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(options: MemoryBucketStoreOptions = {}) {
    this.maxKeys = options.maxKeys ?? 10_000;
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) {
      throw new RangeError(`maxKeys must be a positive integer, got ${String(options.maxKeys)}`);
    }
    this.now = options.now ?? (() => performance.now());
  }

  /** Number of buckets currently remembered (full buckets may already be forgotten). */
  get size(): number {
    return this.buckets.size;
  }

  take(buckets: readonly BucketRef[], n: number): Promise<TakeResult[]> {
    return Promise.resolve(this.takeNow(buckets, n));
  }

  /** Synchronous take; atomic across buckets because nothing else runs in between. */
  takeNow(buckets: readonly BucketRef[], n: number): TakeResult[] {
    const nowMs = this.now();
    this.sweep(nowMs);
    const tokens = buckets.map((b) => refilledTokens(this.buckets.get(b.key), b.limit, nowMs));
    const allOk = tokens.every((t) => t >= n);
    return buckets.map((b, i) => {
      const t = tokens[i] as number;
      if (!allOk) return resultFor(t >= n, t, msUntil(t, n, b.limit));
      const left = t - n;
      // Never moves the stamp backwards, or time already credited would be credited again.
      const stamp = Math.max(nowMs, this.buckets.get(b.key)?.updatedAtMs ?? nowMs);
      this.remember(b.key, { tokens: left, updatedAtMs: stamp, fullAtMs: stamp + msUntilFull(left, b.limit) });
      return resultFor(true, left, 0);
    });
  }

  stop(): Promise<void> {
    this.buckets.clear();
    return Promise.resolve();
  }

  private remember(key: string, entry: Entry): void {
    // Re-inserting moves the key to the back, so the Map's order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, entry);
    while (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value as string;
      this.buckets.delete(oldest);
    }
  }

  private sweep(nowMs: number): void {
    let checked = 0;
    for (const [key, entry] of this.buckets) {
      if (checked++ >= SWEEP_PER_TAKE) break;
      if (entry.fullAtMs <= nowMs) this.buckets.delete(key);
    }
  }
}
