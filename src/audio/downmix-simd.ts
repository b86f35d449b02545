/**
 * Stereo → mono of the live path in WebAssembly SIMD: 8 frames per step (one pairwise widening
 * add, +1, shift, narrow), the same (L + R + 1) >> 1 as {@link remixFrames}' scalar loop, about
 * five times faster than it in V8 (the downmix was the largest JS cost per 10 ms frame).
 *
 * The module is `downmix-stereo.wat` compiled with wabt (a dev dependency): test/audio/downmix-simd.test.ts
 * compiles it and checks that the bytes below are that compilation (and prints them when not). Input is copied into the module's memory and the mono
 * samples out of it: two memcpy of ≤ 1 920 B per frame, cheaper than the scalar arithmetic.
 * Where WebAssembly SIMD is unavailable (`--jitless`, old engines) {@link simdDownmix} is null
 * and the caller keeps its scalar loop.
 */
const WASM_BASE64 =
  'AGFzbQEAAAABBwFgA39/fwADAgEABQMBAAEHFAIGbWVtb3J5AgAHZG93bm1peAAACrEBAa4BAQF/IAAgAkECdGohAwJAA0AgAEEgaiADSw0BIAEgAP0ABAD9fv0MAQAAAAEAAAABAAAAAQAAAP2uAUEB/awBIAD9AAQQ/X79DAEAAAABAAAAAQAAAAEAAAD9rgFBAf2sAf2FAf0LBAAgAEEgaiEAIAFBEGohAQwACwsCQANAIAAgA08NASABIAAuAQAgAC4BAmpBAWpBAXU7AQAgAEEEaiEAIAFBAmohAQwACwsL';

/** The compiled module's bytes (for the test that recompiles the .wat). */
export const DOWNMIX_WASM = Buffer.from(WASM_BASE64, 'base64');

/** Stereo frames per call into the module: its 64 KiB page holds 32 KiB in and 16 KiB out. */
const BLOCK_FRAMES = 8192;
const OUT = BLOCK_FRAMES * 4;

export type SimdDownmix = (src: ArrayBufferLike, srcByteOffset: number, frames: number, dst: Uint8Array, dstByteOffset: number) => void;

/** The part of the WebAssembly global this needs (the project's type libraries do not declare it). */
interface Wasm {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

function instantiate(): SimdDownmix | null {
  let mem: Uint8Array;
  let downmix: (src: number, dst: number, frames: number) => void;
  try {
    const wasm = (globalThis as unknown as { WebAssembly?: Wasm }).WebAssembly;
    if (wasm === undefined) return null;
    const instance = new wasm.Instance(new wasm.Module(DOWNMIX_WASM));
    mem = new Uint8Array((instance.exports['memory'] as { buffer: ArrayBuffer }).buffer);
    downmix = instance.exports['downmix'] as typeof downmix;
  } catch {
    return null;
  }
  // a 10 ms egress frame (480 stereo frames) is nearly every call: its views are made once
  let inView = new Uint8Array(mem.buffer, 0, 480 * 4);
  let outView = mem.subarray(OUT, OUT + 480 * 2);
  /**
   * `frames` stereo s16le frames at `srcByteOffset` of `src` → mono s16le at `dstByteOffset`
   * of `dst` (any alignment).
   */
  return (src, srcByteOffset, frames, dst, dstByteOffset) => {
    let done = 0;
    while (done < frames) {
      const n = Math.min(frames - done, BLOCK_FRAMES);
      const input = new Uint8Array(src, srcByteOffset + done * 4, n * 4);
      if (inView.length !== n * 4) {
        inView = new Uint8Array(mem.buffer, 0, n * 4);
        outView = mem.subarray(OUT, OUT + n * 2);
      }
      inView.set(input);
      downmix(0, OUT, n);
      dst.set(outView, dstByteOffset + done * 2);
      done += n;
    }
  };
}

/** Null when this engine cannot run WebAssembly SIMD. */
export const simdDownmix: SimdDownmix | null = instantiate();
