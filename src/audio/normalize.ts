/**
 * Gain normalization of s16 PCM. Every path limits the gain so that no sample exceeds the
 * ceiling: normalization never clips.
 */

/** Options shared by the whole-buffer and streaming normalizers. */
export interface NormalizeOptions {
  /** `peak`: loudest sample to `targetDb` dBFS. `loudness`: gated RMS level to `targetDb` dBFS. */
  mode: 'peak' | 'loudness';
  /** Target level in dBFS (default −1 for peak, −20 for loudness). */
  targetDb?: number;
  /** No sample may exceed this level in dBFS (default −1). */
  ceilingDb?: number;
  /** Largest boost in dB, so silence and hiss are not blown up (default 30). */
  maxGainDb?: number;
}

/** Level below which a 400 ms block is ignored by the loudness gate (dBFS, BS.1770 absolute gate). */
const ABSOLUTE_GATE_DB = -70;
/** Blocks this far below the ungated level are ignored (BS.1770 relative gate). */
const RELATIVE_GATE_DB = -10;

export function dbToGain(db: number): number {
  return 10 ** (db / 20);
}

export function gainToDb(g: number): number {
  return 20 * Math.log10(g);
}

/** Largest absolute sample value (as a fraction of full scale, 32768). */
export function peakLevel(pcm: Int16Array): number {
  let peak = 0;
  for (let i = 0; i < pcm.length; i++) {
    const v = pcm[i]!;
    const a = v < 0 ? -v : v;
    if (a > peak) peak = a;
  }
  return peak / 32768;
}

/**
 * Gated RMS level in dBFS (−Infinity for digital silence): mean power over 400 ms blocks with
 * 75 % overlap, dropping blocks under −70 dBFS and then those 10 dB below the mean, like
 * ITU-R BS.1770 without the K-weighting pre-filter.
 */
export function loudnessDb(pcm: Int16Array, sampleRate: number, channels: number): number {
  const frames = Math.floor(pcm.length / channels);
  const block = Math.max(1, Math.round(sampleRate * 0.4));
  const hop = Math.max(1, Math.round(block / 4));
  // Power per hop, summed over channels, then averaged per 4-hop block.
  const hops = Math.ceil(frames / hop);
  const hopPower = new Float64Array(hops);
  for (let h = 0; h < hops; h++) {
    const end = Math.min(frames, (h + 1) * hop);
    let s = 0;
    for (let i = h * hop * channels; i < end * channels; i++) s += pcm[i]! * pcm[i]!;
    hopPower[h] = s;
  }
  const blocks: number[] = [];
  if (frames <= block) {
    let s = 0;
    for (let h = 0; h < hops; h++) s += hopPower[h]!;
    blocks.push(frames === 0 ? 0 : s / (frames * channels * 32768 * 32768));
  } else {
    for (let h = 0; h + 4 <= hops; h++) {
      const end = Math.min(frames, (h + 4) * hop);
      const n = (end - h * hop) * channels;
      blocks.push((hopPower[h]! + hopPower[h + 1]! + hopPower[h + 2]! + hopPower[h + 3]!) / (n * 32768 * 32768));
    }
  }
  const absGate = dbToGain(ABSOLUTE_GATE_DB) ** 2;
  const loud = blocks.filter((p) => p > absGate);
  if (loud.length === 0) return -Infinity;
  const mean = loud.reduce((a, b) => a + b, 0) / loud.length;
  const relGate = mean * dbToGain(RELATIVE_GATE_DB) ** 2;
  const kept = loud.filter((p) => p > relGate);
  const power = kept.reduce((a, b) => a + b, 0) / kept.length;
  return 10 * Math.log10(power);
}

function resolve(opts: NormalizeOptions): { target: number; ceiling: number; maxGain: number } {
  const targetDb = opts.targetDb ?? (opts.mode === 'peak' ? -1 : -20);
  const ceilingDb = Math.min(opts.ceilingDb ?? -1, 0);
  return {
    target: dbToGain(opts.mode === 'peak' ? Math.min(targetDb, ceilingDb) : targetDb),
    ceiling: dbToGain(ceilingDb),
    maxGain: dbToGain(opts.maxGainDb ?? 30),
  };
}

/** Multiplies in place by `gain`, rounding; the caller guarantees gain·peak fits. */
export function applyGain(pcm: Int16Array, gain: number): void {
  for (let i = 0; i < pcm.length; i++) {
    const v = Math.round(pcm[i]! * gain);
    pcm[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
  }
}

/** Gain a whole buffer needs (≤ ceiling/peak, ≤ maxGain). Returns 1 for silence. */
export function normalizationGain(pcm: Int16Array, sampleRate: number, channels: number, opts: NormalizeOptions): number {
  const { target, ceiling, maxGain } = resolve(opts);
  const peak = peakLevel(pcm);
  if (peak === 0) return 1;
  const level = opts.mode === 'peak' ? peak : dbToGain(loudnessDb(pcm, sampleRate, channels));
  if (level === 0) return 1;
  return Math.min(target / level, ceiling / peak, maxGain);
}

/** Normalizes a whole buffer in place; returns the gain applied (linear). */
export function normalize(pcm: Int16Array, sampleRate: number, channels: number, opts: NormalizeOptions): number {
  const gain = normalizationGain(pcm, sampleRate, channels, opts);
  if (gain !== 1) applyGain(pcm, gain);
  return gain;
}

/** Options of {@link StreamingNormalizer}. */
export interface StreamingNormalizeOptions extends NormalizeOptions {
  sampleRate: number;
  channels: number;
  /** Largest gain change from one chunk to the next, in dB (default 6); the change is ramped. */
  maxStepDb?: number;
  /** Time constant of the running level estimate, in seconds (default 3). */
  windowSec?: number;
}

/**
 * Normalization for live chunks: a running level estimate sets a target gain, the gain moves
 * towards it by at most `maxStepDb` per chunk, ramping linearly across the chunk so there is no
 * step at chunk joins. Samples whose ramped gain would pass the ceiling get just the gain that
 * reaches it, so the output never clips even on a sudden loud onset.
 */
export class StreamingNormalizer {
  private readonly opts: Required<Pick<StreamingNormalizeOptions, 'sampleRate' | 'channels' | 'maxStepDb' | 'windowSec'>>;
  private readonly mode: 'peak' | 'loudness';
  private readonly target: number;
  private readonly ceiling: number;
  private readonly maxGain: number;
  private gain = 1;
  /** Running mean power (loudness) or decaying peak (peak mode), as a linear level. */
  private level = 0;
  private seenFrames = 0;

  constructor(opts: StreamingNormalizeOptions) {
    const r = resolve(opts);
    this.mode = opts.mode;
    this.target = r.target;
    this.ceiling = r.ceiling;
    this.maxGain = r.maxGain;
    this.opts = { sampleRate: opts.sampleRate, channels: opts.channels, maxStepDb: opts.maxStepDb ?? 6, windowSec: opts.windowSec ?? 3 };
  }

  /** Gain applied at the end of the last chunk (linear). */
  get currentGain(): number {
    return this.gain;
  }

  /** Normalizes one chunk in place. */
  process(pcm: Int16Array): void {
    const ch = this.opts.channels;
    const frames = Math.floor(pcm.length / ch);
    if (frames === 0) return;
    const chunkPeak = peakLevel(pcm);
    this.updateLevel(pcm, frames, chunkPeak);
    let want = this.level > 0 ? Math.min(this.target / this.level, this.maxGain) : this.gain;
    const step = dbToGain(this.opts.maxStepDb);
    want = Math.min(Math.max(want, this.gain / step), this.gain * step);
    const start = this.gain;
    // The chunk's end gain must itself be safe for the chunk's loudest sample.
    const end = chunkPeak > 0 ? Math.min(want, this.ceiling / chunkPeak) : want;
    const limit = this.ceiling * 32768;
    const delta = (end - start) / frames;
    for (let f = 0, i = 0; f < frames; f++) {
      const g = start + delta * (f + 1);
      for (let c = 0; c < ch; c++, i++) {
        const x = pcm[i]!;
        let v = x * g;
        if (v > limit || v < -limit) v = x > 0 ? limit : -limit;
        const r = Math.round(v);
        pcm[i] = r > 32767 ? 32767 : r < -32768 ? -32768 : r;
      }
    }
    this.gain = end;
  }

  private updateLevel(pcm: Int16Array, frames: number, chunkPeak: number): void {
    const dur = frames / this.opts.sampleRate;
    // Weight of the past: exp(−dur/τ), but the first seconds trust the new data fully.
    const keep = this.seenFrames === 0 ? 0 : Math.exp(-dur / this.opts.windowSec);
    this.seenFrames += frames;
    if (this.mode === 'peak') {
      this.level = Math.max(chunkPeak, this.level * keep);
      return;
    }
    let s = 0;
    for (let i = 0; i < frames * this.opts.channels; i++) s += pcm[i]! * pcm[i]!;
    const power = s / (frames * this.opts.channels * 32768 * 32768);
    // Near-silent chunks (below the absolute gate) do not pull the gain up.
    if (power < dbToGain(ABSOLUTE_GATE_DB) ** 2) return;
    const prev = this.level * this.level;
    this.level = Math.sqrt(prev * keep + power * (1 - keep));
  }
}
