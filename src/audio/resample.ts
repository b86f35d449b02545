/**
 * Polyphase windowed-sinc FIR resampler for any pair of integer rates. The ratio is reduced to
 * L/M (up by L, down by M); one Kaiser-windowed sinc prototype is split into L phases, and each
 * output sample is one dot product over the input history. State (history, phase) persists
 * across calls so N calls give bit-exactly the output of one call. Output is aligned with the
 * input: output frame n sits at input time n·M/L (the filter delay is compensated), and
 * {@link Resampler.flush} emits the tail so that ceil(inputFrames·L/M) frames come out in total.
 *
 * The arithmetic is integer, so every engine gives the same samples: the Float64 design is
 * quantized once to taps in units of 2^−S (S = hiBits + loBits, 22 or 23 bits for the usual
 * filters, about 40 dB below the 80 dB stopband; each phase's taps sum to exactly 2^S, so DC gain
 * is exactly 1), each tap split into a high part (its top bits) and a low part (the rest, at
 * most 2^(loBits−1) in magnitude). An output is (Σ hi·x · 2^loBits + Σ lo·x + 2^(S−1)) >> S,
 * clamped to s16; the scales are chosen so that neither sum can exceed 32 bits for any input.
 * Where WebAssembly SIMD runs, the dot products are `i32x4.dot_i16x8_s` in resample-fir.wat
 * (8 taps per instruction, about 20 times the scalar loop); elsewhere the scalar loop below
 * computes the same integers.
 */
import { firKernel, type FirKernel } from './resample-simd.js';


/** Options of {@link Resampler}. */
export interface ResamplerOptions {
  /** Input rate in Hz (integer). */
  inputRate: number;
  /** Output rate in Hz (integer). */
  outputRate: number;
  /** Interleaved channels, same on both sides. */
  channels: number;
  /**
   * Stopband attenuation in dB (default 80). Frequencies at or above the lower Nyquist rate are
   * attenuated at least this much; higher means longer filters.
   */
  attenuationDb?: number;
  /**
   * Passband edge as a fraction of the lower Nyquist rate (default 0.86: flat to 6.9 kHz when
   * 16 kHz comes out). The transition band runs from here to the Nyquist rate.
   */
  passband?: number;
  /** Runs the scalar loop even where the SIMD kernel runs (the same samples; for tests and comparisons). */
  scalar?: boolean;
}

/** A filter design: stopband attenuation and passband edge (the two options above). */
export type FilterDesign = Required<Pick<ResamplerOptions, 'attenuationDb' | 'passband'>>;

/** The design a resampler uses when none is given: 80 dB, flat to 0.86 of the lower Nyquist rate. */
export const DEFAULT_FILTER_DESIGN: Readonly<FilterDesign> = { attenuationDb: 80, passband: 0.86 };

interface Filter {
  up: number;
  down: number;
  /** Half-length in input frames; each output reads 2·half+1 input frames. */
  half: number;
  width: number;
  /** Blocks of 8 taps per phase, an even number (the last ones padded with zero taps). */
  blocks: number;
  /** Phase-major integer taps: hi[p·width + j] multiplies input frame (base − half + j). */
  hi: Int16Array;
  lo: Int16Array;
  /** The same for the SIMD kernel: per phase and block of 8, the 8 high taps then the 8 low taps. */
  packed: Int16Array;
  loBits: number;
  /** hiBits + loBits: taps are in units of 2^−shift. */
  shift: number;
  /** Byte offset of {@link packed} in the kernel's memory (when there is a kernel). */
  kernelTaps: number;
}

/** Largest Σ|tap| of one phase such that Σ tap·x stays within 32 bits for any s16 input. */
const SUM_LIMIT = 65535;

const filters = new Map<string, Filter>();

/** Outputs per kernel call (bounds the scratch the input window and output take). */
const KERNEL_PIECE = 2048;
/** Input frames per piece of a long {@link Resampler.processInto} call at most (the history buffer holds one and a filter). */
const PIECE_INPUT_FRAMES = 4096;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Modified Bessel function of the first kind, order 0 (series; converges fast for x < 50). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

function designFilter(inputRate: number, outputRate: number, attenuationDb: number, passband: number): Filter {
  const g = gcd(inputRate, outputRate);
  const up = outputRate / g;
  const down = inputRate / g;
  const key = `${up}/${down}/${attenuationDb}/${passband}`;
  const cached = filters.get(key);
  if (cached !== undefined) return cached;

  const nyquist = Math.min(inputRate, outputRate) / 2;
  const transitionHz = (1 - passband) * nyquist;
  const cutoffHz = ((1 + passband) / 2) * nyquist;
  // Kaiser's estimates for window shape and length.
  const a = attenuationDb;
  const beta = a > 50 ? 0.1102 * (a - 8.7) : a >= 21 ? 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21) : 0;
  const lengthInInput = (a - 7.95) / (2.285 * 2 * Math.PI * (transitionHz / inputRate));
  const half = Math.max(2, Math.ceil(lengthInInput / 2));
  const center = half * up; // prototype runs at up·inputRate, 2·center+1 taps
  const width = 2 * half + 1;
  const fc = cutoffHz / (inputRate * up); // cycles per prototype sample
  const i0beta = besselI0(beta);
  const taps = new Float64Array(up * width);
  for (let p = 0; p < up; p++) {
    let sum = 0;
    for (let k = 0; k < width; k++) {
      const j = p + k * up;
      if (j > 2 * center) continue; // zero padding of the last column
      const x = j - center;
      const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
      const r = x / center;
      const w = besselI0(beta * Math.sqrt(Math.max(0, 1 - r * r))) / i0beta;
      const v = sinc * w;
      taps[p * width + k] = v;
      sum += v;
    }
    // Unity DC gain for every phase, so a constant input stays exactly constant.
    for (let k = 0; k < width; k++) taps[p * width + k]! /= sum;
  }
  const f = quantize(up, down, half, width, taps);
  filters.set(key, f);
  return f;
}

/**
 * Integer taps of a Float64 design (taps[p·width + k] multiplies input frame newest − k), in the
 * order the dot products read them (oldest input first), with the largest scales that keep
 * every sum within 32 bits.
 */
function quantize(up: number, down: number, half: number, width: number, taps: Float64Array): Filter {
  const blocks = 2 * Math.ceil(width / 16); // the kernel takes two blocks a step
  // |lo| ≤ 2^(loBits−1) for each of width taps
  const loBits = Math.min(15, Math.floor(Math.log2(SUM_LIMIT / width)) + 1);
  for (let hiBits = 15; hiBits > 0; hiBits--) {
    const shift = hiBits + loBits;
    const scale = 2 ** shift;
    const loScale = 2 ** loBits;
    const hi = new Int16Array(up * width);
    const lo = new Int16Array(up * width);
    let fits = true;
    for (let p = 0; p < up && fits; p++) {
      const q = new Float64Array(width);
      let sum = 0;
      let big = 0;
      for (let j = 0; j < width; j++) {
        const v = Math.round(taps[p * width + (width - 1 - j)]! * scale);
        q[j] = v;
        sum += v;
        if (Math.abs(v) > Math.abs(q[big]!)) big = j;
      }
      q[big]! += scale - sum; // each phase sums to exactly 2^shift: unity DC gain
      let hiSum = 0;
      for (let j = 0; j < width; j++) {
        const h = Math.round(q[j]! / loScale);
        if (Math.abs(h) > 32767) fits = false;
        hi[p * width + j] = h;
        lo[p * width + j] = q[j]! - h * loScale;
        hiSum += Math.abs(h);
      }
      if (hiSum > SUM_LIMIT) fits = false;
    }
    if (!fits) continue;
    const packed = new Int16Array(up * blocks * 16);
    for (let p = 0; p < up; p++) {
      for (let j = 0; j < width; j++) {
        const at = (p * blocks + (j >> 3)) * 16 + (j & 7);
        packed[at] = hi[p * width + j]!;
        packed[at + 8] = lo[p * width + j]!;
      }
    }
    const kernelTaps = firKernel === null ? -1 : firKernel.placeTaps(packed);
    return { up, down, half, width, blocks, hi, lo, packed, loBits, shift, kernelTaps };
  }
  throw new RangeError('Resampler: no integer scale fits this filter');
}

export class Resampler {
  readonly inputRate: number;
  readonly outputRate: number;
  readonly channels: number;
  /** True when both rates are equal: input is copied through unchanged. */
  readonly passThrough: boolean;

  private readonly filter: Filter | undefined;
  private readonly kernel: FirKernel | null;
  /** Input frames per piece of a long call: at most {@link KERNEL_PIECE} outputs each, with room for the history's. */
  private readonly pieceFrames: number;
  /** Interleaved input history; frame i of the buffer is absolute input frame bufStart + i. */
  private buf: Int16Array;
  private bufStart = 0;
  private bufFrames = 0;
  /** Input frames received since start (or the last flush). */
  private inCount = 0;
  /** floor(n·M/L) and (n·M) mod L for the next output frame n. */
  private base = 0;
  private phase = 0;

  constructor(opts: ResamplerOptions) {
    for (const [name, v] of [['inputRate', opts.inputRate], ['outputRate', opts.outputRate], ['channels', opts.channels]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`Resampler ${name} must be a positive integer, got ${String(v)}`);
    }
    const passband = opts.passband ?? DEFAULT_FILTER_DESIGN.passband;
    const attenuationDb = opts.attenuationDb ?? DEFAULT_FILTER_DESIGN.attenuationDb;
    if (!(passband > 0.5 && passband < 1)) throw new RangeError(`Resampler passband must be in (0.5, 1), got ${passband}`);
    if (!(attenuationDb >= 30 && attenuationDb <= 140)) {
      throw new RangeError(`Resampler attenuationDb must be in 30..140, got ${attenuationDb}`);
    }
    this.inputRate = opts.inputRate;
    this.outputRate = opts.outputRate;
    this.channels = opts.channels;
    this.passThrough = opts.inputRate === opts.outputRate;
    this.kernel = opts.scalar === true ? null : firKernel;
    if (this.passThrough) {
      this.filter = undefined;
      this.buf = new Int16Array(0);
      this.pieceFrames = Infinity;
      return;
    }
    this.filter = designFilter(opts.inputRate, opts.outputRate, attenuationDb, passband);
    this.pieceFrames = Math.max(1, Math.min(PIECE_INPUT_FRAMES, Math.floor(((KERNEL_PIECE - 4) * this.filter.down) / this.filter.up)));
    this.buf = new Int16Array((2 * this.filter.half + PIECE_INPUT_FRAMES) * this.channels);
    this.reset();
  }

  /** Input frames of delay before the first output depends on real input (half the filter). */
  get lookaheadFrames(): number {
    return this.filter?.half ?? 0;
  }

  /** Upper bound of frames a call with `inputFrames` more frames (or a flush) can write. */
  maxOutputFrames(inputFrames: number): number {
    if (this.filter === undefined) return inputFrames;
    const { up, down, half } = this.filter;
    return Math.ceil(((inputFrames + half + 1) * up) / down) + 1;
  }

  /** Forgets all history: the next input starts a new signal at time 0. */
  reset(): void {
    if (this.filter === undefined) return;
    const lead = 2 * this.filter.half;
    this.buf.fill(0, 0, lead * this.channels);
    this.bufStart = -lead;
    this.bufFrames = lead;
    this.inCount = 0;
    this.base = 0;
    this.phase = 0;
  }

  /**
   * Positions a fresh state so that the next output is frame `outputFrame` of the signal that
   * starts at input frame 0 — bit-exactly what a resampler fed from frame 0 would emit from
   * there. Returns the input frame the next {@link processInto} must start with (at most half
   * a filter before the output's input time); input before it is never read.
   */
  startAt(outputFrame: number): number {
    if (!Number.isSafeInteger(outputFrame) || outputFrame < 0) throw new RangeError(`Resampler startAt needs a non-negative integer, got ${String(outputFrame)}`);
    if (this.filter === undefined) return outputFrame;
    this.reset();
    const { up, down, half } = this.filter;
    const base = Math.floor((outputFrame * down) / up);
    const first = base - half;
    if (first > 0) {
      this.bufStart = first;
      this.bufFrames = 0;
      this.inCount = first;
    }
    this.base = base;
    this.phase = outputFrame * down - base * up;
    return Math.max(0, first);
  }

  /**
   * Resamples `frames` interleaved frames from `src[srcOff]` into `dst[dstOff]`; returns the
   * frames written. `dst` needs room for {@link maxOutputFrames}(frames). A long call goes
   * through in pieces of about one kernel call's output each (the same samples as one call: the
   * state carries over), so the history buffer stays at its first size whatever the input's
   * length: seconds of audio at once (a subscriber catching up, the pending chunk at a resume)
   * cost no allocation and take the kernel's single-copy path.
   */
  processInto(src: Int16Array, srcOff: number, frames: number, dst: Int16Array, dstOff: number): number {
    const ch = this.channels;
    if (this.filter === undefined) {
      dst.set(src.subarray(srcOff, srcOff + frames * ch), dstOff);
      return frames;
    }
    const piece = this.pieceFrames;
    if (frames <= piece) return this.processPiece(src, srcOff, frames, dst, dstOff);
    let out = 0;
    for (let done = 0; done < frames; ) {
      const n = Math.min(frames - done, piece);
      out += this.processPiece(src, srcOff + done * ch, n, dst, dstOff + out * ch);
      done += n;
    }
    return out;
  }

  /** {@link processInto} of at most {@link pieceFrames} frames. */
  private processPiece(src: Int16Array, srcOff: number, frames: number, dst: Int16Array, dstOff: number): number {
    const ch = this.channels;
    if (this.kernel !== null && ch === 1) {
      const n = this.kernelMono(this.kernel, src, srcOff, frames, dst, dstOff);
      if (n >= 0) return n;
    }
    this.append(src, srcOff, frames);
    this.inCount += frames;
    return this.produce(dst, dstOff, this.inCount - this.filter!.half);
  }

  /**
   * One mono call through the kernel with the input copied once: the history the next output
   * reads (about one filter length) and then `src` go straight into the kernel's memory, and only
   * the new history comes back into {@link buf} (instead of all of `src` into it, then the window
   * out of it). The same outputs as {@link append} then {@link produce}; −1 when the call is not
   * the plain case (no output yet, more than a kernel piece, the history not adjoining `src`).
   */
  private kernelMono(k: FirKernel, src: Int16Array, srcOff: number, frames: number, dst: Int16Array, dstOff: number): number {
    const f = this.filter!;
    const { up, down, half, blocks } = f;
    const inCount = this.inCount + frames;
    const b0 = this.base * up + this.phase;
    const count = Math.ceil(((inCount - half) * up - b0) / down);
    const first = this.base - half - this.bufStart;
    if (count <= 0 || count > KERNEL_PIECE || first < 0 || first > this.bufFrames) return -1;
    const hist = this.bufFrames - first;
    const inFrames = hist + frames;
    const lastBase = Math.floor((b0 + (count - 1) * down) / up);
    // the last output reads 8·blocks frames from lastBase − half; beyond width they meet zero taps
    const window = Math.max(lastBase - this.base + 8 * blocks, inFrames);
    const inPtr = k.scratch;
    const outPtr = inPtr + ((window * 2 + 15) & ~15);
    const heap = k.view(outPtr + count * 2);
    const in16 = inPtr >> 1;
    const out16 = outPtr >> 1;
    const buf = this.buf;
    heap.set(buf.subarray(first, this.bufFrames), in16);
    heap.set(src.subarray(srcOff, srcOff + frames), in16 + hist);
    if (up === 1) {
      const c4 = count - (count % 4);
      if (c4 > 0) k.fir4(inPtr, f.kernelTaps, blocks, down, c4, outPtr, f.loBits, f.shift);
      if (c4 < count) k.fir(inPtr + c4 * down * 2, f.kernelTaps, blocks, 1, down, 0, count - c4, outPtr + c4 * 2, f.loBits, f.shift);
    } else k.fir(inPtr, f.kernelTaps, blocks, up, down, this.phase, count, outPtr, f.loBits, f.shift);
    dst.set(heap.subarray(out16, out16 + count), dstOff);
    const windowStart = this.base - half;
    const b1 = b0 + count * down;
    this.base = Math.floor(b1 / up);
    this.phase = b1 - this.base * up;
    this.inCount = inCount;
    // what the next output reads on (from base − half), back into the history
    const keep = Math.max(0, Math.min(inFrames, this.base - half - windowStart));
    const kept = inFrames - keep;
    if (buf.length < kept) this.buf = new Int16Array(Math.max(kept, buf.length * 2));
    const b = this.buf;
    b.set(heap.subarray(in16 + keep, in16 + inFrames), 0);
    this.bufStart = windowStart + keep;
    this.bufFrames = kept;
    return count;
  }

  /** Writes the tail (the last half-filter of input, against zeros) and resets the state. */
  flushInto(dst: Int16Array, dstOff: number): number {
    if (this.filter === undefined) return 0;
    this.appendZeros(this.filter.half);
    const n = this.produce(dst, dstOff, this.inCount);
    this.reset();
    return n;
  }

  /** Allocating convenience around {@link processInto}. */
  process(pcm: Int16Array): Int16Array {
    const frames = Math.floor(pcm.length / this.channels);
    const out = new Int16Array(this.maxOutputFrames(frames) * this.channels);
    const n = this.processInto(pcm, 0, frames, out, 0);
    return out.slice(0, n * this.channels);
  }

  /** Allocating convenience around {@link flushInto}. */
  flush(): Int16Array {
    const out = new Int16Array(this.maxOutputFrames(0) * this.channels);
    const n = this.flushInto(out, 0);
    return out.slice(0, n * this.channels);
  }

  /** Emits every output n whose base frame floor(n·M/L) is below `limit`. */
  private produce(dst: Int16Array, dstOff: number, limit: number): number {
    const { up, down } = this.filter!;
    // outputs n ≥ 0 with floor((base·L + phase + n·M) / L) < limit
    const count = Math.max(0, Math.ceil((limit * up - (this.base * up + this.phase)) / down));
    if (count > 0) {
      if (this.kernel !== null) this.kernelDots(this.kernel, dst, dstOff, count);
      else this.scalarDots(dst, dstOff, count);
    }
    // Keep only what the next output still reads (from base − half on).
    const keepFrom = this.base - this.filter!.half - this.bufStart;
    if (keepFrom > 0) {
      const ch = this.channels;
      const drop = Math.min(keepFrom, this.bufFrames);
      this.buf.copyWithin(0, drop * ch, this.bufFrames * ch);
      this.bufFrames -= drop;
      this.bufStart += drop;
    }
    return count;
  }

  /** `count` outputs through the SIMD kernel, a piece at a time (one channel per call). */
  private kernelDots(k: FirKernel, dst: Int16Array, dstOff: number, count: number): void {
    const f = this.filter!;
    const { up, down, half, blocks } = f;
    const ch = this.channels;
    const buf = this.buf;
    let d = dstOff;
    while (count > 0) {
      const c = Math.min(count, KERNEL_PIECE);
      const b0 = this.base * up + this.phase;
      const lastBase = Math.floor((b0 + (c - 1) * down) / up);
      const first = this.base - half - this.bufStart;
      // the last output reads 8·blocks frames from lastBase − half; beyond width they meet zero taps
      const window = lastBase - this.base + 8 * blocks;
      const avail = Math.min(window, this.bufFrames - first);
      const inPtr = k.scratch;
      const outPtr = inPtr + ((window * 2 + 15) & ~15);
      const heap = k.view(outPtr + c * 2);
      const in16 = inPtr >> 1;
      const out16 = outPtr >> 1;
      for (let chan = 0; chan < ch; chan++) {
        if (ch === 1) heap.set(buf.subarray(first, first + avail), in16);
        else for (let j = 0, s = first * ch + chan; j < avail; j++, s += ch) heap[in16 + j] = buf[s]!;
        if (up === 1) {
          // one phase: four outputs per pass, the rest one at a time
          const c4 = c - (c % 4);
          if (c4 > 0) k.fir4(inPtr, f.kernelTaps, blocks, down, c4, outPtr, f.loBits, f.shift);
          if (c4 < c) k.fir(inPtr + c4 * down * 2, f.kernelTaps, blocks, 1, down, 0, c - c4, outPtr + c4 * 2, f.loBits, f.shift);
        } else k.fir(inPtr, f.kernelTaps, blocks, up, down, this.phase, c, outPtr, f.loBits, f.shift);
        if (ch === 1) dst.set(heap.subarray(out16, out16 + c), d);
        else for (let j = 0, o = d + chan; j < c; j++, o += ch) dst[o] = heap[out16 + j]!;
      }
      const b1 = b0 + c * down;
      this.base = Math.floor(b1 / up);
      this.phase = b1 - this.base * up;
      d += c * ch;
      count -= c;
    }
  }

  /** The same integers as the kernel, one multiply at a time. */
  private scalarDots(dst: Int16Array, dstOff: number, count: number): void {
    const { up, down, half, width, hi, lo, loBits, shift } = this.filter!;
    const ch = this.channels;
    const buf = this.buf;
    const loScale = 2 ** loBits;
    const scale = 2 ** shift;
    const round = scale / 2;
    let base = this.base;
    let phase = this.phase;
    let d = dstOff;
    for (let n = 0; n < count; n++) {
      const oldest = (base - half - this.bufStart) * ch;
      const t0 = phase * width;
      for (let c = 0; c < ch; c++) {
        let accHi = 0;
        let accLo = 0;
        for (let j = 0, s = oldest + c; j < width; j++, s += ch) {
          const x = buf[s]!;
          accHi += hi[t0 + j]! * x;
          accLo += lo[t0 + j]! * x;
        }
        const v = Math.floor((accHi * loScale + accLo + round) / scale);
        dst[d++] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
      phase += down;
      if (phase >= up) {
        const q = Math.floor(phase / up);
        base += q;
        phase -= q * up;
      }
    }
    this.base = base;
    this.phase = phase;
  }

  private ensure(frames: number): void {
    const need = (this.bufFrames + frames) * this.channels;
    if (need <= this.buf.length) return;
    const grown = new Int16Array(Math.max(need, this.buf.length * 2));
    grown.set(this.buf.subarray(0, this.bufFrames * this.channels));
    this.buf = grown;
  }

  private append(src: Int16Array, srcOff: number, frames: number): void {
    this.ensure(frames);
    const ch = this.channels;
    this.buf.set(src.subarray(srcOff, srcOff + frames * ch), this.bufFrames * ch);
    this.bufFrames += frames;
  }

  private appendZeros(frames: number): void {
    this.ensure(frames);
    const ch = this.channels;
    this.buf.fill(0, this.bufFrames * ch, (this.bufFrames + frames) * ch);
    this.bufFrames += frames;
  }
}
