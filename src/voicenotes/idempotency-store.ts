import { createHash } from 'node:crypto';
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isAppError } from '../errors.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { ObjectStore } from '../storage/object-store.js';

/** Where records live: a local directory, or the object store (shared by every host). */
export type IdempotencyLocation = { dir: string } | { store: ObjectStore; prefix: string };

/** Options of {@link IdempotencyStore}. */
export type IdempotencyStoreOptions = IdempotencyLocation & {
  /** Records older than this are ignored, so a key may be reused after it. Default 7 days. */
  ttlSec?: number;
  /** Told when a record could not be written; the answer still goes out (the note is stored). */
  onWriteError?: (err: unknown) => void;
  /** `source` tag of records kept in the object store (with their tenant), when the store tags objects. */
  source?: string;
};

/**
 * Handed to the work of {@link IdempotencyStore.run}: lets it write the record while it does its
 * last step (e.g. announcing the result) instead of after it, and take it back if that fails.
 */
export interface IdempotencyClaim<T> {
  /** Starts writing the record of `body`; never rejects (a failed write goes to onWriteError). */
  remember(body: T): Promise<void>;
  /** Removes the record again (best effort), e.g. when the step it overlapped failed. */
  forget(): Promise<void>;
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
 * Remembers the answer given to each (tenant, Idempotency-Key): one small JSON record per key,
 * so a repeat is recognised after a restart — and, kept in the object store, on any host (a
 * client retrying after a timeout often lands on another one). Within the process, `run`
 * lets one request per key do the work while the others wait for its outcome.
 */
export class IdempotencyStore<T> {
  private readonly location: IdempotencyLocation;
  private readonly ttlMs: number;
  private readonly inflight = new Map<string, Promise<T>>();
  private readonly onWriteError: ((err: unknown) => void) | undefined;
  private readonly source: string | undefined;

  constructor(options: IdempotencyStoreOptions) {
    this.location = 'dir' in options ? { dir: options.dir } : { store: options.store, prefix: options.prefix };
    this.onWriteError = options.onWriteError;
    this.source = options.source;
    this.ttlMs = (options.ttlSec ?? 7 * 24 * 3600) * 1000;
  }

  /**
   * The recorded body for the key, or the one produced by `work`. `work` runs at most once at
   * a time per key in this process; a concurrent caller waits for it and, if it failed, tries
   * itself. `fresh` tells whether this call did the work.
   */
  async run(tenant: string, key: string, work: (claim: IdempotencyClaim<T>) => Promise<T>, signal?: AbortSignal): Promise<{ body: T; fresh: boolean }> {
    const id = recordId(tenant, key);
    for (;;) {
      signal?.throwIfAborted();
      const running = this.inflight.get(id);
      if (running !== undefined) {
        try {
          // a waiter given up (client gone, deadline) stops waiting at once
          return { body: await untilAborted(running, signal), fresh: false };
        } catch {
          continue; // the other request failed: this one may still succeed with its own body (its own abort is thrown above)
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
    const text = await this.read(recordId(tenant, key));
    if (text === undefined) return undefined;
    const rec = JSON.parse(text) as IdempotencyRecord<T>;
    // a hash collision would need SHA-256 to break; the check guards against hand-edited files
    if (rec.tenant !== tenant || rec.key !== key) return undefined;
    if (Date.now() - Date.parse(rec.createdAt) > this.ttlMs) return undefined;
    return rec.body;
  }

  private async claim(id: string, tenant: string, key: string, work: (claim: IdempotencyClaim<T>) => Promise<T>): Promise<{ body: T; fresh: boolean }> {
    const existing = await this.get(tenant, key);
    if (existing !== undefined) return { body: existing, fresh: false };
    let recorded: Promise<void> | undefined;
    const body = await work({
      remember: (b) => (recorded = this.record(id, tenant, key, b)),
      forget: async () => {
        await recorded;
        recorded = undefined;
        await this.remove(id).catch((err: unknown) => this.onWriteError?.(err));
      },
    });
    await (recorded ?? this.record(id, tenant, key, body));
    return { body, fresh: true };
  }

  private async record(id: string, tenant: string, key: string, body: T): Promise<void> {
    const rec: IdempotencyRecord<T> = { version: 1, tenant, key, createdAt: new Date().toISOString(), body };
    try {
      await this.write(id, tenant, `${JSON.stringify(rec)}\n`);
    } catch (err) {
      // failing the request now would make the client send the stored note again
      this.onWriteError?.(err);
    }
  }

  private async remove(id: string): Promise<void> {
    const loc = this.location;
    if ('dir' in loc) await unlink(this.pathOf(loc.dir, id)).catch((err: unknown) => { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; });
    else await loc.store.delete(`${loc.prefix}${id}.json`);
  }

  private async read(id: string): Promise<string | undefined> {
    const loc = this.location;
    try {
      if ('dir' in loc) return await readFile(this.pathOf(loc.dir, id), 'utf8');
      return (await loc.store.get(`${loc.prefix}${id}.json`)).toString('utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || isAppError(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  private async write(id: string, tenant: string, text: string): Promise<void> {
    const loc = this.location;
    if ('dir' in loc) await writeFileAtomic(this.pathOf(loc.dir, id), text);
    // tags, not metadata: the fs store would give the record a sidecar (and two fsyncs) for it
    else await loc.store.put(`${loc.prefix}${id}.json`, Buffer.from(text), { contentType: 'application/json', tags: { tenant, ...(this.source === undefined ? {} : { source: this.source }) } });
  }

  private pathOf(dir: string, id: string): string {
    // two-level fan-out keeps directories small
    return join(dir, id.slice(0, 2), `${id}.json`);
  }
}

/** `p`, or a rejection with the signal's reason as soon as it aborts. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function recordId(tenant: string, key: string): string {
  return createHash('sha256').update(tenant).update('\n').update(key).digest('hex');
}
