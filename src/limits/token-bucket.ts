import { z } from 'zod';
import { AppError } from '../errors.js';
import { MemoryBucketStore } from './memory-bucket-store.js';
import type { BucketLimit, TakeResult, TokenBucketStore } from './token-bucket-store.js';

/** The contract's default: a burst of 500, refilled at 500 per minute. */
export const DEFAULT_BUCKET_LIMIT: Readonly<BucketLimit> = Object.freeze({ capacity: 500, refillPerMinute: 500 });

const bucketLimitSchema = z.object({
  capacity: z.number().int().min(1).max(1_000_000_000),
  refillPerMinute: z.number().positive().max(1_000_000_000),
});

/** Checks a limit; throws INVALID_PARAMETER naming the field, the value and what is allowed. */
export function parseBucketLimit(input: Partial<BucketLimit> | undefined, name = 'limit'): BucketLimit {
  const merged = { ...DEFAULT_BUCKET_LIMIT, ...stripUndefined(input ?? {}) };
  const parsed = bucketLimitSchema.safeParse(merged);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = String(issue?.path[0] ?? 'capacity') as keyof BucketLimit;
  const allowed =
    field === 'capacity' ? 'an integer from 1 to 1000000000' : 'a number above 0 and at most 1000000000';
  const value = merged[field];
  throw new AppError('INVALID_PARAMETER', `${name}.${field} must be ${allowed}, got ${String(value)}`, {
    details: { field: `${name}.${field}`, value, allowed },
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Options of {@link TokenBucket}. */
export interface TokenBucketOptions {
  /** Burst size; default 500. */
  capacity?: number;
  /** Tokens restored per minute; default 500. */
  refillPerMinute?: number;
  /** Where states live; default a private {@link MemoryBucketStore}. */
  store?: TokenBucketStore;
}

/** A family of token buckets sharing one limit, one per key. */
export class TokenBucket {
  readonly limit: BucketLimit;
  readonly store: TokenBucketStore;

  constructor(options: TokenBucketOptions = {}) {
    this.limit = parseBucketLimit(options);
    this.store = options.store ?? new MemoryBucketStore();
  }

  /** Takes `n` tokens from the bucket named `key`, or none when it holds fewer. */
  async take(key: string, n = 1): Promise<TakeResult> {
    checkTakeCount(n, this.limit.capacity);
    const [result] = await this.store.take([{ key, limit: this.limit }], n);
    return result as TakeResult;
  }
}

/** A take larger than the bucket could never succeed, so it is a caller's bug, not a refusal. */
export function checkTakeCount(n: number, capacity: number): void {
  if (!Number.isInteger(n) || n < 1 || n > capacity) {
    throw new AppError('INVALID_PARAMETER', `token count must be an integer from 1 to ${capacity}, got ${n}`, {
      details: { field: 'n', value: n, allowed: `integer 1..${capacity}` },
    });
  }
}
