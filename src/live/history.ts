import { access, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import { sanitizeSegment } from '../storage/keys.js';
import type { ObjectStore } from '../storage/object-store.js';
import { MASTER_HEADER_BYTES } from '../audio/wav.js';

/**
 * Reads a recording's master PCM by sample frame, for the audio a subscriber asks for that has
 * already passed. Frame `f` of a master with `c` channels is byte `80 + 2·c·f` of the object
 * (the header has a fixed size, {@link MASTER_HEADER_BYTES}), and the spool lays the object out
 * the same way (`storage/master-upload.ts`): byte `o` is at `o − (k−1)·S` of
 * `uploads/<recordingId>/part-<k>.pcm`, `k = ⌊o/S⌋ + 1`, S the part size (one file when the store
 * takes files by moving them). So the spool is read while it exists, the stored object after.
 */
export interface MasterLocation {
  recordingId: string;
  key: string;
  channels: number;
}

export interface HistoryReaderOptions {
  store: ObjectStore;
  /** The daemon's state directory (DATA_DIR). */
  stateDir: string;
  /** Bytes per spool file; 0 = one file (fs store). */
  fileBytes: number;
}

export class HistoryReader {
  constructor(private readonly opts: HistoryReaderOptions) {}

  /**
   * Frames `[from, from + count)` of the master as interleaved s16le. Tries the spool files,
   * then the stored object; throws RESUME_UNAVAILABLE when neither has them (yet).
   */
  async read(m: MasterLocation, from: number, count: number): Promise<Buffer> {
    const files = new OpenSpoolFile();
    try {
      return await this.readWith(files, m, from, count);
    } finally {
      await files.close();
    }
  }

  /**
   * A reader of one master for many reads in a row (a subscriber catching up): the spool file
   * it reads stays open between reads (one read call each instead of open, read, close), and an
   * open file still reads after the spool lets go of it (moved into the store, or removed once
   * uploaded: the bytes are the same). {@link HistorySession.close} when done.
   */
  session(m: MasterLocation): HistorySession {
    const files = new OpenSpoolFile();
    return {
      read: (from, count) => this.readWith(files, m, from, count),
      close: () => files.close(),
    };
  }

  private async readWith(files: OpenSpoolFile, m: MasterLocation, from: number, count: number): Promise<Buffer> {
    const frameBytes = 2 * m.channels;
    const start = MASTER_HEADER_BYTES + from * frameBytes;
    const len = count * frameBytes;
    const spooled = await this.readSpool(files, m.recordingId, start, len);
    if (spooled !== undefined) return spooled;
    let got: Buffer;
    try {
      got = await this.opts.store.getRange(m.key, start, start + len - 1);
    } catch (err) {
      throw new AppError('RESUME_UNAVAILABLE', 'the audio asked for is neither spooled nor stored', { cause: err });
    }
    if (got.length !== len) throw new AppError('RESUME_UNAVAILABLE', `the stored master holds ${got.length} of the ${len} bytes asked for`);
    return got;
  }

  /**
   * First master frame from which every frame below `toFrame` is in the spool files that exist
   * (the spool of a live recording on S3 keeps part 1 and the parts not uploaded yet: what lies
   * in the uploaded middle parts can be read only once the upload is completed). `toFrame` when
   * the file holding frame `toFrame − 1` is gone.
   */
  async spooledFrom(m: MasterLocation, toFrame: number): Promise<number> {
    if (toFrame <= 0) return 0;
    const dir = join(this.opts.stateDir, 'uploads', sanitizeSegment(m.recordingId));
    const S = this.opts.fileBytes;
    const frameBytes = 2 * m.channels;
    const exists = (part: number): Promise<boolean> =>
      access(join(dir, `part-${String(part).padStart(6, '0')}.pcm`)).then(
        () => true,
        () => false,
      );
    const last = S === 0 ? 1 : Math.floor((MASTER_HEADER_BYTES + toFrame * frameBytes - 1) / S) + 1;
    let first = last + 1;
    while (first > 1 && (await exists(first - 1))) first--;
    if (first > last) return toFrame;
    if (first === 1) return 0;
    return Math.min(toFrame, Math.ceil(((first - 1) * S - MASTER_HEADER_BYTES) / frameBytes));
  }

  /** Undefined when a needed spool file is gone (uploaded, or the master moved into the store). */
  private async readSpool(files: OpenSpoolFile, recordingId: string, start: number, len: number): Promise<Buffer | undefined> {
    const dir = join(this.opts.stateDir, 'uploads', sanitizeSegment(recordingId));
    const S = this.opts.fileBytes;
    const out = Buffer.allocUnsafe(len);
    let done = 0;
    while (done < len) {
      const o = start + done;
      const part = S === 0 ? 1 : Math.floor(o / S) + 1;
      const pos = S === 0 ? o : o - (part - 1) * S;
      const n = S === 0 ? len - done : Math.min(len - done, S - pos);
      const path = join(dir, `part-${String(part).padStart(6, '0')}.pcm`);
      let fh: FileHandle;
      try {
        fh = await files.get(path);
      } catch {
        return undefined;
      }
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(out, done + got, n - got, pos + got);
        if (bytesRead === 0) return undefined;
        got += bytesRead;
      }
      done += n;
    }
    return out;
  }
}

/** Reads of one master in a row: see {@link HistoryReader.session}. */
export interface HistorySession {
  read(from: number, count: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** The one spool file a session has open (the part its reads are in). */
class OpenSpoolFile {
  private path: string | undefined;
  private fh: FileHandle | undefined;

  async get(path: string): Promise<FileHandle> {
    if (this.fh !== undefined && this.path === path) return this.fh;
    await this.close();
    const fh = await open(path, 'r');
    this.path = path;
    this.fh = fh;
    return fh;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    this.path = undefined;
    await fh?.close().catch(() => undefined);
  }
}
