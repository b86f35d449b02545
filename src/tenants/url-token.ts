import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { AppError } from '../errors.js';

/**
 * Tokens carried in a URL, for clients that cannot send headers (LiveKit egress, browsers):
 * short-lived HS256 JWTs from the daemon's token secret, each with one audience, so a token of
 * one kind is never accepted as another. Each holds a `jti` for single use (see the replay guards).
 */
const ISSUER = 'audio-ingestd';

export interface MintedToken {
  token: string;
  jti: string;
  expiresAt: Date;
}

/** Signs `claims` (undefined members left out) for `audience`, valid `ttlSec` from `now`. */
export async function mintUrlToken(secret: string, audience: string, claims: Record<string, unknown>, ttlSec: number, now = Date.now()): Promise<MintedToken> {
  const jti = randomUUID();
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSec;
  const payload = Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setAudience(audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(new TextEncoder().encode(secret));
  return { token, jti, expiresAt: new Date(exp * 1000) };
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

/**
 * Checks signature, algorithm, issuer, `audience`, expiry and the presence of `exp` and `jti`.
 * Does not consume the jti. `what` names the token in errors ("the egress token has expired").
 */
export async function verifyUrlToken(secret: string, audience: string, token: string, what: string, now = Date.now()): Promise<UrlTokenClaims> {
  let payload: Record<string, unknown>;
  try {
    const result = await jwtVerify(token, new TextEncoder().encode(secret), {
      algorithms: ['HS256'],
      issuer: ISSUER,
      audience,
      currentDate: new Date(now),
      requiredClaims: ['exp', 'jti'],
    });
    payload = result.payload as Record<string, unknown>;
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new AppError('TOKEN_EXPIRED', `${what} has expired`);
    throw new AppError('INVALID_TOKEN', `${what} is not valid`);
  }
  return {
    jti: payload.jti as string,
    exp: payload.exp as number,
    str: (k) => (typeof payload[k] === 'string' && payload[k] !== '' ? payload[k] : undefined),
    num: (k) => (typeof payload[k] === 'number' ? payload[k] : undefined),
  };
}
