import { AppError } from '../errors.js';
import { BYTES_PER_SAMPLE, type PcmFormat } from './pcm-format.js';

/** Size of the canonical PCM WAV header written by {@link wavHeader}. */
export const WAV_HEADER_BYTES = 44;

/** RIFF sizes are 32-bit; a data chunk larger than this cannot be described. */
export const WAV_MAX_DATA_BYTES = 0xffffffff - 36;

/**
 * The canonical 44-byte header of a 16-bit PCM WAV file holding `dataBytes` of samples.
 * Written by hand so a streamed master can have its header patched with the final size.
 */
export function wavHeader(format: PcmFormat, dataBytes: number): Buffer {
  if (!Number.isInteger(dataBytes) || dataBytes < 0 || dataBytes > WAV_MAX_DATA_BYTES) {
    throw new RangeError(`dataBytes must be an integer in 0..${WAV_MAX_DATA_BYTES}, got ${dataBytes}`);
  }
  const blockAlign = format.channels * BYTES_PER_SAMPLE;
  const h = Buffer.alloc(WAV_HEADER_BYTES);
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(36 + dataBytes, 4);
  h.write('WAVE', 8, 'ascii');
  h.write('fmt ', 12, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // WAVE_FORMAT_PCM
  h.writeUInt16LE(format.channels, 22);
  h.writeUInt32LE(format.sampleRate, 24);
  h.writeUInt32LE(format.sampleRate * blockAlign, 28);
  h.writeUInt16LE(blockAlign, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}

/** A complete WAV file: header + a copy of `pcm`. */
export function encodeWav(pcm: Uint8Array, format: PcmFormat): Buffer {
  const out = Buffer.allocUnsafe(WAV_HEADER_BYTES + pcm.byteLength);
  wavHeader(format, pcm.byteLength).copy(out, 0);
  out.set(pcm, WAV_HEADER_BYTES);
  return out;
}

export interface ParsedWav {
  format: PcmFormat;
  /** Offset of the first sample byte in the buffer. */
  dataOffset: number;
  /** Length of the sample data in bytes. */
  dataBytes: number;
}

function corrupt(message: string): AppError {
  return new AppError('CORRUPT_AUDIO', `invalid WAV: ${message}`);
}

/**
 * Reads a 16-bit PCM WAV file, walking its chunks. The RIFF size and the data size must
 * agree with the buffer length (a word of RIFF padding is tolerated); anything else is
 * CORRUPT_AUDIO, so a master with a stale header is caught.
 */
export function parseWav(buf: Uint8Array): ParsedWav {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 12) throw corrupt(`${b.length} bytes is shorter than a RIFF header`);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw corrupt('not RIFF/WAVE');
  const riffSize = b.readUInt32LE(4);
  if (riffSize + 8 !== b.length && riffSize + 9 !== b.length) {
    throw corrupt(`RIFF size ${riffSize} + 8 does not match the ${b.length} bytes present`);
  }
  let format: PcmFormat | undefined;
  let off = 12;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + size > b.length) throw corrupt(`fmt chunk of ${size} bytes`);
      const tag = b.readUInt16LE(body);
      const channels = b.readUInt16LE(body + 2);
      const sampleRate = b.readUInt32LE(body + 4);
      const bits = b.readUInt16LE(body + 14);
      // WAVE_FORMAT_EXTENSIBLE (0xfffe) with 16-bit samples is PCM too
      if ((tag !== 1 && tag !== 0xfffe) || bits !== 16) throw corrupt(`format tag ${tag} with ${bits} bits is not 16-bit PCM`);
      if (channels < 1 || sampleRate < 1) throw corrupt(`${channels} channels at ${sampleRate} Hz`);
      format = { sampleRate, channels };
    } else if (id === 'data') {
      if (format === undefined) throw corrupt('data chunk before fmt chunk');
      const end = body + size;
      if (end !== b.length && end + 1 !== b.length && !(end < b.length && hasTrailingChunks(b, end + (size & 1)))) {
        throw corrupt(`data size ${size} does not match the ${b.length - body} bytes present`);
      }
      if (size % (format.channels * BYTES_PER_SAMPLE) !== 0) throw corrupt(`data size ${size} is not a whole number of frames`);
      return { format, dataOffset: body, dataBytes: size };
    }
    off = body + size + (size & 1);
  }
  throw corrupt('no data chunk');
}

/** True when `off..end` is a sequence of well-formed chunks (e.g. LIST after data). */
function hasTrailingChunks(b: Buffer, off: number): boolean {
  while (off + 8 <= b.length) {
    const size = b.readUInt32LE(off + 4);
    off += 8 + size + (size & 1);
  }
  return off === b.length || off === b.length + 1;
}
