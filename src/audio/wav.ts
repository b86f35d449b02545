import { AppError } from '../errors.js';
import { BYTES_PER_SAMPLE, type PcmFormat } from './pcm-format.js';

/** Size of the canonical PCM WAV header written by {@link wavHeader}. */
export const WAV_HEADER_BYTES = 44;

/** RIFF sizes are 32-bit; a data chunk larger than this cannot be described. */
export const WAV_MAX_DATA_BYTES = 0xffffffff - 36;

/**
 * Bytes before the first sample of every master ({@link masterHeader}). Its size is fixed
 * before the length is known, because part 1 of a master reserves it from the first byte.
 */
export const MASTER_HEADER_BYTES = 80;

/** Largest data size a RIFF (32-bit) master header can describe; larger is RF64. */
export const RIFF_MAX_DATA_BYTES = 0xffffffff - (MASTER_HEADER_BYTES - 8);

/**
 * The canonical 44-byte header of a 16-bit PCM WAV file holding `dataBytes` of samples:
 * `RIFF` · `WAVE` · `fmt ` · `data`.
 */
export function wavHeader(format: PcmFormat, dataBytes: number): Buffer {
  checkHeader(format, dataBytes, WAV_MAX_DATA_BYTES, false);
  const h = Buffer.alloc(WAV_HEADER_BYTES);
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(36 + dataBytes, 4);
  h.write('WAVE', 8, 'ascii');
  writeFmtAndData(h, 12, format, dataBytes);
  return h;
}

/**
 * The 80-byte header of a master of `dataBytes` of 16-bit PCM, the layout EBU Tech 3306
 * recommends for files that may outgrow RIFF's 32-bit sizes. Up to
 * {@link RIFF_MAX_DATA_BYTES} it is a plain RIFF/WAVE file: `RIFF` · `WAVE` · `JUNK` (28 zero
 * bytes, the room a `ds64` chunk needs) · `fmt ` · `data`. Beyond, the same 80 bytes become
 * RF64: `RF64` (size −1) · `WAVE` · `ds64` (64-bit RIFF size, data size and sample count) ·
 * `fmt ` · `data` (size −1). The PCM starts at byte 80 either way, so the switch never moves
 * a sample.
 */
export function masterHeader(format: PcmFormat, dataBytes: number): Buffer {
  checkHeader(format, dataBytes, Number.MAX_SAFE_INTEGER, true);
  const blockAlign = format.channels * BYTES_PER_SAMPLE;
  const h = Buffer.alloc(MASTER_HEADER_BYTES);
  const riffSize = MASTER_HEADER_BYTES - 8 + dataBytes;
  const rf64 = dataBytes > RIFF_MAX_DATA_BYTES;
  h.write(rf64 ? 'RF64' : 'RIFF', 0, 'ascii');
  h.writeUInt32LE(rf64 ? 0xffffffff : riffSize, 4);
  h.write('WAVE', 8, 'ascii');
  h.write(rf64 ? 'ds64' : 'JUNK', 12, 'ascii');
  h.writeUInt32LE(28, 16);
  if (rf64) {
    h.writeBigUInt64LE(BigInt(riffSize), 20);
    h.writeBigUInt64LE(BigInt(dataBytes), 28);
    h.writeBigUInt64LE(BigInt(dataBytes / blockAlign), 36);
    // 44..47: table length 0 (no other chunk needs a 64-bit size)
  }
  writeFmtAndData(h, 48, format, rf64 ? 0xffffffff : dataBytes);
  return h;
}

/**
 * Every value must fit the header field it goes in: a positive integer rate whose byte rate
 * fits 32 bits, 1..65535 channels, a data size in 0..`maxDataBytes` (whole frames for a
 * master, whose sample count is in its header).
 */
function checkHeader(format: PcmFormat, dataBytes: number, maxDataBytes: number, wholeFrames: boolean): void {
  const { sampleRate, channels } = format;
  if (!Number.isInteger(channels) || channels < 1 || channels > 0xffff) {
    throw new RangeError(`channels must be an integer in 1..65535, got ${channels}`);
  }
  const blockAlign = channels * BYTES_PER_SAMPLE;
  if (!Number.isInteger(sampleRate) || sampleRate < 1 || sampleRate * blockAlign > 0xffffffff) {
    throw new RangeError(`sampleRate must be a positive integer whose byte rate fits 32 bits, got ${sampleRate}`);
  }
  if (!Number.isSafeInteger(dataBytes) || dataBytes < 0 || dataBytes > maxDataBytes) {
    throw new RangeError(`dataBytes must be an integer in 0..${maxDataBytes}, got ${dataBytes}`);
  }
  if (wholeFrames && dataBytes % blockAlign !== 0) {
    throw new RangeError(`master data must be whole ${blockAlign}-byte frames, got ${dataBytes} bytes`);
  }
}

/** `fmt ` (16-bit PCM) then the `data` chunk header, written at `at` (24 + 8 bytes). */
function writeFmtAndData(h: Buffer, at: number, format: PcmFormat, dataSize: number): void {
  const blockAlign = format.channels * BYTES_PER_SAMPLE;
  h.write('fmt ', at, 'ascii');
  h.writeUInt32LE(16, at + 4);
  h.writeUInt16LE(1, at + 8); // WAVE_FORMAT_PCM
  h.writeUInt16LE(format.channels, at + 10);
  h.writeUInt32LE(format.sampleRate, at + 12);
  h.writeUInt32LE(format.sampleRate * blockAlign, at + 16);
  h.writeUInt16LE(blockAlign, at + 20);
  h.writeUInt16LE(16, at + 22);
  h.write('data', at + 24, 'ascii');
  h.writeUInt32LE(dataSize, at + 28);
}

/** A complete WAV file: header + a copy of `pcm`, in `into` (exactly that long) when given. */
export function encodeWav(pcm: Uint8Array, format: PcmFormat, into?: Buffer): Buffer {
  if (into !== undefined && into.length !== WAV_HEADER_BYTES + pcm.byteLength) throw new RangeError(`encodeWav: a ${WAV_HEADER_BYTES + pcm.byteLength}-byte buffer is needed, got ${into.length}`);
  const out = into ?? Buffer.allocUnsafe(WAV_HEADER_BYTES + pcm.byteLength);
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
