/**
 * The room mix law (README, Rooms): every output sample is computed from the sum of the
 * tracks present at that instant, with headroom and a soft limiter that never clips.
 *
 * 1. `S` = Σ over the tracks sounding at that sample of the track's sample (16-bit integer; for a
 *    multi-channel master the mean of its channels). Summed exactly (integers in doubles).
 * 2. `y = g · S / 32768` with `g = 10^(−headroomDb / 20)`.
 * 3. Soft limiter with knee `T` (0 < T < 1): `|y| ≤ T` → `z = y`; otherwise
 *    `z = sign(y) · (T + (1 − T) · tanh((|y| − T) / (1 − T)))`, so `|z| < 1` always.
 * 4. Output `round(z · 32767)` (JavaScript `Math.round`: halves toward +∞); `|z| < 1` keeps it
 *    within ±32767, so the limiter is never followed by a clip.
 *
 * The curve is continuous with slope 1 at the knee. Silence (S = 0) stays exactly 0.
 */
export interface MixLaw {
  /** Headroom in dB applied to the sum before the limiter (g = 10^(−headroomDb/20)). */
  headroomDb: number;
  /** Knee of the limiter as a fraction of full scale (0 < knee < 1). */
  knee: number;
}

export const DEFAULT_MIX_LAW: MixLaw = { headroomDb: 6, knee: 0.5 };

/** A compiled law: maps the exact sum `S` to the output sample. */
export function mixSampleFn(law: MixLaw): (sum: number) => number {
  if (!(law.knee > 0 && law.knee < 1)) throw new RangeError(`mix knee must be in (0, 1), got ${law.knee}`);
  const g = Math.pow(10, -law.headroomDb / 20);
  const t = law.knee;
  const span = 1 - t;
  return (sum: number): number => {
    const y = (g * sum) / 32768;
    const a = Math.abs(y);
    if (a <= t) return Math.round(y * 32767);
    const z = t + span * Math.tanh((a - t) / span);
    return Math.round((y < 0 ? -z : z) * 32767);
  };
}

/** The law of one channel of dual.wav: a plain sum, clamped (a participant's own tracks rarely overlap). */
export function plainSample(sum: number): number {
  const r = Math.round(sum);
  return r > 32767 ? 32767 : r < -32768 ? -32768 : r;
}
