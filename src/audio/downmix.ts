/**
 * Channel conversion on interleaved 16-bit samples. Functions write into a caller-owned
 * destination so the live path can reuse its buffers.
 */

/** (L+R)/2 rounded half up; exact when L == R, which is what LiveKit sends for a mono mic. */
export function downmixStereoInto(src: Int16Array, frames: number, dst: Int16Array, dstOffset = 0): void {
  for (let i = 0, j = 0; i < frames; i++, j += 2) {
    dst[dstOffset + i] = (src[j]! + src[j + 1]! + 1) >> 1;
  }
}

/**
 * Any channel count to any channel count: to mono averages (rounded), from mono duplicates,
 * otherwise channels are copied and missing ones repeat the last source channel.
 */
export function remixInto(
  src: Int16Array,
  frames: number,
  inChannels: number,
  outChannels: number,
  dst: Int16Array,
  dstOffset = 0,
): void {
  if (inChannels === outChannels) {
    dst.set(src.subarray(0, frames * inChannels), dstOffset);
  } else if (inChannels === 2 && outChannels === 1) {
    downmixStereoInto(src, frames, dst, dstOffset);
  } else if (outChannels === 1) {
    for (let i = 0; i < frames; i++) {
      let sum = 0;
      for (let c = 0; c < inChannels; c++) sum += src[i * inChannels + c]!;
      dst[dstOffset + i] = Math.round(sum / inChannels);
    }
  } else {
    for (let i = 0; i < frames; i++) {
      for (let c = 0; c < outChannels; c++) {
        dst[dstOffset + i * outChannels + c] = src[i * inChannels + Math.min(c, inChannels - 1)]!;
      }
    }
  }
}

/** Convenience for whole buffers: a new Int16Array with `outChannels` channels. */
export function remix(src: Int16Array, inChannels: number, outChannels: number): Int16Array {
  const frames = Math.floor(src.length / inChannels);
  const dst = new Int16Array(frames * outChannels);
  remixInto(src, frames, inChannels, outChannels, dst);
  return dst;
}
