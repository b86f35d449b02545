import { AppError } from '../errors.js';

/**
 * The query of a WebSocket upgrade, checked against the keys its route knows: an unknown key is
 * INVALID_PARAMETER (naming the allowed ones); the reader gives a key's value, with an empty
 * value read as absent.
 */
export function strictQuery(query: URLSearchParams, allowed: ReadonlySet<string>): (key: string) => string | undefined {
  const seen = new Set<string>();
  for (const k of query.keys()) {
    if (!allowed.has(k)) throw new AppError('INVALID_PARAMETER', `unknown query parameter '${k.slice(0, 64)}'`, { details: { allowed: [...allowed] } });
    // which of two values a parameter given twice means is a guess (the first here, the last elsewhere): refused
    if (seen.has(k)) throw new AppError('INVALID_PARAMETER', `query parameter '${k}' given more than once`);
    seen.add(k);
  }
  return (k) => {
    const v = query.get(k);
    return v === null || v === '' ? undefined : v;
  };
}

/**
 * Refuses a handshake whose Connection header lacks the `upgrade` token (RFC 6455 4.2.1). uWS
 * 20.30 marks a request "connection close" by the length of that header (five characters) and,
 * in an upgrade made after the upgrade handler returned, then closes the socket inside
 * `res.upgrade`, before it becomes a WebSocket, yet still calls the open handler on it (whose
 * close handler never runs): such a request must not reach the upgrade.
 */
export function checkUpgradeHandshake(headers: Readonly<Record<string, string>>): void {
  const tokens = (headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim());
  if (!tokens.includes('upgrade')) throw new AppError('BAD_REQUEST', 'a WebSocket handshake needs Connection: Upgrade');
}
