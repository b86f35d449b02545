/**
 * One error hierarchy for the whole daemon. Every error a client or operator can see carries a
 * stable `code` from the list below; metric labels use the code itself, so the label set is
 * bounded by it. Nothing here knows HTTP: the code → status table is `http/error-status.ts`.
 */

export const ERROR_CODES = [
  // request shape
  'BAD_REQUEST',
  'INVALID_PARAMETER',
  'MISSING_PARAMETER',
  'INVALID_JSON',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  // live audio out: the recording has ended (replay needs from=), or the audio asked for is gone
  'RECORDING_ENDED',
  'RESUME_UNAVAILABLE',
  // authentication / authorization
  'UNAUTHORIZED',
  'INVALID_API_KEY',
  'INVALID_TOKEN',
  'TOKEN_EXPIRED',
  'TOKEN_REPLAYED',
  'INVALID_SIGNATURE',
  'FORBIDDEN',
  'UNKNOWN_TENANT',
  // body / media
  'PAYLOAD_TOO_LARGE',
  'LENGTH_MISMATCH',
  'HASH_MISMATCH',
  'UNSUPPORTED_MEDIA_TYPE',
  'EMPTY_BODY',
  'UNKNOWN_FORMAT',
  'CORRUPT_AUDIO',
  'TRUNCATED_AUDIO',
  'DECODE_TIMEOUT',
  // policy
  'DURATION_TOO_SHORT',
  'DURATION_TOO_LONG',
  'POLICY_REJECTED',
  'RATE_LIMITED',
  'TOO_MANY_STREAMS',
  'TOO_MANY_CONNECTIONS',
  // an egress stream that toggles mute without end (more than MAX_MUTE_INTERVALS): ended with 1008
  'MUTE_LIMIT',
  // timeouts / client
  'REQUEST_TIMEOUT',
  'CLIENT_ABORTED',
  // availability
  'STORAGE_UNAVAILABLE',
  'BROKER_UNAVAILABLE',
  'DRAINING',
  'OVERLOADED',
  'SPOOL_FULL',
  // everything else
  'STORAGE_ERROR',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface AppErrorOptions {
  /** Seconds a client should wait before retrying (sent as `Retry-After`). */
  retryAfterSec?: number;
  /** Machine-readable details safe to show to the client. */
  details?: Record<string, unknown>;
  /**
   * Whether the same call may succeed later (a store or broker that is down, not one that
   * refused the request). Default false; callers that retry read this, never the code.
   */
  retryable?: boolean;
  cause?: unknown;
}

/** Base class: a message that is safe to show and a stable code. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSec: number | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryAfterSec = options.retryAfterSec;
    this.details = options.details;
    this.retryable = options.retryable ?? false;
  }

  /** The JSON body every error answer carries. Never includes a stack. */
  toBody(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    const error: { code: ErrorCode; message: string; details?: Record<string, unknown> } = {
      code: this.code,
      message: this.message,
    };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

/**
 * Configuration problems, gathered so that every bad value is reported at once. Raised at
 * start (the process exits 78), never in answer to a request, so it is not an AppError.
 */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Turns anything thrown into an AppError; unknown errors become INTERNAL with a generic message. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  return new AppError('INTERNAL', 'internal error', { cause: err });
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}

/** True for an AppError raised with `retryable` (a store that is down, not one that refused). */
export function isRetryable(err: unknown): boolean {
  return err instanceof AppError && err.retryable;
}
