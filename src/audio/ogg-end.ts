import { Transform, type TransformCallback } from 'node:stream';
import type { ContainerFacts } from './container-facts.js';

/**
 * Passes an Ogg stream through unchanged while reading its page headers, so that a stream sent
 * to ffmpeg still yields its declared length: the final granule position of the first logical
 * stream, less the Opus pre-skip (counted at 48 kHz), or the Vorbis sample count at its rate.
 * Holds at most one page header (≤ 282 bytes) and the first page's body (≤ 65 025 bytes).
 */
export class OggEndTap extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  private skip = 0;
  /** Bytes of the BOS page body still wanted, and what was collected so far. */
  private bodyWanted = 0;
  private body: Buffer[] = [];
  private serial: number | undefined;
  private codec: { kind: 'opus'; preSkip: number } | { kind: 'vorbis'; rate: number } | undefined;
  private lastGranule = -1n;
  private bad = false;

  /** Feeds bytes that bypass the stream (the sniffed head) before the rest flows through. */
  observe(chunk: Buffer): void {
    if (!this.bad) this.scan(chunk);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.bad) this.scan(chunk);
    cb(null, chunk);
  }

  /** The declared length once the stream has ended (empty when the Ogg carries neither Opus nor Vorbis). */
  facts(): ContainerFacts {
    if (this.bad || this.codec === undefined || this.lastGranule < 0n) return {};
    if (this.codec.kind === 'opus') {
      const frames = Number(this.lastGranule) - this.codec.preSkip;
      return frames > 0 ? { declaredFrames: frames, declaredRate: 48000 } : {};
    }
    const frames = Number(this.lastGranule);
    return frames > 0 && this.codec.rate > 0 ? { declaredFrames: frames, declaredRate: this.codec.rate } : {};
  }

  private scan(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.bodyWanted > 0) {
        const take = Math.min(this.bodyWanted, chunk.length - off);
        this.body.push(chunk.subarray(off, off + take));
        this.bodyWanted -= take;
        off += take;
        if (this.bodyWanted === 0) this.identify(Buffer.concat(this.body));
        continue;
      }
      if (this.skip > 0) {
        const take = Math.min(this.skip, chunk.length - off);
        this.skip -= take;
        off += take;
        continue;
      }
      // collect one page header: 27 bytes, then the lacing values
      const need = this.pending.length < 27 ? 27 : 27 + this.pending[26]!;
      const take = Math.min(need - this.pending.length, chunk.length - off);
      this.pending = Buffer.concat([this.pending, chunk.subarray(off, off + take)]);
      off += take;
      if (this.pending.length < need) continue;
      if (need === 27) {
        if (this.pending.toString('latin1', 0, 4) !== 'OggS') {
          this.bad = true; // not (or no longer) Ogg: declare nothing
          return;
        }
        if (this.pending[26] !== 0) continue;
      }
      this.page(this.pending);
      this.pending = Buffer.alloc(0);
    }
  }

  private page(h: Buffer): void {
    const bos = (h[5]! & 0x02) !== 0;
    const serial = h.readUInt32LE(14);
    const granule = h.readBigInt64LE(6);
    let bodyLen = 0;
    for (let i = 0; i < h[26]!; i++) bodyLen += h[27 + i]!;
    if (this.serial === undefined && bos) {
      this.serial = serial;
      this.bodyWanted = bodyLen;
      this.body = [];
      if (bodyLen === 0) this.bad = true;
      return;
    }
    if (serial === this.serial && granule >= 0n) this.lastGranule = granule;
    this.skip = bodyLen;
  }

  private identify(p: Buffer): void {
    if (p.toString('latin1', 0, 8) === 'OpusHead' && p.length >= 19) this.codec = { kind: 'opus', preSkip: p.readUInt16LE(10) };
    else if (p[0] === 1 && p.toString('latin1', 1, 7) === 'vorbis' && p.length >= 16) this.codec = { kind: 'vorbis', rate: p.readUInt32LE(12) };
    this.body = [];
  }
}
