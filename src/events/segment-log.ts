import { mkdir, open, readdir, readFile, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { fsyncDir } from '../storage/atomic-file.js';
import type { OutboxEvent } from './sink.js';

export interface SegmentLogOptions {
  /** Directory of the segments; created when missing. */
  dir: string;
  /** A segment file is closed and a new one started past this size. Default 8 MiB. */
  segmentBytes?: number;
  /** The highest seq every reader has confirmed: segments wholly at or below it are deleted. */
  confirmedThrough: () => number;
  /**
   * Bytes of the newest durable lines also kept in memory, as the events appended, so a reader
   * that is caught up gets them without reading and parsing the segment back. Default 4 MiB;
   * a reader further behind reads from the segments. 0 reads everything back.
   */
  memoryBytes?: number;
  logger?: Logger;
}

/** Where a reader stands: a segment (by its first seq) and a byte offset in it. */
export interface LogPosition {
  segFirstSeq: number;
  offset: number;
}

/** What `read` found past a reader's seq. */
export interface LogRead {
  events: OutboxEvent[];
  /** Seq of the first event in `events`; undefined when there is none. */
  firstSeq: number | undefined;
  /** Seq of the last event read; the `after` passed in when nothing was there. */
  lastSeq: number;
  /** Where the next read goes on; null while the log holds no segment. */
  next: LogPosition | null;
}

interface Segment {
  firstSeq: number;
  path: string;
}

/** A durable line still held in memory: its event, and where the line ends in its segment. */
interface TailEntry {
  event: OutboxEvent;
  seg: Segment;
  end: number;
  bytes: number;
}

interface PendingAppend {
  event: OutboxEvent;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const SEGMENT_RE = /^seg-(\d{16})\.ndjson$/;
const READ_CHUNK = 256 * 1024;

function segmentName(firstSeq: number): string {
  return `seg-${String(firstSeq).padStart(16, '0')}.ndjson`;
}

/**
 * The outbox's append-only log. `append` resolves once the event is fsync'd in an NDJSON
 * segment (the appends of one tick share one write+fsync); readers read it back by seq, in
 * order. Lines are `{"seq":n,"event":{…}}`. A torn last line (crash mid-write) is ignored on
 * open, and each run writes into a fresh segment, so nothing is ever appended after a torn
 * line. A closed segment is deleted once every reader is past it. The newest durable lines
 * (up to `memoryBytes`) are also held in memory, so a reader that is caught up is handed the
 * events just committed instead of reading the segment back; what is held is exactly what the
 * file holds from that seq on (a failed write empties it, readers then go back to the file).
 */
export class SegmentLog {
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly confirmedThrough: () => number;
  private readonly logger: Logger | undefined;
  private readonly flushListeners: (() => void)[] = [];
  private readonly memoryBytes: number;
  /**
   * The newest durable lines, in seq order: `tail[tailStart]` has seq `tailFirstSeq`, the last
   * one seq `last`. Every seq from `tailFirstSeq` on is held (none yet when it is past `last`);
   * Infinity while memory holds nothing the file may not (at open, after a failed write).
   */
  private tail: TailEntry[] = [];
  private tailStart = 0;
  private tailFirstSeq = Infinity;
  private tailBytes = 0;
  private fileReads = 0;

  private segments: Segment[] = [];
  /** The segment this run appends to; null until the first append (or after a write error). */
  private active: { seg: Segment; fh: FileHandle; size: number } | null = null;
  private last = 0;
  private nextSeq = 1;
  private pending: PendingAppend[] = [];
  private flushing: Promise<void> | null = null;
  private appendedCount = 0;
  private flushCount = 0;
  private closed = false;

  constructor(options: SegmentLogOptions) {
    if (options.segmentBytes !== undefined && !(options.segmentBytes > 0)) {
      throw new RangeError(`segmentBytes must be positive, got ${options.segmentBytes}`);
    }
    this.dir = options.dir;
    this.segmentBytes = options.segmentBytes ?? 8 * 1024 * 1024;
    this.confirmedThrough = options.confirmedThrough;
    this.memoryBytes = options.memoryBytes ?? 4 * 1024 * 1024;
    this.logger = options.logger;
  }

  /** Highest seq durably written. */
  get lastSeq(): number {
    return this.last;
  }

  /** Segment files held. */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Events appended by this run. */
  get appended(): number {
    return this.appendedCount;
  }

  /** write+fsync rounds of this run; lower than `appended` when appends were grouped. */
  get flushes(): number {
    return this.flushCount;
  }

  /** Reads of a segment file by this run (a caught-up reader is served from memory and makes none). */
  get segmentReads(): number {
    return this.fileReads;
  }

  /** Seq of the oldest event still held (the next seq when none is). */
  get firstRetainedSeq(): number {
    return this.segments[0]?.firstSeq ?? this.nextSeq;
  }

  /**
   * Reads the segments back: the newest ones holding only a torn line are deleted so seqs stay
   * monotonic, and numbering goes on after the last seq found, or after `seqAtLeast` when that
   * is higher (the readers' cursors, when every segment was already deleted).
   */
  async open(seqAtLeast = 0): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    this.segments = names.map((n) => ({ firstSeq: Number(SEGMENT_RE.exec(n)![1]), path: join(this.dir, n) }));
    let lastInSegments = 0;
    while (this.segments.length > 0) {
      const seg = this.segments[this.segments.length - 1]!;
      const last = await lastSeqIn(seg.path);
      if (last !== null) {
        lastInSegments = last;
        break;
      }
      await unlink(seg.path);
      this.segments.pop();
    }
    this.last = Math.max(lastInSegments, seqAtLeast, 0);
    this.nextSeq = this.last + 1;
  }

  /** Called after every durable group, once its appends resolved. */
  onFlush(listener: () => void): void {
    this.flushListeners.push(listener);
  }

  /**
   * Durably appends an event; resolves after its line is fsync'd. Rejects with STORAGE_ERROR when
   * the write failed (the event may then be read back or not).
   */
  append(event: OutboxEvent): Promise<void> {
    if (this.closed) return Promise.reject(new AppError('DRAINING', 'outbox log is closed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ event, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Resolves once every append issued so far is written (or failed). */
  async flushed(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /**
   * Events after seq `after`, at most `max`, from `from` (a position a previous read returned)
   * or from the segment that may hold `after + 1`.
   */
  async read(after: number, from: LogPosition | null, max: number): Promise<LogRead> {
    if (after + 1 >= this.tailFirstSeq) return this.readHeld(after, from, max);
    let pos = from ?? this.positionAfter(after);
    const events: OutboxEvent[] = [];
    let firstSeq: number | undefined;
    let lastSeq = after;
    if (!pos) return { events, firstSeq, lastSeq, next: null };
    for (;;) {
      const segIndex = this.segments.findIndex((s) => s.firstSeq === pos!.segFirstSeq);
      if (segIndex < 0) {
        // the segment is gone (confirmed by everyone): resume after the last seq seen
        const p = this.positionAfter(lastSeq);
        if (!p || (p.segFirstSeq === pos.segFirstSeq && p.offset === pos.offset)) break;
        pos = p;
        continue;
      }
      const seg = this.segments[segIndex]!;
      const isActive = this.active?.seg === seg;
      let r: { offset: number; atEnd: boolean };
      try {
        const limit = isActive ? this.active!.size : (await stat(seg.path)).size;
        this.fileReads++;
        r = await readLines(seg.path, pos.offset, limit, max - events.length, (line) => {
          const parsed = parseLine(line);
          if (!parsed) {
            this.logger?.warn({ segment: seg.path }, 'outbox: skipping unreadable line');
            return false;
          }
          if (parsed.seq <= lastSeq) return false; // already confirmed (replay after restart)
          events.push(parsed.event);
          firstSeq ??= parsed.seq;
          lastSeq = parsed.seq;
          return true;
        });
      } catch (err) {
        // deleted under us: every reader is past it, so the seq tells where to go on
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !this.segments.includes(seg)) continue;
        throw err;
      }
      pos = { segFirstSeq: seg.firstSeq, offset: r.offset };
      if (events.length >= max) break;
      // the array may have shifted while we awaited: look the segment up again
      const idx = this.segments.indexOf(seg);
      if (idx < 0) continue;
      // at the end of a closed segment (torn tail included): continue with the next one
      const next = this.segments[idx + 1];
      if (!isActive && next && r.atEnd) {
        pos = { segFirstSeq: next.firstSeq, offset: 0 };
        continue;
      }
      break;
    }
    return { events, firstSeq, lastSeq, next: pos };
  }

  /** `read` from the lines held in memory: every seq from `after + 1` on is held. */
  private readHeld(after: number, from: LogPosition | null, max: number): LogRead {
    if (after >= this.last) return { events: [], firstSeq: undefined, lastSeq: after, next: from ?? this.positionAfter(after) };
    const start = this.tailStart + (after + 1 - this.tailFirstSeq);
    const stop = Math.min(this.tail.length, start + max);
    const events: OutboxEvent[] = new Array(stop - start);
    for (let i = start; i < stop; i++) events[i - start] = this.tail[i]!.event;
    const lastEntry = this.tail[stop - 1]!;
    const lastSeq = after + (stop - start);
    this.dropHeld(this.confirmedThrough());
    return { events, firstSeq: after + 1, lastSeq, next: { segFirstSeq: lastEntry.seg.firstSeq, offset: lastEntry.end } };
  }

  /** Lets go of the held lines up to `seq` (confirmed by every reader), and of the oldest ones past `memoryBytes`. */
  private dropHeld(seq: number): void {
    while (this.tailStart < this.tail.length && (this.tailFirstSeq <= seq || this.tailBytes > this.memoryBytes)) {
      this.tailBytes -= this.tail[this.tailStart]!.bytes;
      this.tail[this.tailStart] = undefined as unknown as TailEntry;
      this.tailStart++;
      this.tailFirstSeq++;
    }
    if (this.tailStart === this.tail.length) {
      this.tail = [];
      this.tailStart = 0;
      this.tailBytes = 0;
    } else if (this.tailStart > 1024 && this.tailStart * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailStart);
      this.tailStart = 0;
    }
  }

  /** Holds a durable group in memory, after the lines already held (which end right before it). */
  private hold(firstSeq: number, events: OutboxEvent[], lineBytes: number[], seg: Segment, startOffset: number): void {
    if (this.memoryBytes <= 0) return;
    if (this.tailFirstSeq + (this.tail.length - this.tailStart) !== firstSeq) {
      // not right after what is held (the first group, or seqs burnt by a failed write)
      this.releaseHeld();
      this.tailFirstSeq = firstSeq;
    }
    let end = startOffset;
    for (let i = 0; i < events.length; i++) {
      end += lineBytes[i]!;
      this.tail.push({ event: events[i]!, seg, end, bytes: lineBytes[i]! });
      this.tailBytes += lineBytes[i]!;
    }
    this.dropHeld(this.confirmedThrough());
  }

  /** After a failed write: the file may now hold lines the memory does not; readers go back to the file. */
  private releaseHeld(): void {
    this.tail = [];
    this.tailStart = 0;
    this.tailBytes = 0;
    this.tailFirstSeq = Infinity;
  }

  /** Deletes the closed segments every reader is past (`confirmedThrough`). */
  async deleteConfirmed(): Promise<void> {
    if (this.closed) return;
    const confirmed = this.confirmedThrough();
    while (this.segments.length > 0) {
      const seg = this.segments[0]!;
      if (this.active?.seg === seg) break;
      const next = this.segments[1];
      const segLast = next ? next.firstSeq - 1 : this.last;
      if (segLast > confirmed) break;
      this.segments.shift();
      // what memory holds of it goes too: a reader still standing there goes on from the file, as before
      this.dropHeld(segLast);
      await unlink(seg.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }

  /** Writes what was appended, then closes the active segment; appends after it reject. */
  async close(): Promise<void> {
    await this.flushed();
    this.closed = true;
    const active = this.active;
    this.active = null;
    await active?.fh.close();
  }

  // ---- appending (group commit) ---------------------------------------------------------------

  private async flushLoop(): Promise<void> {
    // let every append issued in this tick join the first group
    await new Promise<void>((r) => setImmediate(r));
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      const firstSeq = this.nextSeq;
      this.nextSeq += group.length; // seqs are burnt even when the write fails: no reuse
      try {
        const lines = group.map((p, i) => JSON.stringify({ seq: firstSeq + i, event: p.event }) + '\n');
        const text = lines.join('');
        const buf = Buffer.from(text, 'utf8');
        // one byte per character unless the text has other than ASCII: then measure each line
        const lineBytes = buf.length === text.length ? lines.map((l) => l.length) : lines.map((l) => Buffer.byteLength(l, 'utf8'));
        const active = await this.activeSegment(firstSeq, buf.length);
        const startOffset = active.size;
        let written = 0;
        while (written < buf.length) {
          const { bytesWritten } = await active.fh.write(buf, written, buf.length - written, null);
          written += bytesWritten;
        }
        await active.fh.datasync();
        active.size += buf.length;
        this.last = firstSeq + group.length - 1;
        this.hold(
          firstSeq,
          group.map((p) => p.event),
          lineBytes,
          active.seg,
          startOffset,
        );
        this.appendedCount += group.length;
        this.flushCount++;
        for (const p of group) p.resolve();
        for (const listener of this.flushListeners) listener();
      } catch (err) {
        // the segment may end in a partial line now: later groups go to a fresh segment
        const broken = this.active;
        this.active = null;
        this.releaseHeld();
        await broken?.fh.close().catch(() => undefined); // the segment is abandoned for a new one: its close error changes nothing
        this.logger?.error({ err }, 'outbox write failed');
        const e = new AppError('STORAGE_ERROR', 'outbox write failed', { cause: err });
        for (const p of group) p.reject(e);
      }
    }
    this.flushing = null;
  }

  private async activeSegment(firstSeq: number, incoming: number): Promise<{ seg: Segment; fh: FileHandle; size: number }> {
    if (this.active && this.active.size > 0 && this.active.size + incoming > this.segmentBytes) {
      await this.active.fh.close();
      this.active = null;
      await this.deleteConfirmed();
    }
    if (!this.active) {
      const seg = { firstSeq, path: join(this.dir, segmentName(firstSeq)) };
      const fh = await open(seg.path, 'wx');
      await fsyncDir(this.dir); // the new file's directory entry must survive a crash too
      this.segments.push(seg);
      this.active = { seg, fh, size: 0 };
    }
    return this.active;
  }

  /** Where a reader whose seq is `seq` starts: the segment that may hold seq+1. */
  private positionAfter(seq: number): LogPosition | null {
    let found: Segment | undefined;
    for (const s of this.segments) {
      if (s.firstSeq <= seq + 1) found = s;
      else break;
    }
    found ??= this.segments[0];
    return found ? { segFirstSeq: found.firstSeq, offset: 0 } : null;
  }
}

/** The seq of a segment's last complete line; null when it holds none (only a torn line, or nothing). */
async function lastSeqIn(path: string): Promise<number | null> {
  const text = await readFile(path, 'utf8');
  let last: number | null = null;
  let start = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) break; // no newline: torn tail
    const seq = parseLine(text.slice(start, nl))?.seq;
    if (seq !== undefined) last = seq;
    start = nl + 1;
  }
  return last;
}

function parseLine(line: string): { seq: number; event: OutboxEvent } | null {
  try {
    const v = JSON.parse(line) as { seq?: unknown; event?: unknown };
    if (typeof v.seq !== 'number' || typeof v.event !== 'object' || v.event === null) return null;
    return { seq: v.seq, event: v.event as OutboxEvent };
  } catch {
    return null;
  }
}

/**
 * Reads complete lines from `offset` up to `limit`, stopping after `want` lines that `onLine`
 * accepted (returned true for).
 * Returns the offset after the last consumed line and whether no complete line is left.
 */
async function readLines(
  path: string,
  offset: number,
  limit: number,
  want: number,
  onLine: (line: string) => boolean,
): Promise<{ offset: number; atEnd: boolean }> {
  const fh = await open(path, 'r');
  try {
    let pos = offset;
    let size = READ_CHUNK;
    let taken = 0;
    while (pos < limit && taken < want) {
      const buf = Buffer.allocUnsafe(Math.min(size, limit - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      let start = 0;
      let consumedAny = false;
      while (taken < want) {
        const nl = buf.indexOf(0x0a, start);
        if (nl < 0 || nl >= bytesRead) break;
        if (onLine(buf.toString('utf8', start, nl))) taken++;
        start = nl + 1;
        consumedAny = true;
      }
      pos += start;
      if (!consumedAny) {
        if (bytesRead < buf.length || pos + bytesRead >= limit) return { offset: pos, atEnd: true }; // torn tail
        size *= 2; // one line longer than the buffer
      }
    }
    return { offset: pos, atEnd: pos >= limit };
  } finally {
    await fh.close();
  }
}
