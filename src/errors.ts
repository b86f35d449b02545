/**
 * One error hierarchy for the whole daemon. Every error a client or operator can see carries a
 * stable `code`; the table below maps each code to its HTTP status and is the only place that
 * does so. Metric labels use the code itself, so the label set is bounded by this table.
 */

export const ERROR_CODES = {
  // configuration (process start)
  CONFIG_INVALID: 500,
  // request shape
  BAD_REQUEST: 400,
  INVALID_PARAMETER: 400,
  MISSING_PARAMETER: 400,
  INVALID_JSON: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  // authentication / authorization
  UNAUTHORIZED: 401,
  INVALID_API_KEY: 401,
  INVALID_TOKEN: 401,
  TOKEN_EXPIRED: 401,
  TOKEN_REPLAYED: 401,
  INVALID_SIGNATURE: 401,
  FORBIDDEN: 403,
  UNKNOWN_TENANT: 403,
  // body / media
  PAYLOAD_TOO_LARGE: 413,
  LENGTH_MISMATCH: 400,
  HASH_MISMATCH: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  EMPTY_BODY: 415,
  UNKNOWN_FORMAT: 415,
  CORRUPT_AUDIO: 415,
  TRUNCATED_AUDIO: 415,
  DECODE_TIMEOUT: 415,
  // policy
  DURATION_TOO_SHORT: 422,
  DURATION_TOO_LONG: 422,
  POLICY_REJECTED: 422,
  RATE_LIMITED: 429,
  TOO_MANY_STREAMS: 429,
  TOO_MANY_CONNECTIONS: 429,
  // timeouts / client
  REQUEST_TIMEOUT: 408,
  CLIENT_ABORTED: 499,
  // availability
  STORAGE_UNAVAILABLE: 503,
  BROKER_UNAVAILABLE: 503,
  DRAINING: 503,
  OVERLOADED: 503,
  SPOOL_FULL: 503,
  // everything else
  STORAGE_ERROR: 500,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface AppErrorOptions {
  /** Seconds a client should wait before retrying (sent as `Retry-After`). */
  retryAfterSec?: number;
  /** Machine-readable details safe to show to the client. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** Base class: a message that is safe to show, a stable code, an HTTP status derived from the code. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfterSec: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CODES[code];
    this.retryAfterSec = options.retryAfterSec;
    this.details = options.details;
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

/** Configuration problems, gathered so that every bad value is reported at once. */
export class ConfigError extends AppError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
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

/** Status text for the few statuses we answer with (uWS wants the full status line). */
export function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Error'}`;
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
