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
  'AGFzbQEAAAABKQRgCn9/f39/f39/f38AYAR7e3t7AXtgBHt7f38Be2AIf39/f39/f38AAwUEAAECAwUDAQABBxcDBm1lbW9yeQIAA2ZpcgAABGZpcjQAAwqgCQSiAwMFfwV7An4gByAGQQF0aiEKIAJBBXQhDgJAA0AgByAKTw0BIAAhCyABIAUgDmxqIQwgDCAOaiEN/QwAAAAAAAAAAAAAAAAAAAAAIRD9DAAAAAAAAAAAAAAAAAAAAAAhEf0MAAAAAAAAAAAAAAAAAAAAACES/QwAAAAAAAAAAAAAAAAAAAAAIRMDQCAL/QAEACEPIBAgDyAM/QAEAP26Af2uASEQIBEgDyAM/QAEEP26Af2uASERIAv9AAQQIQ8gEiAPIAz9AAQg/boB/a4BIRIgEyAPIAz9AAQw/boB/a4BIRMgC0EgaiELIAxBwABqIQwgDCANSQ0ACyAQIBL9rgEhECARIBP9rgEhESAQ/RsAIBD9GwFqIBD9GwIgEP0bA2pqrCAIrYYgEf0bACAR/RsBaiAR/RsCIBH9GwNqaqx8IRQgFEIBIAlBAWuthnwgCa2HIRUgFUL//wFVBEBC//8BIRULIBVCgIB+UwRAQoCAfiEVCyAHIBU9AQAgB0ECaiEHIAUgBGohBSAAIAUgA25BAXRqIQAgBSADcCEFDAALCwuVAQECeyAAIAH9DQABAgMQERITBAUGBxQVFhcgACAB/Q0ICQoLGBkaGwwNDg8cHR4f/a4BIQQgAiAD/Q0AAQIDEBESEwQFBgcUFRYXIAIgA/0NCAkKCxgZGhsMDQ4PHB0eH/2uASEFIAQgBf0NAAECAwQFBgcQERITFBUWFyAEIAX9DQgJCgsMDQ4PGBkaGxwdHh/9rgELdAECe0IBIANBAWuthv0SIQQgAP3HASAC/csBIAH9xwH9zgEgBP3OASAD/cwBIQUgBSAA/cgBIAL9ywEgAf3IAf3OASAE/c4BIAP9zAH9DQABAgMICQoLEBESExgZGhv9DAAAAAAAAAAAAAAAAAAAAAD9hQEL7QMCCH8LeyADQQF0IQggBSAEQQF0aiEJIAEgAkEFdGohCgJAA0AgBSAJTw0BIAAhDCAMIAhqIQ0gDSAIaiEOIA4gCGohDyABIQv9DAAAAAAAAAAAAAAAAAAAAAAhE/0MAAAAAAAAAAAAAAAAAAAAACEU/QwAAAAAAAAAAAAAAAAAAAAAIRX9DAAAAAAAAAAAAAAAAAAAAAAhFv0MAAAAAAAAAAAAAAAAAAAAACEX/QwAAAAAAAAAAAAAAAAAAAAAIRj9DAAAAAAAAAAAAAAAAAAAAAAhGf0MAAAAAAAAAAAAAAAAAAAAACEaA0AgC/0ABAAhECAL/QAEECERIAz9AAQAIRIgEyASIBD9ugH9rgEhEyAUIBIgEf26Af2uASEUIA39AAQAIRIgFSASIBD9ugH9rgEhFSAWIBIgEf26Af2uASEWIA79AAQAIRIgFyASIBD9ugH9rgEhFyAYIBIgEf26Af2uASEYIA/9AAQAIRIgGSASIBD9ugH9rgEhGSAaIBIgEf26Af2uASEaIAxBEGohDCANQRBqIQ0gDkEQaiEOIA9BEGohDyALQSBqIQsgCyAKSQ0ACyAFIBMgFSAXIBkQASAUIBYgGCAaEAEgBiAHEAL9HQA3AwAgBUEIaiEFIAAgCEECdGohAAwACwsL';

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
type Fir4Fn = (inPtr: number, taps: number, blocks: number, down: number, count: number, out: number, loBits: number, shift: number) => void;

const PAGE = 65536;

/** The module's memory and its `fir` export; taps are placed once, scratch follows them. */
export class FirKernel {
  private heap: Int16Array;
  /** First byte after the taps placed so far (16-aligned). */
  private tapsEnd = 0;

  constructor(
    private readonly memory: WasmMemory,
    readonly fir: FirFn,
    /** `fir` for one phase (up = 1), four outputs per pass sharing the tap loads; count a multiple of 4. */
    readonly fir4: Fir4Fn,
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
    return new FirKernel(instance.exports['memory'] as WasmMemory, instance.exports['fir'] as FirFn, instance.exports['fir4'] as Fir4Fn);
  } catch {
    return null;
  }
}

/** Null when this engine cannot run WebAssembly SIMD. */
export const firKernel: FirKernel | null = instantiate();
