import { endianness } from 'node:os';

/** Shape of signed 16-bit little-endian interleaved PCM. */
export interface PcmFormat {
  /** Sample-frames per second (e.g. 48000, 16000). */
  sampleRate: number;
  /** Interleaved channels per sample-frame (1 or 2 in this daemon). */
  channels: number;
}

/** Bytes in one 16-bit sample. */
export const BYTES_PER_SAMPLE = 2;

/** Int16Array views over Buffers assume the host order matches the PCM order (true on x64 and arm64). */
export const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export function bytesPerFrame(f: PcmFormat): number {
  return f.channels * BYTES_PER_SAMPLE;
}

export function bytesPerSecond(f: PcmFormat): number {
  return f.sampleRate * f.channels * BYTES_PER_SAMPLE;
}

/** Whole sample-frames contained in `bytes` (a trailing partial frame is not counted). */
export function bytesToFrames(bytes: number, f: PcmFormat): number {
  return Math.floor(bytes / bytesPerFrame(f));
}

export function framesToBytes(frames: number, f: PcmFormat): number {
  return frames * bytesPerFrame(f);
}

export function framesToSeconds(frames: number, f: PcmFormat): number {
  return frames / f.sampleRate;
}

export function bytesToSeconds(bytes: number, f: PcmFormat): number {
  return bytesToFrames(bytes, f) / f.sampleRate;
}

/** Frames covering `seconds`, rounded to the nearest frame. */
export function secondsToFrames(seconds: number, f: PcmFormat): number {
  return Math.round(seconds * f.sampleRate);
}

export function sameFormat(a: PcmFormat, b: PcmFormat): boolean {
  return a.sampleRate === b.sampleRate && a.channels === b.channels;
}

/** Throws a RangeError naming what was given when a format is not usable. */
export function assertPcmFormat(f: PcmFormat, what = 'format'): void {
  if (!Number.isInteger(f.sampleRate) || f.sampleRate < 1000 || f.sampleRate > 384000) {
    throw new RangeError(`${what}.sampleRate must be an integer in 1000..384000, got ${f.sampleRate}`);
  }
  if (!Number.isInteger(f.channels) || f.channels < 1 || f.channels > 8) {
    throw new RangeError(`${what}.channels must be an integer in 1..8, got ${f.channels}`);
  }
}

/**
 * A view of `buf` as samples. Zero-copy when the buffer is 2-byte aligned, else a copy
 * (pooled Buffers may start at odd offsets).
 */
export function int16View(buf: Uint8Array): Int16Array {
  const n = buf.byteLength >> 1;
  if ((buf.byteOffset & 1) === 0 && HOST_IS_LITTLE_ENDIAN) return new Int16Array(buf.buffer, buf.byteOffset, n);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = (buf[2 * i]! | (buf[2 * i + 1]! << 8)) << 16 >> 16;
  return out;
}

/** A Buffer sharing the memory of `samples`. */
export function int16ToBuffer(samples: Int16Array): Buffer {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
}
