import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDir } from '../storage/atomic-file.js';

/** Bytes of one slot: `<seq> <generation> <crc32 hex>`, space-padded, newline-terminated. */
const SLOT = 64;
const SLOT_RE = /^(\d{1,16}) (\d{1,16}) ([0-9a-f]{8}) *\n$/;

interface Slot {
  seq: number;
  gen: number;
}

function slotCrc(seq: number, gen: number): string {
  return crc32(`${seq} ${gen}`).toString(16).padStart(8, '0');
}

function parseSlot(text: string): Slot | null {
  const m = SLOT_RE.exec(text);
  if (m === null) return null;
  const seq = Number(m[1]);
  const gen = Number(m[2]);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(gen) || slotCrc(seq, gen) !== m[3]) return null;
  return { seq, gen };
}

/**
 * A sink's confirmed position, rewritten in place. Two fixed slots are written in turn, each
 * with a generation and a CRC, so a torn write leaves the other slot readable; reading takes
 * the valid slot of the highest generation. Nothing is created, renamed or deleted per
 * update: tmp + rename for every confirmation frees an inode each time, and a filesystem full
 * of recently freed inodes makes every new file (WAVs, notes) slower to create.
 */
export class CursorFile {
  private gen: number;

  private constructor(private readonly fh: FileHandle, last: Slot | null) {
    this.gen = last?.gen ?? 0;
  }

  /**
   * Opens (or creates) the cursor at `path`; `seq` is the stored position, or null when there
   * is none yet. A cursor in the older one-JSON-file format at `legacyPath` is taken over.
   */
  static async open(path: string, legacyPath?: string): Promise<{ file: CursorFile; seq: number | null }> {
    let fh: FileHandle;
    let created = false;
    try {
      fh = await open(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      fh = await open(path, 'w+');
      created = true;
    }
    try {
      let last: Slot | null = null;
      if (!created) {
        const buf = Buffer.alloc(2 * SLOT);
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
        for (let i = 0; i + SLOT <= bytesRead; i += SLOT) {
          const s = parseSlot(buf.toString('latin1', i, i + SLOT));
          if (s !== null && (last === null || s.gen > last.gen)) last = s;
        }
      }
      const file = new CursorFile(fh, last);
      if (last !== null) return { file, seq: last.seq };
      const legacy = legacyPath === undefined ? null : await readLegacy(legacyPath);
      if (created) await fsyncDir(dirname(path));
      if (legacy !== null) {
        await file.write(legacy);
        await unlink(legacyPath!).catch(() => undefined); // the position is already in the new cursor; a leftover legacy file is read no more
      }
      return { file, seq: legacy };
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Durably records `seq` (in the slot not holding the newest value). */
  async write(seq: number): Promise<void> {
    const gen = this.gen + 1;
    const text = `${seq} ${gen} ${slotCrc(seq, gen)}`.padEnd(SLOT - 1, ' ') + '\n';
    await this.fh.write(Buffer.from(text, 'latin1'), 0, SLOT, (gen % 2) * SLOT);
    await this.fh.datasync();
    this.gen = gen;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** `{"seq":N}` as earlier versions stored it; null when absent or unreadable (replay from the start is the safe direction). */
async function readLegacy(path: string): Promise<number | null> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as { seq?: unknown };
    return typeof v.seq === 'number' && Number.isSafeInteger(v.seq) ? v.seq : null;
  } catch {
    return null;
  }
}
