import { AppError } from '../errors.js';
import { type MintedToken, mintUrlToken, verifyUrlToken } from '../tenants/url-token.js';

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

const AUDIENCE = 'live-audio';

export async function mintLiveToken(secret: string, claims: LiveClaims, ttlSec: number, now = Date.now()): Promise<MintedToken> {
  const { tenant, recordingId, roomName, participant, rate } = claims;
  return mintUrlToken(secret, AUDIENCE, { tenant, recordingId, roomName, participant, rate }, ttlSec, now);
}

/** Checks signature, algorithm, issuer, audience, expiry and claims. Does not consume the jti. */
export async function verifyLiveToken(secret: string, token: string, now = Date.now()): Promise<VerifiedLiveToken> {
  const c = await verifyUrlToken(secret, AUDIENCE, token, 'the live token', now);
  const tenant = c.str('tenant');
  const recordingId = c.str('recordingId');
  const roomName = c.str('roomName');
  if (!tenant || (recordingId === undefined) === (roomName === undefined)) throw new AppError('INVALID_TOKEN', 'the live token lacks its tenant or selection');
  return { tenant, recordingId, roomName, participant: c.str('participant'), rate: c.num('rate'), jti: c.jti, exp: c.exp };
}
