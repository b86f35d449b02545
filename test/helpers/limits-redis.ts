import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A key prefix no other test run uses. */
export function uniquePrefix(name: string): string {
  return `audio-ingestd-test:${name}:${process.pid}:${randomBytes(4).toString('hex')}:`;
}

/** A connected client; the caller must `quit()` it. */
export async function connectRedis(): Promise<Redis> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  await client.connect();
  return client;
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Keys under `prefix`. */
export async function listKeys(client: Redis, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

/** Moves a bucket's last update back by `ms`, as if that much time had passed on the server. */
export async function ageBucket(client: Redis, key: string, ms: number): Promise<void> {
  const updated = await client.hget(key, 'u');
  if (updated === null) throw new Error(`no bucket at ${key}`);
  await client.hset(key, 'u', String(Number(updated) - ms));
}

/** Records warn/info lines the way a pino logger would receive them. */
export function recordingLogger(): { lines: { level: string; msg: string }[]; warn(o: object, m: string): void; info(o: object, m: string): void } {
  const lines: { level: string; msg: string }[] = [];
  return {
    lines,
    warn: (_o, msg) => lines.push({ level: 'warn', msg }),
    info: (_o, msg) => lines.push({ level: 'info', msg }),
  };
}

/** A manually advanced clock in milliseconds. */
export function manualClock(start = 1_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}
