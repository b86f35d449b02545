import { LivePcmPipeline, type PipelineTap } from '../audio/live-pipeline.js';
import { StreamingNormalizer } from '../audio/normalize.js';
import { bytesPerFrame, framesToSeconds, type PcmFormat } from '../audio/pcm-format.js';
import { encodeWav, WAV_HEADER_BYTES } from '../audio/wav.js';
import { toAppError } from '../errors.js';
import { type EndReason, type MuteInterval, type TimelineSegment, recordingChunk, recordingCompleted, recordingFailed, recordingSpeech, recordingStarted, type AudioEvent } from '../events/types.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { ObjectMetadata } from '../storage/object-store.js';
import type { SpeechInterval } from './speech.js';
import { Timeline, type TimelineResult } from './timeline.js';
import type { VadPool, VadStream } from './vad-pool.js';

/** Who a live recording belongs to and what it is of (from the signed egress token). */
export interface RecordingIdentity {
  recordingId: string;
  tenant: string;
  roomName: string;
  meetingId?: string | undefined;
  participant?: string | undefined;
  trackId?: string | undefined;
  /** Channel of the room's dual.wav claimed by the egress URL (README, Rooms). */
  dualChannel?: 'left' | 'right' | undefined;
  source: 'livekit';
}

/** The streamed master object; `storage/master-upload.ts` provides it. */
export interface MasterWriter {
  /** Takes ownership of `pcm`; never blocks, never throws on store trouble. Returns false when it dropped `pcm`. */
  write(pcm: Buffer): boolean | void;
  finish(extraMetadata?: ObjectMetadata): Promise<{ key: string; size: number; dataBytes: number; droppedBytes: number }>;
  abort(): Promise<void>;
  /** PCM bytes in the spool files so far (live audio out reads what has passed from there). */
  readonly stats?: { spooledBytes: number; droppedBytes: number };
}

/**
 * Live audio out (`src/live/`): sees the output audio frame by frame, mute changes and the end,
 * all at output-frame offsets. Undefined while nobody subscribes.
 */
export interface RecordingTap extends PipelineTap {
  mute(muted: boolean, frame: number): void;
  end(endReason: EndReason, frames: number): void;
}

/** Optional per-chunk outputs (chunk objects, analysis dispatch); both never block. */
export interface ChunkSink {
  /**
   * Called with the WAV bytes of each chunk. `wav` is lent: the sink calls `release` once when
   * nothing it started reads `wav` any more (stored, sent, dropped), and the buffer then carries
   * a later chunk. A sink that cannot tell leaves `release` uncalled: the buffer is then the
   * garbage collector's, which costs a full collection every few hundred chunks (V8 counts each
   * new buffer's bytes towards its next mark-compact), not correctness.
   */
  chunk(recording: RecordingIdentity, seq: number, wav: Buffer, pcmFormat: PcmFormat, startFrame: number, frames: number, release: () => void): void;
  /** Resolves when every chunk handed over so far is settled. */
  whenIdle?(recordingId: string): Promise<void>;
}

export interface EventAppender {
  append(event: AudioEvent): Promise<void>;
}

export interface RecordingOptions {
  identity: RecordingIdentity;
  input: PcmFormat;
  output: PcmFormat;
  /** Output frames per chunk. */
  chunkFrames: number;
  muteFill: 'none' | 'silence';
  normalize: { mode: 'none' | 'peak' | 'loudness'; targetDb: number };
  masterKey: string;
  master: MasterWriter;
  events: EventAppender;
  chunkSinks: ChunkSink[];
  presign: (key: string) => Promise<{ url: string; expiresAt: Date } | null>;
  logger: Logger;
  metrics: Metrics;
  now?: () => number;
  /** Where chunk buffers come from (a pool the master gives them back to). */
  allocate?: (bytes: number) => Buffer;
  /** Gives a buffer of {@link allocate} back (the chunk sinks' WAV buffers, once every sink released it). */
  release?: (buf: Buffer) => void;
  /** Timeline tuning (see timeline.ts): residual jump taken as a gap, and how long it is watched. */
  timeline?: { gapMs?: number; confirmMs?: number };
  /** Voice-activity detection of the master's chunks (worker threads); none: `speech` is null. */
  vad?: VadPool | undefined;
}

export interface RecordingResult {
  status: 'completed' | 'failed';
  endReason: EndReason;
  key: string;
  sizeBytes: number;
  durationSec: number;
  frames: number;
  droppedBytes: number;
  muteIntervals: MuteInterval[];
  error: string | null;
  /** Wall-clock placement of the stored samples (runs in master samples). */
  timeline?: TimelineResult;
  /** Speech intervals in master samples; null when the VAD did not run or could not follow. */
  speech?: SpeechInterval[] | null;
}

type State = 'live' | 'finishing' | 'done';

/** Mute intervals a recording keeps at most (see {@link Recording.setMuted}). */
export const MAX_MUTE_INTERVALS = 10_000;

/**
 * One live stream's recording, whatever transport feeds it: raw frames and mute flags in,
 * a master WAV (plus optional chunks) and events out. `pushAudio` is the per-frame path: it
 * only copies samples into the pipeline's chunk buffer and returns; everything that awaits
 * happens per chunk, in the sinks. Offsets come from sample counts, not wall clocks.
 */
export class Recording {
  readonly identity: RecordingIdentity;
  readonly startedAt: number;
  private readonly opts: RecordingOptions;
  private readonly pipeline: LivePcmPipeline;
  private readonly normalizer: StreamingNormalizer | undefined;
  private readonly inFrameBytes: number;
  private readonly now: () => number;
  private state: State = 'live';
  private muted = false;
  private mutedSince = 0;
  private mutedAtFrame = 0;
  private readonly mutes: MuteInterval[] = [];
  private seq = 0;
  private bytesWhileMuted = 0;
  private lastFrameAt: number;
  private finishing: Promise<RecordingResult> | undefined;
  private readonly started: Promise<void>;
  private readonly timeline: Timeline;
  private tapRef: RecordingTap | undefined;
  private endReasonValue: EndReason | undefined;
  private readonly vad: VadStream | undefined;

  constructor(opts: RecordingOptions) {
    this.opts = opts;
    this.identity = opts.identity;
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    this.lastFrameAt = this.startedAt;
    this.inFrameBytes = bytesPerFrame(opts.input);
    this.timeline = new Timeline({ inputRate: opts.input.sampleRate, ...opts.timeline });
    this.normalizer =
      opts.normalize.mode === 'none'
        ? undefined
        : new StreamingNormalizer({ mode: opts.normalize.mode, targetDb: opts.normalize.targetDb, sampleRate: opts.output.sampleRate, channels: opts.output.channels });
    this.pipeline = new LivePcmPipeline({
      input: opts.input,
      output: opts.output,
      chunkFrames: opts.chunkFrames,
      onChunk: (pcm, firstFrame) => this.onChunk(pcm, firstFrame),
      ...(opts.allocate ? { allocate: opts.allocate } : {}),
    });
    const id = opts.identity;
    const vad = opts.vad;
    this.vad = vad?.open(opts.output.sampleRate, opts.output.channels, vad.settings.live ? (on, offset) => this.speechEdge(on, offset) : undefined);
    this.started = opts.events
      .append(
        recordingStarted({
          ...identityFields(id),
          s3_key_master: opts.masterKey,
          sample_rate: opts.output.sampleRate,
          channels: opts.output.channels,
          started_at: new Date(this.startedAt).toISOString(),
        }),
      )
      .catch((err: unknown) => opts.logger.error({ err, recordingId: id.recordingId }, 'recording.started could not be written to the outbox'));
  }

  get isLive(): boolean {
    return this.state === 'live';
  }

  get isMuted(): boolean {
    return this.muted;
  }

  /** Why the recording ended, once it has. */
  get endReason(): EndReason | undefined {
    return this.endReasonValue;
  }

  /** Live audio out's hook (set while someone subscribes); costs one check per step when unset. */
  get tap(): RecordingTap | undefined {
    return this.tapRef;
  }

  set tap(tap: RecordingTap | undefined) {
    this.tapRef = tap;
    this.pipeline.tap = tap;
  }

  get outputFormat(): PcmFormat {
    return this.opts.output;
  }

  get masterKey(): string {
    return this.opts.masterKey;
  }

  /** Output frame where the current mute began (meaningful while {@link isMuted}). */
  get mutedAt(): number {
    return this.mutedAtFrame;
  }

  /** Mute intervals closed so far. */
  get muteIntervals(): readonly MuteInterval[] {
    return this.mutes;
  }

  /** Master PCM bytes in the spool files, and dropped ones (undefined: the master cannot tell). */
  get masterStats(): { spooledBytes: number; droppedBytes: number } | undefined {
    return this.opts.master.stats;
  }

  /** Output frame of the chunk being filled, and its frames from `from` on (a view valid until the next push). */
  get pendingStart(): number {
    return this.pipeline.pendingStart;
  }

  pendingFrom(from: number): Int16Array {
    return this.pipeline.pendingFrom(from);
  }

  /** Milliseconds since the last audio or control frame. */
  idleMs(now = this.now()): number {
    return now - this.lastFrameAt;
  }

  /** Output frames written so far. */
  get frames(): number {
    return this.pipeline.outputFrames;
  }

  /** Per-frame path: copy into the pipeline and return. Frames while muted are not written. */
  pushAudio(data: Uint8Array | ArrayBuffer): void {
    if (this.state !== 'live') return;
    const now = this.now(); // the one clock read of the frame
    this.lastFrameAt = now;
    if (this.muted) {
      this.bytesWhileMuted += data.byteLength;
      return;
    }
    this.timeline.frame(now, data.byteLength / this.inFrameBytes, this.pipeline.outputFrames);
    this.pipeline.push(data);
  }

  /** Any sign of life (ping, text) that is not audio. */
  touch(): void {
    this.lastFrameAt = this.now();
  }

  /**
   * A mute change from the source. False when a mute is refused: the recording already holds
   * {@link MAX_MUTE_INTERVALS} intervals (each one is kept until the end and goes into the
   * recording's events, so a source toggling mute without end would grow both without bound);
   * the source should be ended. An unmute is always taken, so no audio after it is lost.
   */
  setMuted(muted: boolean): boolean {
    if (this.state !== 'live' || muted === this.muted) return true;
    if (muted && this.mutes.length >= MAX_MUTE_INTERVALS) return false;
    const now = this.now();
    this.lastFrameAt = now;
    if (muted) {
      this.muted = true;
      this.mutedSince = now;
      this.mutedAtFrame = this.pipeline.outputFrames;
      if (this.opts.muteFill === 'none') this.timeline.cut();
      this.tapRef?.mute(true, this.mutedAtFrame);
      return true;
    }
    this.closeMute(now);
    this.tapRef?.mute(false, this.pipeline.outputFrames);
    return true;
  }

  private closeMute(now: number): void {
    this.muted = false;
    if (this.opts.muteFill === 'silence') {
      const inputFrames = Math.round(((now - this.mutedSince) / 1000) * this.opts.input.sampleRate);
      if (inputFrames > 0) {
        this.timeline.silence(inputFrames);
        this.pipeline.pushSilence(inputFrames);
      }
    }
    const start = this.mutedAtFrame;
    const end = this.pipeline.outputFrames;
    const rate = this.opts.output.sampleRate;
    this.mutes.push({
      start_sec: round3(start / rate),
      end_sec: round3(end / rate),
      start_sample: start,
      end_sample: end,
      started_at: new Date(this.mutedSince).toISOString(),
      ended_at: new Date(now).toISOString(),
    });
  }

  private onChunk(pcm: Buffer, firstFrame: number): void {
    const frames = pcm.length / bytesPerFrame(this.opts.output);
    if (this.normalizer) this.normalizer.process(new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length >> 1));
    const seq = this.seq++;
    const m = this.opts.metrics;
    m.chunksWritten.inc();
    m.audioSeconds.inc({ source: this.identity.source }, framesToSeconds(frames, this.opts.output));
    if (this.opts.chunkSinks.length > 0) this.toSinks(pcm, seq, firstFrame, frames);
    // Last: the master takes ownership of `pcm`. The VAD copies it right after (the master only
    // queues it here and gives it back from a later write callback), and only what the master
    // keeps: its offsets are the master's.
    if (this.opts.master.write(pcm) === false) this.timeline.dropped(firstFrame, frames);
    else this.vad?.push(pcm);
  }

  /**
   * The chunk as WAV to every chunk sink. Full chunks are encoded into a buffer of the pool,
   * which goes back once every sink released it (a chunk object stored, a dispatch sent): at
   * 250 chunks a second a fresh buffer each drove a mark-compact of the whole heap every
   * ~0.2 s. The last, shorter chunk of a recording takes a buffer of its own (its size would
   * stay in the pool's free lists unused).
   */
  private toSinks(pcm: Buffer, seq: number, firstFrame: number, frames: number): void {
    const sinks = this.opts.chunkSinks;
    const pooled = this.opts.allocate !== undefined && this.opts.release !== undefined && frames === this.opts.chunkFrames;
    const wav = pooled ? encodeWav(pcm, this.opts.output, this.opts.allocate!(WAV_HEADER_BYTES + pcm.length)) : encodeWav(pcm, this.opts.output);
    let holders = sinks.length;
    let kept = false; // a sink that threw may still refer to the buffer
    const giveBack = (): void => {
      if (--holders === 0 && pooled && !kept) this.opts.release!(wav);
    };
    for (const sink of sinks) {
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        giveBack();
      };
      try {
        sink.chunk(this.identity, seq, wav, this.opts.output, firstFrame, frames, release);
      } catch (err) {
        kept = true;
        this.opts.logger.error({ err, recordingId: this.identity.recordingId, seq }, 'chunk sink failed');
      }
    }
  }

  /** A live speech edge from the VAD (only when `vad.liveEvents` is on). */
  private speechEdge(on: boolean, offset: number): void {
    const id = this.identity;
    const rate = this.opts.output.sampleRate;
    void this.opts.events
      .append(
        recordingSpeech({
          recording_id: id.recordingId,
          tenant_id: id.tenant,
          user_id: id.participant ?? '',
          room_name: id.roomName,
          track_id: id.trackId ?? null,
          speech: on ? 'on' : 'off',
          offset,
          offset_sec: round3(offset / rate),
          sample_rate: rate,
        }),
      )
      .catch((err: unknown) => this.opts.logger.error({ err, recordingId: id.recordingId }, 'recording.speech could not be written to the outbox'));
  }

  /**
   * Ends the recording once; later calls return the same result. `beforeAnnounce` runs after
   * the master is stored and before the completion event is appended (it must not reject).
   */
  finish(endReason: EndReason, beforeAnnounce?: (result: RecordingResult) => Promise<void>): Promise<RecordingResult> {
    this.finishing ??= this.doFinish(endReason, beforeAnnounce);
    return this.finishing;
  }

  private async doFinish(endReason: EndReason, beforeAnnounce?: (result: RecordingResult) => Promise<void>): Promise<RecordingResult> {
    this.state = 'finishing';
    this.endReasonValue = endReason;
    const now = this.now();
    if (this.muted) {
      this.closeMute(now);
      this.tapRef?.mute(false, this.pipeline.outputFrames);
    }
    this.pipeline.flush();
    const leftover = this.pipeline.carryBytes;
    const id = this.identity;
    const frames = this.pipeline.outputFrames;
    this.tapRef?.end(endReason, frames);
    const durationSec = round3(framesToSeconds(frames, this.opts.output));
    const timeline = this.timeline.result(frames, this.opts.output.sampleRate);
    const speech = this.vad?.finish() ?? Promise.resolve(null);
    const log = this.opts.logger.child({ recordingId: id.recordingId });
    let result: RecordingResult;
    try {
      await this.started;
      for (const sink of this.opts.chunkSinks) await sink.whenIdle?.(id.recordingId);
      const stored = await this.opts.master.finish({ 'duration-sec': String(durationSec), 'end-reason': endReason });
      const link = await this.opts.presign(stored.key).catch(() => null);
      result = {
        status: 'completed',
        endReason,
        key: stored.key,
        sizeBytes: stored.size,
        durationSec,
        frames,
        droppedBytes: stored.droppedBytes + leftover,
        muteIntervals: this.mutes,
        error: null,
        timeline,
        speech: await speech,
      };
      await beforeAnnounce?.(result);
      await this.opts.events.append(
        recordingCompleted(
          {
            ...this.endFields(result),
            s3_key_master: stored.key,
            url: link?.url ?? null,
            url_expires_at: link?.expiresAt.toISOString() ?? null,
          },
        ),
      );
      log.info({ key: stored.key, durationSec, sizeBytes: stored.size, endReason, droppedBytes: result.droppedBytes, mutedBytes: this.bytesWhileMuted }, 'recording completed');
    } catch (err) {
      const appErr = toAppError(err);
      log.error({ err, endReason }, 'recording failed');
      result = {
        status: 'failed',
        endReason,
        key: this.opts.masterKey,
        sizeBytes: 0,
        durationSec,
        frames,
        droppedBytes: leftover,
        muteIntervals: this.mutes,
        timeline,
        speech: await speech,
        error: appErr.code === 'INTERNAL' ? String((err as Error)?.message ?? err) : appErr.message,
      };
      await beforeAnnounce?.(result).catch(() => undefined); // the catalog update is best effort and never holds back the announcement
      await this.opts.events
        .append(
          recordingFailed(
            {
              ...this.endFields(result),
              s3_key_master: null,
              url: null,
              url_expires_at: null,
              error: result.error ?? 'failed',
            },
          ),
        )
        .catch((e: unknown) => log.error({ err: e }, 'recording.failed could not be written to the outbox'));
    }
    this.state = 'done';
    return result;
  }

  /** The fields recording.completed and recording.failed share. */
  private endFields(result: RecordingResult) {
    return {
      ...identityFields(this.identity),
      duration_sec: result.durationSec,
      size_bytes: result.sizeBytes,
      completed_at: new Date(this.now()).toISOString(),
      end_reason: result.endReason,
      mute_intervals: result.muteIntervals,
      dropped_bytes: result.droppedBytes,
      ...timelineFields(result.timeline),
      speech: result.speech ?? null,
    };
  }
}

/** Who and what a recording event is about: the fields every recording event starts with. */
export function identityFields(id: RecordingIdentity) {
  return {
    recording_id: id.recordingId,
    tenant_id: id.tenant,
    user_id: id.participant ?? '',
    platform: 'livekit' as const,
    room_name: id.roomName,
    meeting_id: id.meetingId ?? null,
    track_id: id.trackId ?? null,
  };
}

/** The CONTRACT §8 placement fields of recording.completed / recording.failed. */
export function timelineFields(t: TimelineResult | undefined): { started_at: string | null; timeline: TimelineSegment[] | null; drift_ppm: number | null } {
  if (t === undefined) return { started_at: null, timeline: null, drift_ppm: null };
  return {
    started_at: t.startedAtMs === null ? null : isoMs(t.startedAtMs),
    timeline: t.runs.map((r) => ({ start: r.start, samples: r.samples, wall_clock: isoMs(r.wallMs) })),
    drift_ppm: t.driftPpm,
  };
}

function isoMs(ms: number): string {
  return new Date(Math.round(ms)).toISOString();
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Builds a chunk event (used by the chunk-object sink once the object is stored). */
export function chunkEvent(
  identity: RecordingIdentity,
  seq: number,
  key: string | null,
  format: PcmFormat,
  startFrame: number,
  frames: number,
  sizeBytes: number,
  link: { url: string; expiresAt: Date } | null,
): AudioEvent {
  return recordingChunk({
    recording_id: identity.recordingId,
    tenant_id: identity.tenant,
    user_id: identity.participant ?? '',
    seq,
    s3_key: key,
    start_sec: round3(startFrame / format.sampleRate),
    duration_sec: round3(frames / format.sampleRate),
    start_sample: startFrame,
    sample_count: frames,
    size_bytes: sizeBytes,
    sample_rate: format.sampleRate,
    channels: format.channels,
    url: link?.url ?? null,
    url_expires_at: link?.expiresAt.toISOString() ?? null,
  });
}
