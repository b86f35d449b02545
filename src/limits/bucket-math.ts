import type { BucketLimit, TakeResult } from './token-bucket-store.js';

/** A bucket's state: fractional tokens as of `updatedAtMs` on the store's clock. */
export interface BucketState {
  tokens: number;
  updatedAtMs: number;
}

/** Tokens the bucket holds at `nowMs`; a clock that went backwards adds nothing. */
export function refilledTokens(state: BucketState | undefined, limit: BucketLimit, nowMs: number): number {
  if (state === undefined) return limit.capacity;
  const elapsedMs = Math.max(0, nowMs - state.updatedAtMs);
  return Math.min(limit.capacity, state.tokens + (elapsedMs * limit.refillPerMinute) / 60_000);
}

/** Milliseconds until a bucket holding `tokens` holds `n`. */
export function msUntil(tokens: number, n: number, limit: BucketLimit): number {
  if (tokens >= n) return 0;
  return Math.ceil(((n - tokens) * 60_000) / limit.refillPerMinute);
}

/** The result for one bucket holding `tokensAfter` (already reduced when the take went through). */
export function resultFor(ok: boolean, tokensAfter: number, waitMs: number): TakeResult {
  return {
    ok,
    remaining: Math.floor(tokensAfter),
    retryAfterSec: ok ? 0 : Math.max(1, Math.ceil(waitMs / 1000)),
  };
}

/** Milliseconds after which an untouched bucket is full again, i.e. its state can be forgotten. */
export function msUntilFull(tokens: number, limit: BucketLimit): number {
  return msUntil(tokens, limit.capacity, limit);
}
