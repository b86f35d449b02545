/**
 * Synthetic signals and measurements for the signal-processing tests (tones, noise, level and
 * single-frequency amplitude), plus a seeded PRNG so random splits are reproducible.
 */

/** Interleaved s16 sine: `channels` copies of the same tone. */
export function tone(rate: number, hz: number, seconds: number, amplitude = 0.5, channels = 1): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n * channels);
  for (let i = 0; i < n; i++) {
    const v = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * hz * i) / rate));
    for (let c = 0; c < channels; c++) out[i * channels + c] = v;
  }
  return out;
}

/** Mulberry32: small seeded PRNG returning [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform white noise in [−amplitude, amplitude] of full scale. */
export function noise(samples: number, amplitude: number, seed = 1): Int16Array {
  const r = prng(seed);
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++) out[i] = Math.round((r() * 2 - 1) * amplitude * 32767);
  return out;
}

/** RMS of samples [from, to) of one channel, as a fraction of full scale. */
export function rms(pcm: Int16Array, from = 0, to = pcm.length, channels = 1, channel = 0): number {
  let s = 0;
  let n = 0;
  for (let i = from * channels + channel; i < to * channels; i += channels, n++) s += pcm[i]! * pcm[i]!;
  return n === 0 ? 0 : Math.sqrt(s / n) / 32768;
}

/**
 * Amplitude (fraction of full scale) of the `hz` component over frames [from, to), by
 * correlating with a sine and a cosine (exact for a tone with a whole number of cycles, and
 * within a fraction of a percent over thousands of cycles otherwise).
 */
export function toneAmplitude(pcm: Int16Array, rate: number, hz: number, from: number, to: number): number {
  let re = 0;
  let im = 0;
  for (let i = from; i < to; i++) {
    const w = (2 * Math.PI * hz * i) / rate;
    re += pcm[i]! * Math.cos(w);
    im += pcm[i]! * Math.sin(w);
  }
  return (2 * Math.hypot(re, im)) / (to - from) / 32768;
}

export function db(ratio: number): number {
  return 20 * Math.log10(ratio);
}

/** Splits `total` into random positive sizes (some tiny, some large), reproducibly. */
export function randomSizes(total: number, seed: number, max = 5000): number[] {
  const r = prng(seed);
  const sizes: number[] = [];
  let left = total;
  while (left > 0) {
    const pick = r();
    const n = pick < 0.2 ? 1 + Math.floor(r() * 3) : pick < 0.9 ? 1 + Math.floor(r() * max) : 1 + Math.floor(r() * max * 10);
    const take = Math.min(n, left);
    sizes.push(take);
    left -= take;
  }
  return sizes;
}

export function concatInt16(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** First and last 10 ms window of `mono` whose RMS is above 100 (about -50 dBFS): where a synthesized utterance really is. */
export function voicedSpan(mono: Int16Array, rate: number): { start: number; end: number } {
  const w = rate / 100;
  let start = -1;
  let end = -1;
  for (let i = 0; i + w <= mono.length; i += w) {
    let sum = 0;
    for (let j = i; j < i + w; j++) sum += mono[j]! * mono[j]!;
    if (Math.sqrt(sum / w) > 100) {
      if (start < 0) start = i;
      end = i + w;
    }
  }
  return { start, end };
}
