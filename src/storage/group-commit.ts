import { isRetryable } from '../errors.js';
import { Gather, type Gathered } from './gather.js';
import type { BatchItem, ObjectStore } from './object-store.js';

/** Options of {@link GroupCommit}. */
export interface GroupCommitOptions {
  /** Most objects in one batch (default 128). */
  maxItems?: number;
  /** Batches being made durable at once; while they run, the next one gathers (default 2). */
  inFlight?: number;
}

type Job = Gathered<BatchItem, void>;

/**
 * Small objects written by many callers at the same moment (a meeting's 500 tracks starting or
 * ending) go to the store together: on a store with `putBatch` (fs: one journal append and one
 * fdatasync for the batch) the puts of one tick, and those that arrive while a batch is being
 * made durable, leave as one batch instead of one temp file, sidecar and four fsyncs each. A
 * store without it gets one `put` per object. Each caller's promise settles with its batch; a
 * batch the store refuses is retried object by object, so one refused object costs the others
 * nothing. A batch that fails with a retryable error (the store unavailable) fails every put in
 * it at once: retries of an unavailable store are the callers'.
 */
export class GroupCommit {
  private readonly gather: Gather<BatchItem, void>;

  constructor(
    private readonly store: Pick<ObjectStore, 'put' | 'putBatch'>,
    options: GroupCommitOptions = {},
  ) {
    this.gather = new Gather((jobs) => this.commit(jobs), { maxItems: options.maxItems ?? 128, inFlight: options.inFlight ?? 2 });
  }

  /** Resolves when the object is durable and readable. */
  put(item: BatchItem): Promise<void> {
    if (this.store.putBatch === undefined) return this.store.put(item.key, item.body, item.options).then(() => undefined);
    return this.gather.add(item);
  }

  private async commit(jobs: Job[]): Promise<void> {
    try {
      await this.store.putBatch!(jobs.map((j) => j.item));
      for (const j of jobs) j.resolve();
      return;
    } catch (err) {
      // a store that is unavailable refuses each object alone too: every caller hears it now and retries
      if (jobs.length === 1 || isRetryable(err)) {
        for (const j of jobs) j.reject(err);
        return;
      }
    }
    for (const j of jobs) {
      try {
        await this.store.putBatch!([j.item]);
        j.resolve();
      } catch (err) {
        j.reject(err);
      }
    }
  }
}
