/**
 * Polls `pred` every `intervalMs` until it returns something other than undefined, null or
 * false, and resolves with that; rejects naming `what` once the wait has lasted `timeoutMs` and
 * at least {@link MIN_WAIT_MS}. The one polling wait of the tests:
 * `await waitFor(() => sink.received.length === 3)`, or with the value,
 * `const key = await waitFor(() => keys.find((k) => k.endsWith('.wav')), 10_000, 'the master')`.
 *
 * A wait is the bound on a test that hangs, never a timing assertion: `timeoutMs` says what the
 * wait should take on a quiet machine, and no wait gives up sooner than MIN_WAIT_MS, because a
 * whole suite on two shared cores makes a 10 s wait of a 2 s end fail (seen: spool-full's
 * `recording.completed` under `npm test`). What a test times, it reports; it does not assert.
 */
export const MIN_WAIT_MS = 60_000;

export async function waitFor<T>(
  pred: () => T | Promise<T>,
  timeoutMs = 60_000,
  what = 'condition',
  intervalMs = 20,
): Promise<Exclude<T, undefined | null | false>> {
  const end = Date.now() + Math.max(timeoutMs, MIN_WAIT_MS);
  for (;;) {
    const v = await pred();
    if (v !== undefined && v !== null && v !== false) return v as Exclude<T, undefined | null | false>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
