import { setTimeout as delay } from 'node:timers/promises';

/**
 * The one retry schedule of the daemon (events, master uploads, chunk objects); it imports
 * nothing, so every layer may use it. The shipped Baileys forwarder keeps its own small copy
 * (a client must not import server internals).
 */
export interface BackoffOptions {
  /** The first retry's delay cap, in ms. Default 200. */
  baseMs?: number;
  /** Largest delay, in ms. Default 30 000. */
  maxMs?: number;
}

/**
 * Exponential backoff with "equal jitter": a uniform delay in [cap/2, cap], where
 * cap = min(max, base·2^(attempt-1)). The jitter spreads clients retrying together, and the
 * lower half bound keeps a bounded number of attempts spanning a predictable time.
 * `attempt` counts from 1.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 200;
  const max = options.maxMs ?? 30_000;
  const cap = Math.min(max, base * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.floor(cap / 2 + Math.random() * (cap / 2));
}

/** Sleeps, or returns early (without throwing) when the signal aborts. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if ((err as { name?: string }).name !== 'AbortError') throw err;
  }
}
