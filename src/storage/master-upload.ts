/**
 * The streamed master WAV of a live recording, written to the object store by multipart upload.
 *
 * Design (see docs/storage.md):
 * - `write()` is synchronous and never fails on store trouble: it only queues the buffer in a
 *   small ordered in-memory queue (`queueMaxBytes`, 1 MiB by default) after reserving its bytes
 *   in the shared {@link Spool} budget; a buffer that does not fit is dropped and counted.
 * - A writer drains that queue into per-part spool files `stateDir/uploads/<recordingId>/part-NNNNNN.pcm`,
 *   so memory per stream stays small and a store outage only lets files accumulate.
 * - A full part file (part 2 onwards) is uploaded in the background, one part at a time, retried
 *   with exponential backoff and jitter while the store is unavailable, then deleted once its
 *   ETag is in the manifest (`manifest.json`, written atomically and fsync'd).
 * - Part 1 stays in its spool file until `finish()`: only then are the sizes known, so it is
 *   uploaded last with the 44-byte WAV header in front, and the upload is completed. A recording
 *   shorter than one part becomes a single PUT of header + data.
 * - After a crash, `MasterUpload.recover()` finishes every upload left in the state directory
 *   from its manifest and spool files, by the same final step.
 */
import { mkdir, open, readdir, readFile, rm, stat, truncate, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { writeFileAtomic } from './atomic-file.js';
import { sanitizeSegment } from './keys.js';
import type { ObjectMetadata, ObjectStore, PartRef } from './object-store.js';
import type { Spool } from './spool.js';
import { WAV_HEADER_BYTES, wavHeader } from './wav-header.js';

/** S3's smallest part size (all parts but the last). */
export const MIN_S3_PART_SIZE = 5 * 1024 * 1024;

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
  /** Attempts for errors other than STORAGE_UNAVAILABLE before giving up (default 3). */
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
  /** Bytes per uploaded part (≥ 5 MiB for s3; the fs store accepts any size). */
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
  /** Parts of the multipart upload (1 for a single PUT). */
  parts: number;
  /** Bytes given to `write()` and not stored (spool full, misaligned, queue full). */
  droppedBytes: number;
}

/** A master completed by {@link MasterUpload.recover}. */
export interface RecoveredUpload {
  recordingId: string;
  key: string;
  size: number;
  dataBytes: number;
  metadata: ObjectMetadata;
  format: MasterFormat;
}

/** Options of {@link MasterUpload.recover}. */
export interface RecoverOptions {
  store: ObjectStore;
  stateDir: string;
  spool: Spool;
  retry?: RetryOptions;
  /** Attempts per upload while the store is unavailable before leaving it for the next start (default 5). */
  maxUnavailableAttempts?: number;
  logger?: Logger;
}

interface PartDone {
  partNumber: number;
  etag: string;
  dataBytes: number;
}

/** What survives a crash; written atomically after every change. */
interface Manifest {
  version: 1;
  recordingId: string;
  key: string;
  contentType: string;
  format: MasterFormat;
  metadata: ObjectMetadata;
  /** Metadata to apply at completion (start metadata + what finish() added). */
  finalMetadata: ObjectMetadata | null;
  partSize: number;
  uploadId: string | null;
  /** Uploaded parts 2..n, in order. */
  parts: PartDone[];
  createdAt: string;
  completed: { size: number; dataBytes: number; parts: number } | null;
}

type State = 'open' | 'finishing' | 'done' | 'aborted' | 'suspended';

const MANIFEST = 'manifest.json';
const PART_FILE = /^part-(\d{6})\.pcm$/;

function partFile(dir: string, partNumber: number): string {
  return join(dir, `part-${String(partNumber).padStart(6, '0')}.pcm`);
}

function uploadsRoot(stateDir: string): string {
  return join(stateDir, 'uploads');
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

export class MasterUpload {
  readonly key: string;
  readonly recordingId: string;
  private readonly store: ObjectStore;
  private readonly dir: string;
  private readonly manifest: Manifest;
  private readonly partSize: number;
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
  private writePart = 1;
  private writePartBytes = 0;
  private acceptedBytes = 0;
  private dropped = 0;
  private reserved = 0;
  private qBufs: Buffer[] = [];
  private qParts: number[] = [];
  /** The buffer given to write(), set on the last queued view of it (views of one write are consecutive). */
  private qOwners: (Buffer | undefined)[] = [];
  private readonly release: ((buf: Buffer) => void) | undefined;
  private qHead = 0;
  private queuedBytes = 0;

  // spool side (writer)
  private writing: Promise<void> | null = null;
  private fh: FileHandle | null = null;
  private fhPart = 0;
  private fhBytes = 0;
  private spooled = 0;

  // store side (uploader)
  private readonly readyParts: number[] = [];
  private uploading: Promise<void> | null = null;
  private uploadFailure: AppError | null = null;

  private constructor(store: ObjectStore, dir: string, manifest: Manifest, spool: Spool, opts: {
    queueMaxBytes?: number; release?: (buf: Buffer) => void; retry?: RetryOptions; maxUnavailableAttempts?: number; source?: string; logger?: Logger; metrics?: Metrics;
  }) {
    this.store = store;
    this.dir = dir;
    this.manifest = manifest;
    this.key = manifest.key;
    this.recordingId = manifest.recordingId;
    this.partSize = manifest.partSize;
    this.blockAlign = manifest.format.channels * 2;
    this.spool = spool;
    this.queueMaxBytes = opts.queueMaxBytes ?? 1024 * 1024;
    this.release = opts.release;
    this.retry = { baseMs: opts.retry?.baseMs ?? 250, maxMs: opts.retry?.maxMs ?? 30_000, maxErrorAttempts: opts.retry?.maxErrorAttempts ?? 3 };
    this.maxUnavailableAttempts = opts.maxUnavailableAttempts ?? Infinity;
    this.source = opts.source ?? 'livekit';
    this.logger = opts.logger?.child({ recordingId: manifest.recordingId, key: manifest.key });
    this.metrics = opts.metrics;
  }

  /** Starts a master: creates its spool folder and manifest. Nothing is sent to the store yet. */
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
    const dir = join(uploadsRoot(opts.stateDir), sanitizeSegment(opts.recordingId));
    await mkdir(dir, { recursive: true });
    const existing = await stat(join(dir, MANIFEST)).then(() => true, () => false);
    if (existing) throw new AppError('STORAGE_ERROR', 'an upload of this recording is already spooled', { details: { recordingId: opts.recordingId } });
    const manifest: Manifest = {
      version: 1,
      recordingId: opts.recordingId,
      key: opts.key,
      contentType: 'audio/wav',
      format: { sampleRate, channels },
      metadata: { ...opts.metadata },
      finalMetadata: null,
      partSize: opts.partSize,
      uploadId: null,
      parts: [],
      createdAt: new Date().toISOString(),
      completed: null,
    };
    await writeFileAtomic(join(dir, MANIFEST), JSON.stringify(manifest));
    return new MasterUpload(opts.store, dir, manifest, opts.spool, opts);
  }

  /** Counters of this upload, for logs and tests. */
  get stats(): { acceptedBytes: number; spooledBytes: number; queuedBytes: number; droppedBytes: number; uploadedParts: number } {
    return { acceptedBytes: this.acceptedBytes, spooledBytes: this.spooled, queuedBytes: this.queuedBytes, droppedBytes: this.dropped, uploadedParts: this.manifest.parts.length };
  }

  /**
   * Queues PCM (whole sample frames) for the master and returns at once; takes ownership of
   * `pcm`. Never throws: audio that cannot be kept is dropped and counted.
   */
  write(pcm: Buffer): void {
    const len = pcm.length;
    if (len === 0 || this.state !== 'open') return;
    if (len % this.blockAlign !== 0) {
      this.drop(len, 'invalid');
      this.release?.(pcm);
      return;
    }
    if (this.queuedBytes + len > this.queueMaxBytes) {
      this.drop(len, 'spool_slow');
      this.release?.(pcm);
      return;
    }
    if (!this.spool.tryReserve(len)) {
      this.drop(len, 'spool_full');
      this.release?.(pcm);
      return;
    }
    this.reserved += len;
    this.acceptedBytes += len;
    this.queuedBytes += len;
    let off = 0;
    while (off < len) {
      const n = Math.min(this.partSize - this.writePartBytes, len - off);
      this.qBufs.push(off === 0 && n === len ? pcm : pcm.subarray(off, off + n));
      this.qParts.push(this.writePart);
      this.qOwners.push(off + n === len ? pcm : undefined);
      this.writePartBytes += n;
      off += n;
      if (this.writePartBytes === this.partSize) {
        this.writePart++;
        this.writePartBytes = 0;
      }
    }
    if (this.writing === null) this.kickWriter();
  }

  /** Resolves once every byte accepted so far is in the spool files. */
  async flush(): Promise<void> {
    while (this.writing !== null) await this.writing;
  }

  /**
   * Ends the master: spools what is queued, uploads the remaining parts, then part 1 with the
   * final header, and completes the upload (or does a single PUT). `extraMetadata` (e.g. the
   * duration) is added to the object's metadata. Rejects only when the store refuses for good;
   * the spooled data then stays for {@link MasterUpload.recover}.
   */
  async finish(extraMetadata: ObjectMetadata = {}): Promise<MasterResult> {
    if (this.state !== 'open') throw new AppError('INTERNAL', `master upload is ${this.state}`);
    this.state = 'finishing';
    await this.flush();
    await this.closePartFile();
    const lastPart = this.writePartBytes > 0 ? this.writePart : this.writePart - 1;
    if (lastPart >= 2 && this.writePartBytes > 0) this.readyParts.push(lastPart);
    this.kickUploader();
    while (this.uploading !== null) await this.uploading;
    if (this.uploadFailure !== null) {
      this.state = 'suspended';
      throw this.uploadFailure;
    }
    this.manifest.finalMetadata = { ...this.manifest.metadata, ...extraMetadata };
    await this.saveManifest();
    const done = await this.complete();
    this.state = 'done';
    this.spool.release(this.reserved);
    this.reserved = 0;
    this.logger?.info({ size: done.size, dataBytes: done.dataBytes, parts: done.parts, droppedBytes: this.dropped }, 'master upload finished');
    return { key: this.key, size: done.size, dataBytes: done.dataBytes, parts: done.parts, droppedBytes: this.dropped };
  }

  /** Drops the master: stops uploading, aborts the multipart upload, removes the spool files. */
  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    this.state = 'aborted';
    this.stopSignal.abort();
    await this.settle();
    if (this.manifest.uploadId !== null) {
      await this.store.abortMultipart(this.key, this.manifest.uploadId).catch((err: unknown) => {
        this.logger?.warn({ err }, 'multipart abort failed; the store lifecycle rule must clean it');
      });
    }
    await rm(this.dir, { recursive: true, force: true });
    this.spool.release(this.reserved);
    this.reserved = 0;
  }

  /**
   * Stops without completing (e.g. shutdown while the store is down): what was accepted is
   * spooled and the manifest kept, so the next start's {@link MasterUpload.recover} completes it.
   */
  async suspend(): Promise<void> {
    if (this.state !== 'open' && this.state !== 'finishing') return;
    this.state = 'suspended';
    await this.flush();
    await this.closePartFile();
    this.stopSignal.abort();
    await this.settle();
  }

  /**
   * Completes every master a previous process left in `<stateDir>/uploads/`: uploads its
   * remaining spool files, then part 1 with the right header. Uploads the store cannot take
   * now stay for the next start; the list says what was stored, so the caller can announce it.
   */
  static async recover(opts: RecoverOptions): Promise<RecoveredUpload[]> {
    const root = uploadsRoot(opts.stateDir);
    const names = await readdir(root).catch((err: unknown) => {
      if (isNotFound(err)) return [] as string[];
      throw err;
    });
    const out: RecoveredUpload[] = [];
    for (const name of names.sort()) {
      const dir = join(root, name);
      let manifest: Manifest;
      try {
        manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest;
      } catch (err) {
        // no manifest: create() never returned, so no audio was accepted
        opts.logger?.warn({ dir, err }, 'spool folder without a readable manifest removed');
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const upload = new MasterUpload(opts.store, dir, manifest, opts.spool, {
        ...(opts.retry === undefined ? {} : { retry: opts.retry }),
        maxUnavailableAttempts: opts.maxUnavailableAttempts ?? 5,
        ...(opts.logger === undefined ? {} : { logger: opts.logger }),
      });
      try {
        const done = await upload.resume();
        out.push({
          recordingId: manifest.recordingId, key: manifest.key, size: done.size, dataBytes: done.dataBytes,
          metadata: manifest.finalMetadata ?? manifest.metadata, format: manifest.format,
        });
        opts.logger?.info({ recordingId: manifest.recordingId, key: manifest.key, size: done.size }, 'master upload recovered');
      } catch (err) {
        opts.logger?.error({ recordingId: manifest.recordingId, key: manifest.key, err }, 'master upload not recovered; kept for the next start');
      } finally {
        opts.spool.release(upload.reserved);
        upload.reserved = 0;
      }
    }
    return out;
  }

  /** Recovery of one spooled upload: adopt its files, upload the pending parts, complete. */
  private async resume(): Promise<{ size: number; dataBytes: number; parts: number }> {
    const m = this.manifest;
    if (m.completed !== null) {
      await rm(this.dir, { recursive: true, force: true });
      return m.completed;
    }
    const uploaded = new Set(m.parts.map((p) => p.partNumber));
    const pending: number[] = [];
    let part1Bytes = 0;
    for (const name of (await readdir(this.dir)).sort()) {
      const match = PART_FILE.exec(name);
      if (match === null) continue;
      const n = Number(match[1]);
      if (uploaded.has(n)) {
        await unlink(join(this.dir, name));
        continue;
      }
      if (n === 1) part1Bytes = (await stat(join(this.dir, name))).size;
      else pending.push(n);
    }
    pending.sort((a, b) => a - b);
    // a write cut by the crash may end mid-frame: keep whole frames only
    const last = pending.length > 0 ? pending[pending.length - 1]! : 1;
    const lastPath = partFile(this.dir, last);
    const lastSize = await stat(lastPath).then((s) => s.size, () => 0);
    if (lastSize % this.blockAlign !== 0) await truncate(lastPath, lastSize - (lastSize % this.blockAlign));
    for (const n of pending) {
      const size = (await stat(partFile(this.dir, n))).size;
      this.spool.adopt(size);
      this.reserved += size;
    }
    this.spool.adopt(part1Bytes);
    this.reserved += part1Bytes;

    // the previous process may have completed the object just before it died
    const dataBytes = part1Bytes - (last === 1 ? part1Bytes % this.blockAlign : 0)
      + m.parts.reduce((s, p) => s + p.dataBytes, 0)
      + (await Promise.all(pending.map((n) => stat(partFile(this.dir, n)).then((s) => s.size)))).reduce((s, v) => s + v, 0);
    const existing = await this.store.head(m.key);
    if (existing !== null && existing.size === WAV_HEADER_BYTES + dataBytes && existing.lastModified.getTime() >= Date.parse(m.createdAt) - 1000
      && (m.uploadId !== null || pending.length === 0)) {
      await rm(this.dir, { recursive: true, force: true });
      return { size: existing.size, dataBytes, parts: m.uploadId === null ? 1 : m.parts.length + pending.length + 1 };
    }

    this.state = 'finishing';
    this.readyParts.push(...pending);
    this.kickUploader();
    while (this.uploading !== null) await this.uploading;
    if (this.uploadFailure !== null) throw this.uploadFailure;
    const done = await this.complete();
    this.state = 'done';
    return done;
  }

  /** Final step, shared by finish and recover: part 1 with its header, then complete (or one PUT). */
  private async complete(): Promise<{ size: number; dataBytes: number; parts: number }> {
    const m = this.manifest;
    let part1 = await readFile(partFile(this.dir, 1)).catch((err: unknown) => {
      if (isNotFound(err)) return Buffer.alloc(0);
      throw err;
    });
    if (part1.length % this.blockAlign !== 0) part1 = part1.subarray(0, part1.length - (part1.length % this.blockAlign));
    const dataBytes = part1.length + m.parts.reduce((s, p) => s + p.dataBytes, 0);
    const header = wavHeader(m.format.sampleRate, m.format.channels, dataBytes);
    const metadata = m.finalMetadata ?? m.metadata;
    let size: number;
    let parts: number;
    if (m.uploadId === null) {
      const res = await this.withRetry('put', () => this.store.put(m.key, Buffer.concat([header, part1]), { contentType: m.contentType, metadata }));
      size = res.size;
      parts = 1;
    } else {
      const uploadId = m.uploadId;
      const body = Buffer.concat([header, part1]);
      const first = await this.withRetry('uploadPart', () => this.store.uploadPart(m.key, uploadId, 1, body));
      const refs: PartRef[] = [first, ...m.parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag }))];
      let attempted = false;
      const res = await this.withRetry('completeMultipart', async () => {
        // An earlier attempt may have completed the upload and lost its answer; a retry then fails
        // (NoSuchUpload, or s3rver's 500) although the object is there: look before completing again.
        if (attempted) {
          const existing = await this.store.head(m.key);
          if (existing !== null && existing.size === WAV_HEADER_BYTES + dataBytes && existing.lastModified.getTime() >= Date.parse(m.createdAt) - 1000) {
            return { key: m.key, size: existing.size };
          }
        }
        attempted = true;
        return this.store.completeMultipart(m.key, uploadId, refs);
      });
      if (JSON.stringify(metadata) !== JSON.stringify(m.metadata)) {
        await this.withRetry('replaceMetadata', () => this.store.replaceMetadata(m.key, { contentType: m.contentType, metadata }));
      }
      size = res.size;
      parts = refs.length;
    }
    m.completed = { size, dataBytes, parts };
    await this.saveManifest();
    await rm(this.dir, { recursive: true, force: true });
    return m.completed;
  }

  private drop(len: number, reason: string): void {
    this.dropped += len;
    this.metrics?.framesDropped.inc({ source: this.source, reason });
  }

  private kickWriter(): void {
    this.writing = this.runWriter().finally(() => {
      this.writing = null;
      if (this.qHead < this.qBufs.length && this.state !== 'aborted') this.kickWriter();
    });
  }

  /** Drains the queue into part files, in order, one positional writev per run of one part. */
  private async runWriter(): Promise<void> {
    let attempt = 0;
    while (this.qHead < this.qBufs.length) {
      if (this.state === 'aborted') return;
      const part = this.qParts[this.qHead]!;
      let end = this.qHead;
      let bytes = 0;
      while (end < this.qBufs.length && this.qParts[end] === part) bytes += this.qBufs[end++]!.length;
      try {
        if (this.fhPart !== part) {
          await this.closePartFile();
          this.fh = await open(partFile(this.dir, part), 'w');
          this.fhPart = part;
          this.fhBytes = 0;
        }
        await writeAllAt(this.fh!, this.qBufs.slice(this.qHead, end), this.fhBytes);
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
      this.fhBytes += bytes;
      this.spooled += bytes;
      if (this.qHead > 1024 && this.qHead * 2 > this.qBufs.length) {
        this.qBufs = this.qBufs.slice(this.qHead);
        this.qParts = this.qParts.slice(this.qHead);
        this.qOwners = this.qOwners.slice(this.qHead);
        this.qHead = 0;
      }
      if (this.fhBytes === this.partSize) {
        await this.closePartFile().catch((err: unknown) => this.logger?.error({ err }, 'spool file close failed'));
        if (part >= 2) {
          this.readyParts.push(part);
          this.kickUploader();
        }
      }
    }
    if (this.qHead > 0) {
      this.qBufs = [];
      this.qParts = [];
      this.qOwners = [];
      this.qHead = 0;
    }
  }

  private async closePartFile(): Promise<void> {
    const fh = this.fh;
    if (fh === null) return;
    this.fh = null;
    this.fhPart = 0;
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  private kickUploader(): void {
    if (this.uploading !== null || this.readyParts.length === 0 || this.uploadFailure !== null) return;
    this.uploading = this.runUploader().finally(() => {
      this.uploading = null;
      if (this.uploadFailure === null && this.state !== 'aborted' && this.state !== 'suspended') this.kickUploader();
    });
  }

  /** Uploads ready parts one at a time; a part file is deleted only once its ETag is in the manifest. */
  private async runUploader(): Promise<void> {
    while (this.readyParts.length > 0) {
      if (this.state === 'aborted' || this.state === 'suspended') return;
      const part = this.readyParts[0]!;
      try {
        if (this.manifest.uploadId === null) {
          const id = await this.withRetry('createMultipart', () => this.store.createMultipart(this.key, { contentType: this.manifest.contentType, metadata: this.manifest.metadata }));
          this.manifest.uploadId = id;
          await this.saveManifest();
        }
        const uploadId = this.manifest.uploadId;
        const path = partFile(this.dir, part);
        // From the file: the part never sits in memory (the fs store links it, S3 streams it).
        const ref = await this.withRetry('uploadPart', () => this.store.uploadPartFile(this.key, uploadId, part, path));
        this.manifest.parts.push({ partNumber: part, etag: ref.etag, dataBytes: ref.size });
        this.manifest.parts.sort((a, b) => a.partNumber - b.partNumber);
        await this.saveManifest();
        await unlink(path);
        this.spool.release(ref.size);
        this.reserved -= ref.size;
        this.readyParts.shift();
      } catch (err) {
        const state = this.state as State;
        if (state === 'aborted' || state === 'suspended') return;
        this.uploadFailure = err instanceof AppError ? err : new AppError('STORAGE_ERROR', 'part upload failed', { cause: err });
        this.logger?.error({ err, part }, 'part upload failed; spool kept for recovery');
        return;
      }
    }
  }

  /** Runs a store call, retrying STORAGE_UNAVAILABLE with backoff (bounded for recovery) and other errors a few times. */
  private async withRetry<T>(op: string, fn: () => Promise<T>): Promise<T> {
    let unavailable = 0;
    let errors = 0;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        const isUnavailable = err instanceof AppError && err.code === 'STORAGE_UNAVAILABLE';
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
    const cap = Math.min(this.retry.maxMs, this.retry.baseMs * 2 ** Math.min(attempt - 1, 20));
    const delay = cap / 2 + Math.random() * (cap / 2);
    try {
      await sleep(delay, undefined, { signal: this.stopSignal.signal });
      return true;
    } catch {
      return false;
    }
  }

  /** Waits for the writer and uploader to stop (after a state change that stops them). */
  private async settle(): Promise<void> {
    while (this.writing !== null || this.uploading !== null) {
      await Promise.all([this.writing, this.uploading]);
    }
    await this.closePartFile().catch(() => undefined);
  }

  private async saveManifest(): Promise<void> {
    await writeFileAtomic(join(this.dir, MANIFEST), JSON.stringify(this.manifest));
  }
}

const EMPTY = Buffer.alloc(0);

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
