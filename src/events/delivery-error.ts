/** The longest wait a destination's Retry-After can impose on the delivery loop. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

export interface DeliveryErrorOptions {
  /** No retry can succeed (e.g. HTTP 4xx other than 408/429): the batch is given up at once. Default false. */
  permanent?: boolean;
  /** The destination asked not to be retried sooner than this (Retry-After), in ms. */
  retryAfterMs?: number;
  /** The destination's status code when it answered (HTTP), else null. */
  status?: number | null;
  cause?: unknown;
}

/**
 * How a sink's delivery failed, in the one shape the delivery loop reads: whether retrying
 * can help and how long the destination asked to wait. Sinks throw it; the loop alone decides
 * what follows (backoff, attempts, give-up).
 */
export class DeliveryError extends Error {
  readonly permanent: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | null;

  constructor(message: string, options: DeliveryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DeliveryError';
    this.permanent = options.permanent ?? false;
    const after = options.retryAfterMs;
    this.retryAfterMs = after !== undefined && Number.isFinite(after) && after >= 0 ? after : undefined;
    this.status = options.status ?? null;
  }

  /** `err` as a DeliveryError: itself when it is one, else a retryable one carrying it as the cause. */
  static from(err: unknown): DeliveryError {
    if (err instanceof DeliveryError) return err;
    return new DeliveryError(err instanceof Error ? err.message : String(err), { cause: err });
  }
}
