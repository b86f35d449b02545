import { type PcmFormat, assertPcmFormat, bytesPerFrame } from './pcm-format.js';
import { Resampler } from './resample.js';

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

/** Receives each full chunk (and the final partial one); the Buffer is the receiver's to keep. */
export type ChunkHandler = (pcm: Buffer, firstFrame: number) => void;

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

  private chunk: Buffer | undefined;
  private chunkI16: Int16Array | undefined;
  private fill = 0;
  private emitted = 0;
  private ended = false;

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
    this.staging = new Uint8Array(this.blockFrames * this.inFrameBytes + this.inFrameBytes);
    this.stagingI16 = new Int16Array(this.staging.buffer, 0, this.staging.length >> 1);
    this.mixed = new Int16Array(this.blockFrames * this.midCh);
    this.resampled = new Int16Array(this.resampler.maxOutputFrames(this.blockFrames) * this.midCh);
  }

  /** Output frames produced so far (emitted chunks plus the chunk being filled). */
  get outputFrames(): number {
    return this.emitted + this.fill;
  }

  /** Bytes of an incomplete input frame waiting for the next push. */
  get carryBytes(): number {
    return this.carry;
  }

  /** Feeds raw s16le bytes of any length. */
  push(data: Uint8Array): void {
    this.assertOpen();
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
    if (this.fill > 0 && this.chunk !== undefined) {
      const last = this.chunk.subarray(0, this.fill * this.outCh * 2);
      const first = this.emitted;
      this.emitted += this.fill;
      this.fill = 0;
      this.chunk = undefined;
      this.chunkI16 = undefined;
      this.onChunk(last, first);
    }
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
      if (this.chunkI16 === undefined) {
        // A buffer of its own (never a slice of Node's small pool), offset 0, so the view is valid.
        this.chunk = this.allocate(this.chunkFrames * this.outCh * 2);
        this.chunkI16 = new Int16Array(this.chunk.buffer, this.chunk.byteOffset, this.chunkFrames * this.outCh);
      }
      const take = Math.min(frames - done, this.chunkFrames - this.fill);
      remixFrames(src, done * this.midCh, this.midCh, this.chunkI16, this.fill * this.outCh, this.outCh, take);
      done += take;
      this.fill += take;
      if (this.fill === this.chunkFrames) {
        const full = this.chunk!;
        const first = this.emitted;
        this.emitted += this.chunkFrames;
        this.fill = 0;
        this.chunk = undefined;
        this.chunkI16 = undefined;
        this.onChunk(full, first);
      }
    }
  }
}
