import { randomBytes } from 'node:crypto';
import { open, rename, mkdir, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';

/**
 * The one durable-write primitive of the daemon (stores, spool manifests, idempotency
 * records, the duration filter's state, the outbox's segments and cursors). A failed fsync is
 * an error, always: the caller must not report a write as durable that may not be.
 */

/** A temp name beside the target, so the final rename stays on one filesystem. */
export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** fsyncs a directory, so that a file created, renamed or removed inside it survives a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Makes a file's bytes durable and returns its size: `data` by fdatasync (the bytes and what
 * reading them needs, e.g. the size), `all` by fsync (its other metadata too).
 */
export async function syncFileAt(path: string, what: 'data' | 'all'): Promise<number> {
  const fh = await open(path, 'r');
  try {
    await (what === 'data' ? fh.datasync() : fh.sync());
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

/** Writes `data` to `target` atomically: temp file, fsync, rename, fsync of the directory. */
export async function writeFileAtomic(target: string, data: Buffer | string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined); // best effort: the write's own error is the one to report
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined); // best effort, as above
    throw err;
  }
  await fsyncDir(dirname(target));
}
