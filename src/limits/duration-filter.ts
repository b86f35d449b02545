import { join } from 'node:path';
import { z } from 'zod';
import { AppError, ConfigError } from '../errors.js';
import { readJsonFile, writeJsonFileAtomic } from './atomic-json-file.js';

/** The duration window a voice note must fall in (inclusive at both ends). */
export interface DurationLimits {
  /** Shortest accepted audio, in seconds: 1 to 300. */
  minSec: number;
  /** Longest accepted audio, in seconds: above `minSec`, at most 7200. */
  maxSec: number;
  /** When false, every duration passes. */
  enabled: boolean;
}

/** The seed's defaults: 3 s to 2 hours, enabled. */
export const DEFAULT_DURATION_LIMITS: Readonly<DurationLimits> = Object.freeze({ minSec: 3, maxSec: 7200, enabled: true });

/** Options of {@link DurationFilter.open}. */
export interface DurationFilterOptions {
  /** Limits of instances without an override; unset fields keep the seed's defaults. */
  defaults?: Partial<DurationLimits>;
  /** Per-instance overrides from the config; unset fields come from `defaults`. */
  instances?: Record<string, Partial<DurationLimits>>;
  /**
   * Directory holding `duration-filters.json`, where overrides set at runtime are kept so they
   * survive restarts (and win over `instances`, having been set later). Unset: memory only.
   */
  stateDir?: string;
}

export type DurationCheck =
  | { ok: true }
  | {
      ok: false;
      code: 'DURATION_TOO_SHORT' | 'DURATION_TOO_LONG';
      message: string;
      minSec: number;
      maxSec: number;
    };

export const DURATION_STATE_FILE = 'duration-filters.json';

const ALLOWED = {
  minSec: 'a number of seconds from 1 to 300',
  maxSec: 'a number of seconds above minSec and at most 7200',
  enabled: 'true or false',
} as const;

const limitsSchema = z.strictObject({
  minSec: z.number().min(1).max(300),
  maxSec: z.number().gt(0).max(7200),
  enabled: z.boolean(),
});

const instanceNameSchema = z.string().min(1).max(256);

/**
 * Which durations each instance accepts. Reads are synchronous and cheap (they run per
 * request); changes are validated, written to the state file atomically and one at a time.
 */
export class DurationFilter {
  private readonly defaults: DurationLimits;
  private readonly configured: ReadonlyMap<string, DurationLimits>;
  private runtime: ReadonlyMap<string, DurationLimits>;
  private readonly stateFile: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    defaults: DurationLimits,
    configured: Map<string, DurationLimits>,
    runtime: Map<string, DurationLimits>,
    stateFile: string | undefined,
  ) {
    this.defaults = defaults;
    this.configured = configured;
    this.runtime = runtime;
    this.stateFile = stateFile;
  }

  /** Validates the options and loads the overrides persisted in `stateDir`. */
  static async open(options: DurationFilterOptions = {}): Promise<DurationFilter> {
    const defaults = parseDurationLimits({ ...DEFAULT_DURATION_LIMITS, ...defined(options.defaults) }, 'defaults');
    const configured = new Map<string, DurationLimits>();
    for (const [name, patch] of Object.entries(options.instances ?? {})) {
      parseInstanceName(name);
      configured.set(name, parseDurationLimits({ ...defaults, ...defined(patch) }, `instances.${name}`));
    }
    const stateFile = options.stateDir === undefined ? undefined : join(options.stateDir, DURATION_STATE_FILE);
    const runtime = stateFile === undefined ? new Map<string, DurationLimits>() : await loadState(stateFile);
    return new DurationFilter(defaults, configured, runtime, stateFile);
  }

  /**
   * The limits in force for `instance`. Runtime overrides belong to a tenant (`tenant/instance`),
   * so one tenant cannot change another's; configured instances apply to every tenant.
   */
  get(instance: string, tenant?: string): DurationLimits {
    return { ...this.lookup(instance, tenant) };
  }

  private lookup(instance: string, tenant: string | undefined): DurationLimits {
    // a tenant's own override, then one set for every tenant (no tenant given), then the config
    return this.runtime.get(scopedName(instance, tenant)) ?? (tenant === undefined ? undefined : this.runtime.get(instance)) ?? this.configured.get(instance) ?? this.defaults;
  }

  /** Whether `seconds` of audio is acceptable for `instance`; both bounds are inclusive. */
  check(instance: string, seconds: number, tenant?: string): DurationCheck {
    if (!Number.isFinite(seconds) || seconds < 0) {
      throw new AppError('INVALID_PARAMETER', `seconds must be a finite number of at least 0, got ${String(seconds)}`, {
        details: { field: 'seconds', value: seconds, allowed: 'a finite number >= 0' },
      });
    }
    const { minSec, maxSec, enabled } = this.lookup(instance, tenant);
    if (!enabled) return { ok: true };
    if (seconds < minSec) {
      return {
        ok: false,
        code: 'DURATION_TOO_SHORT',
        message: `audio lasts ${seconds} s, shorter than the ${minSec} s minimum of instance "${instance}"`,
        minSec,
        maxSec,
      };
    }
    if (seconds > maxSec) {
      return {
        ok: false,
        code: 'DURATION_TOO_LONG',
        message: `audio lasts ${seconds} s, longer than the ${maxSec} s maximum of instance "${instance}"`,
        minSec,
        maxSec,
      };
    }
    return { ok: true };
  }

  /**
   * Sets `instance`'s limits at runtime; unset fields keep their current values. Resolves
   * with the new limits once they are persisted; on a validation or write error nothing changes.
   */
  setInstanceFilter(instance: string, patch: Partial<DurationLimits>, tenant?: string): Promise<DurationLimits> {
    return this.serialized(async () => {
      parseInstanceName(instance);
      const next = parseDurationLimits({ ...this.get(instance, tenant), ...defined(patch) }, `instances.${instance}`, instance);
      const runtime = new Map(this.runtime).set(scopedName(instance, tenant), next);
      await this.persist(runtime);
      this.runtime = runtime;
      return { ...next };
    });
  }

  /** Drops `instance`'s runtime override, so the configured limits (or defaults) apply again. */
  removeInstanceFilter(instance: string, tenant?: string): Promise<DurationLimits> {
    return this.serialized(async () => {
      const runtime = new Map(this.runtime);
      if (runtime.delete(scopedName(instance, tenant))) {
        await this.persist(runtime);
        this.runtime = runtime;
      }
      return this.get(instance, tenant);
    });
  }

  /** Every instance with its own limits (configured or set at runtime). */
  list(): Record<string, DurationLimits> {
    const out: Record<string, DurationLimits> = {};
    for (const name of new Set([...this.configured.keys(), ...this.runtime.keys()])) out[name] = this.get(name);
    return out;
  }

  private async persist(runtime: ReadonlyMap<string, DurationLimits>): Promise<void> {
    if (this.stateFile === undefined) return;
    await writeJsonFileAtomic(this.stateFile, { version: 1, instances: Object.fromEntries(runtime) });
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined); // the next task runs after a failed one; the failure reaches this task's caller through `run`
    return run;
  }
}

/** Turns a rejected check into the error answered to the client (422 with the reason). */
export function durationRejectionError(rejection: Extract<DurationCheck, { ok: false }>, seconds?: number): AppError {
  const details: Record<string, unknown> = { minSec: rejection.minSec, maxSec: rejection.maxSec };
  if (seconds !== undefined) details.seconds = seconds;
  return new AppError(rejection.code, rejection.message, { details });
}

/**
 * Validates complete limits; throws INVALID_PARAMETER whose details name the field (prefixed
 * with `where`), the value given and what is allowed.
 */
export function parseDurationLimits(input: unknown, where: string, instance?: string): DurationLimits {
  const parsed = limitsSchema.safeParse(input);
  let field: string;
  let allowed: string;
  if (parsed.success) {
    if (parsed.data.minSec < parsed.data.maxSec) return parsed.data;
    field = 'maxSec';
    allowed = `a number of seconds above minSec (${parsed.data.minSec}) and at most 7200`;
  } else {
    const issue = parsed.error.issues[0];
    if (issue?.code === 'unrecognized_keys') {
      field = String(issue.keys[0]);
      allowed = 'no such field; allowed fields are minSec, maxSec, enabled';
    } else {
      field = String(issue?.path[0] ?? 'minSec');
      allowed = ALLOWED[field as keyof typeof ALLOWED] ?? 'minSec, maxSec or enabled';
    }
  }
  const value = typeof input === 'object' && input !== null ? (input as Record<string, unknown>)[field] : input;
  const details: Record<string, unknown> = { field: `${where}.${field}`, value, allowed };
  if (instance !== undefined) details.instance = instance;
  throw new AppError('INVALID_PARAMETER', `${where}.${field} must be ${allowed}, got ${JSON.stringify(value) ?? 'nothing'}`, {
    details,
  });
}

function parseInstanceName(name: unknown): string {
  if (instanceNameSchema.safeParse(name).success) return name as string;
  throw new AppError('INVALID_PARAMETER', `instance must be a name of 1 to 256 characters, got ${JSON.stringify(name)}`, {
    details: { field: 'instance', value: name, allowed: 'a string of 1 to 256 characters' },
  });
}

async function loadState(file: string): Promise<Map<string, DurationLimits>> {
  const runtime = new Map<string, DurationLimits>();
  let state: unknown;
  try {
    state = await readJsonFile(file);
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON (${(err as Error).message})`]);
  }
  if (state === undefined) return runtime;
  const instances = (state as { instances?: unknown } | null)?.instances;
  if (typeof instances !== 'object' || instances === null || Array.isArray(instances)) {
    throw new ConfigError([`${file}: expected {"version":1,"instances":{...}}`]);
  }
  for (const [name, limits] of Object.entries(instances)) {
    try {
      runtime.set(parseInstanceName(name), parseDurationLimits(limits, `instances.${name}`, name));
    } catch (err) {
      throw new ConfigError([`${file}: ${(err as Error).message}`]);
    }
  }
  return runtime;
}

/** Drops undefined fields so that `{ minSec: undefined }` does not erase a default. */
function defined<T extends object>(o: T | undefined): Partial<T> {
  if (o === undefined) return {};
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Runtime overrides are stored per tenant; tenant ids hold no `/`, so the first one separates. */
function scopedName(instance: string, tenant: string | undefined): string {
  return tenant === undefined ? instance : `${tenant}/${instance}`;
}
