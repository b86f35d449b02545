import { GetBucketLifecycleConfigurationCommand, type LifecycleRule, PutBucketLifecycleConfigurationCommand, S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { ObjectStore } from './object-store.js';
import { sweepRetention } from './retention.js';

/**
 * Retention, both ways CONTRACT §4 allows: a bucket lifecycle rule where the store supports
 * one ({@link applyRetentionLifecycle}, run once by an operator), and otherwise a periodic
 * sweep by the daemon ({@link RetentionSweeper}).
 */

/** Options of {@link RetentionSweeper}. */
export interface RetentionSweeperOptions {
  store: ObjectStore;
  /** Only keys under this prefix are swept ('' = the whole store). */
  prefix: string;
  /** Objects last modified more than this many days ago are deleted; must be > 0. */
  retentionDays: number;
  /** Time between sweeps (default one hour). */
  intervalMs?: number;
  /** Delay of the first sweep after start (default one minute, so start-up work goes first). */
  firstRunDelayMs?: number;
  logger: Logger;
  now?: () => Date;
}

/**
 * Runs {@link sweepRetention} shortly after start, then periodically, on unref'd timers (it
 * never keeps the process alive). Every host may run it: a sweep is idempotent — deleting an
 * object that another host already deleted succeeds — so no coordination is needed; one host
 * running it is enough.
 */
export class RetentionSweeper {
  private readonly opts: RetentionSweeperOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private stopped = false;

  constructor(options: RetentionSweeperOptions) {
    if (!(options.retentionDays > 0)) throw new RangeError(`retentionDays must be > 0, got ${options.retentionDays}`);
    this.opts = options;
  }

  start(): void {
    this.stopped = false;
    this.schedule(this.opts.firstRunDelayMs ?? 60_000);
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined); // a sweep's failure was logged when it happened; stop only waits for it
  }

  /** One sweep now (joins the one in progress, if any); resolves with how many objects were deleted. */
  sweepNow(): Promise<number> {
    this.running ??= sweepRetention(this.opts.store, this.opts.prefix, this.opts.retentionDays, (this.opts.now ?? (() => new Date()))(), this.opts.logger).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.sweepNow().then(
        (deleted) => this.opts.logger.debug({ deleted, prefix: this.opts.prefix }, 'retention sweep done'),
        (err: unknown) => this.opts.logger.error({ err, prefix: this.opts.prefix }, 'retention sweep failed; retrying at the next interval'),
      ).finally(() => this.schedule(this.opts.intervalMs ?? 3_600_000));
    }, delayMs);
    this.timer.unref();
  }
}

/** Where {@link applyRetentionLifecycle} installs its rule. */
export interface LifecycleTarget {
  endpoint?: string | undefined;
  region: string;
  bucket: string;
  forcePathStyle: boolean;
  /** Static credentials; unset uses the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
}

/** The id of the one rule this daemon owns on a bucket. */
export const LIFECYCLE_RULE_ID = 'audio-ingestd-retention';

export type LifecycleOutcome =
  | { applied: true; rule: LifecycleRule; keptRules: number }
  | { applied: false; reason: string };

/**
 * Installs (or replaces) the bucket lifecycle rule {@link LIFECYCLE_RULE_ID} expiring objects
 * under `prefix` after `retentionDays`, keeping the bucket's other rules. A store that does not
 * implement lifecycle configuration (NotImplemented, MethodNotAllowed, 501 — s3rver, some
 * S3-compatible services) gives `{applied: false}`: the daemon's periodic sweep does the job
 * there. Other errors are thrown.
 */
export async function applyRetentionLifecycle(target: LifecycleTarget, prefix: string, retentionDays: number): Promise<LifecycleOutcome> {
  if (!(Number.isInteger(retentionDays) && retentionDays > 0)) throw new RangeError(`retentionDays must be a positive integer, got ${retentionDays}`);
  const client = new S3Client({
    region: target.region,
    forcePathStyle: target.forcePathStyle,
    maxAttempts: 2,
    ...(target.endpoint === undefined ? {} : { endpoint: target.endpoint }),
    ...(target.credentials === undefined ? {} : { credentials: target.credentials }),
  });
  try {
    let existing: LifecycleRule[] = [];
    try {
      existing = (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: target.bucket }))).Rules ?? [];
    } catch (err) {
      if (unsupported(err)) return { applied: false, reason: describe(err) };
      if (errorName(err) !== 'NoSuchLifecycleConfiguration') throw err;
    }
    const rule: LifecycleRule = { ID: LIFECYCLE_RULE_ID, Status: 'Enabled', Filter: { Prefix: prefix }, Expiration: { Days: retentionDays } };
    const kept = existing.filter((r) => r.ID !== LIFECYCLE_RULE_ID);
    try {
      await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: target.bucket, LifecycleConfiguration: { Rules: [...kept, rule] } }));
    } catch (err) {
      if (unsupported(err)) return { applied: false, reason: describe(err) };
      throw err;
    }
    return { applied: true, rule, keptRules: kept.length };
  } finally {
    client.destroy();
  }
}

function errorName(err: unknown): string {
  const e = (err ?? {}) as { name?: string; Code?: string };
  return e.name ?? e.Code ?? 'Error';
}

function unsupported(err: unknown): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  const name = errorName(err);
  return name === 'NotImplemented' || name === 'MethodNotAllowed' || status === 501 || status === 405;
}

function describe(err: unknown): string {
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  return `${errorName(err)}${status === undefined ? '' : ` (HTTP ${status})`}`;
}
