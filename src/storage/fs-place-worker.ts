/**
 * Puts batches of small objects into place with synchronous file calls on a thread of its own:
 * per object a temp file and a rename for the sidecar and the bytes (or only a new time for
 * either when it holds the same bytes already), no fsync (the fs store's journal has already
 * made them durable). A batch is a handful of system calls per object here
 * instead of a promise, a libuv round trip and a callback each on the event loop. Bodies of a
 * group commit are read here from the journal segment that holds them, so the message carries
 * no object bytes (a structured clone copied each one twice).
 */
import { closeSync, copyFileSync, fdatasyncSync, fstatSync, fsyncSync, futimesSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { syncFileAt } from './atomic-file.js';
import { isNotFound } from './errno.js';
import type { JournalRange, MoveItem, MoveReply, MoveRequest, MoveResult, PlaceItem, PlaceReply, PlaceRequest } from './fs-place-protocol.js';

const port = parentPort!;

/** Where bodies read from a journal segment go, reused from object to object. */
let scratch = Buffer.allocUnsafe(0);

/** The journal segment of the request being placed, opened at its first range. */
let journal: { path: string | undefined; fd: number | null } = { path: undefined, fd: null };

/** The bytes of `range` in the request's journal segment. */
function readRange(range: JournalRange): Buffer {
  if (journal.path === undefined) throw Object.assign(new Error('a journal range without its segment'), { code: 'EINVAL' });
  journal.fd ??= openSync(journal.path, 'r');
  if (scratch.length < range.size) scratch = Buffer.allocUnsafe(Math.max(range.size, 2 * scratch.length));
  let got = 0;
  while (got < range.size) {
    const n = readSync(journal.fd, scratch, got, range.size - got, range.offset + got);
    if (n === 0) throw Object.assign(new Error(`journal segment ends before byte ${range.offset + range.size}`), { code: 'EIO' });
    got += n;
  }
  return scratch.subarray(0, range.size);
}

/** Where an object's current bytes are read to be compared with the new ones. */
let current = Buffer.allocUnsafe(0);

/** Objects up to this size are compared with what is in place before being replaced. */
const SAME_BYTES_MAX = 64 * 1024;

/**
 * True when `path` holds exactly `bytes`; its modification time is then set to now, as a
 * replacement would have. A rewrite of the same bytes (a catalog index entry, a sidecar at a
 * recording's end) then creates and frees no inode: on an ext4 without a journal every new
 * inode is checked against the inodes freed in the last minutes of its group, so each temp
 * file and each replaced file made every later file creation slower.
 */
function keepIfSame(path: string, bytes: Uint8Array): boolean {
  if (bytes.length > SAME_BYTES_MAX) return false;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  try {
    if (fstatSync(fd).size !== bytes.length) return false;
    if (current.length < bytes.length) current = Buffer.allocUnsafe(Math.max(bytes.length, 2 * current.length, 1024));
    let got = 0;
    while (got < bytes.length) {
      const n = readSync(fd, current, got, bytes.length - got, got);
      if (n === 0) return false;
      got += n;
    }
    if (Buffer.compare(current.subarray(0, got), bytes) !== 0) return false;
    const now = new Date();
    futimesSync(fd, now, now);
    return true;
  } finally {
    closeSync(fd);
  }
}

function renameMakingDir(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    mkdirSync(dirname(to), { recursive: true });
    renameSync(from, to);
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // cleanup of a temp file after a failed write: the write's error is the one to report
  }
}

function place(it: PlaceItem): void {
  try {
    placeFiles(it);
  } catch (err) {
    unlinkQuietly(it.sidecarTmp);
    unlinkQuietly(it.tmp);
    throw err;
  }
}

function placeFiles(it: PlaceItem): void {
  if (it.sidecar === null) {
    try {
      unlinkSync(it.sidecarPath);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  } else {
    const sidecar = Buffer.from(it.sidecar);
    if (!keepIfSame(it.sidecarPath, sidecar)) {
      writeFileSync(it.sidecarTmp, sidecar);
      renameMakingDir(it.sidecarTmp, it.sidecarPath);
    }
  }
  if (it.body === null) return;
  const body = it.body instanceof Uint8Array ? it.body : readRange(it.body);
  // the same bytes already in place: only its time changes (the journal has the write either way)
  if (keepIfSame(it.path, body)) return;
  writeFileSync(it.tmp, body);
  renameMakingDir(it.tmp, it.path);
}

/** fdatasync of a file by path; returns its size. */
function syncData(path: string): number {
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * rename(2) into place, making missing folders; returns the folders whose entries changed and
 * must be synced: the target's, and the parent of each folder made here.
 */
function moveMakingDir(from: string, to: string): string[] {
  const dir = dirname(to);
  try {
    renameSync(from, to);
    return [dir];
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const first = mkdirSync(dir, { recursive: true });
  renameSync(from, to);
  const changed = [dir];
  // every folder made, from the first down to the target's, is an entry in its parent
  for (let d = dir; first !== undefined && d.length >= first.length; d = dirname(d)) changed.push(dirname(d));
  return changed;
}

/** After its bytes are durable (`size` of them), the rename; a file on another filesystem is copied, synced and renamed. */
function move(m: MoveItem, size: number): { size: number; dirs: string[] } {
  try {
    return { size, dirs: moveMakingDir(m.from, m.path) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
  }
  try {
    copyFileSync(m.from, m.tmp);
    syncData(m.tmp);
    const dirs = moveMakingDir(m.tmp, m.path);
    unlinkSync(m.from);
    return { size, dirs };
  } catch (err) {
    unlinkQuietly(m.tmp);
    throw err;
  }
}

/**
 * A group of masters: each one's data synced and moved into place, then every folder the group
 * changed synced once (a meeting's masters share their meeting's folder), and only then any of
 * them reported done. A move that fails fails alone; a folder that cannot be synced fails the
 * moves into it.
 */
async function moveGroup(moves: MoveItem[]): Promise<MoveResult[]> {
  const results: MoveResult[] = [];
  const folders = new Map<string, number[]>();
  // the data syncs side by side on libuv's threads (one after another, 200 masters' syncs took about twice as long)
  const synced = await Promise.allSettled(moves.map((m) => syncFileAt(m.from, 'data')));
  for (const [i, m] of moves.entries()) {
    try {
      const data = synced[i]!;
      if (data.status === 'rejected') throw data.reason;
      const { size, dirs } = move(m, data.value);
      results.push({ ok: true, size });
      for (const d of dirs) {
        const users = folders.get(d);
        if (users === undefined) folders.set(d, [i]);
        else users.push(i);
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      results.push({ ok: false, message: e.message, ...(e.code === undefined ? {} : { code: e.code }) });
    }
  }
  for (const [dir, users] of folders) {
    try {
      fsyncDirSync(dir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      for (const i of users) results[i] = { ok: false, message: e.message, ...(e.code === undefined ? {} : { code: e.code }) };
    }
  }
  return results;
}

port.on('message', (req: PlaceRequest | MoveRequest) => {
  if ('moves' in req) {
    // each move's failure is a result of its own; anything else fails the whole call
    void moveGroup(req.moves).then(
      (results) => port.postMessage({ id: req.id, ok: true, results } satisfies MoveReply),
      (err: unknown) => port.postMessage({ id: req.id, ok: false, message: String((err as Error).message ?? err) } satisfies MoveReply),
    );
    return;
  }
  let reply: PlaceReply;
  journal = { path: req.journal, fd: null };
  try {
    for (const it of req.items) place(it);
    reply = { id: req.id, ok: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    reply = { id: req.id, ok: false, message: e.message, code: e.code };
  } finally {
    if (journal.fd !== null) closeSync(journal.fd);
    journal = { path: undefined, fd: null };
  }
  port.postMessage(reply);
});
