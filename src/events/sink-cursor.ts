import { join } from 'node:path';
import type { Logger } from 'pino';
import { CursorFile } from './cursor-file.js';

export interface SinkCursorOptions {
  /**
   * Longest a confirmed position stays in memory only, in ms (0: written at every advance).
   * Default 1 000: after a crash the sink is sent again at most this much of what it had
   * already confirmed (delivery is at least once either way), instead of one write per batch.
   */
  syncMs?: number;
  logger?: Logger;
}

/**
 * A sink's delivery position: the highest seq it confirmed, kept in memory and written to
 * `<dir>/cursor-<sink>` (a `CursorFile`) at most every `syncMs`, and at once on close.
 */
export class SinkCursor {
  private current: number;
  private saved: number;
  private saving: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private file: CursorFile | null;

  private constructor(
    private readonly sink: string,
    file: CursorFile,
    /** The position read from disk; null for a sink seen for the first time. */
    readonly stored: number | null,
    private readonly syncMs: number,
    private readonly logger: Logger | undefined,
  ) {
    this.file = file;
    this.current = stored ?? 0;
    this.saved = stored ?? -1;
  }

  /** Opens (or creates) the cursor of `sink` in `dir`, taking over one of the older JSON format. */
  static async open(dir: string, sink: string, options: SinkCursorOptions = {}): Promise<SinkCursor> {
    const { file, seq } = await CursorFile.open(join(dir, `cursor-${sink}`), join(dir, `cursor-${sink}.json`));
    return new SinkCursor(sink, file, seq, options.syncMs ?? 1000, options.logger);
  }

  /** The highest seq confirmed (in memory: what the next delivery starts after). */
  get seq(): number {
    return this.current;
  }

  /** Sets the position and writes it now (a new sink's starting point). */
  async place(seq: number): Promise<void> {
    this.current = seq;
    await this.file?.write(seq);
    this.saved = seq;
  }

  /**
   * Moves the position to `seq`. The write follows now when the last one is older than
   * `syncMs`, else once that much time has passed; a write in progress picks up the newest
   * position when it is done.
   */
  advance(seq: number): void {
    this.current = seq;
    this.schedule();
  }

  /** Final write of the position, then closes the file; later advances stay in memory. */
  async close(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const file = this.file;
    this.file = null;
    while (this.saving !== null) await this.saving;
    if (file === null) return;
    try {
      if (this.current !== this.saved) {
        await file.write(this.current);
        this.saved = this.current;
      }
    } catch (err) {
      this.logger?.error({ sink: this.sink, err }, 'outbox cursor write failed');
    } finally {
      await file.close();
    }
  }

  private schedule(): void {
    if (this.file === null || this.timer !== null || this.saving !== null || this.current === this.saved) return;
    if (this.syncMs <= 0) {
      this.save(this.file);
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.file !== null) this.save(this.file);
    }, this.syncMs);
    this.timer.unref();
  }

  private save(file: CursorFile): void {
    const seq = this.current;
    this.saving = file
      .write(seq)
      .then(() => {
        this.saved = seq;
      })
      .catch((err: unknown) => {
        // the in-memory position stays right; a stale file only means replay after a crash
        this.logger?.error({ sink: this.sink, err }, 'outbox cursor write failed');
      })
      .finally(() => {
        this.saving = null;
        this.schedule();
      });
  }
}
