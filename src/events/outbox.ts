import { mkdir, open, readdir, readFile, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js';
import { fsyncDir } from '../storage/atomic-file.js';
import { CursorFile } from './cursor-file.js';
import type { AudioEvent } from './types.js';

/** The longest wait a sink's `retryAfterMs` can impose. */
const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** What the outbox stores and hands to sinks. */
export type OutboxEvent = AudioEvent;

/** A destination of events. The outbox gives each sink its own durable cursor. */
export interface Sink {
  /** Stable name: the cursor file and metric label (letters, digits, `-`, `_`). */
  readonly name: string;
  /**
   * Resolves once the destination confirmed every event of the batch; rejects to retry it. An
   * error with a numeric `retryAfterMs` delays the retry at least that long.
   */
  deliver(batch: OutboxEvent[]): Promise<void>;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
  /** Events this sink takes; the others count as confirmed for it. Default: all. */
  accepts?(event: OutboxEvent): boolean;
  /** Largest batch this sink wants in one `deliver` call. Default: the outbox's batchSize. */
  readonly maxBatch?: number;
  /** Whether the destination is reachable right now (e.g. broker connected). */
  ready?(): boolean;
}

export interface OutboxOptions {
  /** Directory of the outbox (`<dataDir>/outbox`); created when missing. */
  dir: string;
  /** Sinks; an event's segment is deleted once every one of them confirmed it. */
  sinks: Sink[];
  /** A segment file is closed and a new one started past this size. Default 8 MiB. */
  segmentBytes?: number;
  /** Most events handed to a sink at once. Default 256. */
  batchSize?: number;
  /** Retry backoff of a failing sink (full jitter). Default 200 ms .. 30 s. */
  retry?: BackoffOptions;
  /** How long stop() waits for in-flight deliveries. Default 10 000 ms. */
  stopTimeoutMs?: number;
  /**
   * Longest a sink's confirmed position stays in memory only, in ms. Default 1 000: after a
   * crash a sink is sent again at most this much of what it had already confirmed (delivery
   * is at least once either way), instead of one cursor write per delivered batch.
   */
  cursorSyncMs?: number;
  metrics?: Metrics;
  logger?: Logger;
}

export interface SinkStats {
  /** Events appended and not yet confirmed by this sink. */
  pending: number;
  /** Highest sequence number this sink confirmed. */
  cursor: number;
  delivered: number;
  retries: number;
  consecutiveFailures: number;
  ready: boolean;
  lastError: string | null;
}

export interface OutboxStats {
  lastSeq: number;
  segments: number;
  appended: number;
  /** write+fsync rounds; lower than `appended` when concurrent appends were grouped. */
  flushes: number;
  sinks: Record<string, SinkStats>;
}

interface PendingAppend {
  event: OutboxEvent;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Segment {
  firstSeq: number;
  path: string;
}

interface ReadPosition {
  segFirstSeq: number;
  offset: number;
}

interface SinkState {
  sink: Sink;
  cursor: number;
  pos: ReadPosition | null;
  delivered: number;
  retries: number;
  failures: number;
  lastError: string | null;
  wake: (() => void) | null;
  loop: Promise<void> | null;
  inFlight: Promise<void> | null;
  /** The cursor as last written to disk, and the pending deferred write. */
  savedCursor: number;
  saving: Promise<void> | null;
  saveTimer: NodeJS.Timeout | null;
  cursorFile: CursorFile | null;
  /** occurredAt (ms) of the oldest event this sink has read and not confirmed; null when none. */
  headAt: number | null;
}

interface ReadResult {
  events: OutboxEvent[];
  lastSeq: number;
  next: ReadPosition;
}

const SEGMENT_RE = /^seg-(\d{16})\.ndjson$/;
const SINK_NAME_RE = /^[A-Za-z0-9_-]+$/;
const READ_CHUNK = 256 * 1024;

function segmentName(firstSeq: number): string {
  return `seg-${String(firstSeq).padStart(16, '0')}.ndjson`;
}

/**
 * Durable local outbox. `append` resolves once the event is fsync'd in an append-only NDJSON
 * segment (concurrent appends share one write+fsync); each sink reads the segments back at its
 * own durable cursor, in order, at least once. A segment is deleted when every sink is past it.
 * Lines are `{"seq":n,"event":{…}}`; a torn last line (crash mid-write) is ignored on restart,
 * and each run writes into a fresh segment so nothing is ever appended after a torn line.
 */
export class Outbox {
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly batchSize: number;
  private readonly retry: BackoffOptions;
  private readonly stopTimeoutMs: number;
  private readonly cursorSyncMs: number;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger | undefined;
  private readonly sinks = new Map<string, SinkState>();

  private segments: Segment[] = [];
  /** The segment this run appends to; null until the first append (or after a write error). */
  private active: { seg: Segment; fh: FileHandle; size: number } | null = null;
  private lastSeq = 0;
  private nextSeq = 1;
  private pending: PendingAppend[] = [];
  private flushing: Promise<void> | null = null;
  private appended = 0;
  private flushes = 0;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly stopController = new AbortController();

  constructor(options: OutboxOptions) {
    this.dir = options.dir;
    this.segmentBytes = options.segmentBytes ?? 8 * 1024 * 1024;
    this.batchSize = options.batchSize ?? 256;
    this.retry = options.retry ?? {};
    this.stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.cursorSyncMs = options.cursorSyncMs ?? 1000;
    this.metrics = options.metrics;
    this.logger = options.logger;
    for (const sink of options.sinks) {
      if (!SINK_NAME_RE.test(sink.name)) {
        throw new TypeError(`outbox sink name "${sink.name}" must match ${SINK_NAME_RE}`);
      }
      if (this.sinks.has(sink.name)) {
        throw new TypeError(`outbox sink "${sink.name}" is configured twice`);
      }
      this.sinks.set(sink.name, {
        sink,
        cursor: 0,
        pos: null,
        delivered: 0,
        retries: 0,
        failures: 0,
        lastError: null,
        wake: null,
        loop: null,
        inFlight: null,
        savedCursor: -1,
        saving: null,
        saveTimer: null,
        cursorFile: null,
        headAt: null,
      });
    }
  }

  /** Recovers segments and cursors, starts the sinks and their delivery loops. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('outbox already started');
    await mkdir(this.dir, { recursive: true });
    await this.recover();
    this.state = 'running';
    if (this.metrics) this.metrics.outboxLagSource = () => this.lagBySink();
    for (const name of this.sinks.keys()) this.metrics?.deliveryRetries.inc({ sink: name }, 0);
    for (const st of this.sinks.values()) {
      try {
        await st.sink.start?.();
      } catch (err) {
        // a sink that cannot start yet (broker down) still gets retried by its loop
        this.logger?.warn({ sink: st.sink.name, err }, 'outbox sink failed to start');
      }
      st.loop = this.runSink(st);
    }
    this.updatePendingGauge();
  }

  /**
   * Durably appends an event; resolves after its line is fsync'd. Rejects with DRAINING once
   * stop() began, or STORAGE_ERROR when the write failed (the event may then be delivered or not).
   */
  append(event: OutboxEvent): Promise<void> {
    if (this.state !== 'running') {
      return Promise.reject(new AppError('DRAINING', 'outbox is not accepting events'));
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ event, resolve, reject });
      if (!this.flushing) this.flushing = this.flushLoop();
    });
  }

  /** Flushes appends, lets the sinks catch up and stops the loops (each bounded by stopTimeoutMs), stops sinks. */
  async stop(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    while (this.flushing) await this.flushing;
    // Give the sinks the chance to deliver what is pending (e.g. the completion events of the
    // recordings just finalized), bounded by stopTimeoutMs; the rest waits for the next start.
    const deadline = Date.now() + this.stopTimeoutMs;
    while (Date.now() < deadline && [...this.sinks.values()].some((st) => st.cursor < this.lastSeq)) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.stopController.abort();
    for (const st of this.sinks.values()) st.wake?.();
    const loops = [...this.sinks.values()].map((st) => st.loop ?? Promise.resolve());
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      Promise.all(loops).then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), this.stopTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) this.logger?.warn({ timeoutMs: this.stopTimeoutMs }, 'outbox stop: deliveries still in flight');
    for (const st of this.sinks.values()) await this.closeCursor(st);
    for (const st of this.sinks.values()) {
      try {
        await st.sink.stop?.();
      } catch (err) {
        this.logger?.warn({ sink: st.sink.name, err }, 'outbox sink failed to stop');
      }
    }
    await this.active?.fh.close();
    this.active = null;
    this.state = 'stopped';
  }

  stats(): OutboxStats {
    const sinks: Record<string, SinkStats> = {};
    for (const [name, st] of this.sinks) {
      sinks[name] = {
        pending: Math.max(0, this.lastSeq - st.cursor),
        cursor: st.cursor,
        delivered: st.delivered,
        retries: st.retries,
        consecutiveFailures: st.failures,
        ready: this.sinkReady(st),
        lastError: st.lastError,
      };
    }
    return {
      lastSeq: this.lastSeq,
      segments: this.segments.length,
      appended: this.appended,
      flushes: this.flushes,
      sinks,
    };
  }

  /** Health bit for /ready: the named sink (or every sink) is reachable and not failing. */
  ready(sinkName?: string): boolean {
    if (this.state !== 'running') return false;
    if (sinkName !== undefined) {
      const st = this.sinks.get(sinkName);
      return st !== undefined && this.sinkReady(st);
    }
    return [...this.sinks.values()].every((st) => this.sinkReady(st));
  }

  private sinkReady(st: SinkState): boolean {
    return st.failures === 0 && st.sink.ready?.() !== false;
  }

  // ---- recovery -------------------------------------------------------------------------------

  private async recover(): Promise<void> {
    const names = (await readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    this.segments = names.map((n) => ({ firstSeq: Number(SEGMENT_RE.exec(n)![1]), path: join(this.dir, n) }));
    // the newest segments may hold only a torn line: drop them so seq numbers stay monotonic
    let lastInSegments = 0;
    while (this.segments.length > 0) {
      const seg = this.segments[this.segments.length - 1]!;
      const last = await this.lastSeqIn(seg);
      if (last !== null) {
        lastInSegments = last;
        break;
      }
      await unlink(seg.path);
      this.segments.pop();
    }
    const cursors = new Map<string, number>();
    for (const [name, st] of this.sinks) {
      const { file, seq } = await CursorFile.open(this.cursorPath(name), join(this.dir, `cursor-${name}.json`));
      st.cursorFile = file;
      if (seq !== null) {
        cursors.set(name, seq);
        st.savedCursor = seq;
      }
    }
    this.lastSeq = Math.max(lastInSegments, ...cursors.values(), 0);
    this.nextSeq = this.lastSeq + 1;
    const firstRetained = this.segments[0]?.firstSeq ?? this.nextSeq;
    for (const [name, st] of this.sinks) {
      // a sink seen for the first time starts at the oldest retained event
      st.cursor = cursors.get(name) ?? firstRetained - 1;
      if (!cursors.has(name)) {
        await st.cursorFile!.write(st.cursor);
        st.savedCursor = st.cursor;
      }
    }
    await this.deleteConfirmedSegments();
  }

  private async lastSeqIn(seg: Segment): Promise<number | null> {
    const text = await readFile(seg.path, 'utf8');
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

  private cursorPath(name: string): string {
    return join(this.dir, `cursor-${name}`);
  }

  /**
   * Writes the sink's cursor now if the last write is older than cursorSyncMs, else once that
   * much time has passed; a write in progress picks up the newest cursor when it is done.
   */
  private scheduleCursorSave(st: SinkState): void {
    if (st.saveTimer !== null || st.saving !== null || st.cursor === st.savedCursor) return;
    if (this.cursorSyncMs <= 0) {
      this.saveCursor(st);
      return;
    }
    st.saveTimer = setTimeout(() => {
      st.saveTimer = null;
      this.saveCursor(st);
    }, this.cursorSyncMs);
    st.saveTimer.unref();
  }

  private saveCursor(st: SinkState): void {
    const file = st.cursorFile;
    if (file === null) return;
    const seq = st.cursor;
    st.saving = file
      .write(seq)
      .then(() => {
        st.savedCursor = seq;
      })
      .catch((err: unknown) => {
        // the in-memory cursor stays right; a stale file only means replay after a crash
        this.logger?.error({ sink: st.sink.name, err }, 'outbox cursor write failed');
      })
      .finally(() => {
        st.saving = null;
        if (this.state === 'running') this.scheduleCursorSave(st);
      });
  }

  /** Final write of the sink's cursor, then closes its file. */
  private async closeCursor(st: SinkState): Promise<void> {
    if (st.saveTimer !== null) clearTimeout(st.saveTimer);
    st.saveTimer = null;
    while (st.saving !== null) await st.saving;
    const file = st.cursorFile;
    if (file === null) return;
    st.cursorFile = null;
    try {
      if (st.cursor !== st.savedCursor) {
        await file.write(st.cursor);
        st.savedCursor = st.cursor;
      }
    } catch (err) {
      this.logger?.error({ sink: st.sink.name, err }, 'outbox cursor write failed');
    } finally {
      await file.close();
    }
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
        const buf = Buffer.from(lines.join(''), 'utf8');
        const active = await this.activeSegment(firstSeq, buf.length);
        let written = 0;
        while (written < buf.length) {
          const { bytesWritten } = await active.fh.write(buf, written, buf.length - written, null);
          written += bytesWritten;
        }
        await active.fh.datasync();
        active.size += buf.length;
        this.lastSeq = firstSeq + group.length - 1;
        this.appended += group.length;
        this.flushes++;
        for (const p of group) p.resolve();
        this.updatePendingGauge();
        for (const st of this.sinks.values()) st.wake?.();
      } catch (err) {
        // the segment may end in a partial line now: later groups go to a fresh segment
        const broken = this.active;
        this.active = null;
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
      await this.deleteConfirmedSegments();
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

  // ---- delivery -------------------------------------------------------------------------------

  private async runSink(st: SinkState): Promise<void> {
    const signal = this.stopController.signal;
    const name = st.sink.name;
    while (!signal.aborted) {
      const flushesSeen = this.flushes;
      let batch: ReadResult | null;
      try {
        batch = await this.readBatch(st);
      } catch (err) {
        this.logger?.error({ sink: name, err }, 'outbox read failed');
        await sleep(backoffDelay(++st.failures, this.retry), signal);
        continue;
      }
      if (!batch) {
        st.failures = 0;
        await new Promise<void>((resolve) => {
          st.wake = () => {
            st.wake = null;
            resolve();
          };
          // a flush that landed while we were reading must not be slept through
          if (signal.aborted || this.flushes !== flushesSeen) st.wake();
        });
        continue;
      }
      const accepts = st.sink.accepts?.bind(st.sink);
      const deliverable = accepts ? batch.events.filter((e) => accepts(e)) : batch.events;
      st.headAt = deliverable.length > 0 ? Date.parse(deliverable[0]!.occurredAt) : null;
      try {
        if (deliverable.length > 0) {
          st.inFlight = st.sink.deliver(deliverable);
          await st.inFlight;
        }
      } catch (err) {
        st.failures++;
        st.retries++;
        st.lastError = err instanceof Error ? err.message : String(err);
        this.metrics?.deliveryRetries.inc({ sink: name });
        // A destination that said when to come back (Retry-After) is not asked sooner, within reason.
        const asked = (err as { retryAfterMs?: unknown } | null)?.retryAfterMs;
        const wait = Math.max(backoffDelay(st.failures, this.retry), typeof asked === 'number' ? Math.min(asked, MAX_RETRY_AFTER_MS) : 0);
        this.logger?.warn({ sink: name, attempt: st.failures, retryInMs: wait, err: st.lastError }, 'event delivery failed; retrying');
        await sleep(wait, signal);
        continue;
      } finally {
        st.inFlight = null;
      }
      st.failures = 0;
      st.lastError = null;
      st.delivered += deliverable.length;
      st.headAt = null;
      const now = Date.now();
      for (const e of deliverable) {
        this.metrics?.eventsDelivered.inc({ sink: name, type: e.type });
        this.metrics?.eventDelivery.observe({ sink: name }, Math.max(0, now - Date.parse(e.occurredAt)) / 1000);
      }
      st.cursor = batch.lastSeq;
      st.pos = batch.next;
      this.scheduleCursorSave(st);
      try {
        await this.deleteConfirmedSegments();
      } catch (err) {
        this.logger?.error({ sink: name, err }, 'outbox segment cleanup failed');
      }
      this.updatePendingGauge();
    }
  }

  /** Next batch past the sink's cursor, read from disk; null when the sink is caught up. */
  private async readBatch(st: SinkState): Promise<ReadResult | null> {
    const max = Math.max(1, Math.min(st.sink.maxBatch ?? this.batchSize, this.batchSize));
    let pos = st.pos ?? this.positionAfter(st.cursor);
    if (!pos) return null;
    const events: OutboxEvent[] = [];
    let lastSeq = st.cursor;
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
        r = await readLines(seg.path, pos.offset, limit, max - events.length, (line) => {
          const parsed = parseLine(line);
          if (!parsed) {
            this.logger?.warn({ segment: seg.path }, 'outbox: skipping unreadable line');
            return false;
          }
          if (parsed.seq <= lastSeq) return false; // already confirmed (replay after restart)
          events.push(parsed.event);
          lastSeq = parsed.seq;
          return true;
        });
      } catch (err) {
        // deleted under us: every sink is past it, so the cursor tells where to go on
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
    if (lastSeq === st.cursor) {
      st.pos = pos;
      return null;
    }
    return { events, lastSeq, next: pos };
  }

  /** Where a reader whose cursor is `seq` starts: the segment that may hold seq+1. */
  private positionAfter(seq: number): ReadPosition | null {
    let found: Segment | undefined;
    for (const s of this.segments) {
      if (s.firstSeq <= seq + 1) found = s;
      else break;
    }
    found ??= this.segments[0];
    return found ? { segFirstSeq: found.firstSeq, offset: 0 } : null;
  }

  private async deleteConfirmedSegments(): Promise<void> {
    let minCursor = Infinity;
    for (const st of this.sinks.values()) minCursor = Math.min(minCursor, st.cursor);
    if (this.sinks.size === 0) minCursor = this.lastSeq;
    while (this.segments.length > 0) {
      const seg = this.segments[0]!;
      if (this.active?.seg === seg) break;
      const next = this.segments[1];
      const segLast = next ? next.firstSeq - 1 : this.lastSeq;
      if (segLast > minCursor) break;
      this.segments.shift();
      await unlink(seg.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }

  /** Seconds since the oldest unconfirmed event of each sink was written (0 when caught up). */
  private *lagBySink(): Iterable<readonly [string, number]> {
    const now = Date.now();
    for (const [name, st] of this.sinks) {
      const pending = this.lastSeq > st.cursor;
      yield [name, pending && st.headAt !== null && Number.isFinite(st.headAt) ? Math.max(0, now - st.headAt) / 1000 : 0] as const;
    }
  }

  private updatePendingGauge(): void {
    if (!this.metrics) return;
    for (const [name, st] of this.sinks) {
      this.metrics.outboxPending.set({ sink: name }, Math.max(0, this.lastSeq - st.cursor));
    }
  }
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
