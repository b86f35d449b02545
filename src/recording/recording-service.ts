import { randomUUID } from 'node:crypto';
import { BufferPool } from '../audio/buffer-pool.js';
import type { PcmFormat } from '../audio/pcm-format.js';
import type { EndReason } from '../events/types.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { ObjectKeys } from '../storage/keys.js';
import type { ObjectMetadata } from '../storage/object-store.js';
import { type ChunkSink, type EventAppender, type MasterWriter, Recording, type RecordingIdentity, type RecordingResult } from './recording.js';
import type { RecordingCatalog } from './recording-catalog.js';
import { FinalizeQueue } from './finalize-queue.js';
import type { VadPool } from './vad-pool.js';

export interface RecordingServiceOptions {
  keys: ObjectKeys;
  events: EventAppender;
  chunkSinks: ChunkSink[];
  /** Opens the streamed master object of a recording. */
  openMaster: (args: { recordingId: string; key: string; format: PcmFormat; metadata: ObjectMetadata; release: (buf: Buffer) => void }) => Promise<MasterWriter>;
  presign: (key: string) => Promise<{ url: string; expiresAt: Date } | null>;
  /** Output format; `sampleRate` undefined keeps the source rate. */
  output: { sampleRate?: number | undefined; channels: 1 | 2 };
  normalize: { mode: 'none' | 'peak' | 'loudness'; targetDb: number };
  muteFill: 'none' | 'silence';
  /** Masters finalized at once (default 16); more ends wait their turn (`storage.finalizeConcurrency`). */
  finalizeConcurrency?: number;
  /** Told when a recording opens and when it has ended; its writes never block or fail a recording. */
  catalog?: Pick<RecordingCatalog, 'opened' | 'finished'>;
  /** Told of every recording opened (live audio out adds it to room subscriptions). */
  onOpened?: (recording: Recording) => void;
  /** Voice-activity detection of every recording (none: `speech` is null). */
  vad?: VadPool | undefined;
  logger: Logger;
  metrics: Metrics;
}

export interface OpenRecording {
  identity: Omit<RecordingIdentity, 'recordingId'>;
  input: PcmFormat;
  groupSeconds: number;
}

/**
 * Every live recording of this host: opens them (master first, so the first frame already has
 * somewhere to go), indexes them by room for `room_finished`, and tracks finalization so a
 * shutdown waits for every master to be completed.
 */
export class RecordingService {
  private readonly live = new Map<string, Recording>();
  private readonly byRoom = new Map<string, Set<Recording>>();
  private readonly finishing = new Set<Promise<RecordingResult>>();
  /** Recordings ended and not finalized yet, by id. */
  private readonly ending = new Map<string, Recording>();
  /** Chunk buffers, handed from each recording's pipeline to its master and back. */
  private readonly pool = new BufferPool();
  /** Master finalizations (uploads and completion), bounded; events and catalog follow each at once. */
  readonly finalizing: FinalizeQueue;

  constructor(private readonly opts: RecordingServiceOptions) {
    this.finalizing = new FinalizeQueue(opts.finalizeConcurrency ?? 16, {
      waited: (s) => opts.metrics.finalizeWait.observe(s),
      ran: (s) => opts.metrics.finalizeDuration.observe(s),
    });
    opts.metrics.finalizeQueueSource = () => ({ running: this.finalizing.active, waiting: this.finalizing.queued });
  }

  get(recordingId: string): Recording | undefined {
    return this.live.get(recordingId);
  }

  /** A live recording, or one still being finalized (its spool is still there). */
  getLiveOrEnding(recordingId: string): Recording | undefined {
    return this.live.get(recordingId) ?? this.ending.get(recordingId);
  }

  async open(request: OpenRecording): Promise<Recording> {
    const recordingId = randomUUID();
    const identity: RecordingIdentity = { ...request.identity, recordingId };
    const output: PcmFormat = { sampleRate: this.opts.output.sampleRate ?? request.input.sampleRate, channels: this.opts.output.channels };
    const keyParts = {
      tenant: identity.tenant,
      meetingId: identity.meetingId,
      roomName: identity.roomName,
      participant: identity.participant ?? '_',
      trackId: identity.trackId ?? '_',
      recordingId,
    };
    const key = this.opts.keys.master(keyParts);
    const metadata: ObjectMetadata = {
      tenant: identity.tenant,
      source: identity.source,
      'recording-id': recordingId,
      'sample-rate': String(output.sampleRate),
      channels: String(output.channels),
    };
    // Ids may be any Unicode; S3 metadata is ASCII. Recovery after a crash reads them back from here.
    for (const [k, v] of [['room-name', identity.roomName], ['participant', identity.participant], ['meeting-id', identity.meetingId], ['track-id', identity.trackId]] as const) {
      if (v !== undefined) metadata[k] = encodeURIComponent(v);
    }
    const opened = await this.opts.openMaster({ recordingId, key, format: output, metadata, release: (buf) => this.pool.release(buf) });
    // writes go straight through; the end of the master waits for a finalization slot
    const master: MasterWriter = {
      write: (pcm) => opened.write(pcm),
      finish: (extra) => this.finalizing.run(() => opened.finish(extra)),
      abort: () => opened.abort(),
      get stats() {
        return opened.stats;
      },
    };
    const recording = new Recording({
      identity,
      input: request.input,
      output,
      chunkFrames: Math.max(1, Math.round(request.groupSeconds * output.sampleRate)),
      muteFill: this.opts.muteFill,
      normalize: this.opts.normalize,
      masterKey: key,
      master,
      events: this.opts.events,
      chunkSinks: this.opts.chunkSinks,
      presign: this.opts.presign,
      logger: this.opts.logger,
      metrics: this.opts.metrics,
      allocate: (bytes) => this.pool.acquire(bytes),
      release: (buf) => this.pool.release(buf),
      vad: this.opts.vad,
    });
    this.live.set(recordingId, recording);
    const roomKey = roomKeyOf(identity.tenant, identity.roomName);
    let room = this.byRoom.get(roomKey);
    if (!room) this.byRoom.set(roomKey, (room = new Set()));
    room.add(recording);
    this.opts.metrics.streamsActive.inc({ source: identity.source });
    this.opts.catalog?.opened({
      identity,
      key,
      chunkPrefix: `${this.opts.keys.recordingFolder(keyParts)}chunks/`,
      sampleRate: output.sampleRate,
      channels: output.channels,
      startedAt: new Date(recording.startedAt),
    });
    this.opts.logger.info({ recordingId, tenant: identity.tenant, roomName: identity.roomName, trackId: identity.trackId, participant: identity.participant, key }, 'recording started');
    this.opts.onOpened?.(recording);
    return recording;
  }

  /** Ends one recording (idempotent); resolves when its master and events are durable. */
  finish(recording: Recording, reason: EndReason): Promise<RecordingResult> {
    const id = recording.identity;
    if (this.live.delete(id.recordingId)) {
      const roomKey = roomKeyOf(id.tenant, id.roomName);
      const room = this.byRoom.get(roomKey);
      room?.delete(recording);
      if (room?.size === 0) this.byRoom.delete(roomKey);
      this.opts.metrics.streamsActive.dec({ source: id.source });
      this.opts.metrics.streamsTotal.inc({ source: id.source, end_reason: reason });
    }
    const catalog = this.opts.catalog;
    // The catalog is updated before the completion event goes out, so a consumer acting on the
    // event finds the recording completed.
    const done = recording.finish(reason, catalog ? (result) => catalog.finished(id, result) : undefined);
    this.finishing.add(done);
    this.ending.set(id.recordingId, recording);
    void done.finally(() => { // the caller gets `done` itself; this only does the bookkeeping
      this.finishing.delete(done);
      if (this.ending.get(id.recordingId) === recording) this.ending.delete(id.recordingId);
    });
    return done;
  }

  /** Recordings of a room on this host (for room_finished). */
  inRoom(tenant: string, roomName: string): Recording[] {
    return [...(this.byRoom.get(roomKeyOf(tenant, roomName)) ?? [])];
  }

  all(): Recording[] {
    return [...this.live.values()];
  }

  /** Waits for every finalization already started. */
  async whenIdle(): Promise<void> {
    while (this.finishing.size > 0) await Promise.allSettled([...this.finishing]);
  }
}

function roomKeyOf(tenant: string, roomName: string): string {
  return `${tenant}\u0000${roomName}`;
}
