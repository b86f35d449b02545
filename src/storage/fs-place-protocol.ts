/** Messages between {@link FsPlacer} and its worker (src/storage/fs-place-worker.ts). */
import type { WorkerReply } from './worker-calls.js';

/** One object to put into place: its sidecar first (or the removal of a stale one), then its bytes. */
export interface PlaceItem {
  /** Final path of the object. */
  path: string;
  /** Final path of its sidecar. */
  sidecarPath: string;
  /** The sidecar's JSON, or null when the object has none (a stale one is removed). */
  sidecar: string | null;
  /** Temp files in the store's temp folder (same filesystem: rename is atomic). */
  tmp: string;
  sidecarTmp: string;
  /**
   * The object's bytes; or where they are in the request's `journal` segment (read there by the
   * worker: nothing to copy into the message); or null: only the sidecar (the object's file is
   * moved into place by putFile).
   */
  body: Uint8Array | JournalRange | null;
}

/** Bytes of an object as a journal segment holds them. */
export interface JournalRange {
  offset: number;
  size: number;
}

export interface PlaceRequest {
  id: number;
  items: PlaceItem[];
  /** Path of the journal segment the items' ranges are in. */
  journal?: string;
}

/** What the worker answers a {@link PlaceRequest} with. */
export type PlaceReply = WorkerReply<object>;

/**
 * One file written elsewhere (a master's spool file) to move into the store once its bytes are
 * durable: fdatasync, rename to `path` (folders made as needed), then the folders synced, each
 * once for the whole group.
 */
export interface MoveItem {
  /** The file as written (same filesystem as the store: moved by rename). */
  from: string;
  /** Final path of the object. */
  path: string;
  /** Temp file in the store's temp folder, for a copy when `from` is on another filesystem. */
  tmp: string;
}

/** A group of {@link MoveItem}s: masters that end at the same moment share their folders' fsyncs. */
export interface MoveRequest {
  id: number;
  moves: MoveItem[];
}

/** Each move's outcome, in request order: its size, or why it failed. */
export type MoveResult = { ok: true; size: number } | { ok: false; message: string; code?: string };

/** What the worker answers a {@link MoveRequest} with. */
export type MoveReply = WorkerReply<{ results: MoveResult[] }>;
