import { randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { AppError } from '../errors.js';

/**
 * Egress tokens: short-lived HS256 JWTs carried in the WebSocket URL (egress cannot send
 * headers). They hold everything a stream needs, so any host can take any stream without a
 * shared session store. Each `jti` is accepted once.
 */
export interface EgressClaims {
  tenant: string;
  roomName: string;
  trackId?: string | undefined;
  participant?: string | undefined;
  meetingId?: string | undefined;
  groupSeconds?: number | undefined;
  /** Channel of the room's dual.wav (README, Rooms). */
  channel?: 'left' | 'right' | undefined;
}

export interface VerifiedEgressToken extends EgressClaims {
  jti: string;
  exp: number;
}

const ISSUER = 'audio-ingestd';
const AUDIENCE = 'egress-audio';

export async function mintEgressToken(secret: string, claims: EgressClaims, ttlSec: number, now = Date.now()): Promise<{ token: string; jti: string; expiresAt: Date }> {
  const jti = randomUUID();
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSec;
  const payload: Record<string, unknown> = { tenant: claims.tenant, roomName: claims.roomName };
  for (const k of ['trackId', 'participant', 'meetingId', 'groupSeconds', 'channel'] as const) {
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

/** Checks signature, algorithm, issuer, audience, expiry and required claims. Does not consume the jti. */
export async function verifyEgressToken(secret: string, token: string, now = Date.now()): Promise<VerifiedEgressToken> {
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
    if (err instanceof joseErrors.JWTExpired) throw new AppError('TOKEN_EXPIRED', 'the egress token has expired');
    throw new AppError('INVALID_TOKEN', 'the egress token is not valid');
  }
  const str = (k: string): string | undefined => (typeof payload[k] === 'string' && payload[k] !== '' ? (payload[k] as string) : undefined);
  const tenant = str('tenant');
  const roomName = str('roomName');
  if (!tenant || !roomName) throw new AppError('INVALID_TOKEN', 'the egress token lacks tenant or roomName');
  const groupSeconds = typeof payload.groupSeconds === 'number' ? payload.groupSeconds : undefined;
  return {
    tenant,
    roomName,
    trackId: str('trackId'),
    participant: str('participant'),
    channel: payload.channel === 'left' || payload.channel === 'right' ? payload.channel : undefined,
    meetingId: str('meetingId'),
    groupSeconds,
    jti: payload.jti as string,
    exp: payload.exp as number,
  };
}

/** Where used token ids are remembered until they expire; a Redis one lets hosts share it. */
export interface ReplayGuard {
  /** True the first time `jti` is seen; false on every replay. */
  claim(jti: string, expiresAtSec: number): Promise<boolean>;
}

/** Per-host replay guard: a map of jti → expiry, pruned as it grows. */
export class MemoryReplayGuard implements ReplayGuard {
  private readonly seen = new Map<string, number>();
  private lastPrune = 0;

  claim(jti: string, expiresAtSec: number): Promise<boolean> {
    const nowSec = Date.now() / 1000;
    if (nowSec - this.lastPrune > 60) {
      this.lastPrune = nowSec;
      for (const [k, exp] of this.seen) if (exp < nowSec) this.seen.delete(k);
    }
    if (this.seen.has(jti)) return Promise.resolve(false);
    this.seen.set(jti, expiresAtSec);
    return Promise.resolve(true);
  }
}

/** Minimal part of an ioredis client the shared guard needs. */
export interface RedisLike {
  set(key: string, value: string, ex: 'EX', seconds: number, nx: 'NX'): Promise<'OK' | null>;
}

/**
 * Shared replay guard: SET NX with the token's remaining lifetime, so a jti is used once across
 * hosts. While Redis cannot answer it falls back to this host's memory (as the token buckets do):
 * a replay on another host is then possible, refusing every egress would be worse.
 */
export class RedisReplayGuard implements ReplayGuard {
  private readonly fallback = new MemoryReplayGuard();

  constructor(
    private readonly redis: RedisLike,
    private readonly onError: (err: unknown) => void = () => undefined,
    private readonly prefix = 'audio-ingestd:jti:',
  ) {}

  async claim(jti: string, expiresAtSec: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(expiresAtSec - Date.now() / 1000));
    try {
      const first = (await this.redis.set(this.prefix + jti, '1', 'EX', ttl, 'NX')) === 'OK';
      // Remember locally too, so a fallback later still knows this jti.
      if (first) await this.fallback.claim(jti, expiresAtSec);
      return first;
    } catch (err) {
      this.onError(err);
      return this.fallback.claim(jti, expiresAtSec);
    }
  }
}
