import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { AppError } from '../errors.js';

/**
 * Live tokens: short-lived single-use HS256 JWTs for `GET /v1/live?token=`, for consumers that
 * cannot send headers (browsers). Same secret and style as egress tokens, another audience, so
 * neither kind is accepted in place of the other. The token carries the selection and the rate.
 */
export interface LiveClaims {
  tenant: string;
  recordingId?: string | undefined;
  roomName?: string | undefined;
  participant?: string | undefined;
  rate?: number | undefined;
}

export interface VerifiedLiveToken extends LiveClaims {
  jti: string;
  exp: number;
}

const ISSUER = 'audio-ingestd';
const AUDIENCE = 'live-audio';

export async function mintLiveToken(secret: string, claims: LiveClaims, ttlSec: number, now = Date.now()): Promise<{ token: string; jti: string; expiresAt: Date }> {
  const jti = randomUUID();
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSec;
  const payload: Record<string, unknown> = { tenant: claims.tenant };
  for (const k of ['recordingId', 'roomName', 'participant', 'rate'] as const) {
    if (claims[k] !== undefined) payload[k] = claims[k];
  }
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(new TextEncoder().encode(secret));
  return { token, jti, expiresAt: new Date(exp * 1000) };
}

/** Checks signature, algorithm, issuer, audience, expiry and claims. Does not consume the jti. */
export async function verifyLiveToken(secret: string, token: string, now = Date.now()): Promise<VerifiedLiveToken> {
  let payload: Record<string, unknown>;
  try {
    const result = await jwtVerify(token, new TextEncoder().encode(secret), {
      algorithms: ['HS256'],
      issuer: ISSUER,
      audience: AUDIENCE,
      currentDate: new Date(now),
      requiredClaims: ['exp', 'jti'],
    });
    payload = result.payload as Record<string, unknown>;
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new AppError('TOKEN_EXPIRED', 'the live token has expired');
    throw new AppError('INVALID_TOKEN', 'the live token is not valid');
  }
  const str = (k: string): string | undefined => (typeof payload[k] === 'string' && payload[k] !== '' ? (payload[k] as string) : undefined);
  const tenant = str('tenant');
  const recordingId = str('recordingId');
  const roomName = str('roomName');
  if (!tenant || (recordingId === undefined) === (roomName === undefined)) throw new AppError('INVALID_TOKEN', 'the live token lacks its tenant or selection');
  return {
    tenant,
    recordingId,
    roomName,
    participant: str('participant'),
    rate: typeof payload.rate === 'number' ? payload.rate : undefined,
    jti: payload.jti as string,
    exp: payload.exp as number,
  };
}
