/**
 * The header of a master WAV. Its size is fixed before the length is known, because part 1 of
 * the master reserves it from the first byte: {@link MASTER_HEADER_BYTES} bytes, the layout
 * EBU Tech 3306 recommends for files that may outgrow RIFF's 32-bit sizes.
 *
 * Up to 4 GiB a master is a plain RIFF/WAVE file: `RIFF` · `WAVE` · `JUNK` (28 zero bytes,
 * the room a `ds64` chunk needs) · `fmt ` (16-bit PCM) · `data`. Beyond, the same 80 bytes
 * become RF64: `RF64` (size −1) · `WAVE` · `ds64` (64-bit RIFF size, data size and sample
 * count) · `fmt ` · `data` (size −1). The PCM starts at byte 80 either way, so the switch never
 * moves a sample.
 */

/** Bytes before the first sample of every master. */
export const MASTER_HEADER_BYTES = 80;

/** Largest data size a RIFF (32-bit) header can describe after this header; larger is RF64. */
export const RIFF_MAX_DATA_BYTES = 0xffffffff - (MASTER_HEADER_BYTES - 8);

/** The header of a master of `dataBytes` of 16-bit PCM: RIFF up to {@link RIFF_MAX_DATA_BYTES}, RF64 beyond. */
export function masterHeader(sampleRate: number, channels: number, dataBytes: number): Buffer {
  const blockAlign = channels * 2;
  if (!Number.isSafeInteger(dataBytes) || dataBytes < 0 || dataBytes % blockAlign !== 0) {
    throw new RangeError(`master data must be whole ${blockAlign}-byte frames, got ${dataBytes} bytes`);
  }
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
  h.write('fmt ', 48, 'ascii');
  h.writeUInt32LE(16, 52);
  h.writeUInt16LE(1, 56); // WAVE_FORMAT_PCM
  h.writeUInt16LE(channels, 58);
  h.writeUInt32LE(sampleRate, 60);
  h.writeUInt32LE(sampleRate * blockAlign, 64);
  h.writeUInt16LE(blockAlign, 68);
  h.writeUInt16LE(16, 70);
  h.write('data', 72, 'ascii');
  h.writeUInt32LE(rf64 ? 0xffffffff : dataBytes, 76);
  return h;
}
