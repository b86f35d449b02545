import type { ErrorCode } from '../errors.js';

/** The HTTP status each error code is answered with; the only place that maps one to the other. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  // request shape
  BAD_REQUEST: 400,
  INVALID_PARAMETER: 400,
  MISSING_PARAMETER: 400,
  INVALID_JSON: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  RECORDING_ENDED: 410,
  RESUME_UNAVAILABLE: 410,
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
  MUTE_LIMIT: 400,
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
};

/** The status an error code is answered with. */
export function httpStatus(code: ErrorCode): number {
  return HTTP_STATUS[code];
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
  307: 'Temporary Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  410: 'Gone',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
