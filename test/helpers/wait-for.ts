/**
 * Polls `pred` every `intervalMs` until it returns something other than undefined, null or
 * false, and resolves with that; rejects after `timeoutMs` (default 60 s, generous for a loaded
 * machine), naming `what`. The one polling wait of the tests:
 * `await waitFor(() => sink.received.length === 3)`, or with the value,
 * `const key = await waitFor(() => keys.find((k) => k.endsWith('.wav')), 10_000, 'the master')`.
 */
export async function waitFor<T>(
  pred: () => T | Promise<T>,
  timeoutMs = 60_000,
  what = 'condition',
  intervalMs = 20,
): Promise<Exclude<T, undefined | null | false>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v !== undefined && v !== null && v !== false) return v as Exclude<T, undefined | null | false>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
