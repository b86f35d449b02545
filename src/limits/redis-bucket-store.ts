import { Redis } from 'ioredis';
import type { BucketRef, TakeResult, TokenBucketStore } from './token-bucket-store.js';

/** Options of {@link RedisBucketStore}; give either `client` or `url`. */
export interface RedisBucketStoreOptions {
  /** A client owned by the caller (not closed by `stop()`). */
  client?: Redis;
  /** A Redis URL; the store then creates, owns and closes its own client. */
  url?: string;
  /**
   * Prefix of every bucket key, so deployments and tests do not collide. A Redis Cluster
   * needs a hash tag in it (e.g. `audio-ingestd:{rl}:`) because one take touches several keys.
   * Default `audio-ingestd:rl:`.
   */
  keyPrefix?: string;
  /** A take that gets no answer within this many ms fails (and callers may fall back). Default 500. */
  commandTimeoutMs?: number;
}

/**
 * One take, atomically, on the Redis server's clock (so hosts with skewed clocks agree).
 * KEYS: the buckets. ARGV[1]: n; then per bucket its capacity and refill per minute.
 * Returns per bucket: ok (1/0), whole tokens remaining, ms to wait.
 * Mirrors bucket-math.ts; a key expires once its bucket would be full again.
 */
const TAKE_SCRIPT = `
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tokens = {}
local stamps = {}
local allOk = true
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1]) / 60000
  local st = redis.call('HMGET', KEYS[i], 't', 'u')
  local tok = tonumber(st[1])
  local upd = tonumber(st[2])
  stamps[i] = now
  if tok == nil or upd == nil then
    tok = cap
  else
    -- a server clock that went back (e.g. after a failover) must not credit time twice
    if upd > now then stamps[i] = upd end
    local elapsed = now - upd
    if elapsed < 0 then elapsed = 0 end
    tok = math.min(cap, tok + elapsed * rate)
  end
  tokens[i] = tok
  if tok < n then allOk = false end
end
local out = {}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1]) / 60000
  local tok = tokens[i]
  local ok = 0
  local wait = 0
  if allOk then
    tok = tok - n
    ok = 1
    redis.call('HSET', KEYS[i], 't', string.format('%.17g', tok), 'u', string.format('%.17g', stamps[i]))
    redis.call('PEXPIRE', KEYS[i], math.max(1000, math.ceil((cap - tok) / rate + stamps[i] - now) + 1000))
  elseif tok >= n then
    ok = 1
  else
    wait = math.ceil((n - tok) / rate)
  end
  out[3 * i - 2] = ok
  out[3 * i - 1] = math.floor(tok)
  out[3 * i] = wait
end
return out
`;

interface WithTakeCommand {
  audioIngestdTake(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
}

/** Token buckets in Redis, so that several hosts draw on one budget. */
export class RedisBucketStore implements TokenBucketStore {
  private readonly client: Redis & WithTakeCommand;
  private readonly ownsClient: boolean;
  private readonly keyPrefix: string;
  private readonly commandTimeoutMs: number;

  constructor(options: RedisBucketStoreOptions) {
    if ((options.client === undefined) === (options.url === undefined)) {
      throw new TypeError('RedisBucketStore needs exactly one of client or url');
    }
    this.ownsClient = options.client === undefined;
    const client =
      options.client ??
      // No offline queue: while Redis is away a take fails at once instead of waiting.
      new Redis(options.url as string, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    // An owned client's connection errors surface as failed takes (and the fail-open store's log);
    // without a listener ioredis would print them as unhandled.
    if (this.ownsClient) client.on('error', () => undefined);
    // defineCommand sends EVALSHA and falls back to EVAL after a NOSCRIPT (e.g. a restarted server).
    client.defineCommand('audioIngestdTake', { lua: TAKE_SCRIPT });
    this.client = client as Redis & WithTakeCommand;
    this.keyPrefix = options.keyPrefix ?? 'audio-ingestd:rl:';
    this.commandTimeoutMs = options.commandTimeoutMs ?? 500;
  }

  /**
   * Resolves once the connection is up. Optional: takes made before then fail at once, which
   * a FailOpenBucketStore turns into local takes.
   */
  ready(): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onReady = (): void => {
        this.client.off('end', onEnd);
        resolve();
      };
      const onEnd = (): void => {
        this.client.off('ready', onReady);
        reject(new Error('redis connection ended before it was ready'));
      };
      this.client.once('ready', onReady);
      this.client.once('end', onEnd);
    });
  }

  async take(buckets: readonly BucketRef[], n: number): Promise<TakeResult[]> {
    if (buckets.length === 0) return [];
    const args: (string | number)[] = buckets.map((b) => this.keyPrefix + b.key);
    args.push(n);
    for (const b of buckets) args.push(b.limit.capacity, b.limit.refillPerMinute);
    const reply = await this.withTimeout(this.client.audioIngestdTake(buckets.length, ...args));
    return buckets.map((_, i) => {
      const ok = reply[3 * i] === 1;
      const remaining = Number(reply[3 * i + 1]);
      const waitMs = Number(reply[3 * i + 2]);
      return { ok, remaining, retryAfterSec: ok ? 0 : Math.max(1, Math.ceil(waitMs / 1000)) };
    });
  }

  async stop(): Promise<void> {
    if (!this.ownsClient) return;
    try {
      await this.client.quit();
    } catch {
      // quit fails when the connection is already gone, which is the state we want.
      this.client.disconnect();
    }
  }

  private withTimeout<T>(promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`redis take timed out after ${this.commandTimeoutMs} ms`)),
        this.commandTimeoutMs,
      );
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }
}
