/**
 * The resampler's dot products in WebAssembly SIMD: `resample-fir.wat` compiled with wabt (a
 * dev dependency); test/audio/resample-simd.test.ts compiles it and checks that the bytes below
 * are that compilation (and prints them when not).
 *
 * The taps are integers (see {@link Resampler}): per block of 8 input samples one
 * `i32x4.dot_i16x8_s` against the high part and one against the low part of 8 taps, summed
 * exactly (no product or sum can overflow: the taps are scaled so that the worst case fits in
 * 32 bits), so the result is the same integer the scalar path in resample.ts computes. One
 * module instance serves every resampler of the thread: the taps of each filter design live in
 * its memory for good, and each call copies the input window in and the output samples out.
 * Where WebAssembly SIMD is unavailable (`--jitless`, old engines) {@link firKernel} is null and
 * the resampler runs its scalar loop.
 */
const WASM_BASE64 =
  'AGFzbQEAAAABDgFgCn9/f39/f39/f38AAwIBAAUDAQABBxACBm1lbW9yeQIAA2ZpcgAACqUDAaIDAwV/BXsCfiAHIAZBAXRqIQogAkEFdCEOAkADQCAHIApPDQEgACELIAEgBSAObGohDCAMIA5qIQ39DAAAAAAAAAAAAAAAAAAAAAAhEP0MAAAAAAAAAAAAAAAAAAAAACER/QwAAAAAAAAAAAAAAAAAAAAAIRL9DAAAAAAAAAAAAAAAAAAAAAAhEwNAIAv9AAQAIQ8gECAPIAz9AAQA/boB/a4BIRAgESAPIAz9AAQQ/boB/a4BIREgC/0ABBAhDyASIA8gDP0ABCD9ugH9rgEhEiATIA8gDP0ABDD9ugH9rgEhEyALQSBqIQsgDEHAAGohDCAMIA1JDQALIBAgEv2uASEQIBEgE/2uASERIBD9GwAgEP0bAWogEP0bAiAQ/RsDamqsIAithiAR/RsAIBH9GwFqIBH9GwIgEf0bA2pqrHwhFCAUQgEgCUEBa62GfCAJrYchFSAVQv//AVUEQEL//wEhFQsgFUKAgH5TBEBCgIB+IRULIAcgFT0BACAHQQJqIQcgBSAEaiEFIAAgBSADbkEBdGohACAFIANwIQUMAAsLCw==';

/** The compiled module's bytes (for the test that recompiles the .wat). */
export const RESAMPLE_FIR_WASM = Buffer.from(WASM_BASE64, 'base64');

/** The part of the WebAssembly global this needs (the project's type libraries do not declare it). */
interface Wasm {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

interface WasmMemory {
  buffer: ArrayBuffer;
  grow(pages: number): number;
}

type FirFn = (inPtr: number, taps: number, blocks: number, up: number, down: number, phase: number, count: number, out: number, loBits: number, shift: number) => void;

const PAGE = 65536;

/** The module's memory and its `fir` export; taps are placed once, scratch follows them. */
export class FirKernel {
  private heap: Int16Array;
  /** First byte after the taps placed so far (16-aligned). */
  private tapsEnd = 0;

  constructor(
    private readonly memory: WasmMemory,
    readonly fir: FirFn,
  ) {
    this.heap = new Int16Array(memory.buffer);
  }

  /** The module's memory as i16, holding at least `bytes` bytes (refreshed when it grows). */
  view(bytes: number): Int16Array {
    const have = this.memory.buffer.byteLength;
    if (have < bytes) this.memory.grow(Math.ceil((bytes - have) / PAGE));
    if (this.heap.buffer !== this.memory.buffer) this.heap = new Int16Array(this.memory.buffer);
    return this.heap;
  }

  /** Copies packed taps into the module for good; returns their byte offset. */
  placeTaps(packed: Int16Array): number {
    const at = this.tapsEnd;
    this.tapsEnd = at + ((packed.byteLength + 15) & ~15);
    this.view(this.tapsEnd).set(packed, at >> 1);
    return at;
  }

  /** Where a call's input window starts (16-aligned, after every filter's taps). */
  get scratch(): number {
    return this.tapsEnd;
  }
}

function instantiate(): FirKernel | null {
  try {
    const wasm = (globalThis as unknown as { WebAssembly?: Wasm }).WebAssembly;
    if (wasm === undefined) return null;
    const instance = new wasm.Instance(new wasm.Module(RESAMPLE_FIR_WASM));
    return new FirKernel(instance.exports['memory'] as WasmMemory, instance.exports['fir'] as FirFn);
  } catch {
    return null;
  }
}

/** Null when this engine cannot run WebAssembly SIMD. */
export const firKernel: FirKernel | null = instantiate();
