import { AppError } from '../errors.js';
import { MemoryBucketStore } from '../limits/memory-bucket-store.js';
import type { Metrics } from '../observability/metrics.js';
import { apiKeyFromHeaders, type Tenant, type TenantRegistry } from './tenant-registry.js';

/** Options of {@link ApiAuth}. */
export interface ApiAuthOptions {
  /** Resolves API keys to tenants. */
  tenants: TenantRegistry;
  /** Counts refusals (`rate_limited_total{scope="tenant_requests"}`). */
  metrics: Metrics;
}

/**
 * API-key authentication of every API route, charged against the tenant's request budget
 * (`requestsPerMinute`, a token bucket with the same burst). The budget is per host.
 */
export class ApiAuth {
  private readonly budget = new MemoryBucketStore();

  constructor(private readonly options: ApiAuthOptions) {}

  /** The tenant of the request's key (`apikey` or `Authorization: Bearer`); throws UNAUTHORIZED, INVALID_API_KEY or RATE_LIMITED. */
  authenticate(headers: Record<string, string>): Tenant {
    const tenant = this.options.tenants.authenticate(apiKeyFromHeaders(headers));
    const [result] = this.budget.takeNow([{ key: tenant.id, limit: { capacity: tenant.requestsPerMinute, refillPerMinute: tenant.requestsPerMinute } }], 1);
    if (!result!.ok) {
      this.options.metrics.rateLimited.inc({ scope: 'tenant_requests' });
      throw new AppError('RATE_LIMITED', `tenant ${tenant.id} is over its ${tenant.requestsPerMinute} requests per minute`, { retryAfterSec: result!.retryAfterSec });
    }
    return tenant;
  }
}
