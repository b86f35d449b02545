/** Deterministic PCM bytes: byte i of a recording depends only on i, so any prefix can be checked. */
export function patternBytes(offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const x = offset + i;
    b[i] = (x * 31 + (x >>> 11) * 7 + (x >>> 19)) & 0xff;
  }
  return b;
}

/** A strict parser of the 44-byte PCM WAV the storage writes; throws on any mismatch. */
export function parseWav(file: Buffer): { sampleRate: number; channels: number; bitsPerSample: number; data: Buffer } {
  if (file.length < 44) throw new Error(`too short for WAV: ${file.length}`);
  if (file.toString('ascii', 0, 4) !== 'RIFF' || file.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not RIFF/WAVE');
  if (file.readUInt32LE(4) !== file.length - 8) throw new Error(`RIFF size ${file.readUInt32LE(4)} != ${file.length - 8}`);
  if (file.toString('ascii', 12, 16) !== 'fmt ' || file.readUInt32LE(16) !== 16 || file.readUInt16LE(20) !== 1) throw new Error('bad fmt chunk');
  const channels = file.readUInt16LE(22);
  const sampleRate = file.readUInt32LE(24);
  const bitsPerSample = file.readUInt16LE(34);
  if (file.readUInt32LE(28) !== sampleRate * channels * 2 || file.readUInt16LE(32) !== channels * 2) throw new Error('bad byte rate / block align');
  if (file.toString('ascii', 36, 40) !== 'data') throw new Error('no data chunk');
  const dataBytes = file.readUInt32LE(40);
  if (dataBytes !== file.length - 44) throw new Error(`data size ${dataBytes} != ${file.length - 44}`);
  return { sampleRate, channels, bitsPerSample, data: file.subarray(44) };
}
