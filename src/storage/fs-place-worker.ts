/**
 * Puts batches of small objects into place with synchronous file calls on a thread of its own:
 * per object a temp file and a rename for the sidecar and the bytes, no fsync (the fs store's
 * journal has already made them durable). A batch is a handful of system calls per object here
 * instead of a promise, a libuv round trip and a callback each on the event loop. Bodies of a
 * group commit are read here from the journal segment that holds them, so the message carries
 * no object bytes (a structured clone copied each one twice).
 */
import { closeSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { isNotFound } from './errno.js';
import type { JournalRange, PlaceItem, PlaceReply, PlaceRequest } from './fs-place-protocol.js';

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
    writeFileSync(it.sidecarTmp, it.sidecar);
    renameMakingDir(it.sidecarTmp, it.sidecarPath);
  }
  if (it.body === null) return;
  writeFileSync(it.tmp, it.body instanceof Uint8Array ? it.body : readRange(it.body));
  renameMakingDir(it.tmp, it.path);
}

port.on('message', (req: PlaceRequest) => {
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
