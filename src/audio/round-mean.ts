/**
 * Integer means rounded as `Math.round(s / n)` rounds them (halves up), without a float
 * rounding per sample: the VAD worker's 48 kHz → 16 kHz step runs this for every sample of
 * every live master, and `Math.round` was the larger part of its cost.
 */

const THIRD = 1 / 3;

/** Math.round(s / 3) for s the sum of three int16 samples: floor((s + 1) / 3), taken with the operand shifted to ≥ 0. */
export function roundMean3(s: number): number {
  // s ≥ −98 304, so s + 98 305 ≥ 1; (u × ⅓) truncates to floor(u / 3) for every u < 2^26 (u = 3q gives q exactly)
  return (((s + 98305) * THIRD) | 0) - 32768;
}

/** Math.round(s / 2) for s the sum of two int16 samples. */
export function roundMean2(s: number): number {
  return (s + 1) >> 1;
}
