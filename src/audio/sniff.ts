/** Container/codec families recognised from the first bytes of a body. */
export type SniffedFormat = 'ogg-opus' | 'ogg' | 'mp4' | 'mp3' | 'amr' | 'aac-adts' | 'wav' | 'webm' | 'flac' | 'unknown';

/** How many head bytes {@link sniffFormat} wants (the first Ogg page with OpusHead fits). */
export const SNIFF_BYTES = 64;

function ascii(b: Buffer, off: number, s: string): boolean {
  if (off + s.length > b.length) return false;
  for (let i = 0; i < s.length; i++) if (b[off + i] !== s.charCodeAt(i)) return false;
  return true;
}

/** MPEG-1/2/2.5 audio frame header (layer I–III) with a valid bitrate and rate index. */
function isMpegAudioFrame(b: Buffer, off: number): boolean {
  if (off + 4 > b.length) return false;
  const b1 = b[off + 1]!;
  const b2 = b[off + 2]!;
  if (b[off] !== 0xff || (b1 & 0xe0) !== 0xe0) return false;
  if ((b1 & 0x18) === 0x08) return false; // reserved MPEG version
  if ((b1 & 0x06) === 0) return false; // layer 0 is ADTS, not MPEG audio
  const bitrate = b2 >> 4;
  return bitrate !== 0x0f && bitrate !== 0 && (b2 & 0x0c) !== 0x0c;
}

/** ADTS header: 12-bit sync, layer 00, a valid sampling index and a plausible frame length. */
function isAdtsFrame(b: Buffer, off: number): boolean {
  if (off + 7 > b.length) return false;
  if (b[off] !== 0xff || (b[off + 1]! & 0xf6) !== 0xf0) return false;
  if (((b[off + 2]! >> 2) & 0x0f) > 12) return false;
  const len = ((b[off + 3]! & 0x03) << 11) | (b[off + 4]! << 3) | (b[off + 5]! >> 5);
  return len >= 7;
}

/**
 * Recognises the format from magic bytes only (never from a declared type). Never throws;
 * too few bytes or anything unrecognised gives 'unknown'.
 */
export function sniffFormat(head: Uint8Array): SniffedFormat {
  const b = Buffer.isBuffer(head) ? head : Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (ascii(b, 0, 'OggS')) {
    // OpusHead opens the first packet of the first page, after the 27-byte header and lacing.
    if (b.length >= 27) {
      const at = 27 + b[26]!;
      if (ascii(b, at, 'OpusHead')) return 'ogg-opus';
    }
    return 'ogg';
  }
  if (ascii(b, 4, 'ftyp')) return 'mp4';
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WAVE')) return 'wav';
  if (ascii(b, 0, '#!AMR')) return 'amr';
  if (ascii(b, 0, 'fLaC')) return 'flac';
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) return 'webm';
  if (ascii(b, 0, 'ID3') && b.length >= 10) {
    // The frame after the tag tells MP3 from ADTS; a tag longer than the head is most likely MP3.
    const size = ((b[6]! & 0x7f) << 21) | ((b[7]! & 0x7f) << 14) | ((b[8]! & 0x7f) << 7) | (b[9]! & 0x7f);
    const after = 10 + size + ((b[5]! & 0x10) !== 0 ? 10 : 0);
    if (isAdtsFrame(b, after)) return 'aac-adts';
    return 'mp3';
  }
  if (isAdtsFrame(b, 0)) return 'aac-adts';
  if (isMpegAudioFrame(b, 0)) return 'mp3';
  return 'unknown';
}
