import type { Logger } from 'pino';
import type { ObjectStore } from './object-store.js';

/**
 * Deletes every object under `prefix` last modified more than `retentionDays` before `now`,
 * for buckets without a lifecycle rule. Returns how many objects were deleted.
 */
export async function sweepRetention(store: ObjectStore, prefix: string, retentionDays: number, now: Date = new Date(), logger?: Logger): Promise<number> {
  if (!(retentionDays > 0)) throw new RangeError(`retentionDays must be > 0, got ${retentionDays}`);
  const cutoff = now.getTime() - retentionDays * 86_400_000;
  // collect first: deleting while a listing is paged would shift the pages
  const old: string[] = [];
  for await (const o of store.list(prefix)) if (o.lastModified.getTime() < cutoff) old.push(o.key);
  for (const key of old) await store.delete(key);
  if (old.length > 0) logger?.info({ prefix, deleted: old.length, retentionDays }, 'retention sweep deleted objects');
  return old.length;
}
