import { AppError } from '../errors.js';
import { type MintedToken, mintUrlToken, verifyUrlToken } from '../tenants/url-token.js';

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

const AUDIENCE = 'egress-audio';

export async function mintEgressToken(secret: string, claims: EgressClaims, ttlSec: number, now = Date.now()): Promise<MintedToken> {
  const { tenant, roomName, trackId, participant, meetingId, groupSeconds, channel } = claims;
  return mintUrlToken(secret, AUDIENCE, { tenant, roomName, trackId, participant, meetingId, groupSeconds, channel }, ttlSec, now);
}

/** Checks signature, algorithm, issuer, audience, expiry and required claims. Does not consume the jti. */
export async function verifyEgressToken(secret: string, token: string, now = Date.now()): Promise<VerifiedEgressToken> {
  const c = await verifyUrlToken(secret, AUDIENCE, token, 'the egress token', now);
  const tenant = c.str('tenant');
  const roomName = c.str('roomName');
  if (!tenant || !roomName) throw new AppError('INVALID_TOKEN', 'the egress token lacks tenant or roomName');
  const channel = c.str('channel');
  return {
    tenant,
    roomName,
    trackId: c.str('trackId'),
    participant: c.str('participant'),
    channel: channel === 'left' || channel === 'right' ? channel : undefined,
    meetingId: c.str('meetingId'),
    groupSeconds: c.num('groupSeconds'),
    jti: c.jti,
    exp: c.exp,
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
