/**
 * Moves the `moov` box of an in-memory MP4 in front of its media data, as
 * `ffmpeg -movflags +faststart` would. ffmpeg cannot seek in a pipe, so an MP4 whose `moov`
 * comes last (ffmpeg's and many phones' default) only decodes from stdin once its index is
 * first; WhatsApp audio must not touch the disk, so the rewrite happens here, in memory.
 */

/** One ISO BMFF box: its type, where it starts and ends, and its header length (8 or 16). */
export interface Mp4Box {
  type: string;
  start: number;
  end: number;
  header: number;
}
type Box = Mp4Box;

/**
 * The boxes in buf[from, to); null when one is malformed, or with `trailing` the boxes before
 * the first malformed one (bytes after a file's last box are then ignored, not fatal).
 */
export function readBoxes(buf: Buffer, from: number, to: number, trailing = false): Box[] | null {
  const boxes: Box[] = [];
  let off = from;
  const bad = (): Box[] | null => (trailing && boxes.length > 0 ? boxes : null);
  while (off < to) {
    if (off + 8 > to) return bad();
    let size = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    let header = 8;
    if (size === 1) {
      if (off + 16 > to) return bad();
      const big = buf.readBigUInt64BE(off + 8);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return bad();
      size = Number(big);
      header = 16;
    } else if (size === 0) {
      size = to - off;
    }
    if (size < header || off + size > to) return bad();
    // past a file's last box, random bytes seldom spell a box type
    if (trailing && !/^[\x20-\x7e\xa9]{4}$/.test(type)) return bad();
    boxes.push({ type, start: off, end: off + size, header });
    off += size;
  }
  return boxes;
}

const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl', 'edts', 'udta']);

/** Adds `delta` to every chunk offset (stco/co64) under `box` that lies in [lo, hi); false when one would overflow. */
function shiftChunkOffsets(buf: Buffer, box: Box, delta: number, lo: number, hi: number): boolean {
  const children = readBoxes(buf, box.start + box.header, box.end);
  if (children === null) return false;
  for (const c of children) {
    if (CONTAINERS.has(c.type)) {
      if (!shiftChunkOffsets(buf, c, delta, lo, hi)) return false;
    } else if (c.type === 'stco' || c.type === 'co64') {
      const body = c.start + c.header;
      if (body + 8 > c.end) return false;
      const count = buf.readUInt32BE(body + 4);
      const width = c.type === 'stco' ? 4 : 8;
      if (body + 8 + count * width > c.end) return false;
      for (let i = 0, p = body + 8; i < count; i++, p += width) {
        if (width === 4) {
          const v = buf.readUInt32BE(p);
          if (v < lo || v >= hi) continue;
          if (v + delta > 0xffffffff) return false;
          buf.writeUInt32BE(v + delta, p);
        } else {
          const v = buf.readBigUInt64BE(p);
          if (v < BigInt(lo) || v >= BigInt(hi)) continue;
          buf.writeBigUInt64BE(v + BigInt(delta), p);
        }
      }
    }
  }
  return true;
}

/** Whether the top-level `moov` box follows an `mdat` box (the layout a pipe cannot decode). */
export function moovAfterMdat(buf: Buffer): boolean {
  const boxes = readBoxes(buf, 0, buf.length);
  if (boxes === null) return false;
  const moov = boxes.findIndex((b) => b.type === 'moov');
  const mdat = boxes.findIndex((b) => b.type === 'mdat');
  return moov >= 0 && mdat >= 0 && mdat < moov;
}

/**
 * The same file with `moov` before the first `mdat` and chunk offsets fixed (bytes after the
 * last box stay at the end, where a demuxer reading by offsets never looks), or the input
 * itself when it is already in that order or cannot be rewritten safely (malformed boxes,
 * fragmented files, offsets past 4 GiB); ffmpeg then reports what is wrong with it.
 */
export function moovFirst(buf: Buffer): Buffer {
  const boxes = readBoxes(buf, 0, buf.length, true);
  if (boxes === null) return buf;
  const moovIdx = boxes.findIndex((b) => b.type === 'moov');
  const mdatIdx = boxes.findIndex((b) => b.type === 'mdat');
  if (moovIdx < 0 || mdatIdx < 0 || moovIdx < mdatIdx) return buf;
  if (boxes.some((b) => b.type === 'moof')) return buf;
  const moov = boxes[moovIdx]!;
  const moovBytes = Buffer.from(buf.subarray(moov.start, moov.end));
  const local: Box = { ...moov, start: 0, end: moovBytes.length };
  const at = boxes[mdatIdx]!.start;
  // what lay between the first mdat and moov moves forward by the size of moov
  if (!shiftChunkOffsets(moovBytes, local, moovBytes.length, at, moov.start)) return buf;
  return Buffer.concat([buf.subarray(0, at), moovBytes, buf.subarray(at, moov.start), buf.subarray(moov.end)]);
}
