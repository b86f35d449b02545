import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * The claim on one room's work: whoever holds a room's lease is the only host that decides
 * its session is over and mixes it. A lease expires unless renewed, so a host that dies holding
 * one gives the room up after `ttlMs` and another host takes it over.
 */
export interface RoomLease {
  /** A token when the lease was free (or expired) and is now ours; null when another holder has it. */
  acquire(name: string, ttlMs: number): Promise<string | null>;
  /** Extends our lease; false when it is no longer ours (expired and taken, or lost). */
  renew(name: string, token: string, ttlMs: number): Promise<boolean>;
  release(name: string, token: string): Promise<void>;
  stop(): Promise<void>;
}

/** One host: leases in this process's memory (several hosts need {@link RedisRoomLease}). */
export class LocalRoomLease implements RoomLease {
  private readonly held = new Map<string, { token: string; until: number }>();

  acquire(name: string, ttlMs: number): Promise<string | null> {
    const cur = this.held.get(name);
    if (cur && cur.until > Date.now()) return Promise.resolve(null);
    const token = randomUUID();
    this.held.set(name, { token, until: Date.now() + ttlMs });
    return Promise.resolve(token);
  }

  renew(name: string, token: string, ttlMs: number): Promise<boolean> {
    const cur = this.held.get(name);
    if (!cur || cur.token !== token) return Promise.resolve(false);
    cur.until = Date.now() + ttlMs;
    return Promise.resolve(true);
  }

  release(name: string, token: string): Promise<void> {
    if (this.held.get(name)?.token === token) this.held.delete(name);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.held.clear();
    return Promise.resolve();
  }
}

const RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/**
 * Leases shared by every host through Redis: `SET key token NX PX ttl` to take, compare-and-
 * pexpire to renew, compare-and-delete to release (Lua, atomic). While Redis cannot answer, no
 * lease is granted (the room waits), so two hosts never mix one session.
 */
export class RedisRoomLease implements RoomLease {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = 'audio-ingestd:room-lease:',
  ) {}

  async acquire(name: string, ttlMs: number): Promise<string | null> {
    const token = randomUUID();
    const ok = await this.redis.set(this.prefix + name, token, 'PX', Math.max(1, Math.round(ttlMs)), 'NX');
    return ok === 'OK' ? token : null;
  }

  async renew(name: string, token: string, ttlMs: number): Promise<boolean> {
    return Number(await this.redis.eval(RENEW, 1, this.prefix + name, token, String(Math.max(1, Math.round(ttlMs))))) === 1;
  }

  async release(name: string, token: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.prefix + name, token);
  }

  async stop(): Promise<void> {
    this.redis.disconnect();
    return Promise.resolve();
  }
}
