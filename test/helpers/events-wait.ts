/** Polls until `pred` holds; tap's per-test timeout bounds the wait. */
export async function waitFor(pred: () => boolean, intervalMs = 10): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, intervalMs));
}
