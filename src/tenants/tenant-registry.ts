import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { AppError, ConfigError } from '../errors.js';

/** A tenant: who owns the data, and how much of the daemon it may use. */
export interface Tenant {
  id: string;
  /** Concurrent live streams allowed. */
  maxStreams: number;
  /** API requests per minute (token bucket, burst = the same value). */
  requestsPerMinute: number;
}

const tenantsFileSchema = z
  .object({
    tenants: z
      .array(
        z
          .object({
            id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, . _ -, at most 64'),
            /** SHA-256 (hex) of each API key of the tenant; plain keys are never stored. */
            keySha256: z.array(z.string().regex(/^[0-9a-f]{64}$/, '64 lower-case hex characters')).min(1),
            maxStreams: z.number().int().positive().optional(),
            requestsPerMinute: z.number().int().positive().optional(),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

export interface TenantRegistryOptions {
  defaultTenant: string;
  /** Key of the default tenant (plain; hashed at once). */
  apiKey?: string | undefined;
  tenantsFile?: string | undefined;
  defaults: { maxStreams: number; requestsPerMinute: number };
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Resolves API keys to tenants. Keys are held only as SHA-256 digests and every candidate is
 * compared with timingSafeEqual, so neither the key nor how much of it matched leaks by timing.
 */
export class TenantRegistry {
  private readonly tenants = new Map<string, Tenant>();
  private readonly keys: { digest: Buffer; tenant: Tenant }[] = [];
  private readonly streams = new Map<string, number>();

  constructor(options: TenantRegistryOptions) {
    if (options.apiKey) {
      this.add({ id: options.defaultTenant, ...options.defaults }, [sha256Hex(options.apiKey)]);
    }
    if (options.tenantsFile) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(options.tenantsFile, 'utf8'));
      } catch (err) {
        throw new ConfigError([`TENANTS_FILE ${options.tenantsFile}: ${(err as Error).message}`]);
      }
      const result = tenantsFileSchema.safeParse(parsed);
      if (!result.success) {
        throw new ConfigError(result.error.issues.map((i) => `TENANTS_FILE ${options.tenantsFile}: ${i.path.join('.')}: ${i.message}`));
      }
      for (const t of result.data.tenants) {
        this.add(
          { id: t.id, maxStreams: t.maxStreams ?? options.defaults.maxStreams, requestsPerMinute: t.requestsPerMinute ?? options.defaults.requestsPerMinute },
          t.keySha256,
        );
      }
    }
  }

  private add(tenant: Tenant, digests: string[]): void {
    const existing = this.tenants.get(tenant.id);
    const t = existing ?? tenant;
    this.tenants.set(t.id, t);
    for (const d of digests) this.keys.push({ digest: Buffer.from(d, 'hex'), tenant: t });
  }

  get size(): number {
    return this.tenants.size;
  }

  get(id: string): Tenant | undefined {
    return this.tenants.get(id);
  }

  /** The tenant owning `key`, or throws INVALID_API_KEY. Every key is compared, match or not. */
  authenticate(key: string | undefined): Tenant {
    if (!key) throw new AppError('UNAUTHORIZED', 'an API key is required (header apikey or Authorization: Bearer)');
    const digest = createHash('sha256').update(key).digest();
    let found: Tenant | undefined;
    for (const entry of this.keys) {
      if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry.tenant;
    }
    if (!found) throw new AppError('INVALID_API_KEY', 'the API key is not valid');
    return found;
  }

  /** Counts a live stream against the tenant's limit; returns the release function. */
  acquireStream(tenant: Tenant): () => void {
    const n = this.streams.get(tenant.id) ?? 0;
    if (n >= tenant.maxStreams) {
      throw new AppError('TOO_MANY_STREAMS', `tenant ${tenant.id} already has ${n} live streams (limit ${tenant.maxStreams})`, { retryAfterSec: 5 });
    }
    this.streams.set(tenant.id, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streams.get(tenant.id) ?? 1) - 1;
      if (left <= 0) this.streams.delete(tenant.id);
      else this.streams.set(tenant.id, left);
    };
  }

  activeStreams(tenantId: string): number {
    return this.streams.get(tenantId) ?? 0;
  }
}

/** Reads the API key from `apikey` or `Authorization: Bearer`. */
export function apiKeyFromHeaders(headers: Record<string, string>): string | undefined {
  const direct = headers['apikey'];
  if (direct) return direct;
  const auth = headers['authorization'];
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim();
  return undefined;
}
