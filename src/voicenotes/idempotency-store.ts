import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../storage/atomic-file.js';

/** Options of {@link IdempotencyStore}. */
export interface IdempotencyStoreOptions {
  /** Directory of the records, e.g. `<dataDir>/idempotency`. */
  dir: string;
  /** Records older than this are ignored, so a key may be reused after it. Default 7 days. */
  ttlSec?: number;
  /** Told when a record could not be written; the answer still goes out (the note is stored). */
  onWriteError?: (err: unknown) => void;
}

/** What a repeat of a key is answered with. */
export interface IdempotencyRecord<T> {
  version: 1;
  tenant: string;
  key: string;
  createdAt: string;
  body: T;
}

/**
 * Remembers the answer given to each (tenant, Idempotency-Key): one small JSON file per key,
 * written atomically, so a repeat is recognised after a restart. Within the process, `run`
 * lets one request per key do the work while the others wait for its outcome.
 */
export class IdempotencyStore<T> {
  private readonly dir: string;
  private readonly ttlMs: number;
  private readonly inflight = new Map<string, Promise<T>>();
  private readonly onWriteError: ((err: unknown) => void) | undefined;

  constructor(options: IdempotencyStoreOptions) {
    this.dir = options.dir;
    this.onWriteError = options.onWriteError;
    this.ttlMs = (options.ttlSec ?? 7 * 24 * 3600) * 1000;
  }

  /**
   * The recorded body for the key, or the one produced by `work`. `work` runs at most once at
   * a time per key in this process; a concurrent caller waits for it and, if it failed, tries
   * itself. `fresh` tells whether this call did the work.
   */
  async run(tenant: string, key: string, work: () => Promise<T>, signal?: AbortSignal): Promise<{ body: T; fresh: boolean }> {
    const id = recordId(tenant, key);
    for (;;) {
      signal?.throwIfAborted();
      const running = this.inflight.get(id);
      if (running !== undefined) {
        try {
          return { body: await running, fresh: false };
        } catch {
          continue; // the other request failed: this one may still succeed with its own body
        }
      }
      const mine = this.claim(id, tenant, key, work);
      const shared = mine.then((r) => r.body);
      shared.catch(() => undefined); // waiters see the failure; without waiters it is not unhandled
      this.inflight.set(id, shared);
      try {
        return await mine;
      } finally {
        this.inflight.delete(id);
      }
    }
  }

  /** The recorded body, if a live record exists. */
  async get(tenant: string, key: string): Promise<T | undefined> {
    let text: string;
    try {
      text = await readFile(this.pathOf(recordId(tenant, key)), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const rec = JSON.parse(text) as IdempotencyRecord<T>;
    // a hash collision would need SHA-256 to break; the check guards against hand-edited files
    if (rec.tenant !== tenant || rec.key !== key) return undefined;
    if (Date.now() - Date.parse(rec.createdAt) > this.ttlMs) return undefined;
    return rec.body;
  }

  private async claim(id: string, tenant: string, key: string, work: () => Promise<T>): Promise<{ body: T; fresh: boolean }> {
    const existing = await this.get(tenant, key);
    if (existing !== undefined) return { body: existing, fresh: false };
    const body = await work();
    const rec: IdempotencyRecord<T> = { version: 1, tenant, key, createdAt: new Date().toISOString(), body };
    try {
      await writeFileAtomic(this.pathOf(id), `${JSON.stringify(rec)}\n`);
    } catch (err) {
      // failing the request now would make the client send the stored note again
      this.onWriteError?.(err);
    }
    return { body, fresh: true };
  }

  private pathOf(id: string): string {
    // two-level fan-out keeps directories small
    return join(this.dir, id.slice(0, 2), `${id}.json`);
  }
}

function recordId(tenant: string, key: string): string {
  return createHash('sha256').update(tenant).update('\n').update(key).digest('hex');
}
