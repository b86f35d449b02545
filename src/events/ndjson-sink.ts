import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { OutboxEvent, Sink } from './sink.js';

export interface NdjsonSinkOptions {
  /** File the events are appended to: `<dataDir>/events.ndjson`. */
  path: string;
  /** Sink name (cursor file, metric label). Default `log`. */
  name?: string;
}

/**
 * The embedded default when no broker is configured: one JSON event per line, appended and
 * fsync'd per batch. After a crash an event may appear twice (at-least-once), never torn mid-file
 * except for the very last line.
 */
export class NdjsonSink implements Sink {
  readonly name: string;
  private readonly path: string;
  private fh: FileHandle | null = null;

  constructor(options: NdjsonSinkOptions) {
    this.path = options.path;
    this.name = options.name ?? 'log';
  }

  async start(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    this.fh = await open(this.path, 'a');
  }

  async deliver(batch: OutboxEvent[]): Promise<void> {
    this.fh ??= await open(this.path, 'a');
    const buf = Buffer.from(batch.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');
    let written = 0;
    while (written < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, written, buf.length - written, null);
      written += bytesWritten;
    }
    await this.fh.datasync();
  }

  async stop(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}
