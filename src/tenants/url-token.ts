import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';

/**
 * Tokens carried in a URL, for clients that cannot send headers (LiveKit egress, browsers):
 * short-lived HS256 JWTs (RFC 7519, compact JWS) from the daemon's token secret, each with one
 * audience, so a token of one kind is never accepted as another. Each holds a `jti` for single
 * use (see the replay guards).
 *
 * Signed and checked with node:crypto's HMAC on the calling thread: one token is ~2 µs of
 * CPU, where the WebCrypto path (a key import per call and a job on the thread pool) cost
 * ~0.4 ms per token, a third of a stream's setup. Only HS256 is taken; the signature is
 * compared in constant time on its canonical base64url text.
 */
const ISSUER = 'audio-ingestd';

/** The one protected header this daemon signs with. */
const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

const BASE64URL = /^[A-Za-z0-9_-]*$/;

export interface MintedToken {
  token: string;
  jti: string;
  expiresAt: Date;
}

function signature(secret: string, signingInput: string): string {
  return createHmac('sha256', secret).update(signingInput).digest('base64url');
}

/** Signs `claims` (undefined members left out) for `audience`, valid `ttlSec` from `now`. */
export async function mintUrlToken(secret: string, audience: string, claims: Record<string, unknown>, ttlSec: number, now = Date.now()): Promise<MintedToken> {
  const jti = randomUUID();
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSec;
  const payload: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims)) if (v !== undefined) payload[k] = v;
  Object.assign(payload, { iss: ISSUER, aud: audience, iat, exp, jti });
  const input = `${HEADER}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return Promise.resolve({ token: `${input}.${signature(secret, input)}`, jti, expiresAt: new Date(exp * 1000) });
}

/** The claims of a verified token: its own, and the `jti` and `exp` every token has. */
export interface UrlTokenClaims {
  jti: string;
  exp: number;
  /** A non-empty string claim, or undefined. */
  str(name: string): string | undefined;
  /** A number claim, or undefined. */
  num(name: string): number | undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function decodeJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Checks signature, algorithm, issuer, `audience`, expiry and the presence of `exp` and `jti`
 * (and `nbf` when present). Does not consume the jti. `what` names the token in errors ("the
 * egress token has expired").
 */
export async function verifyUrlToken(secret: string, audience: string, token: string, what: string, now = Date.now()): Promise<UrlTokenClaims> {
  const invalid = (): never => {
    throw new AppError('INVALID_TOKEN', `${what} is not valid`);
  };
  const parts = token.split('.');
  if (parts.length !== 3) invalid();
  const [h, p, s] = parts as [string, string, string];
  if (!BASE64URL.test(h) || !BASE64URL.test(p) || !BASE64URL.test(s)) invalid();
  const header = decodeJson(h);
  // HS256 only (no `none`, no other key type); a critical extension this code does not know is a refusal (RFC 7515 §4.1.11)
  if (!isRecord(header) || header['alg'] !== 'HS256' || 'crit' in header || 'b64' in header) invalid();
  const expected = Buffer.from(signature(secret, `${h}.${p}`));
  const given = Buffer.from(s);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) invalid();
  const payload = decodeJson(p);
  if (!isRecord(payload)) return invalid();
  const aud = payload['aud'];
  const audOk = aud === audience || (Array.isArray(aud) && aud.includes(audience));
  const exp = payload['exp'];
  const jti = payload['jti'];
  const nbf = payload['nbf'];
  const iat = payload['iat'];
  if (payload['iss'] !== ISSUER || !audOk || typeof exp !== 'number' || typeof jti !== 'string' || jti === '') invalid();
  if ((nbf !== undefined && typeof nbf !== 'number') || (iat !== undefined && typeof iat !== 'number')) invalid();
  const nowSec = Math.floor(now / 1000);
  if (typeof nbf === 'number' && nbf > nowSec) invalid();
  if ((exp as number) <= nowSec) throw new AppError('TOKEN_EXPIRED', `${what} has expired`);
  return Promise.resolve({
    jti: jti as string,
    exp: exp as number,
    str: (k) => (typeof payload[k] === 'string' && payload[k] !== '' ? payload[k] : undefined),
    num: (k) => (typeof payload[k] === 'number' ? payload[k] : undefined),
  });
}
