import { AppError } from '../errors.js';

/**
 * The query of a WebSocket upgrade, checked against the keys its route knows: an unknown key is
 * INVALID_PARAMETER (naming the allowed ones); the reader gives a key's value, with an empty
 * value read as absent.
 */
export function strictQuery(query: URLSearchParams, allowed: ReadonlySet<string>): (key: string) => string | undefined {
  for (const k of query.keys()) {
    if (!allowed.has(k)) throw new AppError('INVALID_PARAMETER', `unknown query parameter '${k.slice(0, 64)}'`, { details: { allowed: [...allowed] } });
  }
  return (k) => {
    const v = query.get(k);
    return v === null || v === '' ? undefined : v;
  };
}
