import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';

/** Deterministic PCM bytes: byte i of a recording depends only on i, so any prefix can be checked. */
export function patternBytes(offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    b[i] = (x * 31 + (x >>> 11) * 7 + (x >>> 19)) & 0xff;
  }
  return b;
}

/** What the first {@link MASTER_HEADER_BYTES} bytes of a master say. */
export interface MasterHeaderFields {
  container: 'RIFF' | 'RF64';
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** The object size the header describes (RIFF size + 8). */
  fileBytes: number;
  dataBytes: number;
}

/**
 * A strict parser of the master header the storage writes: RIFF · WAVE · JUNK(28) · fmt(16) ·
 * data, or RF64 · WAVE · ds64(28) · fmt(16) · data with the 64-bit sizes; throws on any mismatch.
 */
export function parseMasterHeader(h: Buffer): MasterHeaderFields {
  if (h.length < MASTER_HEADER_BYTES) throw new Error(`too short for a master header: ${h.length}`);
  const container = h.toString('ascii', 0, 4);
  if ((container !== 'RIFF' && container !== 'RF64') || h.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not RIFF/RF64 WAVE');
  const rf64 = container === 'RF64';
  if (h.toString('ascii', 12, 16) !== (rf64 ? 'ds64' : 'JUNK') || h.readUInt32LE(16) !== 28) throw new Error('no 28-byte JUNK/ds64 chunk');
  let fileBytes: number;
  let dataBytes: number;
  if (rf64) {
    if (h.readUInt32LE(4) !== 0xffffffff || h.readUInt32LE(76) !== 0xffffffff) throw new Error('RF64 sizes must be -1 outside ds64');
    fileBytes = Number(h.readBigUInt64LE(20)) + 8;
    dataBytes = Number(h.readBigUInt64LE(28));
    if (h.readUInt32LE(44) !== 0) throw new Error('ds64 table must be empty');
  } else {
    if (!h.subarray(20, 48).equals(Buffer.alloc(28))) throw new Error('JUNK must be zeros');
    fileBytes = h.readUInt32LE(4) + 8;
    dataBytes = h.readUInt32LE(76);
  }
  if (h.toString('ascii', 48, 52) !== 'fmt ' || h.readUInt32LE(52) !== 16 || h.readUInt16LE(56) !== 1) throw new Error('bad fmt chunk');
  const channels = h.readUInt16LE(58);
  const sampleRate = h.readUInt32LE(60);
  const bitsPerSample = h.readUInt16LE(70);
  if (h.readUInt32LE(64) !== sampleRate * channels * 2 || h.readUInt16LE(68) !== channels * 2 || bitsPerSample !== 16) throw new Error('bad byte rate / block align');
  if (h.toString('ascii', 72, 76) !== 'data') throw new Error('no data chunk');
  if (fileBytes !== MASTER_HEADER_BYTES + dataBytes) throw new Error(`RIFF size ${fileBytes - 8} does not match data ${dataBytes}`);
  if (rf64 && Number(h.readBigUInt64LE(36)) !== dataBytes / (channels * 2)) throw new Error('ds64 sample count');
  return { container: rf64 ? 'RF64' : 'RIFF', sampleRate, channels, bitsPerSample, fileBytes, dataBytes };
}

/** A whole master: the header must describe exactly the bytes present. */
export function parseWav(file: Buffer): { sampleRate: number; channels: number; bitsPerSample: number; data: Buffer } {
  const h = parseMasterHeader(file);
  if (h.fileBytes !== file.length) throw new Error(`header says ${h.fileBytes} bytes, file has ${file.length}`);
  return { sampleRate: h.sampleRate, channels: h.channels, bitsPerSample: h.bitsPerSample, data: file.subarray(MASTER_HEADER_BYTES) };
}
