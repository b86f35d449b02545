import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Outbox } from './outbox.js';
import { queueStats, type EventOf } from './types.js';

export interface QueueStatsOptions {
  outbox: Outbox;
  /** Period of the queue.stats event, ms. Default 60 000. */
  intervalMs?: number;
  /** Host name reported in the event. Default os.hostname(). */
  host?: string;
  logger?: Logger;
}

/** Appends a `queue.stats` event (outbox statistics) every interval, for the monitoring webhook. */
export class QueueStatsReporter {
  private timer: NodeJS.Timeout | null = null;
  private readonly options: QueueStatsOptions;

  constructor(options: QueueStatsOptions) {
    this.options = options;
  }

  start(): void {
    this.timer ??= setInterval(() => {
      this.emit().catch((err: unknown) => this.options.logger?.warn({ err }, 'queue.stats not recorded'));
    }, this.options.intervalMs ?? 60_000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The current statistics as an event, appended to the outbox. */
  async emit(): Promise<EventOf<'queue.stats'>> {
    const s = this.options.outbox.stats();
    const event = queueStats({
      host: this.options.host ?? hostname(),
      last_seq: s.lastSeq,
      segments: s.segments,
      sinks: Object.entries(s.sinks).map(([name, x]) => ({
        name,
        pending: x.pending,
        ready: x.ready,
        delivered: x.delivered,
        retries: x.retries,
        last_error: x.lastError,
      })),
    });
    await this.options.outbox.append(event);
    return event;
  }
}
