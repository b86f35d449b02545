import { setTimeout as delay } from 'node:timers/promises';

/** Exponential backoff bounds shared by every retrying part of events/. */
export interface BackoffOptions {
  /** Cap of the first retry's delay, in ms. Default 200. */
  baseMs?: number;
  /** Largest delay, in ms. Default 30 000. */
  maxMs?: number;
}

/**
 * "Full jitter" backoff: a uniform delay in [0, min(max, base·2^(attempt-1))], so that many
 * retrying clients spread out instead of hammering a recovering peer in lockstep.
 * `attempt` counts from 1.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 200;
  const max = options.maxMs ?? 30_000;
  const cap = Math.min(max, base * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.floor(Math.random() * cap);
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
