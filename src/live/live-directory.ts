import type { Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import type { Recording } from '../recording/recording.js';

/**
 * Where a live recording (or room) is being recorded, for subscribers that reach another host:
 * the host answers 307 to the owner's public URL. With Redis (REDIS_URL), each host keeps a key
 * per live recording and per room holding its URL, with a lease (`live.directoryTtlSec`)
 * renewed a few times per lease while the recording lives; a host that dies stops renewing and
 * its keys expire. Without Redis every host only knows itself.
 */
export interface LiveDirectory {
  /** Another host's base URL for this recording, or undefined (here, or unknown). */
  whereIsRecording(tenant: string, recordingId: string): Promise<string | undefined>;
  whereIsRoom(tenant: string, roomName: string): Promise<string | undefined>;
}

export interface RedisLiveDirectoryOptions {
  redis: Redis;
  selfUrl: () => string;
  ttlSec: number;
  /** Live recordings of this host (renewed each round). */
  recordings: () => Recording[];
  logger: Logger;
  prefix?: string;
}

export class RedisLiveDirectory implements LiveDirectory {
  private timer: NodeJS.Timeout | undefined;
  private readonly prefix: string;

  constructor(private readonly opts: RedisLiveDirectoryOptions) {
    this.prefix = opts.prefix ?? 'audio-ingestd:live:';
  }

  private recKey(tenant: string, recordingId: string): string {
    return `${this.prefix}rec:${encodeURIComponent(tenant)}:${encodeURIComponent(recordingId)}`;
  }

  private roomKey(tenant: string, roomName: string): string {
    return `${this.prefix}room:${encodeURIComponent(tenant)}:${encodeURIComponent(roomName)}`;
  }

  start(): void {
    const every = Math.max(1, Math.floor(this.opts.ttlSec / 3)) * 1000;
    this.timer = setInterval(() => void this.renew(this.opts.recordings()), every);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** A recording opened here: known to the other hosts at once. */
  announce(recording: Recording): void {
    void this.renew([recording]);
  }

  private async renew(recordings: Recording[]): Promise<void> {
    if (recordings.length === 0) return;
    const url = this.opts.selfUrl();
    const p = this.opts.redis.pipeline();
    for (const r of recordings) {
      const id = r.identity;
      p.set(this.recKey(id.tenant, id.recordingId), url, 'EX', this.opts.ttlSec);
      p.set(this.roomKey(id.tenant, id.roomName), url, 'EX', this.opts.ttlSec);
    }
    try {
      await p.exec();
    } catch (err) {
      this.opts.logger.warn({ err }, 'live directory: Redis did not take this host\'s recordings');
    }
  }

  private async lookup(key: string): Promise<string | undefined> {
    try {
      const url = await this.opts.redis.get(key);
      return url !== null && url !== this.opts.selfUrl() ? url : undefined;
    } catch (err) {
      this.opts.logger.warn({ err }, 'live directory: Redis did not answer');
      return undefined;
    }
  }

  whereIsRecording(tenant: string, recordingId: string): Promise<string | undefined> {
    return this.lookup(this.recKey(tenant, recordingId));
  }

  whereIsRoom(tenant: string, roomName: string): Promise<string | undefined> {
    return this.lookup(this.roomKey(tenant, roomName));
  }
}
