/** Size of the canonical PCM WAV header this module writes. */
export const WAV_HEADER_BYTES = 44;

/**
 * The 44-byte RIFF/WAVE header of 16-bit PCM with `dataBytes` of samples. Kept local to storage
 * because the master's header is written by the upload itself once the size is known.
 * RIFF chunks are word-aligned: an odd data size is followed by a pad byte the caller adds.
 */
export function wavHeader(sampleRate: number, channels: number, dataBytes: number): Buffer {
  const blockAlign = channels * 2;
  const h = Buffer.alloc(WAV_HEADER_BYTES);
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(36 + dataBytes + (dataBytes & 1), 4);
  h.write('WAVE', 8, 'ascii');
  h.write('fmt ', 12, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(channels, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * blockAlign, 28);
  h.writeUInt16LE(blockAlign, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}
