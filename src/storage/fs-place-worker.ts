/**
 * Puts batches of small objects into place with synchronous file calls on a thread of its own:
 * per object a temp file and a rename for the sidecar and the bytes, no fsync (the fs store's
 * journal has already made them durable). A batch is a handful of system calls per object here
 * instead of a promise, a libuv round trip and a callback each on the event loop.
 */
import { mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { isNotFound } from './errno.js';
import type { PlaceItem, PlaceReply, PlaceRequest } from './fs-place-protocol.js';

const port = parentPort!;

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
  writeFileSync(it.tmp, it.body);
  renameMakingDir(it.tmp, it.path);
}

port.on('message', (req: PlaceRequest) => {
  let reply: PlaceReply;
  try {
    for (const it of req.items) place(it);
    reply = { id: req.id, ok: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    reply = { id: req.id, ok: false, message: e.message, code: e.code };
  }
  port.postMessage(reply);
});
