import { HOST_IS_LITTLE_ENDIAN, type PcmFormat, assertPcmFormat, bytesPerFrame } from './pcm-format.js';
import { Resampler } from './resample.js';
import { simdDownmix } from './downmix-simd.js';

/**
 * Copies `frames` interleaved frames from `inCh` to `outCh` channels with explicit offsets and
 * no views (the hot path must not allocate). To mono: mean rounded half up, exact when all
 * channels are equal; from mono: duplicated; otherwise the first channels, the last repeated.
 */
function remixFrames(
  src: Int16Array, srcOff: number, inCh: number,
  dst: Int16Array, dstOff: number, outCh: number, frames: number,
): void {
  if (inCh === outCh) {
    for (let i = 0, n = frames * inCh; i < n; i++) dst[dstOff + i] = src[srcOff + i]!;
  } else if (inCh === 2 && outCh === 1) {
    for (let i = 0, s = srcOff; i < frames; i++, s += 2) dst[dstOff + i] = (src[s]! + src[s + 1]! + 1) >> 1;
  } else if (outCh === 1) {
    for (let i = 0, s = srcOff; i < frames; i++, s += inCh) {
      let sum = 0;
      for (let c = 0; c < inCh; c++) sum += src[s + c]!;
      dst[dstOff + i] = Math.round(sum / inCh);
    }
  } else {
    for (let i = 0; i < frames; i++) {
      for (let c = 0; c < outCh; c++) dst[dstOff + i * outCh + c] = src[srcOff + i * inCh + (c < inCh ? c : inCh - 1)]!;
    }
  }
}

/**
 * Stereo words (little-endian: left in the low half) `src[from, from + frames)` → mono samples
 * at `dst16[at…]`, the mean rounded half up as in {@link remixFrames}. Pairs of output samples
 * are stored as one 32-bit word when `dst32` (the same memory) is given: half the stores and
 * bounds checks of the plain loop.
 */
function downmixStereoWords(src: Int32Array, from: number, dst32: Int32Array | undefined, dst16: Int16Array, at: number, frames: number): void {
  let i = from;
  let d = at;
  const end = from + frames;
  if (dst32 !== undefined) {
    if ((d & 1) === 1 && i < end) {
      const w = src[i++]!;
      dst16[d++] = (((w << 16) >> 16) + (w >> 16) + 1) >> 1;
    }
    for (let k = d >> 1; i + 1 < end; i += 2, k++, d += 2) {
      const a = src[i]!;
      const b = src[i + 1]!;
      const lo = (((a << 16) >> 16) + (a >> 16) + 1) >> 1;
      const hi = (((b << 16) >> 16) + (b >> 16) + 1) >> 1;
      dst32[k] = (lo & 0xffff) | (hi << 16);
    }
  }
  for (; i < end; i++, d++) {
    const w = src[i]!;
    dst16[d] = (((w << 16) >> 16) + (w >> 16) + 1) >> 1;
  }
}

/** Receives each full chunk (and the final partial one); the Buffer is the receiver's to keep. */
export type ChunkHandler = (pcm: Buffer, firstFrame: number) => void;

/**
 * Sees every output frame as soon as it is in the chunk being filled (before the chunk is
 * full): `samples[offset…]` holds `frames` frames (output channels interleaved) whose first
 * is output frame `firstFrame`. The view is only valid during the call.
 */
export interface PipelineTap {
  audio(samples: Int16Array, offset: number, frames: number, firstFrame: number): void;
}

/** Options of {@link LivePcmPipeline}. */
export interface LivePcmPipelineOptions {
  /** Format of the bytes given to push() (LiveKit egress: 48000 Hz, 2 channels). */
  input: PcmFormat;
  /** Format of the emitted chunks. */
  output: PcmFormat;
  /** Output sample-frames per emitted chunk. */
  chunkFrames: number;
  /** Called synchronously from push()/pushSilence()/flush() for every completed chunk. */
  onChunk: ChunkHandler;
  /** Input frames processed per internal step; bigger pushes are split (default 8192). */
  blockFrames?: number;
  /** Where chunk buffers come from (a pool); default a fresh `allocUnsafeSlow` buffer each. */
  allocate?: (bytes: number) => Buffer;
}

/**
 * Per-frame hot path of a live stream: raw s16le bytes of any length in, fixed-size chunks of
 * the output format out. Partial sample-frames are carried to the next push. Channels are
 * reduced before resampling (cheaper) and expanded after it. All working buffers are allocated
 * up front; the steady state allocates only the chunk being filled, which is handed over.
 */
export class LivePcmPipeline {
  private readonly inCh: number;
  private readonly outCh: number;
  /** Channels while resampling: min(in, out). */
  private readonly midCh: number;
  private readonly inFrameBytes: number;
  private readonly chunkFrames: number;
  private readonly onChunk: ChunkHandler;
  private readonly resampler: Resampler;
  private readonly blockFrames: number;
  private readonly allocate: (bytes: number) => Buffer;

  /** Carry + incoming bytes, 2-byte aligned so the Int16 view is valid whatever the input offset. */
  private readonly staging: Uint8Array;
  private readonly stagingI16: Int16Array;
  private readonly mixed: Int16Array;
  private readonly resampled: Int16Array;
  private carry = 0;
  /** No resampling and at most a channel reduction: frames can go straight into the chunk. */
  private readonly direct: boolean;

  private chunk: Buffer | undefined;
  private chunkI16: Int16Array | undefined;
  /** The same chunk as 32-bit words (two mono samples each), when it is 4-byte aligned. */
  private chunkI32: Int32Array | undefined;
  private fill = 0;
  private emitted = 0;
  private ended = false;
  /** Live audio out; undefined (one check per step) while nobody listens. */
  tap: PipelineTap | undefined;

  constructor(opts: LivePcmPipelineOptions) {
    assertPcmFormat(opts.input, 'input');
    assertPcmFormat(opts.output, 'output');
    if (!Number.isInteger(opts.chunkFrames) || opts.chunkFrames < 1) {
      throw new RangeError(`chunkFrames must be a positive integer, got ${String(opts.chunkFrames)}`);
    }
    this.inCh = opts.input.channels;
    this.outCh = opts.output.channels;
    this.midCh = Math.min(this.inCh, this.outCh);
    this.inFrameBytes = bytesPerFrame(opts.input);
    this.chunkFrames = opts.chunkFrames;
    this.onChunk = opts.onChunk;
    this.blockFrames = opts.blockFrames ?? 8192;
    this.allocate = opts.allocate ?? ((bytes) => Buffer.allocUnsafeSlow(bytes));
    this.resampler = new Resampler({ inputRate: opts.input.sampleRate, outputRate: opts.output.sampleRate, channels: this.midCh });
    this.direct = this.resampler.passThrough && this.outCh <= this.inCh && HOST_IS_LITTLE_ENDIAN;
    this.staging = new Uint8Array(this.blockFrames * this.inFrameBytes + this.inFrameBytes);
    this.stagingI16 = new Int16Array(this.staging.buffer, 0, this.staging.length >> 1);
    this.mixed = new Int16Array(this.blockFrames * this.midCh);
    this.resampled = new Int16Array(this.resampler.maxOutputFrames(this.blockFrames) * this.midCh);
  }

  /** Output frames produced so far (emitted chunks plus the chunk being filled). */
  get outputFrames(): number {
    return this.emitted + this.fill;
  }

  /** Output frame of the first frame of the chunk being filled (what no chunk handed over holds yet). */
  get pendingStart(): number {
    return this.emitted;
  }

  /**
   * The frames of the chunk being filled from output frame `from` (≥ {@link pendingStart}) on,
   * as a view valid until the next push; empty when there are none.
   */
  pendingFrom(from: number): Int16Array {
    const skip = from - this.emitted;
    if (this.chunkI16 === undefined || skip < 0 || skip >= this.fill) return new Int16Array(0);
    return this.chunkI16.subarray(skip * this.outCh, this.fill * this.outCh);
  }

  /** Bytes of an incomplete input frame waiting for the next push. */
  get carryBytes(): number {
    return this.carry;
  }

  /**
   * Feeds raw s16le bytes of any length: a view, or a whole ArrayBuffer (what a WebSocket
   * message is), which saves making a view just to read it.
   */
  push(input: Uint8Array | ArrayBuffer): void {
    this.assertOpen();
    if (this.direct && this.carry === 0) {
      const rest = this.pushDirect(input);
      if (rest === 0) return;
      input = input instanceof ArrayBuffer ? new Uint8Array(input, input.byteLength - rest) : input.subarray(input.byteLength - rest);
    }
    const data = input instanceof ArrayBuffer ? new Uint8Array(input) : input;
    const blockBytes = this.blockFrames * this.inFrameBytes;
    let off = 0;
    const len = data.byteLength;
    while (off < len) {
      // carry < one frame ≤ blockBytes, so each step makes progress and stays within blockFrames.
      const take = Math.min(len - off, blockBytes - this.carry);
      if (off === 0 && take === len) this.staging.set(data, this.carry);
      else this.staging.set(data.subarray(off, off + take), this.carry);
      off += take;
      const total = this.carry + take;
      const frames = Math.floor(total / this.inFrameBytes);
      if (frames > 0) this.process(frames);
      const used = frames * this.inFrameBytes;
      this.carry = total - used;
      if (this.carry > 0 && used > 0) this.staging.copyWithin(0, used, total);
    }
  }

  /**
   * Feeds `inputFrames` frames of silence at the input rate (mute fill). A carried partial
   * frame is completed with zeros first, so it stays before the silence.
   */
  pushSilence(inputFrames: number): void {
    this.assertOpen();
    this.completeCarry();
    let left = Math.max(0, Math.floor(inputFrames));
    while (left > 0) {
      const n = Math.min(left, this.blockFrames);
      this.staging.fill(0, 0, n * this.inFrameBytes);
      this.process(n);
      left -= n;
    }
  }

  /**
   * Ends the stream: completes a carried partial frame with zeros, drains the resampler's tail
   * and emits the last partial chunk if it holds any frame. Further pushes throw.
   */
  flush(): void {
    this.assertOpen();
    this.completeCarry();
    const n = this.resampler.flushInto(this.resampled, 0);
    this.emit(this.resampled, n);
    this.ended = true;
    if (this.fill > 0 && this.chunk !== undefined) this.handOver(this.fill);
  }

  /**
   * The common case without resampling: whole input frames go straight from the caller's bytes
   * into the chunk (stereo → mono in one pass, two samples per 32-bit load), skipping the
   * staging copy and the separate channel pass. Returns the bytes of a trailing partial frame
   * (or all of them when the input is not aligned for the wide view), left for {@link push}.
   */
  private pushDirect(input: Uint8Array | ArrayBuffer): number {
    const buffer = input instanceof ArrayBuffer ? input : input.buffer;
    const offset = input instanceof ArrayBuffer ? 0 : input.byteOffset;
    const bytes = input.byteLength;
    const frames = Math.floor(bytes / this.inFrameBytes);
    if (frames === 0) return bytes;
    const stereoToMono = this.inCh === 2 && this.outCh === 1;
    if (stereoToMono && simdDownmix !== null) {
      // WebAssembly SIMD, any alignment: 8 frames per step
      let done = 0;
      while (done < frames) {
        if (this.chunk === undefined) this.newChunk();
        const take = Math.min(frames - done, this.chunkFrames - this.fill);
        simdDownmix(buffer, offset + done * 4, take, this.chunk!, this.fill * 2);
        if (this.tap !== undefined) this.tap.audio(this.chunkI16!, this.fill, take, this.emitted + this.fill);
        done += take;
        this.fill += take;
        if (this.fill === this.chunkFrames) this.handOver(this.chunkFrames);
      }
      return bytes - frames * this.inFrameBytes;
    }
    // Int32 reads need 4-byte alignment (a WebSocket message's ArrayBuffer starts at 0); Int16 reads need 2
    if ((offset & (stereoToMono ? 3 : 1)) !== 0) return bytes;
    const src32 = stereoToMono ? new Int32Array(buffer, offset, frames) : undefined;
    const src16 = stereoToMono ? undefined : new Int16Array(buffer, offset, frames * this.inCh);
    let done = 0;
    while (done < frames) {
      if (this.chunkI16 === undefined) this.newChunk();
      const dst = this.chunkI16!;
      const take = Math.min(frames - done, this.chunkFrames - this.fill);
      if (src32 !== undefined) {
        downmixStereoWords(src32, done, this.chunkI32!, dst, this.fill, take);
      } else if (this.inCh === this.outCh) {
        dst.set(src16!.subarray(done * this.inCh, (done + take) * this.inCh), this.fill * this.outCh);
      } else {
        remixFrames(src16!, done * this.inCh, this.inCh, dst, this.fill * this.outCh, this.outCh, take);
      }
      if (this.tap !== undefined) this.tap.audio(dst, this.fill * this.outCh, take, this.emitted + this.fill);
      done += take;
      this.fill += take;
      if (this.fill === this.chunkFrames) this.handOver(this.chunkFrames);
    }
    return bytes - frames * this.inFrameBytes;
  }

  private newChunk(): void {
    // A buffer of its own (never a slice of Node's small pool), offset 0, so the view is valid.
    this.chunk = this.allocate(this.chunkFrames * this.outCh * 2);
    this.chunkI16 = new Int16Array(this.chunk.buffer, this.chunk.byteOffset, this.chunkFrames * this.outCh);
    this.chunkI32 = (this.chunk.byteOffset & 3) === 0 ? new Int32Array(this.chunk.buffer, this.chunk.byteOffset, this.chunk.byteLength >> 2) : undefined;
  }

  /** Gives the chunk (its first `frames` frames: all of them but for the last one) to onChunk. */
  private handOver(frames: number): void {
    const full = frames === this.chunkFrames ? this.chunk! : this.chunk!.subarray(0, frames * this.outCh * 2);
    const first = this.emitted;
    this.emitted += frames;
    this.fill = 0;
    this.chunk = undefined;
    this.chunkI16 = undefined;
    this.chunkI32 = undefined;
    this.onChunk(full, first);
  }

  private assertOpen(): void {
    if (this.ended) throw new Error('LivePcmPipeline: push after flush');
  }

  private completeCarry(): void {
    if (this.carry === 0) return;
    this.staging.fill(0, this.carry, this.inFrameBytes);
    this.carry = 0;
    this.process(1);
  }

  /** Staging frames [0, frames) → channel reduction → resampler → chunks. */
  private process(frames: number): void {
    let src = this.stagingI16;
    if (this.inCh !== this.midCh) {
      remixFrames(this.stagingI16, 0, this.inCh, this.mixed, 0, this.midCh, frames);
      src = this.mixed;
    }
    if (this.resampler.passThrough) {
      this.emit(src, frames);
      return;
    }
    const n = this.resampler.processInto(src, 0, frames, this.resampled, 0);
    this.emit(this.resampled, n);
  }

  /** Copies `frames` frames of midCh channels into chunks, handing over each full one. */
  private emit(src: Int16Array, frames: number): void {
    let done = 0;
    while (done < frames) {
      if (this.chunkI16 === undefined) this.newChunk();
      const take = Math.min(frames - done, this.chunkFrames - this.fill);
      remixFrames(src, done * this.midCh, this.midCh, this.chunkI16!, this.fill * this.outCh, this.outCh, take);
      if (this.tap !== undefined) this.tap.audio(this.chunkI16!, this.fill * this.outCh, take, this.emitted + this.fill);
      done += take;
      this.fill += take;
      if (this.fill === this.chunkFrames) this.handOver(this.chunkFrames);
    }
  }
}
