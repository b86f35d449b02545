import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { MemoryBucketStore } from './memory-bucket-store.js';
import { checkTakeCount, parseBucketLimit } from './token-bucket.js';
import type { BucketLimit, BucketRef, TokenBucketStore } from './token-bucket-store.js';

/** The budgets a request draws on, broadest first. */
export const RATE_LIMIT_SCOPES = ['global', 'tenant', 'instance'] as const;
export type RateLimitScope = (typeof RATE_LIMIT_SCOPES)[number];

/** Options of {@link RateLimiter}; each limit defaults to capacity 500, refill 500 per minute. */
export interface RateLimiterOptions {
  /** Budget of the whole daemon (of all hosts, with a shared store). */
  global?: Partial<BucketLimit>;
  /** Budget of each tenant. */
  tenant?: Partial<BucketLimit>;
  /** Budget of each tenant's instance (a WhatsApp number, for example). */
  instance?: Partial<BucketLimit>;
  /** Where states live; default a private in-memory store (one host's budget). */
  store?: TokenBucketStore;
  /** Refusals count in `rateLimited{scope}`. */
  metrics?: Metrics;
}

/** Who a request is charged to; without an instance only global and tenant are checked. */
export interface RateLimitSubject {
  tenant: string;
  instance?: string;
}

export type RateLimitDecision =
  | { ok: true; remaining: number }
  | { ok: false; scope: RateLimitScope; retryAfterSec: number; remaining: number };

/**
 * Checks the global, tenant and tenant/instance buckets in one atomic take: either every
 * scope is charged or none is. When several refuse, the reported scope is the one with the
 * longest wait, since retrying any earlier would be refused again.
 */
export class RateLimiter {
  readonly limits: Readonly<Record<RateLimitScope, BucketLimit>>;
  private readonly store: TokenBucketStore;
  private readonly metrics: Metrics | undefined;

  constructor(options: RateLimiterOptions = {}) {
    this.limits = Object.freeze({
      global: parseBucketLimit(options.global, 'global'),
      tenant: parseBucketLimit(options.tenant, 'tenant'),
      instance: parseBucketLimit(options.instance, 'instance'),
    });
    this.store = options.store ?? new MemoryBucketStore();
    this.metrics = options.metrics;
  }

  /** Takes `n` tokens from every scope of `subject`, or refuses and names the scope. */
  async check(subject: RateLimitSubject, n = 1): Promise<RateLimitDecision> {
    const scopes: RateLimitScope[] = subject.instance === undefined ? ['global', 'tenant'] : [...RATE_LIMIT_SCOPES];
    const refs: BucketRef[] = scopes.map((scope) => ({ key: keyOf(scope, subject), limit: this.limits[scope] }));
    for (const ref of refs) checkTakeCount(n, ref.limit.capacity);
    const results = await this.store.take(refs, n);
    const remaining = Math.min(...results.map((r) => r.remaining));
    let refused = -1;
    results.forEach((r, i) => {
      if (!r.ok && (refused < 0 || r.retryAfterSec > (results[refused] as typeof r).retryAfterSec)) refused = i;
    });
    if (refused < 0) return { ok: true, remaining };
    const scope = scopes[refused] as RateLimitScope;
    this.metrics?.rateLimited.inc({ scope });
    return { ok: false, scope, retryAfterSec: (results[refused] as { retryAfterSec: number }).retryAfterSec, remaining };
  }

  /** Like {@link check}, but throws RATE_LIMITED (429 with Retry-After) on refusal. */
  async consume(subject: RateLimitSubject, n = 1): Promise<number> {
    const decision = await this.check(subject, n);
    if (decision.ok) return decision.remaining;
    throw new AppError('RATE_LIMITED', `rate limit exceeded (${decision.scope}); retry in ${decision.retryAfterSec} s`, {
      retryAfterSec: decision.retryAfterSec,
      details: { scope: decision.scope, retryAfterSec: decision.retryAfterSec },
    });
  }

  stop(): Promise<void> {
    return this.store.stop();
  }
}

/** Parts are URI-encoded so that a tenant or instance containing '/' cannot alias another. */
function keyOf(scope: RateLimitScope, subject: RateLimitSubject): string {
  switch (scope) {
    case 'global':
      return 'global';
    case 'tenant':
      return `tenant:${encodeURIComponent(subject.tenant)}`;
    case 'instance':
      return `instance:${encodeURIComponent(subject.tenant)}/${encodeURIComponent(subject.instance ?? '')}`;
  }
}
