import { AppError, isAppError, toAppError } from '../errors.js';
import type { EndReason, MuteInterval } from '../events/types.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { type ObjectKeys, sanitizeSegment } from '../storage/keys.js';
import { GroupCommit } from '../storage/group-commit.js';
import type { BatchItem, ObjectStore, PutOptions } from '../storage/object-store.js';
import type { RecordingIdentity, RecordingResult } from './recording.js';

/**
 * The recording catalog: one small JSON record per recording, kept **in the object store**
 * so that any host can answer `GET /v1/recordings/…` and hosts stay stateless.
 *
 * - `<prefix>catalog/recordings/<tenant>/<recordingId>.json` — the {@link CatalogRecord};
 * - `<prefix>catalog/rooms/<tenant>/<roomName>/<startedAt>_<recordingId>` and
 *   `<prefix>catalog/meetings/<tenant>/<meetingId>/<startedAt>_<recordingId>` — tiny index
 *   entries, so listing a room or meeting is one prefix listing, in start order.
 *
 * Written when a recording opens and again when it ends. Catalog writes never fail or block a
 * recording: they run in the background, one after the other per recording (so a slow first
 * write cannot overwrite the final state), are retried while the store is unavailable, and a
 * write that still fails is logged and counted. The catalog lives under the storage prefix, so
 * the retention sweep ages it out together with the audio it describes.
 */

export type CatalogState = 'recording' | 'completed' | 'failed';

/** What the catalog knows of one recording. */
export interface CatalogRecord {
  recordingId: string;
  tenant: string;
  state: CatalogState;
  source: RecordingIdentity['source'];
  roomName: string;
  meetingId: string | null;
  participant: string | null;
  trackId: string | null;
  /** Key of the master WAV. */
  key: string;
  /** Folder of the per-chunk objects (present only when chunk objects are enabled). */
  chunkPrefix: string;
  startedAt: string;
  endedAt: string | null;
  endReason: EndReason | null;
  durationSec: number | null;
  sizeBytes: number | null;
  sampleRate: number;
  channels: number;
  muteIntervals: MuteInterval[];
  error: string | null;
}

/** What {@link RecordingCatalog.opened} needs to know of a new recording. */
export interface OpenedRecording {
  identity: RecordingIdentity;
  key: string;
  chunkPrefix: string;
  sampleRate: number;
  channels: number;
  startedAt: Date;
}

/** Options of {@link RecordingCatalog}. */
export interface RecordingCatalogOptions {
  store: ObjectStore;
  /** Gives the storage prefix the catalog lives under. */
  keys: ObjectKeys;
  logger: Logger;
  metrics: Metrics;
  /** Waits between attempts while the store is unavailable (default 0.5 s, 2 s, 5 s). */
  retryDelaysMs?: number[];
  now?: () => Date;
}

/** Largest page of {@link RecordingCatalog.list}. */
export const MAX_LIST_LIMIT = 1000;

/** Concurrent record reads while listing. */
const LIST_READ_CONCURRENCY = 16;

/** Most objects in one group commit: 64 records of three objects each. */
const BATCH_OBJECTS = 192;

/** Content type of the index entries: bytes, as a store assumes of a key without an extension. */
const INDEX_ENTRY_TYPE = 'application/octet-stream';

export class RecordingCatalog {
  private readonly opts: RecordingCatalogOptions;
  private readonly retryDelaysMs: number[];
  private readonly now: () => Date;
  /** Records of recordings opened on this host and not yet finished. */
  private readonly open = new Map<string, CatalogRecord>();
  /** The tail of each recording's write chain. */
  private readonly writing = new Map<string, Promise<void>>();
  /** The objects of every recording written at one moment go to the store together. */
  private readonly commit: GroupCommit;
  private failures = 0;

  constructor(options: RecordingCatalogOptions) {
    this.opts = options;
    this.commit = new GroupCommit(options.store, { maxItems: BATCH_OBJECTS });
    this.retryDelaysMs = options.retryDelaysMs ?? [500, 2000, 5000];
    this.now = options.now ?? (() => new Date());
  }

  /** Catalog writes given up on since start (each one is also logged and counted as an error). */
  get failedWrites(): number {
    return this.failures;
  }

  /** Key of a recording's record. */
  recordKey(tenant: string, recordingId: string): string {
    return `${this.opts.keys.prefix}catalog/recordings/${sanitizeSegment(tenant)}/${sanitizeSegment(recordingId)}.json`;
  }

  /** The folder listing one room's (or meeting's) recordings. */
  indexFolder(tenant: string, by: 'rooms' | 'meetings', place: string): string {
    return `${this.opts.keys.prefix}catalog/${by}/${sanitizeSegment(tenant)}/${sanitizeSegment(place)}/`;
  }

  /** Records a recording that has just opened; returns at once. */
  opened(r: OpenedRecording): void {
    const id = r.identity;
    const record: CatalogRecord = {
      recordingId: id.recordingId,
      tenant: id.tenant,
      state: 'recording',
      source: id.source,
      roomName: id.roomName,
      meetingId: id.meetingId ?? null,
      participant: id.participant ?? null,
      trackId: id.trackId ?? null,
      key: r.key,
      chunkPrefix: r.chunkPrefix,
      startedAt: r.startedAt.toISOString(),
      endedAt: null,
      endReason: null,
      durationSec: null,
      sizeBytes: null,
      sampleRate: r.sampleRate,
      channels: r.channels,
      muteIntervals: [],
      error: null,
    };
    this.open.set(id.recordingId, record);
    void this.enqueue(record); // never rejects: a failed write is logged and counted inside
  }

  /**
   * Records how a recording ended. The promise settles (never rejects) once the record is
   * written or given up, so the caller can update the catalog before announcing the recording.
   * Ignored for recordings this host did not open.
   */
  finished(identity: RecordingIdentity, result: RecordingResult): Promise<void> {
    const opened = this.open.get(identity.recordingId);
    if (!opened) return Promise.resolve();
    this.open.delete(identity.recordingId);
    return this.enqueue({
      ...opened,
      state: result.status,
      key: result.key,
      endedAt: this.now().toISOString(),
      endReason: result.endReason,
      durationSec: result.durationSec,
      sizeBytes: result.status === 'completed' ? result.sizeBytes : null,
      muteIntervals: result.muteIntervals,
      error: result.error,
    });
  }

  /**
   * A master finished by recovery after an unclean stop: its record (written by the process
   * that crashed) moves from `recording` to `completed` (or `failed`, with `error`, when the
   * store refused it for good) with end reason `aborted`. Settles, never rejects; a missing
   * record stays missing.
   */
  async recovered(tenant: string, recordingId: string, result: { key: string; sizeBytes: number | null; durationSec: number; error?: string }): Promise<void> {
    const record = await this.get(tenant, recordingId).catch(() => null);
    if (!record || record.state !== 'recording') return;
    await this.enqueue({
      ...record, state: result.error === undefined ? 'completed' : 'failed', key: result.key, endedAt: this.now().toISOString(), endReason: 'aborted',
      durationSec: result.durationSec, sizeBytes: result.sizeBytes, error: result.error ?? null,
    });
  }

  /** Resolves when every catalog write started so far has succeeded or been given up. */
  async whenIdle(): Promise<void> {
    while (this.writing.size > 0) await Promise.all([...this.writing.values()]);
  }

  /** The record of one of `tenant`'s recordings, or null when there is none. */
  async get(tenant: string, recordingId: string): Promise<CatalogRecord | null> {
    let body: Buffer;
    try {
      body = await this.opts.store.get(this.recordKey(tenant, recordingId));
    } catch (err) {
      if (isAppError(err, 'NOT_FOUND') || isAppError(err, 'INVALID_PARAMETER')) return null;
      throw err;
    }
    let record: CatalogRecord;
    try {
      record = JSON.parse(body.toString('utf8')) as CatalogRecord;
    } catch (err) {
      throw new AppError('STORAGE_ERROR', 'catalog record is not valid JSON', { cause: err, details: { recordingId } });
    }
    // sanitized segments may collide; the record itself says whose it is
    return record.tenant === tenant && record.recordingId === recordingId ? record : null;
  }

  /**
   * `tenant`'s recordings of a meeting (or room), oldest first, at most `limit`.
   * `truncated` says that more exist.
   */
  async list(tenant: string, by: { meetingId: string } | { roomName: string }, limit = MAX_LIST_LIMIT): Promise<{ records: CatalogRecord[]; truncated: boolean }> {
    const n = Math.max(1, Math.min(MAX_LIST_LIMIT, Math.floor(limit)));
    const folder = 'meetingId' in by ? this.indexFolder(tenant, 'meetings', by.meetingId) : this.indexFolder(tenant, 'rooms', by.roomName);
    const ids: string[] = [];
    let truncated = false;
    for await (const entry of this.opts.store.list(folder)) {
      const name = entry.key.slice(folder.length);
      const cut = name.indexOf('_');
      if (name.includes('/') || cut < 0) continue;
      if (ids.length === n) {
        truncated = true;
        break;
      }
      ids.push(name.slice(cut + 1));
    }
    const records: (CatalogRecord | null)[] = new Array<CatalogRecord | null>(ids.length).fill(null);
    let next = 0;
    const reader = async (): Promise<void> => {
      while (next < ids.length) {
        const i = next++;
        records[i] = await this.get(tenant, ids[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(LIST_READ_CONCURRENCY, ids.length) }, reader));
    // an index entry may outlive its record (retention, a failed write): skip it
    const found = records.filter((r): r is CatalogRecord => r !== null);
    const match = 'meetingId' in by ? (r: CatalogRecord) => r.meetingId === by.meetingId : (r: CatalogRecord) => r.roomName === by.roomName;
    return { records: found.filter(match), truncated };
  }

  private enqueue(record: CatalogRecord): Promise<void> {
    const id = record.recordingId;
    const tail = (this.writing.get(id) ?? Promise.resolve()).then(() => this.write(record));
    this.writing.set(id, tail);
    void tail.finally(() => { // write() never rejects: its failures are logged and counted
      if (this.writing.get(id) === tail) this.writing.delete(id);
    });
    return tail;
  }

  /** The record's objects: the record, then its index entries (rewritten at the end too, so they age with the record). */
  private objectsOf(record: CatalogRecord): BatchItem[] {
    const stamp = record.startedAt.replace(/[-:.]/g, '');
    const entry = `${stamp}_${record.recordingId}`;
    // no object metadata: the key and the body say whose recording it is, and on the fs store an
    // object whose content type its name implies needs no sidecar (a file created fewer per
    // object at every start); the tenant goes to the object tags of stores that tag
    const options = (contentType: string): PutOptions => ({ contentType, tags: { tenant: record.tenant, source: 'livekit' } });
    // an index entry is a marker: its name is what is read, its body the recording id as bytes
    const items: BatchItem[] = [
      { key: this.recordKey(record.tenant, record.recordingId), body: Buffer.from(JSON.stringify(record)), options: options('application/json') },
      { key: this.indexFolder(record.tenant, 'rooms', record.roomName) + sanitizeSegment(entry), body: Buffer.from(record.recordingId), options: options(INDEX_ENTRY_TYPE) },
    ];
    if (record.meetingId !== null) {
      items.push({ key: this.indexFolder(record.tenant, 'meetings', record.meetingId) + sanitizeSegment(entry), body: Buffer.from(record.recordingId), options: options(INDEX_ENTRY_TYPE) });
    }
    return items;
  }

  /**
   * Writes one record's objects, each retried while the store is unavailable; settles, never
   * rejects. Through {@link GroupCommit}: on a store with group commit (fs) the objects of every
   * recording written while a batch is being made durable go together in the next one, so a
   * meeting's 500 ends cost a few journal appends and fdatasyncs, not 500 × 3 objects of their
   * own (each a temp file, a sidecar and four fsyncs); a batch the store refuses is retried
   * object by object, so only the object refused is lost. A record given up is counted once.
   */
  private async write(record: CatalogRecord): Promise<void> {
    const refused = (await Promise.all(this.objectsOf(record).map((item) => this.writeObject(record, item)))).find((e) => e !== null);
    if (refused === undefined) return;
    this.failures++;
    this.opts.metrics.errors.inc({ code: refused.code });
  }

  /** One object, retried while the store is unavailable; the error it was given up with, or null. */
  private async writeObject(record: CatalogRecord, item: BatchItem): Promise<AppError | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.commit.put(item);
        return null;
      } catch (err) {
        const appErr = toAppError(err);
        const delay = this.retryDelaysMs[attempt];
        if (appErr.retryable && delay !== undefined) {
          this.opts.logger.warn({ err, recordingId: record.recordingId, key: item.key, attempt: attempt + 1 }, 'catalog write failed: retrying');
          await new Promise((r) => setTimeout(r, delay));
          continue;
        }
        this.opts.logger.error({ err, recordingId: record.recordingId, key: item.key, state: record.state }, 'catalog write failed: the recording is unaffected, its catalog entry is incomplete');
        return appErr;
      }
    }
  }
}
