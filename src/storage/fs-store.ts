import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import type { ReadStream } from 'node:fs';
import { access, copyFile, link, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink, constants } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import { fsyncDir, syncFileAt, writeFileAtomic } from './atomic-file.js';
import { Gather, type Gathered } from './gather.js';
import { isNotFound } from './errno.js';
import { assertSafeKey } from './keys.js';
import { FsPlacer } from './fs-placer.js';
import type { MoveItem, PlaceItem } from './fs-place-protocol.js';
import { metadataProblem } from './object-store.js';
import type { BatchItem, ObjectInfo, ObjectMetadata, ObjectStore, PartRef, PutOptions } from './object-store.js';

/**
 * The embedded object store: objects under `<root>/objects/<key>`, their content type and
 * metadata in a sidecar `<root>/.meta/<key>.json`, multipart uploads under `<root>/.uploads/`.
 * Every write lands in a temp file, is fsync'd and renamed, so a reader sees all or nothing;
 * `putFile` renames the caller's file itself, so a master is stored without a copy.
 */

/** Options of {@link FsObjectStore}. */
export interface FsObjectStoreOptions {
  /** Data directory of the store (created on start). */
  root: string;
  /**
   * How presigned URLs are made; served by the HTTP route `GET /v1/objects/<key>`. Without it
   * (a CLI command that only deletes) `presign()` throws.
   */
  presign?: {
    /**
     * Public base URL of the daemon, e.g. `http://127.0.0.1:8080` (no trailing slash needed); a
     * function when it is known only once the daemon listens (port 0), read at each presign.
     */
    baseUrl: string | (() => string);
    /** HMAC key of the signatures. */
    secret: string;
  };
  /** How long a journal segment of {@link FsObjectStore.putBatch} is appended to before its checkpoint (default 5 000 ms). */
  journalSegmentMs?: number;
}

interface Sidecar {
  contentType: string;
  metadata: ObjectMetadata;
}

/** A journal record's header (then `size` body bytes). */
interface JournalHeader {
  key: string;
  contentType: string;
  metadata: ObjectMetadata;
  size: number;
  /** Only the sidecar (content type and metadata) of an object whose bytes `putFile` moved into place and synced itself; `size` is 0. */
  sidecarOnly?: true;
}

/** Journal appends waiting for the next write and fdatasync of the segment. */
interface JournalAppend {
  bufs: Buffer[];
  keys: string[];
  /** What to put into place once the records are durable, given where they start in the segment. */
  place: (base: number) => PlaceItem[];
  resolve: (placement: { placed: Promise<void> }) => void;
  reject: (err: unknown) => void;
}

/** Most masters in one group of moves. */
const MOVE_GROUP_MAX = 256;

/** The journal segment being appended to. */
interface Segment {
  fh: FileHandle;
  path: string;
  bytes: number;
  openedAt: number;
  /** Objects its records cover (for the per-file fallback of a checkpoint). */
  keys: string[];
}

/** A segment is closed and checkpointed after this long (or this size). */
const SEGMENT_MS = 5_000;
const SEGMENT_BYTES = 64 * 1024 * 1024;

interface UploadRecord {
  key: string;
  contentType: string;
  metadata: ObjectMetadata;
}

/** ETag of a part uploaded from a file: its size and inode (stable while the upload lives). */
function fileEtag(size: number, ino: number): string {
  return `"f-${size}-${ino}"`;
}

/** The string the presign HMAC covers. */
function presignPayload(key: string, expires: number): string {
  return `GET\n${key}\n${expires}`;
}

/** The hex HMAC-SHA256 a presigned fs URL carries. */
export function signObjectUrl(secret: string, key: string, expires: number): string {
  return createHmac('sha256', secret).update(presignPayload(key, expires)).digest('hex');
}

/**
 * Checks a presigned fs URL: the signature (compared in constant time) and that `expires`
 * (unix seconds) is not past `now`. For the route that serves `/v1/objects/<key>`.
 */
export function verifyPresigned(secret: string, key: string, expires: string | number, signature: string, now: Date = new Date()): boolean {
  const exp = typeof expires === 'number' ? expires : /^\d{1,12}$/.test(expires) ? Number(expires) : NaN;
  if (!Number.isSafeInteger(exp) || !/^[0-9a-f]{64}$/.test(signature)) return false;
  const expected = Buffer.from(signObjectUrl(secret, key, exp), 'hex');
  const given = Buffer.from(signature, 'hex');
  const ok = timingSafeEqual(expected, given);
  return ok && exp * 1000 >= now.getTime();
}

/** The URL path of a key: each segment percent-encoded, slashes kept. */
function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function quotedMd5(data: Buffer): string {
  return `"${createHash('md5').update(data).digest('hex')}"`;
}

/** Disk full, read-only or permission trouble is an outage of this store; the rest is an error. */
function storeError(op: string, err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const unavailable = code === 'ENOSPC' || code === 'EROFS' || code === 'EACCES' || code === 'EPERM' || code === 'EIO' || code === 'EMFILE' || code === 'ENFILE';
  return new AppError(unavailable ? 'STORAGE_UNAVAILABLE' : 'STORAGE_ERROR', `fs store ${op} failed${code === undefined ? '' : ` (${code})`}`, {
    cause: err,
    ...(unavailable ? { retryAfterSec: 5, retryable: true } : {}),
  });
}

export class FsObjectStore implements ObjectStore {
  readonly driver = 'fs' as const;
  readonly putFileMoves = true;
  private readonly root: string;
  private readonly objectsDir: string;
  private readonly metaDir: string;
  private readonly uploadsDir: string;
  private readonly tmpDir: string;
  private readonly presigning: { baseUrl: () => string; secret: string } | undefined;
  private readonly journalDir: string;
  private segment: Segment | null = null;
  /** Closed segments waiting for a checkpoint, with the keys they cover. */
  private retired: { path: string; keys: string[] }[] = [];
  private journalTail: Promise<void> = Promise.resolve();
  /** Appends gathered for the next journal write (one writev and one fdatasync for all of them). */
  private journalQueue: JournalAppend[] = [];
  private journalFlushQueued = false;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private checkpointing: Promise<void> | null = null;
  private readonly segmentMs: number;
  /** Writes journalled objects into place on a worker thread. */
  private readonly placer = new FsPlacer();
  /** Placements under way; a checkpoint waits for them, since their journal records are all that make them durable until then. */
  private readonly placing = new Set<Promise<void>>();
  /**
   * Moves masters into place on a thread of its own, a group at a time: their data syncs, renames
   * and folder syncs are synchronous calls there, not a libuv round trip each on the event loop.
   */
  private readonly mover = new FsPlacer();
  /** One group on the mover at a time; the masters that end meanwhile gather for the next. */
  private readonly moves = new Gather<MoveItem, number>((jobs) => this.moveGroup(jobs), { maxItems: MOVE_GROUP_MAX, inFlight: 1 });

  constructor(options: FsObjectStoreOptions) {
    if (options.presign?.secret.length === 0) throw new RangeError('fs store presign.secret must not be empty');
    this.root = resolve(options.root);
    this.objectsDir = join(this.root, 'objects');
    this.metaDir = join(this.root, '.meta');
    this.uploadsDir = join(this.root, '.uploads');
    this.tmpDir = join(this.root, '.tmp');
    const base = options.presign?.baseUrl;
    this.presigning = options.presign && { baseUrl: () => (typeof base === 'function' ? base() : (base ?? '')).replace(/\/+$/, ''), secret: options.presign.secret };
    this.journalDir = join(this.root, '.journal');
    this.segmentMs = options.journalSegmentMs ?? SEGMENT_MS;
  }

  async start(): Promise<void> {
    for (const dir of [this.objectsDir, this.metaDir, this.uploadsDir, this.tmpDir, this.journalDir]) await mkdir(dir, { recursive: true });
  }

  async stop(): Promise<void> {
    if (this.checkpointTimer !== null) clearInterval(this.checkpointTimer);
    this.checkpointTimer = null;
    await this.rotate(true);
    await this.placer.stop();
    await this.mover.stop();
  }

  /**
   * Group commit: every object of the batch is appended to one journal segment with one
   * fdatasync, then written into place (temp file and rename) without an fsync of its own.
   * The journal is what makes the objects durable: a crash after this resolved replays it at
   * the next start. A segment is retired every 5 s and deleted after a checkpoint has flushed
   * the objects it covers (`sync -f` of the store's filesystem, or else an fsync of each).
   */
  async putBatch(items: BatchItem[]): Promise<void> {
    if (items.length === 0) return;
    for (const it of items) {
      this.objectPath(it.key);
      this.checkMetadata(it.options);
    }
    try {
      const bufs: Buffer[] = [];
      /** Where each body starts, from the batch's first record. */
      const starts: number[] = [];
      let at = 0;
      for (const it of items) {
        const record = journalRecord({ key: it.key, contentType: it.options.contentType, metadata: { ...it.options.metadata }, size: it.body.length }, it.body);
        bufs.push(...record);
        starts.push(at + record[0]!.length + record[1]!.length);
        at += record[0]!.length + record[1]!.length + it.body.length;
      }
      // the placer reads each body back from the segment (just written, in the page cache)
      const { placed } = await this.appendJournal(bufs, items.map((i) => i.key), (base) =>
        items.map((it, i) => this.placeItem(it.key, { offset: base + starts[i]!, size: it.body.length }, it.options)),
      );
      await placed;
    } catch (err) {
      throw storeError('putBatch', err);
    }
  }

  /**
   * Appends records to the open segment. Appends that arrive while one is being written and
   * synced wait and then go together: one writev and one fdatasync for all of them (the group
   * commit of every caller of the store, not only within one batch).
   */
  private appendJournal(bufs: Buffer[], keys: string[], place: JournalAppend['place']): Promise<{ placed: Promise<void> }> {
    return new Promise<{ placed: Promise<void> }>((resolve, reject) => {
      this.journalQueue.push({ bufs, keys, place, resolve, reject });
      if (this.journalFlushQueued) return;
      this.journalFlushQueued = true;
      this.journalTail = this.journalTail.then(() => this.flushJournal());
    });
  }

  /** Writes and syncs every append queued so far; never rejects (each append hears its own outcome). */
  private async flushJournal(): Promise<void> {
    this.journalFlushQueued = false;
    const jobs = this.journalQueue;
    this.journalQueue = [];
    if (jobs.length === 0) return;
    const bufs = jobs.length === 1 ? jobs[0]!.bufs : jobs.flatMap((j) => j.bufs);
    let base: number;
    let segPath: string;
    try {
      const seg = this.segment ?? (this.segment = await this.openSegment());
      base = seg.bytes;
      segPath = seg.path;
      const total = bufs.reduce((n, b) => n + b.length, 0);
      let written = (await seg.fh.writev(bufs, seg.bytes)).bytesWritten;
      if (written < total) {
        const all = Buffer.concat(bufs);
        while (written < total) written += (await seg.fh.write(all, written, total - written, seg.bytes + written)).bytesWritten;
      }
      await seg.fh.datasync();
      seg.bytes += total;
      for (const j of jobs) seg.keys.push(...j.keys);
    } catch (err) {
      // the segment may end in a partial record now: later appends go to a fresh one
      await this.closeSegment();
      for (const j of jobs) j.reject(err);
      return;
    }
    // the placements start before the segment can be retired (the next flush or rotation waits
    // for this one) and are registered: a checkpoint must not delete the records of objects not yet in place
    for (const j of jobs) {
      const placed = this.placer.place(j.place(base), segPath);
      this.placing.add(placed);
      const settled = (): void => void this.placing.delete(placed);
      placed.then(settled, settled);
      j.resolve({ placed });
      base += j.bufs.reduce((n, b) => n + b.length, 0);
    }
  }

  private async openSegment(): Promise<Segment> {
    if (this.checkpointTimer === null) {
      this.checkpointTimer = setInterval(() => void this.rotate(false), Math.min(this.segmentMs, SEGMENT_MS));
      this.checkpointTimer.unref();
    }
    const path = join(this.journalDir, `${Date.now().toString().padStart(15, '0')}-${randomBytes(4).toString('hex')}.log`);
    const fh = await open(path, 'w');
    await fsyncDir(this.journalDir); // the segment's name must survive a crash too
    return { fh, path, bytes: 0, openedAt: Date.now(), keys: [] };
  }

  private async closeSegment(): Promise<void> {
    const seg = this.segment;
    this.segment = null;
    if (seg === null) return;
    await seg.fh.close().catch(() => undefined);
    this.retired.push({ path: seg.path, keys: seg.keys });
  }

  /** Retires the open segment when due (or `now`), then checkpoints every retired one. */
  private rotate(now: boolean): Promise<void> {
    const run = this.journalTail.then(async () => {
      const seg = this.segment;
      if (seg !== null && (now || Date.now() - seg.openedAt >= this.segmentMs || seg.bytes >= SEGMENT_BYTES)) await this.closeSegment();
    });
    this.journalTail = run.catch(() => undefined);
    return run
      .then(() => this.checkpoint())
      .then(() => (now && this.retired.length > 0 ? this.checkpoint() : undefined))
      .catch(() => undefined);
  }

  /** Flushes the objects of retired segments to disk, then deletes the segments. */
  private checkpoint(): Promise<void> {
    if (this.checkpointing !== null) return this.checkpointing;
    const todo = this.retired.splice(0);
    if (todo.length === 0) return Promise.resolve();
    this.checkpointing = (async () => {
      try {
        // every key of the retired segments was given to the placer before its segment closed
        await Promise.allSettled([...this.placing]);
        await this.flushObjects(todo.flatMap((s) => s.keys));
        for (const s of todo) await unlink(s.path).catch(() => undefined);
      } catch {
        this.retired.unshift(...todo); // the next checkpoint tries again; the journal still has them
      } finally {
        this.checkpointing = null;
      }
    })();
    return this.checkpointing;
  }

  /** Makes written objects durable: syncfs(2) of the store's filesystem by `sync -f`, or an fsync of each file and folder. */
  private async flushObjects(keys: string[]): Promise<void> {
    const synced = await new Promise<boolean>((resolve) => {
      execFile('sync', ['-f', this.objectsDir], { timeout: 60_000 }, (err) => resolve(err === null));
    });
    if (synced) return;
    const dirs = new Set<string>();
    for (const key of new Set(keys)) {
      for (const file of [this.objectPath(key), this.sidecarPath(key)]) {
        await syncFileAt(file, 'all').then(() => dirs.add(dirname(file)), (err: unknown) => { if (!isNotFound(err)) throw err; });
      }
    }
    for (const d of dirs) await fsyncDir(d);
  }

  /**
   * At the daemon's start, before any putBatch (not by another process on the same store, e.g.
   * a CLI command): every object a journal segment holds is written into place again, flushed,
   * and the segment deleted. Returns how many objects were restored.
   */
  async recoverJournal(): Promise<number> {
    const names = (await readdir(this.journalDir).catch((err: unknown) => (isNotFound(err) ? [] : Promise.reject(err)))).filter((n) => n.endsWith('.log')).sort();
    if (names.length === 0) return 0;
    const keys: string[] = [];
    for (const name of names) {
      const data = await readFile(join(this.journalDir, name));
      // one batch per segment, in record order (a later record of a key wins); its records are
      // views of one buffer, which a message to the placer copies once, not once per record
      const items: PlaceItem[] = [];
      for (let off = 0; off + 4 <= data.length;) {
        const hlen = data.readUInt32BE(off);
        if (off + 4 + hlen > data.length) break; // a record cut by the crash: it was never acknowledged
        let header: JournalHeader;
        try {
          header = JSON.parse(data.toString('utf8', off + 4, off + 4 + hlen)) as JournalHeader;
        } catch {
          break;
        }
        const start = off + 4 + hlen;
        if (start + header.size > data.length) break;
        const body = header.sidecarOnly === true ? null : data.subarray(start, start + header.size);
        items.push(this.placeItem(header.key, body, { contentType: header.contentType, metadata: header.metadata }));
        keys.push(header.key);
        off = start + header.size;
      }
      await this.placer.place(items);
    }
    await this.flushObjects(keys);
    for (const name of names) await unlink(join(this.journalDir, name));
    await fsyncDir(this.journalDir);
    return keys.length;
  }

  /**
   * What the placer needs to write an object and its sidecar into place, temp file and rename,
   * without fsync (the journal has them). `body` null: only the sidecar (putFile moves the bytes).
   */
  private placeItem(key: string, body: PlaceItem['body'], options: PutOptions): PlaceItem {
    const metadata = options.metadata ?? {};
    const bare = Object.keys(metadata).length === 0 && options.contentType === contentTypeOf(key);
    return {
      path: this.objectPath(key),
      sidecarPath: this.sidecarPath(key),
      sidecar: bare ? null : sidecarJson(options),
      tmp: this.tempPath(),
      sidecarTmp: this.tempPath(),
      body,
    };
  }

  async ping(): Promise<void> {
    try {
      await access(this.objectsDir, constants.W_OK);
    } catch (err) {
      throw new AppError('STORAGE_UNAVAILABLE', 'fs store is not writable', { cause: err, retryAfterSec: 5, retryable: true });
    }
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions): Promise<{ key: string; size: number }> {
    this.objectPath(key); // refuses an unsafe key before anything is written
    this.checkMetadata(options);
    try {
      const tmp = this.tempPath();
      // the sidecar's temp file is written and synced while the object's is
      const sidecar = this.prepareSidecar(key, options);
      sidecar.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
      let size: number;
      try {
        size = Buffer.isBuffer(body) ? await writeSynced(tmp, [body]) : await streamSynced(tmp, body);
      } catch (err) {
        await unlink(tmp).catch(() => undefined); // cleanup after a failed write: the write's error is the one to report
        await sidecar.then((side) => (side === null ? undefined : unlink(side)), () => undefined).catch(() => undefined); // as above
        throw err;
      }
      await this.commit(key, tmp, await sidecar);
      return { key, size };
    } catch (err) {
      throw storeError('put', err);
    }
  }

  /**
   * Moves the file into place, no byte read back or copied. Its sidecar is a journal record
   * (group commit: one fdatasync shared with every other write of the moment), put in place
   * without an fsync of its own; then the file joins the next group of moves: on the mover's
   * thread each file of the group is fdatasync'd and renamed into the store, and every folder the
   * group changed (the object's, and the parent of each folder made for it) is fsync'd once for
   * the whole group. Resolves only after its group's folder syncs, so an object announced after
   * this is durable. The path is gone afterwards.
   */
  async putFile(key: string, path: string, options: PutOptions): Promise<{ key: string; size: number }> {
    const file = this.objectPath(key);
    this.checkMetadata(options);
    try {
      // a missing file must not leave a sidecar (nor replace an existing object's) behind
      await stat(path).catch((err: unknown) => {
        if (isNotFound(err)) throw new AppError('STORAGE_ERROR', `file ${path} does not exist`, { cause: err });
        throw err;
      });
      // sidecar first, object last: the object's presence is what makes the write visible
      const metadata = { ...options.metadata };
      const { placed } = await this.appendJournal(journalRecord({ key, contentType: options.contentType, metadata, size: 0, sidecarOnly: true }, EMPTY), [key], () => [this.placeItem(key, null, options)]);
      await placed;
      const size = await this.moveInGroup({ from: path, path: file, tmp: this.tempPath() });
      return { key, size };
    } catch (err) {
      throw storeError('putFile', err);
    }
  }

  /** Resolves with the file's size once it is durable in place (its group's folder syncs done). */
  private moveInGroup(move: MoveItem): Promise<number> {
    return this.moves.add(move);
  }

  private async moveGroup(jobs: Gathered<MoveItem, number>[]): Promise<void> {
    const results = await this.mover.move(jobs.map((j) => j.item));
    for (const [i, j] of jobs.entries()) {
      const r = results[i];
      if (r?.ok === true) j.resolve(r.size);
      else j.reject(Object.assign(new Error(r?.message ?? 'no answer for this move'), { code: r?.code ?? 'EIO' }));
    }
  }

  async get(key: string): Promise<Buffer> {
    const file = this.objectPath(key);
    try {
      return await readFile(file);
    } catch (err) {
      if (isNotFound(err)) throw notFound(key);
      throw storeError('get', err);
    }
  }

  async getRange(key: string, start: number, endInclusive: number): Promise<Buffer> {
    const file = this.objectPath(key);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(endInclusive) || start < 0 || endInclusive < start) {
      throw new AppError('INVALID_PARAMETER', `invalid range ${start}-${endInclusive}`);
    }
    let fh;
    try {
      fh = await open(file, 'r');
      const { size } = await fh.stat();
      if (start >= size) throw new AppError('INVALID_PARAMETER', `range starts at ${start}, object has ${size} bytes`);
      const len = Math.min(endInclusive, size - 1) - start + 1;
      const buf = Buffer.allocUnsafe(len);
      let off = 0;
      while (off < len) {
        const { bytesRead } = await fh.read(buf, off, len - off, start + off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return buf.subarray(0, off);
    } catch (err) {
      if (isNotFound(err)) throw notFound(key);
      throw storeError('getRange', err);
    } finally {
      await fh?.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const file = this.objectPath(key);
    try {
      const st = await stat(file);
      if (!st.isFile()) return null;
      const side = await this.readSidecar(key);
      return { key, size: st.size, lastModified: st.mtime, contentType: side.contentType, metadata: side.metadata };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw storeError('head', err);
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.objectPath(key);
    try {
      await unlink(file).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
      await unlink(this.sidecarPath(key)).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
      await pruneEmptyDirs(dirname(file), this.objectsDir);
      await pruneEmptyDirs(dirname(this.sidecarPath(key)), this.metaDir);
    } catch (err) {
      throw storeError('delete', err);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // walk only the deepest folder the prefix names; the rest of the prefix filters names
    const cut = prefix.lastIndexOf('/');
    const folder = cut < 0 ? '' : prefix.slice(0, cut);
    if (folder !== '') assertSafeKey(folder);
    const keys: string[] = [];
    try {
      await walk(folder === '' ? this.objectsDir : join(this.objectsDir, ...folder.split('/')), this.objectsDir, keys);
    } catch (err) {
      throw storeError('list', err);
    }
    const selected = keys.filter((k) => k.startsWith(prefix)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of selected) {
      try {
        const st = await stat(join(this.objectsDir, ...key.split('/')));
        yield { key, size: st.size, lastModified: st.mtime, metadata: {} };
      } catch (err) {
        if (!isNotFound(err)) throw storeError('list', err);
      }
    }
  }

  async presign(key: string, ttlSec: number): Promise<string> {
    assertSafeKey(key);
    if (this.presigning === undefined) throw new TypeError('this fs store was opened without presign options');
    const { baseUrl, secret } = this.presigning;
    const expires = Math.floor(Date.now() / 1000) + Math.max(1, Math.floor(ttlSec));
    return `${baseUrl()}/v1/objects/${encodeKeyPath(key)}?expires=${expires}&signature=${signObjectUrl(secret, key, expires)}`;
  }

  async createMultipart(key: string, options: PutOptions): Promise<string> {
    this.objectPath(key);
    this.checkMetadata(options);
    const uploadId = randomBytes(16).toString('hex');
    const record: UploadRecord = { key, contentType: options.contentType, metadata: { ...options.metadata } };
    try {
      await writeFileAtomic(join(this.uploadsDir, uploadId, 'upload.json'), JSON.stringify(record));
    } catch (err) {
      throw storeError('createMultipart', err);
    }
    return uploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartRef> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) {
      throw new AppError('INVALID_PARAMETER', `part number must be 1..10000, got ${partNumber}`);
    }
    const dir = await this.uploadDir(key, uploadId);
    try {
      await writeFileAtomic(join(dir, `part-${String(partNumber).padStart(5, '0')}`), body);
    } catch (err) {
      throw storeError('uploadPart', err);
    }
    return { partNumber, etag: quotedMd5(body) };
  }

  async uploadPartFile(key: string, uploadId: string, partNumber: number, path: string): Promise<PartRef & { size: number }> {
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10000) {
      throw new AppError('INVALID_PARAMETER', `part number must be 1..10000, got ${partNumber}`);
    }
    const dir = await this.uploadDir(key, uploadId);
    const target = join(dir, `part-${String(partNumber).padStart(5, '0')}`);
    try {
      await unlink(target).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
      // A hard link shares the bytes: no copy, no re-hash. Another filesystem gets a copy.
      await link(path, target).catch(async (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        await copyFile(path, target);
      });
      await fsyncDir(dir);
      const st = await stat(target);
      return { partNumber, etag: fileEtag(st.size, st.ino), size: st.size };
    } catch (err) {
      if (isNotFound(err)) throw new AppError('STORAGE_ERROR', `part file ${path} does not exist`, { cause: err });
      throw storeError('uploadPart', err);
    }
  }

  /**
   * Joins the parts into a new file, 64 KiB at a time (masters do not come this way: they are
   * written in one file and moved into place by {@link putFile}).
   */
  async completeMultipart(key: string, uploadId: string, parts: PartRef[]): Promise<{ key: string; size: number }> {
    const dir = await this.uploadDir(key, uploadId);
    if (parts.length === 0) throw new AppError('STORAGE_ERROR', 'multipart upload needs at least one part');
    for (let i = 1; i < parts.length; i++) {
      if (parts[i]!.partNumber <= parts[i - 1]!.partNumber) throw new AppError('STORAGE_ERROR', 'parts must be listed in ascending order');
    }
    let record: UploadRecord;
    const tmp = this.tempPath();
    try {
      record = JSON.parse(await readFile(join(dir, 'upload.json'), 'utf8')) as UploadRecord;
      let size = 0;
      const out = await open(tmp, 'w');
      try {
        const buf = Buffer.allocUnsafe(COPY_BYTES);
        for (const p of parts) size += await appendPart(out, size, join(dir, `part-${String(p.partNumber).padStart(5, '0')}`), p, buf);
        await out.sync();
      } finally {
        await out.close();
      }
      await this.commit(key, tmp, await this.prepareSidecar(key, { contentType: record.contentType, metadata: record.metadata }));
      await rm(dir, { recursive: true, force: true });
      return { key, size };
    } catch (err) {
      await unlink(tmp).catch(() => undefined); // cleanup after a failed write: the write's error is the one to report
      throw storeError('completeMultipart', err);
    }
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    if (!/^[0-9a-f]{32}$/.test(uploadId)) return;
    this.objectPath(key);
    try {
      await rm(join(this.uploadsDir, uploadId), { recursive: true, force: true });
    } catch (err) {
      throw storeError('abortMultipart', err);
    }
  }

  async replaceMetadata(key: string, options: PutOptions): Promise<void> {
    this.objectPath(key);
    this.checkMetadata(options);
    if ((await this.head(key)) === null) throw notFound(key);
    try {
      await writeFileAtomic(this.sidecarPath(key), sidecarJson(options));
    } catch (err) {
      throw storeError('replaceMetadata', err);
    }
  }

  /**
   * A readable stream of an object with its size and content type, for the HTTP route that
   * serves presigned fs URLs (after {@link verifyPresigned}). Null when the object is absent.
   */
  async openRead(key: string): Promise<{ stream: ReadStream; size: number; contentType: string } | null> {
    const info = await this.head(key);
    if (info === null) return null;
    return { stream: createReadStream(this.objectPath(key)), size: info.size, contentType: info.contentType ?? 'application/octet-stream' };
  }

  private tempPath(): string {
    return join(this.tmpDir, `${randomBytes(8).toString('hex')}.tmp`);
  }

  /**
   * The sidecar's content in a synced temp file, or null when it would say nothing the key
   * does not: no metadata and the content type its extension implies (e.g. an idempotency
   * record, `….json`). Such objects get no sidecar: one file created and two fsyncs fewer.
   */
  private async prepareSidecar(key: string, options: PutOptions): Promise<string | null> {
    const metadata = options.metadata ?? {};
    if (Object.keys(metadata).length === 0 && options.contentType === contentTypeOf(key)) return null;
    const tmp = this.tempPath();
    try {
      await writeSynced(tmp, [Buffer.from(sidecarJson(options))]);
    } catch (err) {
      await unlink(tmp).catch(() => undefined); // as above
      throw err;
    }
    return tmp;
  }

  /**
   * Sidecar first, object last: the object's presence is what makes the write visible. Folders
   * are made only when a rename finds them missing, not checked before every write.
   */
  private async commit(key: string, tmp: string, sidecarTmp: string | null): Promise<void> {
    const file = this.objectPath(key);
    const side = this.sidecarPath(key);
    if (sidecarTmp === null) {
      // an older version of the object may have had one
      await unlink(side).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
    } else {
      await renameMakingDir(sidecarTmp, side);
      await fsyncDir(dirname(side));
    }
    await renameMakingDir(tmp, file);
    await fsyncDir(dirname(file));
  }

  private async readSidecar(key: string): Promise<Sidecar> {
    try {
      return JSON.parse(await readFile(this.sidecarPath(key), 'utf8')) as Sidecar;
    } catch (err) {
      if (isNotFound(err) || err instanceof SyntaxError) return { contentType: contentTypeOf(key), metadata: {} };
      throw err;
    }
  }

  private async uploadDir(key: string, uploadId: string): Promise<string> {
    this.objectPath(key);
    const dir = join(this.uploadsDir, uploadId);
    let record: UploadRecord | null = null;
    if (/^[0-9a-f]{32}$/.test(uploadId)) {
      record = await readFile(join(dir, 'upload.json'), 'utf8').then((s) => JSON.parse(s) as UploadRecord, () => null);
    }
    if (record === null || record.key !== key) {
      throw new AppError('STORAGE_ERROR', 'no such multipart upload', { details: { code: 'NoSuchUpload' } });
    }
    return dir;
  }

  private checkMetadata(options: PutOptions): void {
    const problem = metadataProblem(options.metadata);
    if (problem !== null) throw new AppError('INVALID_PARAMETER', problem);
  }

  /** The file of a key; refuses keys that are unsafe or would resolve outside the objects folder. */
  private objectPath(key: string): string {
    assertSafeKey(key);
    const file = resolve(this.objectsDir, ...key.split('/'));
    if (!file.startsWith(this.objectsDir + sep)) throw new AppError('INVALID_PARAMETER', 'object key refused', { details: { key } });
    return file;
  }

  private sidecarPath(key: string): string {
    return `${join(this.metaDir, ...key.split('/'))}.json`;
  }
}

function notFound(key: string): AppError {
  return new AppError('NOT_FOUND', 'object not found', { details: { key } });
}

function normalizeEtag(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

const EMPTY = Buffer.alloc(0);

/** A journal record: header length (uint32 BE), the JSON header, the body. */
function journalRecord(header: JournalHeader, body: Buffer): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(h.length, 0);
  return [len, h, body];
}

function sidecarJson(options: PutOptions): string {
  return JSON.stringify({ contentType: options.contentType, metadata: { ...options.metadata } } satisfies Sidecar);
}

/** Content type an object without a sidecar has, from its key's extension. */
const TYPE_OF_EXTENSION: Record<string, string> = {
  json: 'application/json',
  wav: 'audio/wav',
  ndjson: 'application/x-ndjson',
};

function contentTypeOf(key: string): string {
  const dot = key.lastIndexOf('.');
  const ext = dot > key.lastIndexOf('/') ? key.slice(dot + 1).toLowerCase() : '';
  return TYPE_OF_EXTENSION[ext] ?? 'application/octet-stream';
}

/** rename(2), making the target's folder when it is missing (the common case has it). */
async function renameMakingDir(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await mkdir(dirname(to), { recursive: true });
    await rename(from, to);
  }
}

/** Read size of a multipart completion. */
const COPY_BYTES = 64 * 1024;

/**
 * Copies one uploaded part to `out` at `position` and checks its ETag on the way: linked parts
 * carry size and inode (checked without hashing), buffer parts their MD5. Returns its size.
 */
async function appendPart(out: FileHandle, position: number, partPath: string, ref: PartRef, buf: Buffer): Promise<number> {
  const src = await open(partPath, 'r').catch((err: unknown) => {
    if (isNotFound(err)) throw new AppError('STORAGE_ERROR', `part ${ref.partNumber} was not uploaded`);
    throw err;
  });
  try {
    const st = await src.stat();
    const etag = normalizeEtag(ref.etag);
    const md5 = etag.startsWith('"f-') ? null : createHash('md5');
    if (md5 === null && etag !== fileEtag(st.size, st.ino)) throw new AppError('STORAGE_ERROR', `part ${ref.partNumber} ETag does not match`);
    let done = 0;
    for (;;) {
      const { bytesRead } = await src.read(buf, 0, buf.length, done);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      md5?.update(chunk);
      let written = 0;
      while (written < bytesRead) written += (await out.write(chunk, written, bytesRead - written, position + done + written)).bytesWritten;
      done += bytesRead;
    }
    if (md5 !== null && `"${md5.digest('hex')}"` !== etag) throw new AppError('STORAGE_ERROR', `part ${ref.partNumber} ETag does not match`);
    return done;
  } finally {
    await src.close();
  }
}

async function writeSynced(file: string, chunks: Buffer[]): Promise<number> {
  const fh = await open(file, 'w');
  let size = 0;
  try {
    for (const c of chunks) {
      await fh.write(c);
      size += c.length;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

async function streamSynced(file: string, body: Readable): Promise<number> {
  let size = 0;
  const out = createWriteStream(file, { flags: 'w' });
  const counted = body.on('data', (c: Buffer) => { size += c.length; });
  await pipeline(counted, out);
  const fh = await open(file, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

async function walk(dir: string, base: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, base, out);
    else if (e.isFile()) out.push(relative(base, p).split(sep).join('/'));
  }
}

/** Removes empty folders from `dir` up to (not including) `stopAt`, like S3's implicit prefixes. */
async function pruneEmptyDirs(dir: string, stopAt: string): Promise<void> {
  let d = dir;
  while (d.startsWith(stopAt + sep)) {
    try {
      await rmdir(d);
    } catch {
      return;
    }
    d = dirname(d);
  }
}
