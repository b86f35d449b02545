/**
 * The streamed master WAV of a live recording, written to the object store.
 *
 * Design (see docs/storage.md):
 * - `write()` is synchronous and never fails on store trouble: it only queues the buffer in a
 *   small ordered in-memory queue (`queueMaxBytes`, 1 MiB by default) after reserving its bytes
 *   in the shared {@link Spool} budget; a buffer that does not fit is dropped and counted.
 * - A writer drains that queue into spool files under `stateDir/uploads/<recordingId>/`, laid
 *   out as the object will be: byte `o` of the object is at offset `o - (k-1)·S` of
 *   `part-<k>.pcm` with `k = ⌊o / S⌋ + 1`, S the part size. The first
 *   {@link MASTER_HEADER_BYTES} bytes of part 1 are reserved for the header, so every part but
 *   the last has exactly `partSize` bytes, header included.
 * - On a store whose `putFile` moves files (fs), there is one spool file (S unbounded): at the
 *   end the header is written in place and the file is moved into the store, no byte copied.
 * - Otherwise (S3) every full part from part 2 on is uploaded in the background from its file,
 *   retried with backoff while the store is unavailable, recorded in `manifest.json` and
 *   deleted, or kept while its audio is within `keepUploadedSec` of the live edge (the resume
 *   window of live audio out: S3 cannot read parts of an unfinished upload, so the spool serves
 *   them; kept files stay counted in the spool budget until deleted). At the end the last part is uploaded, the header is written into part 1's file,
 *   part 1 is uploaded and the upload completed; a recording that fits in one part is one
 *   streamed PUT. Nothing is read into memory at the end.
 * - After a crash, `MasterUpload.recover()` finishes every upload left in the state directory
 *   by the same final step; one the store refuses for good is marked failed and set aside.
 */
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createHash, randomUUID } from 'node:crypto';
import { basename, join } from 'node:path';
import { backoffDelay, sleep } from '../backoff.js';
import type { Logger } from 'pino';
import { AppError, isRetryable } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { FinalizeQueue } from '../recording/finalize-queue.js';
import { fsyncDir, writeFileAtomic } from './atomic-file.js';
import { sanitizeSegment } from './keys.js';
import type { ObjectMetadata, ObjectStore, PartRef } from './object-store.js';
import type { Spool } from './spool.js';
import { MASTER_HEADER_BYTES, masterHeader } from '../audio/wav.js';

/** S3's smallest part size (all parts but the last). */
export const MIN_S3_PART_SIZE = 5 * 1024 * 1024;

/** S3's largest part number: a master uploaded in parts holds at most this many × partSize bytes. */
export const MAX_PARTS = 10_000;

/**
 * Part uploads of recordings still live, process-wide. Streams that began together fill their
 * parts together (a meeting's streams all reach 5 MiB within the same second): unbounded, their
 * uploads (checksum pass, file reads, request bodies) would take every libuv thread from the
 * spool writes of the live audio and hold a socket and stream buffers each. A few at a time
 * keep up with the audio (a 5 MiB part per ~55 s per stream) and leave the spool its threads.
 * The final parts are bounded by the finalize queue instead.
 */
export const LIVE_PART_UPLOADS = 4;
const livePartUploads = new FinalizeQueue(LIVE_PART_UPLOADS);

/** The same for the window syncs of masters assembled in one file (fs): two at a time, two libuv threads left. */
const windowSyncs = new FinalizeQueue(2);

/** Largest object S3's CopyObject takes; a larger master keeps the metadata it was created with. */
const MAX_COPY_BYTES = 5 * 1024 * 1024 * 1024;

/** PCM layout of the master: 16-bit little-endian interleaved samples. */
export interface MasterFormat {
  sampleRate: number;
  channels: number;
}

/** Backoff of store calls. */
export interface RetryOptions {
  /** First delay in ms (default 250); doubles per attempt, with jitter. */
  baseMs?: number;
  /** Largest delay in ms (default 30 000). */
  maxMs?: number;
  /** Attempts for errors that are not retryable (an unavailable store is) before giving up (default 3). */
  maxErrorAttempts?: number;
}

/** Options of {@link MasterUpload.create}. */
export interface MasterUploadOptions {
  store: ObjectStore;
  /** The daemon's state directory; spool files go to `<stateDir>/uploads/<recordingId>/`. */
  stateDir: string;
  recordingId: string;
  /** Object key of the master (from `ObjectKeys.master`). */
  key: string;
  format: MasterFormat;
  /** Object metadata set when the upload starts; `finish()` may add more. */
  metadata: ObjectMetadata;
  /** Bytes per uploaded part, header included in part 1 (≥ 5 MiB for s3; the fs store takes any size). */
  partSize: number;
  /** Shared byte budget of the spool. */
  spool: Spool;
  /** In-memory queue in front of the spool files (default 1 MiB); beyond it audio is dropped. */
  queueMaxBytes?: number;
  /** Told when a buffer given to `write()` is no longer needed (written to the spool or dropped), so a pool can reuse it. */
  release?: (buf: Buffer) => void;
  retry?: RetryOptions;
  /** `source` label of the drop metric (default `livekit`). */
  source?: string;
  /**
   * Seconds of audio behind the live edge whose uploaded part files stay in the spool, readable
   * there (default 0: a part file is deleted once uploaded). All of them go at the end.
   */
  keepUploadedSec?: number;
  logger?: Logger;
  metrics?: Metrics;
}

/** Outcome of a finished master. */
export interface MasterResult {
  key: string;
  /** Object size: header + data. */
  size: number;
  /** PCM bytes in the WAV data chunk. */
  dataBytes: number;
  /** Parts of the multipart upload (1 for a single PUT or a moved file). */
  parts: number;
  /** Bytes given to `write()` and not stored (spool full, misaligned, queue full, master full). */
  droppedBytes: number;
}

/** What {@link MasterUpload.recover} did with one spooled upload. */
export type RecoveryOutcome =
  | {
      status: 'completed';
      recordingId: string;
      key: string;
      size: number;
      dataBytes: number;
      /** Metadata given when the upload started (tenant, ids, format). */
      metadata: ObjectMetadata;
      format: MasterFormat;
    }
  | {
      status: 'failed';
      recordingId: string;
      key: string;
      /** PCM bytes the recording had (what is still spooled is kept under `<stateDir>/uploads-failed/<recordingId>/`). */
      dataBytes: number;
      metadata: ObjectMetadata;
      format: MasterFormat;
      error: string;
      /** The same on every announcement of this failure, for the event's id. */
      eventId: string;
    };

/** Options of {@link MasterUpload.recover}. */
export interface RecoverOptions {
  store: ObjectStore;
  stateDir: string;
  spool: Spool;
  retry?: RetryOptions;
  /** Attempts per upload while the store is unavailable before leaving it for the next start (default 5). */
  maxUnavailableAttempts?: number;
  /**
   * Told of each outcome before its spool folder is removed (completed) or set aside (failed);
   * if it throws, or the process dies first, the next start tells it again.
   */
  announce?: (outcome: RecoveryOutcome) => Promise<void>;
  logger?: Logger;
}

interface PartDone {
  partNumber: number;
  etag: string;
  checksum?: string;
  /** Bytes of the part (all PCM: parts 2..n carry no header). */
  dataBytes: number;
}

/** What survives a crash. */
interface Manifest {
  version: 2;
  recordingId: string;
  key: string;
  contentType: string;
  format: MasterFormat;
  metadata: ObjectMetadata;
  /** Bytes per uploaded part, header included in part 1. */
  partSize: number;
  /** Bytes per spool file: `partSize`, or 0 when the whole object is assembled in one file. */
  fileBytes: number;
  /** Offset of the first PCM byte in the object (and in part 1's file). */
  dataOffset: number;
  uploadId: string | null;
  /** Metadata the multipart upload was created with, when it differs from `metadata`. */
  uploadMetadata?: ObjectMetadata;
  /** Uploaded parts 2..n, in order. */
  parts: PartDone[];
  createdAt: string;
  /** Set once the store refused the upload for good: recovery only announces it and sets it aside. */
  failure?: { error: string; at: string; eventId: string };
}

type State = 'open' | 'finishing' | 'done' | 'aborted' | 'stopped' | 'failed';

const MANIFEST = 'manifest.json';
const PART_FILE = /^part-(\d{6})\.pcm$/;
const EMPTY = Buffer.alloc(0);

function partFile(dir: string, partNumber: number): string {
  return join(dir, `part-${String(partNumber).padStart(6, '0')}.pcm`);
}

function uploadsRoot(stateDir: string): string {
  return join(stateDir, 'uploads');
}

/** Where uploads the store refused for good are kept, for an operator to inspect or delete. */
export function failedUploadsRoot(stateDir: string): string {
  return join(stateDir, 'uploads-failed');
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/**
 * An error that retrying later will not cure: the store refused the request (or the spool is
 * inconsistent). Unavailable stores and local I/O errors are worth another try.
 */
function isPermanent(err: unknown): boolean {
  return err instanceof AppError && !err.retryable;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class MasterUpload {
  readonly key: string;
  readonly recordingId: string;
  private readonly store: ObjectStore;
  private readonly dir: string;
  private readonly stateDir: string;
  private readonly manifest: Manifest;
  private readonly partSize: number;
  /** `manifest.fileBytes`, with 0 (one file) as +∞. */
  private readonly fileBytes: number;
  /** The whole object is assembled in part 1's file (a store whose putFile moves files). */
  private readonly oneFile: boolean;
  /** Most PCM bytes the object can hold (S3: 10 000 parts). */
  private readonly maxDataBytes: number;
  private readonly blockAlign: number;
  private readonly spool: Spool;
  private readonly queueMaxBytes: number;
  private readonly retry: Required<RetryOptions>;
  private readonly maxUnavailableAttempts: number;
  private readonly source: string;
  private readonly logger: Logger | undefined;
  private readonly metrics: Metrics | undefined;
  private readonly stopSignal = new AbortController();
  private state: State = 'open';

  // accepting side (write)
  private acceptedBytes = 0;
  private dropped = 0;
  private fullLogged = false;
  private reserved = 0;
  private qBufs: Buffer[] = [];
  /** Spool file (part number) and offset in it of each queued buffer. */
  private qFile: number[] = [];
  private qPos: number[] = [];
  /** The buffer given to write(), set on the last queued view of it (views of one write are consecutive). */
  private qOwners: (Buffer | undefined)[] = [];
  private readonly release: ((buf: Buffer) => void) | undefined;
  private qHead = 0;
  private queuedBytes = 0;

  // spool side (writer)
  private writing: Promise<void> | null = null;
  private dirReady = false;
  private manifestSynced = false;
  private fh: FileHandle | null = null;
  private fhFile = 0;
  private lastOpened = 0;
  private spooled = 0;
  /** One file only: part-sized windows of the object made durable so far. */
  private syncedWindows = 0;
  /** One file only: the window sync in flight (it runs beside the writer). */
  private windowSync: Promise<void> | null = null;

  // store side (uploader)
  private readonly readyParts: number[] = [];
  /** PCM bytes behind the live edge whose uploaded part files are kept (0: none kept). */
  private readonly keepBytes: number;
  /** Uploaded parts whose files are still in the spool (and in the budget), in order. */
  private readonly kept: { part: number; bytes: number }[] = [];
  /** Deletion of kept files that left the window, in flight. */
  private pruning: Promise<void> | null = null;
  private uploading: Promise<void> | null = null;
  private uploadFailure: AppError | null = null;
  /** The multipart upload being created: the uploader and the end share it (one upload, never two). */
  private creatingUpload: Promise<string> | null = null;

  private constructor(store: ObjectStore, stateDir: string, dir: string, manifest: Manifest, spool: Spool, opts: {
    queueMaxBytes?: number; release?: (buf: Buffer) => void; retry?: RetryOptions; maxUnavailableAttempts?: number; source?: string; keepUploadedSec?: number; logger?: Logger; metrics?: Metrics;
  }) {
    this.store = store;
    this.stateDir = stateDir;
    this.dir = dir;
    this.manifest = manifest;
    this.key = manifest.key;
    this.recordingId = manifest.recordingId;
    this.partSize = manifest.partSize;
    this.oneFile = manifest.fileBytes === 0;
    this.fileBytes = this.oneFile ? Number.POSITIVE_INFINITY : manifest.fileBytes;
    this.blockAlign = manifest.format.channels * 2;
    const maxObject = manifest.fileBytes === 0 ? Number.MAX_SAFE_INTEGER : MAX_PARTS * manifest.partSize;
    this.maxDataBytes = maxObject - manifest.dataOffset - ((maxObject - manifest.dataOffset) % this.blockAlign);
    this.spool = spool;
    this.queueMaxBytes = opts.queueMaxBytes ?? 1024 * 1024;
    this.release = opts.release;
    this.retry = { baseMs: opts.retry?.baseMs ?? 250, maxMs: opts.retry?.maxMs ?? 30_000, maxErrorAttempts: opts.retry?.maxErrorAttempts ?? 3 };
    this.maxUnavailableAttempts = opts.maxUnavailableAttempts ?? Infinity;
    this.source = opts.source ?? 'livekit';
    this.keepBytes = Math.max(0, Math.round((opts.keepUploadedSec ?? 0) * manifest.format.sampleRate)) * this.blockAlign;
    this.logger = opts.logger?.child({ recordingId: manifest.recordingId, key: manifest.key });
    this.metrics = opts.metrics;
  }

  /**
   * Starts a master. Nothing touches the disk or the store yet: the spool folder and manifest
   * are written with the first audio, the store is called when a part is full or at the end.
   */
  static async create(opts: MasterUploadOptions): Promise<MasterUpload> {
    const { sampleRate, channels } = opts.format;
    if (!Number.isInteger(sampleRate) || sampleRate <= 0 || !Number.isInteger(channels) || channels <= 0 || channels > 16) {
      throw new AppError('INVALID_PARAMETER', `invalid master format ${sampleRate} Hz × ${channels}`);
    }
    if (!Number.isSafeInteger(opts.partSize) || opts.partSize < 1024 || opts.partSize > 5 * 1024 * 1024 * 1024) {
      throw new AppError('INVALID_PARAMETER', `partSize must be 1 KiB..5 GiB, got ${opts.partSize}`);
    }
    if (opts.store.driver === 's3' && opts.partSize < MIN_S3_PART_SIZE) {
      throw new AppError('INVALID_PARAMETER', `partSize must be ≥ ${MIN_S3_PART_SIZE} for s3, got ${opts.partSize}`);
    }
    // part boundaries fall between sample frames, so every part holds whole frames
    if (opts.partSize % (channels * 2) !== 0 || MASTER_HEADER_BYTES % (channels * 2) !== 0) {
      throw new AppError('INVALID_PARAMETER', `${channels} channels do not divide the header and a ${opts.partSize}-byte part into whole frames`);
    }
    const dir = join(uploadsRoot(opts.stateDir), sanitizeSegment(opts.recordingId));
    if (existsSync(join(dir, MANIFEST))) throw new AppError('STORAGE_ERROR', 'an upload of this recording is already spooled', { details: { recordingId: opts.recordingId } });
    const manifest: Manifest = {
      version: 2,
      recordingId: opts.recordingId,
      key: opts.key,
      contentType: 'audio/wav',
      format: { sampleRate, channels },
      metadata: { ...opts.metadata },
      partSize: opts.partSize,
      fileBytes: opts.store.putFileMoves ? 0 : opts.partSize,
      dataOffset: MASTER_HEADER_BYTES,
      uploadId: null,
      parts: [],
      createdAt: new Date().toISOString(),
    };
    return new MasterUpload(opts.store, opts.stateDir, dir, manifest, opts.spool, opts);
  }

  /** Counters of this upload, for logs and tests. */
  get stats(): { acceptedBytes: number; spooledBytes: number; queuedBytes: number; droppedBytes: number; uploadedParts: number } {
    return { acceptedBytes: this.acceptedBytes, spooledBytes: this.spooled, queuedBytes: this.queuedBytes, droppedBytes: this.dropped, uploadedParts: this.manifest.parts.length };
  }

  /**
   * Queues PCM (whole sample frames) for the master and returns at once; takes ownership of
   * `pcm`. Never throws: audio that cannot be kept is dropped and counted (and false returned,
   * so the recording's timeline can show the hole).
   */
  write(pcm: Buffer): boolean {
    const len = pcm.length;
    if (len === 0) return true;
    if (this.state !== 'open') return false;
    let reason: string | null = null;
    if (len % this.blockAlign !== 0) reason = 'invalid';
    else if (this.acceptedBytes + len > this.maxDataBytes) reason = 'master_full';
    else if (this.queuedBytes + len > this.queueMaxBytes) reason = 'spool_slow';
    else if (!this.spool.tryReserve(len)) reason = 'spool_full';
    if (reason !== null) {
      if (reason === 'master_full' && !this.fullLogged) {
        this.fullLogged = true;
        this.logger?.warn({ maxDataBytes: this.maxDataBytes, parts: MAX_PARTS }, 'master holds the most parts the store takes; further audio is dropped');
      }
      this.drop(len, reason);
      this.release?.(pcm);
      return false;
    }
    this.reserved += len;
    this.queuedBytes += len;
    let off = 0;
    while (off < len) {
      const at = this.manifest.dataOffset + this.acceptedBytes + off;
      const file = this.oneFile ? 1 : Math.floor(at / this.fileBytes) + 1;
      const pos = this.oneFile ? at : at - (file - 1) * this.fileBytes;
      const n = Math.min(this.fileBytes - pos, len - off);
      this.qBufs.push(off === 0 && n === len ? pcm : pcm.subarray(off, off + n));
      this.qFile.push(file);
      this.qPos.push(pos);
      this.qOwners.push(off + n === len ? pcm : undefined);
      off += n;
    }
    this.acceptedBytes += len;
    if (this.writing === null) this.kickWriter();
    return true;
  }

  /** Resolves once every byte accepted so far is in the spool files. */
  async flush(): Promise<void> {
    while (this.writing !== null || this.windowSync !== null) await (this.writing ?? this.windowSync);
  }

  /**
   * Ends the master: spools what is queued, uploads what is left, writes the final header in
   * place and completes the object. `extraMetadata` (e.g. the duration) is added to the
   * object's metadata. Retries while the store is unavailable; rejects when the store refuses
   * for good (the upload is then aborted and its spool set aside) or when stopped.
   */
  async finish(extraMetadata: ObjectMetadata = {}): Promise<MasterResult> {
    if (this.state !== 'open') throw new AppError('INTERNAL', `master upload is ${this.state}`);
    this.state = 'finishing';
    const metadata = { ...this.manifest.metadata, ...extraMetadata };
    let done: { size: number; dataBytes: number; parts: number };
    try {
      await this.flush();
      done = await this.complete(this.acceptedBytes, metadata);
    } catch (err) {
      if ((this.state as State) === 'stopped' || (this.state as State) === 'aborted' || !isPermanent(err)) {
        // stopped, or the store still down when stopping: the spool stays for the next start's recover()
        await this.closeFile().catch(() => undefined);
        throw err;
      }
      await this.fail(err);
      throw err;
    }
    this.state = 'done';
    // a deletion in flight releases its bytes before the rest is released below
    while (this.pruning !== null) await this.pruning;
    await this.removeSpool().catch((err: unknown) => this.logger?.error({ err }, 'spool folder of a finished master not removed'));
    this.spool.release(this.reserved);
    this.reserved = 0;
    this.logger?.info({ size: done.size, dataBytes: done.dataBytes, parts: done.parts, droppedBytes: this.dropped }, 'master upload finished');
    return { key: this.key, size: done.size, dataBytes: done.dataBytes, parts: done.parts, droppedBytes: this.dropped };
  }

  /** Drops the master: stops uploading, aborts the multipart upload, removes the spool files. */
  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted' || this.state === 'failed') return;
    this.state = 'aborted';
    this.stopSignal.abort();
    await this.whenUploaderIdle();
    if (this.manifest.uploadId !== null) {
      await this.store.abortMultipart(this.key, this.manifest.uploadId).catch((err: unknown) => {
        this.logger?.warn({ err }, 'multipart abort failed; the store lifecycle rule must clean it');
      });
    }
    await this.removeSpool();
    this.spool.release(this.reserved);
    this.reserved = 0;
  }

  /**
   * Stops without completing (e.g. shutdown while the store is down): what was accepted is
   * spooled and the manifest kept, so the next start's {@link MasterUpload.recover} completes it.
   */
  async stop(): Promise<void> {
    if (this.state !== 'open' && this.state !== 'finishing') return;
    const wasOpen = this.state === 'open';
    this.state = 'stopped';
    if (wasOpen) await this.flush();
    this.stopSignal.abort();
    await this.whenUploaderIdle();
  }

  /**
   * Completes every master a previous process left in `<stateDir>/uploads/`. Uploads the store
   * cannot take now (unavailable) stay for the next start; one it refuses for good is aborted,
   * marked failed and moved to `<stateDir>/uploads-failed/`, so no start tries it again.
   */
  static async recover(opts: RecoverOptions): Promise<RecoveryOutcome[]> {
    const root = uploadsRoot(opts.stateDir);
    await mkdir(root, { recursive: true });
    const out: RecoveryOutcome[] = [];
    for (const name of (await readdir(root)).sort()) {
      const dir = join(root, name);
      let manifest: unknown;
      try {
        manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as unknown;
      } catch (err) {
        // the manifest is written before the first audio byte: without one, nothing was spooled
        opts.logger?.warn({ dir, err }, 'spool folder without a readable manifest removed');
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      try {
        const outcome = await MasterUpload.recoverOne(opts, dir, manifest);
        if (outcome !== null) out.push(outcome);
      } catch (err) {
        opts.logger?.error({ dir, err }, 'spooled upload could not be recovered; kept for the next start');
      }
    }
    return out;
  }

  private static async recoverOne(opts: RecoverOptions, dir: string, raw: unknown): Promise<RecoveryOutcome | null> {
    let manifest: Manifest;
    if (isManifest(raw)) manifest = raw;
    else if (!hasIdentity(raw)) {
      opts.logger?.error({ dir }, 'spool folder with a manifest this version cannot read set aside');
      await setAsideDir(opts.stateDir, dir);
      return null;
    } else {
      // spooled in another layout (another version): a failure to announce, never a retry. Its
      // manifest stays as it is; the event id follows from the recording, so a repeat keeps it.
      manifest = {
        recordingId: raw.recordingId, key: raw.key, format: raw.format, metadata: raw.metadata, contentType: 'audio/wav',
        createdAt: typeof raw.createdAt === 'string' ? raw.createdAt : new Date(0).toISOString(),
        version: 2, partSize: 0, fileBytes: 0, dataOffset: 0, uploadId: null, parts: [],
        failure: { error: 'spooled in a layout this version does not read', at: new Date().toISOString(), eventId: stableUuid(`recording.failed:${raw.recordingId}`) },
      };
    }
    const log = opts.logger?.child({ recordingId: manifest.recordingId, key: manifest.key });
    const upload = new MasterUpload(opts.store, opts.stateDir, dir, manifest, opts.spool, {
      ...(opts.retry === undefined ? {} : { retry: opts.retry }),
      maxUnavailableAttempts: opts.maxUnavailableAttempts ?? 5,
      ...(opts.logger === undefined ? {} : { logger: opts.logger }),
    });
    upload.dirReady = true;
    upload.manifestSynced = true;
    let outcome: RecoveryOutcome;
    try {
      if (manifest.failure !== undefined) {
        outcome = await upload.failedOutcome();
      } else {
        try {
          const done = await upload.resume();
          outcome = {
            status: 'completed', recordingId: manifest.recordingId, key: manifest.key, size: done.size, dataBytes: done.dataBytes,
            metadata: manifest.metadata, format: manifest.format,
          };
        } catch (err) {
          if (!isPermanent(err)) {
            log?.error({ err }, 'master upload not recovered: store unavailable; kept for the next start');
            return null;
          }
          log?.error({ err }, 'master upload refused by the store for good; marked failed');
          await upload.markFailed(err);
          outcome = await upload.failedOutcome();
        }
      }
    } finally {
      opts.spool.release(upload.reserved);
      upload.reserved = 0;
    }
    try {
      await opts.announce?.(outcome);
    } catch (err) {
      log?.error({ err }, 'recovered upload could not be announced; kept for the next start');
      return outcome;
    }
    if (outcome.status === 'completed') {
      await upload.removeSpool();
      log?.info({ size: outcome.size }, 'master upload recovered');
    } else {
      await upload.setAside();
    }
    return outcome;
  }

  /** Recovery of one spooled upload: adopt its files, upload the pending parts, complete. */
  private async resume(): Promise<{ size: number; dataBytes: number; parts: number }> {
    const m = this.manifest;
    const uploaded = new Set(m.parts.map((p) => p.partNumber));
    const files: { part: number; size: number }[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const match = PART_FILE.exec(name);
      if (match === null) continue;
      const part = Number(match[1]);
      if (uploaded.has(part)) {
        await unlink(join(this.dir, name));
        continue;
      }
      files.push({ part, size: (await stat(join(this.dir, name))).size });
    }
    files.sort((a, b) => a.part - b.part);
    const part1 = files[0]?.part === 1 ? files[0] : undefined;
    const lastUploaded = m.parts.length > 0 ? m.parts[m.parts.length - 1]!.partNumber : 0;
    const highest = Math.max(files[files.length - 1]?.part ?? 0, lastUploaded);

    if (part1 === undefined) {
      // part 1 leaves the spool only with the completed object (moved into the store, or deleted after completion)
      const existing = await this.store.head(m.key);
      if (existing !== null && existing.size >= m.dataOffset && existing.lastModified.getTime() >= Date.parse(m.createdAt) - 1000) {
        return { size: existing.size, dataBytes: existing.size - m.dataOffset, parts: Math.max(1, m.parts.length + 1) };
      }
      if (highest > 0) throw new AppError('STORAGE_ERROR', 'spool of a master has lost its first part', { details: { recordingId: m.recordingId } });
    }
    // every spooled part but the highest is whole; a write cut by the crash may end the highest mid-frame
    let objectBytes = 0;
    for (let part = 1; part <= highest; part++) {
      const file = files.find((f) => f.part === part);
      const size = file?.size ?? m.parts.find((p) => p.partNumber === part)?.dataBytes;
      if (size === undefined || (part < highest && size !== this.fileBytes)) {
        throw new AppError('STORAGE_ERROR', `spooled part ${part} of a master is missing or short`, { details: { recordingId: m.recordingId } });
      }
      objectBytes += part === 1 ? Math.max(size, m.dataOffset) : size;
    }
    const rawData = Math.max(0, objectBytes - m.dataOffset);
    const dataBytes = rawData - (rawData % this.blockAlign);
    // parts hold whole frames: only a spooled highest part can end in a torn one
    const cut = rawData - dataBytes;
    const last = files[files.length - 1];
    if (cut > 0) {
      if (last?.part !== highest) throw new AppError('STORAGE_ERROR', 'an uploaded part of a master ends mid-frame', { details: { recordingId: m.recordingId } });
      await truncate(partFile(this.dir, last.part), last.size - cut);
    }
    const pending = files.filter((f) => f.part >= 2 && f.size - (f === last ? cut : 0) > 0).map((f) => f.part);
    for (const f of files) {
      const bytes = f.part === 1 ? Math.max(0, f.size - m.dataOffset) : f.size;
      this.spool.adopt(bytes);
      this.reserved += bytes;
    }

    // the previous process may have completed the object just before it died
    const existing = await this.store.head(m.key);
    if (existing !== null && existing.size === m.dataOffset + dataBytes && existing.lastModified.getTime() >= Date.parse(m.createdAt) - 1000
      && (m.uploadId !== null || pending.length === 0)) {
      return { size: existing.size, dataBytes, parts: m.uploadId === null ? 1 : m.parts.length + pending.length + 1 };
    }
    this.state = 'finishing';
    this.acceptedBytes = dataBytes;
    this.spooled = dataBytes;
    this.readyParts.push(...pending);
    // the end-of-recording metadata a crash prevented: the duration follows from the bytes
    const durationSec = Math.round((dataBytes / (m.format.sampleRate * this.blockAlign)) * 1000) / 1000;
    const done = await this.complete(dataBytes, { ...m.metadata, 'duration-sec': String(durationSec), 'end-reason': 'aborted' });
    this.state = 'done';
    return done;
  }

  /**
   * Final step, shared by finish and recover, once every accepted byte is in the spool: the
   * parts not yet uploaded, then the header in place in part 1 and the object completed
   * (multipart), or the whole file put (one part, or a store that moves files).
   */
  private async complete(dataBytes: number, metadata: ObjectMetadata): Promise<{ size: number; dataBytes: number; parts: number }> {
    const m = this.manifest;
    const objectBytes = m.dataOffset + dataBytes;
    const lastPart = Math.ceil(objectBytes / this.fileBytes);
    const header = masterHeader(m.format, dataBytes);
    const options = { contentType: m.contentType, metadata };
    let size: number;
    let parts = 1;
    if (lastPart <= 1) {
      if (dataBytes === 0 && this.fh === null && !existsSync(partFile(this.dir, 1))) {
        // no audio ever reached the spool: the header is the whole object
        size = (await this.withRetry('put', () => this.store.put(m.key, header, options))).size;
      } else {
        await this.writeHeader(header);
        size = (await this.withRetry('put', () => this.store.putFile(m.key, partFile(this.dir, 1), options))).size;
      }
    } else {
      // a short last part is still the writer's (a full one was handed over already)
      if (!this.readyParts.includes(lastPart) && !m.parts.some((p) => p.partNumber === lastPart)) this.readyParts.push(lastPart);
      await this.closeFile();
      // created now, the upload carries the final metadata: no copy afterwards (unless the
      // uploader's creation, with the metadata of the start, is already under way)
      const uploadId = await this.multipartUpload(metadata);
      this.kickUploader();
      while (this.uploading !== null) await this.uploading;
      if (this.uploadFailure !== null) throw this.uploadFailure;
      await this.writeHeader(header);
      const first = await this.withRetry('uploadPart', () => this.store.uploadPartFile(m.key, uploadId, 1, partFile(this.dir, 1)));
      const refs: PartRef[] = [first, ...m.parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag, size: p.dataBytes, ...(p.checksum === undefined ? {} : { checksum: p.checksum }) }))];
      let attempted = false;
      const res = await this.withRetry('completeMultipart', async () => {
        // An earlier attempt may have completed the upload and lost its answer; a retry then fails
        // (NoSuchUpload, or s3rver's 500) although the object is there: look before completing again.
        if (attempted) {
          const existing = await this.store.head(m.key);
          if (existing !== null && existing.size === objectBytes && existing.lastModified.getTime() >= Date.parse(m.createdAt) - 1000) {
            return { key: m.key, size: existing.size };
          }
        }
        attempted = true;
        return this.store.completeMultipart(m.key, uploadId, refs);
      });
      const createdWith = m.uploadMetadata ?? m.metadata;
      if (JSON.stringify(metadata) !== JSON.stringify(createdWith)) {
        if (res.size <= MAX_COPY_BYTES) {
          await this.withRetry('replaceMetadata', () => this.store.replaceMetadata(m.key, options));
        } else {
          this.logger?.warn({ size: res.size }, 'master larger than one copy takes: it keeps the metadata it was created with');
        }
      }
      size = res.size;
      parts = refs.length;
    }
    return { size, dataBytes, parts };
  }

  /** Writes the final header over the reserved bytes of part 1's file. */
  private async writeHeader(header: Buffer): Promise<void> {
    let fh = this.fhFile === 1 ? this.fh : null;
    const own = fh === null;
    fh ??= await open(partFile(this.dir, 1), 'r+');
    try {
      let done = 0;
      while (done < header.length) done += (await fh.write(header, done, header.length - done, done)).bytesWritten;
    } finally {
      if (own) await fh.close();
      else await this.closeFile();
    }
  }

  /** Aborts the multipart upload and records the failure in the manifest (the spool stays, to be set aside). */
  private async fail(err: unknown): Promise<void> {
    this.state = 'failed';
    this.stopSignal.abort();
    await this.whenUploaderIdle();
    this.logger?.error({ err }, 'master upload refused by the store for good; spool set aside');
    try {
      // the upload is aborted: kept copies of its parts are no resume source any more
      await this.pruneKept(Number.POSITIVE_INFINITY);
      await this.markFailed(err);
      await this.setAside();
    } catch (e) {
      this.logger?.error({ err: e }, 'failed master upload could not be set aside');
    }
    this.spool.release(this.reserved);
    this.reserved = 0;
  }

  private async markFailed(err: unknown): Promise<void> {
    const m = this.manifest;
    if (m.uploadId !== null) {
      const uploadId = m.uploadId;
      await this.store.abortMultipart(m.key, uploadId).catch((e: unknown) => this.logger?.warn({ err: e }, 'multipart abort failed; the store lifecycle rule must clean it'));
    }
    m.failure = { error: errorText(err), at: new Date().toISOString(), eventId: randomUUID() };
    await this.ensureDir();
    await this.saveManifest();
  }

  private async failedOutcome(): Promise<RecoveryOutcome> {
    const m = this.manifest;
    let bytes = m.parts.reduce((s, p) => s + p.dataBytes, 0);
    const uploaded = new Set(m.parts.map((p) => p.partNumber));
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const match = PART_FILE.exec(name);
      // an uploaded part's file kept for resume is counted once, as uploaded
      if (match === null || uploaded.has(Number(match[1]))) continue;
      const size = (await stat(join(this.dir, name))).size;
      bytes += match[1] === '000001' ? Math.max(0, size - m.dataOffset) : size;
    }
    return {
      status: 'failed', recordingId: m.recordingId, key: m.key, dataBytes: bytes - (bytes % this.blockAlign), metadata: m.metadata, format: m.format,
      error: m.failure?.error ?? 'failed', eventId: m.failure?.eventId ?? randomUUID(),
    };
  }

  /** Moves a failed upload's spool folder out of `uploads/`, so no start retries it. */
  private async setAside(): Promise<void> {
    await setAsideDir(this.stateDir, this.dir);
  }

  /** Removes the spool folder: manifest first, so a crash half-way leaves nothing recovery would act on. */
  private async removeSpool(): Promise<void> {
    await this.closeFile().catch(() => undefined);
    await unlink(join(this.dir, MANIFEST)).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    // the common end (fs: part 1 moved into the store) leaves the folder empty: one rmdir
    await rmdir(this.dir).catch(async (err: unknown) => {
      if (!isNotFound(err)) await rm(this.dir, { recursive: true, force: true });
    });
  }

  private drop(len: number, reason: string): void {
    this.dropped += len;
    this.metrics?.framesDropped.inc({ source: this.source, reason });
  }

  private kickWriter(): void {
    this.writing = this.runWriter().finally(() => {
      this.writing = null;
      if (this.qHead < this.qBufs.length && this.state !== 'aborted' && this.state !== 'failed') this.kickWriter();
    });
  }

  /** Drains the queue into the spool files, in order, one positional writev per run of one file. */
  private async runWriter(): Promise<void> {
    let attempt = 0;
    while (this.qHead < this.qBufs.length) {
      if (this.state === 'aborted' || this.state === 'failed') return;
      const file = this.qFile[this.qHead]!;
      const pos = this.qPos[this.qHead]!;
      let end = this.qHead;
      let bytes = 0;
      while (end < this.qBufs.length && this.qFile[end] === file) bytes += this.qBufs[end++]!.length;
      try {
        if (this.fhFile !== file) {
          await this.closeFile();
          await this.ensureDir();
          this.fh = await open(partFile(this.dir, file), file > this.lastOpened ? 'w' : 'r+');
          this.fhFile = file;
          this.lastOpened = Math.max(this.lastOpened, file);
        }
        await writeAllAt(this.fh!, this.qBufs.slice(this.qHead, end), pos);
      } catch (err) {
        // disk trouble: keep the queue (new audio is dropped at the door) and try again
        attempt++;
        this.logger?.error({ err, attempt }, 'spool write failed; retrying');
        if (!(await this.backoff(attempt))) return;
        continue;
      }
      attempt = 0;
      for (let i = this.qHead; i < end; i++) {
        this.qBufs[i] = EMPTY;
        const owner = this.qOwners[i];
        if (owner !== undefined) {
          this.qOwners[i] = undefined;
          this.release?.(owner);
        }
      }
      this.qHead = end;
      this.queuedBytes -= bytes;
      this.spooled += bytes;
      this.kickPrune();
      if (this.qHead > 1024 && this.qHead * 2 > this.qBufs.length) this.compactQueue();
      const filled = pos + bytes;
      if (filled === this.fileBytes) {
        // a full part: durable, then handed to the uploader (part 1 waits for the header)
        await this.closeFile(true).catch((err: unknown) => this.logger?.error({ err }, 'spool file close failed'));
        if (file >= 2) {
          this.readyParts.push(file);
          this.kickUploader();
        }
      } else if (this.fileBytes === Number.POSITIVE_INFINITY) {
        this.scheduleWindowSync(filled);
      }
    }
    if (this.qHead > 0) {
      this.qBufs = [];
      this.qFile = [];
      this.qPos = [];
      this.qOwners = [];
      this.qHead = 0;
    }
  }

  /**
   * One spool file: every completed part-sized window is made durable, and from the second one
   * on its bytes count as stored (as an uploaded part's would), so the spool budget treats both
   * layouts alike: the first window is held until the end, like part 1 on S3.
   */
  private scheduleWindowSync(filled: number): void {
    // one at a time per upload; a window completed meanwhile is synced after the next write
    if (this.windowSync !== null || Math.floor(filled / this.partSize) <= this.syncedWindows) return;
    const fh = this.fh!;
    // Off the writer's path and a few at a time process-wide: a meeting's streams all complete
    // a window in the same second, and their syncs must not hold every libuv thread in front
    // of the spool writes of the live audio.
    this.windowSync = windowSyncs.run(() => this.syncWindows(filled, fh)).finally(() => {
      this.windowSync = null;
    });
  }

  private async syncWindows(filled: number, fh: FileHandle): Promise<void> {
    const complete = Math.floor(filled / this.partSize);
    if (complete <= this.syncedWindows) return;
    try {
      await this.syncManifestOnce();
      await fh.datasync();
    } catch (err) {
      this.logger?.error({ err }, 'spool sync failed');
      return;
    }
    const stored = Math.min((complete - Math.max(1, this.syncedWindows)) * this.partSize, this.reserved);
    if (stored > 0) {
      this.spool.release(stored);
      this.reserved -= stored;
    }
    this.syncedWindows = complete;
  }

  private compactQueue(): void {
    this.qBufs = this.qBufs.slice(this.qHead);
    this.qFile = this.qFile.slice(this.qHead);
    this.qPos = this.qPos.slice(this.qHead);
    this.qOwners = this.qOwners.slice(this.qHead);
    this.qHead = 0;
  }

  /** The spool folder and a first manifest, once, before the first audio byte (not synced yet). */
  private async ensureDir(): Promise<void> {
    if (this.dirReady) return;
    await mkdir(this.dir).catch(async (err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return;
      if (code !== 'ENOENT') throw err;
      await mkdir(this.dir, { recursive: true });
    });
    await writeFile(join(this.dir, MANIFEST), JSON.stringify(this.manifest));
    this.dirReady = true;
  }

  /** The first manifest is made durable with the first spool sync (before that, nothing is). */
  private async syncManifestOnce(): Promise<void> {
    if (this.manifestSynced) return;
    const fh = await open(join(this.dir, MANIFEST), 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(this.dir);
    this.manifestSynced = true;
  }

  private async closeFile(sync = false): Promise<void> {
    // a window sync in flight uses the handle
    while (this.windowSync !== null) await this.windowSync;
    const fh = this.fh;
    if (fh === null) return;
    this.fh = null;
    this.fhFile = 0;
    try {
      if (sync) {
        await this.syncManifestOnce();
        await fh.sync();
      }
    } finally {
      await fh.close();
    }
  }

  private kickUploader(): void {
    if (this.uploading !== null || this.readyParts.length === 0 || this.uploadFailure !== null) return;
    this.uploading = this.runUploader().finally(() => {
      this.uploading = null;
      if (this.uploadFailure === null && this.state !== 'aborted' && this.state !== 'stopped' && this.state !== 'failed') this.kickUploader();
    });
  }

  /**
   * The recording's multipart upload: the one in the manifest, or the one being created, or a
   * new one created with `metadata` (the start's if absent) and saved in the manifest before
   * anyone uses it. The uploader and the end can both find none: they share one creation.
   */
  private multipartUpload(metadata?: ObjectMetadata): Promise<string> {
    const m = this.manifest;
    if (m.uploadId !== null) return Promise.resolve(m.uploadId);
    this.creatingUpload ??= (async () => {
      const options = { contentType: m.contentType, metadata: metadata ?? m.metadata };
      const id = await this.withRetry('createMultipart', () => this.store.createMultipart(m.key, options));
      m.uploadId = id;
      if (metadata !== undefined) m.uploadMetadata = metadata;
      await this.saveManifest();
      return id;
    })().finally(() => {
      this.creatingUpload = null;
    });
    return this.creatingUpload;
  }

  /** Uploads ready parts one at a time; a part file is deleted only once its ETag is in the manifest. */
  private async runUploader(): Promise<void> {
    while (this.readyParts.length > 0) {
      if (this.state === 'aborted' || this.state === 'stopped' || this.state === 'failed') return;
      const part = this.readyParts[0]!;
      try {
        const uploadId = await this.multipartUpload();
        const path = partFile(this.dir, part);
        // From the file: the part never sits in memory.
        const upload = (): Promise<PartRef & { size: number }> => this.withRetry('uploadPart', () => this.store.uploadPartFile(this.key, uploadId, part, path));
        // while the recording is live, its parts wait for one of the few process-wide slots
        const ref = this.state === 'open' ? await livePartUploads.run(async () => (this.isStopped() ? null : upload())) : await upload();
        if (ref === null) return; // stopped while waiting for its slot
        this.manifest.parts.push({ partNumber: part, etag: ref.etag, ...(ref.checksum === undefined ? {} : { checksum: ref.checksum }), dataBytes: ref.size });
        this.manifest.parts.sort((a, b) => a.partNumber - b.partNumber);
        await this.saveManifest();
        this.readyParts.shift();
        // kept (still counted in the spool) while within the resume window; recovery deletes it as uploaded
        this.kept.push({ part, bytes: ref.size });
        this.kickPrune();
        if (this.pruning !== null) await this.pruning;
      } catch (err) {
        const state = this.state as State;
        if (state === 'aborted' || state === 'stopped') return;
        this.uploadFailure = err instanceof AppError ? err : new AppError('STORAGE_ERROR', 'part upload failed', { cause: err });
        this.logger?.error({ err, part }, 'part upload failed; spool kept');
        return;
      }
    }
  }

  /** Starts deleting the kept files the live edge has left more than the window behind (one run at a time). */
  private kickPrune(): void {
    const first = this.kept[0];
    if (this.pruning !== null || first === undefined || first.part * this.fileBytes + this.keepBytes > this.manifest.dataOffset + this.spooled) return;
    this.pruning = this.pruneKept(this.keepBytes).finally(() => {
      this.pruning = null;
    });
  }

  /**
   * Deletes the kept files of uploaded parts that end more than `behind` PCM bytes before the
   * spooled live edge (all of them for +∞) and gives their bytes back to the spool.
   */
  private async pruneKept(behind: number): Promise<void> {
    const edge = this.manifest.dataOffset + this.spooled;
    let n = 0;
    while (n < this.kept.length && (behind === Number.POSITIVE_INFINITY || this.kept[n]!.part * this.fileBytes + behind <= edge)) n++;
    // taken off the list before the first await: a second call never deletes (and releases) one twice
    for (const { part, bytes } of this.kept.splice(0, n)) {
      try {
        await unlink(partFile(this.dir, part));
      } catch (err) {
        if (!isNotFound(err)) {
          // still on disk: its bytes stay reserved until the spool folder goes at the end
          this.logger?.error({ err, part }, 'uploaded part file not deleted; kept until the end');
          continue;
        }
      }
      this.spool.release(bytes);
      this.reserved -= bytes;
    }
  }

  private isStopped(): boolean {
    const state = this.state as State;
    return state === 'aborted' || state === 'stopped' || state === 'failed';
  }

  /** Runs a store call, retrying an unavailable store (retryable errors) with backoff (bounded for recovery) and other errors a few times. */
  private async withRetry<T>(op: string, fn: () => Promise<T>): Promise<T> {
    let unavailable = 0;
    let errors = 0;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        const isUnavailable = isRetryable(err);
        if (isUnavailable) unavailable++;
        else errors++;
        const give = (isUnavailable && unavailable >= this.maxUnavailableAttempts)
          || (!isUnavailable && (errors >= this.retry.maxErrorAttempts || (err instanceof AppError && err.code === 'INVALID_PARAMETER')));
        if (give) throw err;
        if (unavailable + errors === 1 || (unavailable + errors) % 10 === 0) {
          this.logger?.warn({ op, attempt: unavailable + errors, code: err instanceof AppError ? err.code : undefined }, 'store call failed; retrying');
        }
        if (!(await this.backoff(unavailable + errors))) throw err;
      }
    }
  }

  /** Waits before attempt `n + 1`: exponential with jitter; false when the upload is stopping. */
  private async backoff(attempt: number): Promise<boolean> {
    await sleep(backoffDelay(attempt, this.retry), this.stopSignal.signal);
    return !this.stopSignal.signal.aborted;
  }

  /** Waits for the writer and uploader to stop (after a state change that stops them). */
  private async whenUploaderIdle(): Promise<void> {
    while (this.writing !== null || this.uploading !== null || this.pruning !== null) {
      await Promise.all([this.writing, this.uploading, this.pruning]);
    }
    await this.closeFile().catch(() => undefined);
  }

  private async saveManifest(): Promise<void> {
    await writeFileAtomic(join(this.dir, MANIFEST), JSON.stringify(this.manifest));
    this.manifestSynced = true;
  }
}

/** Moves a spool folder to `uploads-failed/` (same name), replacing an older one. */
async function setAsideDir(stateDir: string, dir: string): Promise<void> {
  const root = failedUploadsRoot(stateDir);
  await mkdir(root, { recursive: true });
  const target = join(root, basename(dir));
  await rm(target, { recursive: true, force: true });
  await rename(dir, target).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}

/** A UUID (version 8 layout) that is the same for the same text. */
function stableUuid(text: string): string {
  const h = createHash('sha256').update(text).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Enough of a manifest to announce its recording: ids, format, metadata. */
function hasIdentity(m: unknown): m is Pick<Manifest, 'recordingId' | 'key' | 'format' | 'metadata' | 'contentType' | 'createdAt'> {
  if (!isObject(m) || typeof m['recordingId'] !== 'string' || typeof m['key'] !== 'string' || !isObject(m['metadata'])) return false;
  const f = m['format'];
  return isObject(f) && Number.isInteger(f['sampleRate']) && Number.isInteger(f['channels']) && (f['channels'] as number) > 0;
}

/** A manifest of this layout (version 2), checked field by field before recovery acts on it. */
function isManifest(m: unknown): m is Manifest {
  if (!hasIdentity(m)) return false;
  const r = m as unknown as Record<string, unknown>;
  return r['version'] === 2 && r['dataOffset'] === MASTER_HEADER_BYTES && Number.isSafeInteger(r['partSize']) && (r['partSize'] as number) >= 1024
    && Number.isSafeInteger(r['fileBytes']) && (r['fileBytes'] === 0 || r['fileBytes'] === r['partSize'])
    && (r['uploadId'] === null || typeof r['uploadId'] === 'string') && Array.isArray(r['parts']) && typeof r['createdAt'] === 'string';
}

/** Positional writev until every byte is written (short writes happen on some filesystems). */
async function writeAllAt(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  let pos = position;
  let rest = bufs;
  while (rest.length > 0) {
    const total = rest.reduce((s, b) => s + b.length, 0);
    const { bytesWritten } = await fh.writev(rest, pos);
    pos += bytesWritten;
    if (bytesWritten >= total) return;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    rest = next;
  }
}
