import { AppError } from '../errors.js';

/** One logical-stream packet with the page facts a decoder needs. */
export interface OggPacket {
  data: Buffer;
  serial: number;
  /** Granule position of the page on which this packet ends, or -1n when it ends on no page granule (only the last packet of a page carries it). */
  granule: bigint;
  /** True for the first packet of a logical stream (its page has the BOS flag). */
  bos: boolean;
  /** True for the last packet of the page flagged EOS. */
  eos: boolean;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    t[i] = r >>> 0;
  }
  return t;
})();

/** Ogg's CRC-32 (polynomial 0x04c11db7, not reflected) over a page whose CRC field reads 0. */
export function oggCrc(page: Uint8Array, crcOffset = 22): number {
  let crc = 0;
  for (let i = 0; i < page.length; i++) {
    const b = i >= crcOffset && i < crcOffset + 4 ? 0 : page[i]!;
    crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ b) & 0xff]!) >>> 0;
  }
  return crc;
}

const MAX_PAGE = 27 + 255 + 255 * 255;

/**
 * Incremental Ogg demuxer: feed bytes with `push`, take packets with `next`, call `end` when the
 * input is over. Checks the capture pattern, version and CRC of every page and joins packets
 * that span pages. Errors are AppError CORRUPT_AUDIO (bad data) or TRUNCATED_AUDIO (input ended
 * inside a page or packet).
 */
export class OggReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly packets: OggPacket[] = [];
  private readonly partial = new Map<number, Buffer[]>();
  private pagesRead = 0;
  private readonly eosSeen = new Set<number>();

  /** Pages parsed so far. */
  get pages(): number {
    return this.pagesRead;
  }

  /** Whether the logical stream `serial` ended with an EOS page. */
  ended(serial: number): boolean {
    return this.eosSeen.has(serial);
  }

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let off = 0;
    for (;;) {
      const used = this.readPage(off);
      if (used === 0) break;
      off += used;
    }
    // keep the incomplete page only (copy so the caller's big chunk can be freed)
    this.buf = off === 0 ? this.buf : Buffer.from(this.buf.subarray(off));
  }

  /** The next complete packet, or undefined when more input is needed. */
  next(): OggPacket | undefined {
    return this.packets.shift();
  }

  /** Declares the input complete; throws TRUNCATED_AUDIO when it stopped inside a page. */
  end(): void {
    if (this.buf.length > 0) {
      throw new AppError('TRUNCATED_AUDIO', `Ogg input ends inside a page (${this.buf.length} bytes left over)`);
    }
    if (this.partial.size > 0) throw new AppError('TRUNCATED_AUDIO', 'Ogg input ends inside a packet');
  }

  private readPage(off: number): number {
    const b = this.buf;
    const avail = b.length - off;
    if (avail < 27) return 0;
    if (b[off] !== 0x4f || b[off + 1] !== 0x67 || b[off + 2] !== 0x67 || b[off + 3] !== 0x53) {
      throw new AppError('CORRUPT_AUDIO', `Ogg capture pattern missing at page ${this.pagesRead}`);
    }
    if (b[off + 4] !== 0) throw new AppError('CORRUPT_AUDIO', `unknown Ogg version ${b[off + 4]}`);
    const nseg = b[off + 26]!;
    if (avail < 27 + nseg) return 0;
    let body = 0;
    for (let i = 0; i < nseg; i++) body += b[off + 27 + i]!;
    const size = 27 + nseg + body;
    if (size > MAX_PAGE) throw new AppError('CORRUPT_AUDIO', 'Ogg page too large');
    if (avail < size) return 0;
    const page = b.subarray(off, off + size);
    if (oggCrc(page) !== page.readUInt32LE(22)) {
      throw new AppError('CORRUPT_AUDIO', `Ogg page ${this.pagesRead} fails its CRC check`);
    }
    this.pagesRead++;
    const flags = page[5]!;
    const granule = page.readBigInt64LE(6);
    const serial = page.readUInt32LE(14);
    let parts = this.partial.get(serial);
    if ((flags & 0x01) === 0 && parts !== undefined) {
      throw new AppError('CORRUPT_AUDIO', 'Ogg packet continuation missing');
    }
    let pos = 27 + nseg;
    let start = pos;
    const firstNew = this.packets.length;
    for (let i = 0; i < nseg; i++) {
      const lace = page[27 + i]!;
      pos += lace;
      if (lace < 255) {
        const piece = page.subarray(start, pos);
        const data = parts === undefined ? Buffer.from(piece) : Buffer.concat([...parts, piece]);
        parts = undefined;
        this.packets.push({ data, serial, granule: -1n, bos: (flags & 0x02) !== 0 && this.packets.length === firstNew, eos: false });
        start = pos;
      }
    }
    if (start < pos || (nseg > 0 && page[27 + nseg - 1] === 255)) {
      // the page ends inside a packet that continues on the next page
      (parts ??= []).push(Buffer.from(page.subarray(start, pos)));
    }
    if (parts === undefined) this.partial.delete(serial);
    else this.partial.set(serial, parts);
    const last = this.packets.length - 1;
    if (last >= firstNew) {
      this.packets[last]!.granule = granule;
      if ((flags & 0x04) !== 0) this.packets[last]!.eos = true;
    }
    if ((flags & 0x04) !== 0) this.eosSeen.add(serial);
    return size;
  }
}
