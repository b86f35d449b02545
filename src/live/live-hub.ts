import { performance } from 'node:perf_hooks';
import { DEFAULT_FILTER_DESIGN, type FilterDesign, Resampler } from '../audio/resample.js';
import type { EndReason, MuteInterval } from '../events/types.js';
import type { WebSocket } from '../http/uws.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Recording, RecordingTap } from '../recording/recording.js';
import type { HistoryReader, HistorySession } from './history.js';

/** Rates a subscriber may ask for (§7). */
export const LIVE_RATES = [8000, 16000, 24000, 48000] as const;

/** Bytes of the binary message header: uint32 LE track index, uint64 LE offset. */
export const LIVE_HEADER_BYTES = 12;

/** Default period of the live tick: every track's gathered steps go out every 20 ms (two 10 ms steps a message). */
export const DEFAULT_BATCH_MS = 20;

/**
 * The live output's filters (`live.filter`). `speech`: 60 dB, flat to 0.80 of the lower Nyquist
 * rate, 111 taps at 48 → 16 kHz; `archive`: the resampler's default 80 dB / 0.86, 217 taps.
 */
export const LIVE_FILTERS = {
  speech: { attenuationDb: 60, passband: 0.8 },
  archive: DEFAULT_FILTER_DESIGN,
} as const satisfies Record<string, Readonly<FilterDesign>>;
/** uWS `send` result: written out whole, nothing buffered (0: backpressure, 2: dropped). */
const SEND_SUCCESS = 1;
/** Catch-up from files is sent only while the socket's queue is below this (paced by the socket). */
const CATCHUP_WATERMARK = 64 * 1024;
/** How long a gracefully closing subscriber may go without reading before its socket is cut. */
const CLOSE_GRACE_MS = 10_000;
/** Master frames read from the spool or store per catch-up step (at most ¼ s at 48 kHz). */
const CATCHUP_BLOCK_FRAMES = 12_000;
/** How long catch-up waits for the spool writer to reach the chunk being filled before giving up. */
const CATCHUP_STALL_MS = 15_000;

/** What a track message tells about a recording. */
export interface TrackInfo {
  recordingId: string;
  tenant: string;
  roomName: string;
  participant: string | null;
  trackId: string | null;
  /** ISO 8601 wall clock of sample 0 (the recording's started_at). */
  startedAt: string;
  key: string;
  masterRate: number;
  masterChannels: number;
}

/** A finished recording as the catalog knows it (for replay with `from`). */
export interface StoredTrack extends TrackInfo {
  frames: number;
  endReason: EndReason;
  muteIntervals: MuteInterval[];
}

/**
 * One recording as live audio out sees it. While someone subscribes to a live recording, this is
 * the recording's tap: each output step, mute change and the end fan out to the feeds.
 */
export class LiveTrack implements RecordingTap {
  readonly info: TrackInfo;
  readonly feeds = new Set<TrackFeed>();
  recording: Recording | undefined;
  ended: { reason: EndReason; frames: number } | undefined;
  /** The master is in the store: reads of what has passed go there. */
  stored = false;
  /** The master could not be stored: nothing before the live edge can be read any more. */
  failed = false;
  private readonly storedMutes: MuteInterval[];
  /** Live steps gathered for one send per feed: mono master frames from {@link batchFirst}. */
  private batch = new Int16Array(0);
  private batchFill = 0;
  private batchFirst = 0;
  /** When the batch's first step arrived (performance.now(): the delivery latency counts from it). */
  private batchT0 = 0;
  /** Feeds at the live edge share one resampler per rate. */
  private readonly groups = new Map<number, FeedGroup>();

  constructor(
    private readonly hub: LiveHub,
    source: { recording: Recording } | { stored: StoredTrack },
  ) {
    if ('recording' in source) {
      const r = source.recording;
      const id = r.identity;
      this.recording = r;
      this.info = {
        recordingId: id.recordingId,
        tenant: id.tenant,
        roomName: id.roomName,
        participant: id.participant ?? null,
        trackId: id.trackId ?? null,
        startedAt: new Date(r.startedAt).toISOString(),
        key: r.masterKey,
        masterRate: r.outputFormat.sampleRate,
        masterChannels: r.outputFormat.channels,
      };
      this.storedMutes = [];
    } else {
      const { frames, endReason, muteIntervals, ...info } = source.stored;
      this.info = info;
      this.ended = { reason: endReason, frames };
      this.stored = true;
      this.storedMutes = muteIntervals;
    }
  }

  /** Output frames of the master so far (all of them once ended). */
  get frames(): number {
    return this.ended?.frames ?? this.recording?.frames ?? 0;
  }

  /** Resamplers running for this track: one per group, one per feed outside a group. */
  get resamplers(): number {
    let n = this.groups.size;
    for (const f of this.feeds) if (f.group === undefined) n++;
    return n;
  }

  /** Frames readable from the spool or the store (what is older than the chunk being filled, once spooled). */
  get readableFrames(): number {
    if (this.stored) return this.ended!.frames;
    if (this.failed) return 0;
    const stats = this.recording?.masterStats;
    return stats === undefined ? 0 : Math.floor(stats.spooledBytes / (2 * this.info.masterChannels));
  }

  /** Every mute change so far, as output frames: `[frame, muted]`, in order. */
  muteEvents(): [number, boolean][] {
    const intervals = this.recording?.muteIntervals ?? this.storedMutes;
    const out: [number, boolean][] = [];
    for (const m of intervals) out.push([m.start_sample, true], [m.end_sample, false]);
    if (this.ended === undefined && this.recording?.isMuted) out.push([this.recording.mutedAt, true]);
    return out;
  }

  attach(feed: TrackFeed): void {
    this.feeds.add(feed);
    if (this.recording !== undefined && this.ended === undefined && this.recording.tap !== this) this.recording.tap = this;
  }

  detach(feed: TrackFeed): void {
    this.feeds.delete(feed);
    const g = feed.group;
    if (g !== undefined) {
      g.feeds.delete(feed);
      feed.group = undefined;
      if (g.feeds.size === 0 && this.groups.get(g.rate) === g) this.groups.delete(g.rate);
    }
    if (this.feeds.size > 0) return;
    this.batchFill = 0;
    if (this.recording !== undefined && this.recording.tap === this) this.recording.tap = undefined;
    this.hub.forget(this);
  }

  /**
   * One output step of the recording: gathered (downmixed) into the batch, which the hub's
   * tick (every `live.batchMs`) resamples and sends, one message per feed, for every track at
   * once; with `live.batchMs` 0 each step goes out as it comes.
   */
  audio(samples: Int16Array, offset: number, frames: number, firstFrame: number): void {
    if (this.batchFill > 0 && firstFrame !== this.batchFirst + this.batchFill) this.deliver();
    if (this.batchFill === 0) {
      this.batchFirst = firstFrame;
      this.batchT0 = performance.now();
    }
    const need = this.batchFill + frames;
    if (this.batch.length < need) {
      const grown = new Int16Array(Math.max(need, 2 * this.batch.length, 4096));
      grown.set(this.batch.subarray(0, this.batchFill));
      this.batch = grown;
    }
    const b = this.batch;
    if (this.info.masterChannels === 2) {
      for (let i = this.batchFill, s = offset, e = this.batchFill + frames; i < e; i++, s += 2) b[i] = (samples[s]! + samples[s + 1]! + 1) >> 1;
    } else b.set(samples.subarray(offset, offset + frames), this.batchFill);
    this.batchFill = need;
    // no tick (batchMs 0), a tick that is late (a busy event loop), or audio coming faster than
    // real time (messages stay at most two ticks long): the batch goes out now
    if (!this.hub.ticking || need >= this.hub.maxBatchFrames(this.info.masterRate) || performance.now() - this.batchT0 >= this.hub.batchMs) this.deliver();
  }

  /** The hub's tick: what the batch holds goes out. */
  flush(): void {
    if (this.batchFill > 0) this.deliver();
  }

  /**
   * The batch to every live feed: each shared resampler runs once for its feeds, every other
   * feed through its own; a feed whose own resampler has reached its group's position (same
   * input consumed, same output offset: the same samples from here on) joins the group.
   */
  private deliver(): void {
    const n = this.batchFill;
    if (n === 0) return;
    this.batchFill = 0;
    const first = this.batchFirst;
    const t0 = this.batchT0;
    for (const g of this.groups.values()) g.live(this.batch, n, first, t0, this.hub.logger);
    for (const feed of this.feeds) {
      if (feed.group !== undefined || feed.mode !== 'live') continue;
      feed.live(this.batch, 0, n, first, t0);
      if (feed.mode !== 'live' || feed.sub.closed) continue;
      const g = this.groups.get(feed.sub.rate);
      if (g === undefined) this.groups.set(feed.sub.rate, FeedGroup.from(feed));
      else g.join(feed);
    }
  }

  mute(muted: boolean, frame: number): void {
    for (const feed of this.feeds) feed.muteEvent(frame, muted);
  }

  end(endReason: EndReason, frames: number): void {
    this.deliver();
    this.ended = { reason: endReason, frames };
    for (const g of this.groups.values()) g.flushEnd(frames);
    const recording = this.recording;
    if (recording !== undefined) {
      recording.tap = undefined;
      // finish() is running (it called us before its first await): take its result once it is assigned
      void Promise.resolve()
        .then(() => recording.finish(endReason))
        .then((result) => {
          if (result.status === 'completed') this.stored = true;
          else this.failed = true;
        });
    }
    for (const feed of [...this.feeds]) feed.trackEnded();
    this.hub.trackEnded(this);
  }
}

/**
 * The feeds of one track at one rate that are at the live edge together: one resampler and
 * one message for all of them (the header's index is set per feed before its send, which
 * copies the message or writes it out).
 */
export class FeedGroup {
  readonly feeds = new Set<TrackFeed>();
  private msg: ArrayBuffer;
  private msgI16: Int16Array;
  private view: DataView;
  private bytes = new Uint8Array(0);

  private constructor(
    readonly rate: number,
    private readonly resampler: Resampler,
    /** Output offset of the next sample. */
    public outNext: number,
    /** Next master frame the resampler takes. */
    public cursor: number,
  ) {
    this.msg = new ArrayBuffer(8192);
    this.msgI16 = new Int16Array(this.msg);
    this.view = new DataView(this.msg);
  }

  /** A group made of a live feed: its resampler becomes the group's. */
  static from(feed: TrackFeed): FeedGroup {
    const g = new FeedGroup(feed.sub.rate, feed.releaseResampler(), feed.outNext, feed.position);
    g.feeds.add(feed);
    feed.group = g;
    return g;
  }

  /** A live feed at the group's position drops its own resampler and takes the group's output. */
  join(feed: TrackFeed): void {
    if (feed.outNext !== this.outNext || feed.position !== this.cursor) return;
    feed.releaseResampler();
    this.feeds.add(feed);
    feed.group = this;
  }

  live(src: Int16Array, frames: number, firstFrame: number, t0: number, logger: Logger): void {
    let skip = this.cursor - firstFrame;
    if (skip >= frames) return;
    if (skip < 0) {
      logger.error({ cursor: this.cursor, firstFrame }, 'live audio out: gap in the master frames fed');
      skip = 0;
    }
    const n = frames - skip;
    this.ensure(this.resampler.maxOutputFrames(n));
    const out = this.resampler.processInto(src, skip, n, this.msgI16, LIVE_HEADER_BYTES / 2);
    this.cursor = firstFrame + frames;
    this.send(out, t0);
  }

  /** The resampler's tail (clipped to the track's `frames` of master) to every feed. */
  flushEnd(frames: number): void {
    const total = Math.ceil((frames * this.rate) / this.resampler.inputRate);
    if (this.cursor !== frames || this.outNext >= total) return;
    this.ensure(this.resampler.maxOutputFrames(0));
    const n = this.resampler.flushInto(this.msgI16, LIVE_HEADER_BYTES / 2);
    this.send(Math.min(n, total - this.outNext), undefined);
  }

  private send(samples: number, t0: number | undefined): void {
    if (samples <= 0) return;
    const first = this.outNext;
    this.outNext += samples;
    writeOffset(this.view, first);
    const len = LIVE_HEADER_BYTES + samples * 2;
    // a live batch is nearly always the same length: its view is reused
    if (this.bytes.buffer !== this.msg || this.bytes.length !== len) this.bytes = new Uint8Array(this.msg, 0, len);
    const bytes = this.bytes;
    for (const feed of this.feeds) {
      this.view.setUint32(0, feed.index, true);
      feed.shared(bytes, this.outNext, this.cursor, t0);
    }
  }

  private ensure(samples: number): void {
    const need = LIVE_HEADER_BYTES / 2 + samples;
    if (this.msgI16.length >= need) return;
    this.msg = new ArrayBuffer(need * 2);
    this.msgI16 = new Int16Array(this.msg);
    this.view = new DataView(this.msg);
  }
}

/** Reads what has passed, for feeds that start before the live edge. */
export interface FeedHistory {
  reader: HistoryReader;
}

/**
 * One track of one subscriber: the subscriber's rate, a resampler with carried state, the
 * output offset, and where the master is read from (files while catching up, then live).
 */
export class TrackFeed {
  /** Its own resampler; undefined once it takes a {@link FeedGroup}'s output. */
  private resampler: Resampler | undefined;
  group: FeedGroup | undefined;
  /** Next master frame the resampler takes. */
  private cursor = 0;
  /** Output offset of the next sample sent. */
  outNext = 0;
  mode: 'starting' | 'catchup' | 'live' | 'done' = 'starting';
  /** Mute changes not sent yet, `[master frame, muted]`, in order. */
  private readonly mutes: [number, boolean][] = [];
  private msg = new ArrayBuffer(0);
  private msgI16 = new Int16Array(0);
  private readonly up: number;
  private readonly down: number;

  constructor(
    readonly sub: Subscriber,
    readonly track: LiveTrack,
    readonly index: number,
  ) {
    this.resampler = new Resampler({ inputRate: track.info.masterRate, outputRate: sub.rate, channels: 1, ...sub.hub.filter });
    const g = gcd(track.info.masterRate, sub.rate);
    this.up = sub.rate / g;
    this.down = track.info.masterRate / g;
  }

  /** Next master frame it takes. */
  get position(): number {
    return this.cursor;
  }

  /** Hands its resampler over (to a group it makes) or drops it (joining one). */
  releaseResampler(): Resampler {
    const r = this.rs;
    this.resampler = undefined;
    return r;
  }

  private get rs(): Resampler {
    if (this.resampler === undefined) throw new Error('live audio out: a feed of a group has no resampler of its own');
    return this.resampler;
  }

  /** A group's message (its header's index already this feed's); the group is now at `outNext`, `cursor`. */
  shared(msg: Uint8Array, outNext: number, cursor: number, t0: number | undefined): void {
    this.sub.sendBinary(msg, t0);
    this.outNext = outNext;
    this.cursor = cursor;
    this.sendDueMutes();
    this.sub.checkQueue();
  }

  /** Output samples a master of `frames` frames makes: ceil(frames·L/M). */
  outputLength(frames: number): number {
    return Math.ceil((frames * this.up) / this.down);
  }

  private outputOffset(frame: number): number {
    return Math.floor((frame * this.up) / this.down);
  }

  /**
   * Sends the track message and starts at output offset `from` (default: the live edge).
   * Synchronous up to the first await: a live-edge start is live before any other frame comes.
   */
  start(from: number | undefined): void {
    const info = this.track.info;
    this.sub.sendText({ type: 'track', index: this.index, recordingId: info.recordingId, roomName: info.roomName, participant: info.participant, trackId: info.trackId, rate: this.sub.rate, startedAt: info.startedAt });
    this.track.attach(this);
    const total = this.track.frames;
    let start = from;
    const rec = this.track.recording;
    if (start === undefined) {
      if (this.track.ended !== undefined) start = this.outputLength(total);
      else {
        // the live edge: the first output not sent to anyone yet, if its input is still in the chunk being filled
        start = this.rs.passThrough ? total : this.outputLength(total);
        const first = this.rs.startAt(start);
        if (first < rec!.pendingStart) {
          // just after a chunk went to the master: start half a filter later, from live input only
          start = this.outputLength(total + this.rs.lookaheadFrames);
        }
      }
    }
    this.outNext = start;
    this.cursor = this.rs.startAt(start);
    // mute state at the start, and the changes still to come
    let mutedAtStart: [number, boolean] | undefined;
    for (const ev of this.track.muteEvents()) {
      if (this.outputOffset(ev[0]) < start) mutedAtStart = ev[1] ? ev : undefined;
      else this.mutes.push(ev);
    }
    if (mutedAtStart !== undefined) this.sendMute(mutedAtStart[0], true);
    if (from === undefined && this.track.ended === undefined && this.cursor >= rec!.pendingStart) {
      this.feedPending();
      this.sendDueMutes();
      this.mode = 'live';
      return;
    }
    this.mode = 'catchup';
    void this.catchUp().catch((err: unknown) => this.sub.fail(err));
  }

  /** Feeds the chunk being filled from the cursor on (synchronously: nothing moves meanwhile). */
  private feedPending(): void {
    const rec = this.track.recording!;
    if (this.cursor < rec.pendingStart) throw new Error('pending audio asked for before the chunk being filled');
    const pending = rec.pendingFrom(this.cursor);
    if (pending.length === 0) return;
    const ch = this.track.info.masterChannels;
    const mono = ch === 1 ? pending : downmix(pending);
    this.feed(mono, 0, mono.length, this.cursor, undefined);
  }

  /** Files until the cursor reaches the chunk being filled (then live), or the end. */
  private async catchUp(): Promise<void> {
    const t = this.track;
    // one open spool file for the whole catch-up, not an open and a close per block
    const history = this.sub.hub.history.reader.session({ recordingId: t.info.recordingId, key: t.info.key, channels: t.info.masterChannels });
    try {
      await this.catchUpFrom(history);
    } finally {
      await history.close();
    }
  }

  private async catchUpFrom(history: HistorySession): Promise<void> {
    let lastProgress = Date.now();
    for (;;) {
      if (this.mode !== 'catchup') return;
      const t = this.track;
      if (t.ended === undefined && t.recording !== undefined && this.cursor >= t.recording.pendingStart) {
        this.feedPending();
        this.sendDueMutes();
        this.mode = 'live';
        return;
      }
      const end = t.ended?.frames;
      if (end !== undefined && this.cursor >= end) {
        this.flushEnd();
        return;
      }
      const readable = t.readableFrames;
      if (this.cursor < readable) {
        await this.sub.whenWritable();
        if (this.mode !== 'catchup') return;
        // stop at the next mute change, so it goes out between the right samples
        let n = Math.min(readable - this.cursor, CATCHUP_BLOCK_FRAMES);
        const nextMute = this.mutes[0];
        if (nextMute !== undefined && nextMute[0] > this.cursor) n = Math.min(n, nextMute[0] - this.cursor);
        let bytes: Buffer;
        const storedBefore = t.stored;
        try {
          bytes = await history.read(this.cursor, n);
        } catch (err) {
          // the spool moving into the store at the end: neither has it for a moment; while the
          // recording is live, a part gone from the spool was uploaded and stays unreadable until the end
          if (storedBefore || t.failed || t.ended === undefined || Date.now() - lastProgress > CATCHUP_STALL_MS) throw err;
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        if (this.mode !== 'catchup') return;
        let samples = (bytes.byteOffset & 1) === 0 ? new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length >> 1) : new Int16Array(Uint8Array.from(bytes).buffer);
        if (t.info.masterChannels === 2) samples = downmix(samples);
        this.feed(samples, 0, n, this.cursor, undefined);
        lastProgress = Date.now();
        continue;
      }
      if (t.failed) throw new Error('the master of this recording could not be stored');
      if (Date.now() - lastProgress > CATCHUP_STALL_MS) throw new Error('the spool did not reach the live audio in time');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Live audio of the recording: taken when the feed is live, from the cursor on. */
  live(src: Int16Array, off: number, frames: number, firstFrame: number, t0: number): void {
    if (this.mode !== 'live') return;
    this.feed(src, off, frames, firstFrame, t0);
    this.sub.checkQueue();
  }

  muteEvent(frame: number, muted: boolean): void {
    if (this.mode === 'done') return;
    this.mutes.push([frame, muted]);
    if (this.mode === 'live') this.sendDueMutes();
  }

  trackEnded(): void {
    if (this.mode === 'live') this.flushEnd();
    // a catching-up feed ends when its cursor reaches the end
  }

  /** Mono master samples `src[off…off+frames)`, the first being master frame `firstFrame`. */
  private feed(src: Int16Array, off: number, frames: number, firstFrame: number, t0: number | undefined): void {
    let skip = this.cursor - firstFrame;
    if (skip >= frames) return;
    if (skip < 0) {
      this.sub.hub.logger.error({ recordingId: this.track.info.recordingId, cursor: this.cursor, firstFrame }, 'live audio out: gap in the master frames fed');
      skip = 0;
    }
    const n = frames - skip;
    const rs = this.rs;
    const need = LIVE_HEADER_BYTES / 2 + rs.maxOutputFrames(n);
    if (this.msgI16.length < need) {
      this.msg = new ArrayBuffer(Math.max(need * 2, 8192));
      this.msgI16 = new Int16Array(this.msg);
    }
    const out = rs.processInto(src, off + skip, n, this.msgI16, LIVE_HEADER_BYTES / 2);
    this.cursor = firstFrame + frames;
    this.sendAudio(out, t0);
    this.sendDueMutes();
  }

  private sendAudio(frames: number, t0: number | undefined): void {
    if (frames <= 0) return;
    const view = new DataView(this.msg);
    view.setUint32(0, this.index, true);
    writeOffset(view, this.outNext);
    this.outNext += frames;
    this.sub.sendBinary(new Uint8Array(this.msg, 0, LIVE_HEADER_BYTES + frames * 2), t0);
  }

  private sendDueMutes(): void {
    while (this.mutes.length > 0 && this.mutes[0]![0] <= this.cursor) {
      const [frame, muted] = this.mutes.shift()!;
      this.sendMute(frame, muted);
    }
  }

  private sendMute(frame: number, muted: boolean): void {
    this.sub.sendText({ type: 'mute', index: this.index, muted, offset: this.outputOffset(frame) });
  }

  /** The resampler's tail (clipped to the track's length), then the end message. */
  private flushEnd(): void {
    if (this.mode === 'done') return;
    const ended = this.track.ended!;
    const total = this.outputLength(ended.frames);
    // a group's feed got the tail from its group
    if (this.resampler !== undefined && this.cursor <= ended.frames && this.outNext < total) {
      const need = LIVE_HEADER_BYTES / 2 + this.resampler.maxOutputFrames(0);
      if (this.msgI16.length < need) {
        this.msg = new ArrayBuffer(need * 2);
        this.msgI16 = new Int16Array(this.msg);
      }
      const n = this.resampler.flushInto(this.msgI16, LIVE_HEADER_BYTES / 2);
      this.sendAudio(Math.min(n, total - this.outNext), undefined);
    }
    this.sendDueMutes();
    this.mode = 'done';
    this.sub.sendText({ type: 'end', index: this.index, endReason: ended.reason, samples: total });
    this.track.detach(this);
    this.sub.feedEnded(this);
  }

  /** Stops without an end message (the subscriber went away). */
  stop(): void {
    if (this.mode === 'done') return;
    this.mode = 'done';
    this.track.detach(this);
  }
}

export interface SubscriberData {
  sub: Subscriber | undefined;
}

/**
 * One `GET /v1/live` connection: its tracks, its queue bound, pings. Every send goes through
 * here, so a closed socket is never touched.
 */
export class Subscriber {
  readonly feeds: TrackFeed[] = [];
  closed = false;
  lastLife = Date.now();
  lastPing = Date.now();
  /** Room subscription: when its last track ended (for the idle close). */
  idleSince: number | undefined;
  roomFinished = false;
  private readonly queueLimit: number;
  private drainWaiters: (() => void)[] = [];
  /** The last send did not go out whole: the socket has a queue (uWS returns 1 only when nothing is buffered). */
  private pressured = false;
  /**
   * Messages of the hub's tick held for one write (a room subscriber gets a message per track
   * each tick): binary ones copied (a group's message buffer is reused for its next feed), text
   * ones behind them so that the order stays. Empty outside a tick.
   */
  private held: { data: Uint8Array | string; t0: number | undefined }[] = [];

  constructor(
    readonly hub: LiveHub,
    readonly ws: WebSocket<SubscriberData>,
    readonly tenant: string,
    readonly rate: number,
    readonly selection: { recordingId: string } | { roomName: string; participant: string | undefined },
    queueSeconds: number,
  ) {
    // 2 bytes a sample; the catch-up allowance keeps file audio, paced by the socket, from counting as overflow
    this.queueLimit = Math.ceil(queueSeconds * rate * 2) + CATCHUP_WATERMARK + CATCHUP_BLOCK_FRAMES * 2 + 4096;
  }

  get isRoom(): boolean {
    return 'roomName' in this.selection;
  }

  addTrack(track: LiveTrack, from: number | undefined): TrackFeed {
    const feed = new TrackFeed(this, track, this.feeds.length);
    this.feeds.push(feed);
    this.idleSince = undefined;
    feed.start(from);
    return feed;
  }

  sendText(obj: unknown): void {
    if (this.closed) return;
    if (this.held.length > 0) {
      this.held.push({ data: JSON.stringify(obj), t0: undefined });
      return;
    }
    this.pressured = this.ws.send(JSON.stringify(obj), false) !== SEND_SUCCESS;
  }

  sendBinary(msg: Uint8Array, t0: number | undefined): void {
    if (this.closed) return;
    // in the hub's tick, a subscriber of several tracks gets all of its messages in one write
    if (this.hub.inTick && this.feeds.length > 1) {
      if (this.held.length === 0) this.hub.holding(this);
      this.held.push({ data: Buffer.from(msg), t0 });
      return;
    }
    this.pressured = this.ws.send(msg, true) !== SEND_SUCCESS;
    this.hub.countSent(msg.byteLength, t0);
  }

  /** The end of the hub's tick: what it held goes out in one write (uWS's cork), then the queue bound is checked. */
  release(): void {
    const held = this.held;
    if (held.length === 0) return;
    this.held = [];
    if (this.closed) return;
    this.ws.cork(() => {
      for (const m of held) {
        if (typeof m.data === 'string') {
          this.ws.send(m.data, false);
          continue;
        }
        this.ws.send(m.data, true);
        this.hub.countSent(m.data.byteLength, m.t0);
      }
    });
    // a corked send reports no queue (its bytes wait in the cork buffer): what the write left is asked for once
    this.pressured = this.ws.getBufferedAmount() > 0;
    this.checkQueue();
  }

  /** After a live send: a queue beyond its bound closes the subscriber with 4008. */
  checkQueue(): void {
    // messages held for the tick's end are checked once they are sent; the last send went out
    // whole (nothing buffered): no need to ask the socket
    if (this.closed || this.held.length > 0 || !this.pressured || this.ws.getBufferedAmount() <= this.queueLimit) return;
    this.hub.metrics.liveOverflows.inc();
    const offsets: Record<string, number> = {};
    for (const f of this.feeds) if (f.mode !== 'done') offsets[f.track.info.recordingId] = f.outNext;
    const from = this.isRoom ? Object.entries(offsets).map(([id, n]) => `${id}:${n}`).join(',') : String(Object.values(offsets)[0] ?? 0);
    this.sendText({ type: 'overflow', resume: { from, offsets } });
    this.hub.logger.info({ tenant: this.tenant, buffered: this.ws.getBufferedAmount(), offsets }, 'live subscriber fell behind: closed with 4008');
    this.close(4008, 'overflow');
  }

  /** Resolves when the socket's queue is low enough for more catch-up audio. */
  whenWritable(): Promise<void> {
    if (this.closed || this.ws.getBufferedAmount() < CATCHUP_WATERMARK) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  onDrain(): void {
    if (this.closed) this.hub.closingProgress(this);
    if (this.closed || this.ws.getBufferedAmount() < CATCHUP_WATERMARK) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const r of w) r();
    }
  }

  feedEnded(_feed: TrackFeed): void {
    if (!this.isRoom) {
      this.close(1000, 'recording ended');
      return;
    }
    if (this.feeds.every((f) => f.mode === 'done')) {
      if (this.roomFinished) this.close(1000, 'room finished');
      else this.idleSince = Date.now();
    }
  }

  fail(err: unknown): void {
    if (this.closed) return;
    this.hub.logger.warn({ err, tenant: this.tenant }, 'live subscriber closed: audio before the live edge could not be read');
    this.close(1011, 'audio not available');
  }

  /** Graceful close (queued audio goes first); a peer that never reads is cut after a while. */
  close(code: number, reason: string): void {
    if (this.closed) return;
    // what the tick held goes first (the last text, overflow or end, follows the audio before it)
    this.release();
    this.closed = true;
    for (const f of this.feeds) f.stop();
    this.onDrain();
    this.ws.end(code, reason);
    this.hub.closing(this);
  }

  /** uWS closed the socket (any reason). */
  onClosed(): void {
    const wasOpen = !this.closed;
    this.closed = true;
    this.held = [];
    for (const f of this.feeds) f.stop();
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const r of w) r();
    this.hub.removed(this, wasOpen);
  }
}

/** The header's uint64 LE offset, without a BigInt per message (offsets stay below 2^53). */
function writeOffset(view: DataView, offset: number): void {
  view.setUint32(4, offset % 0x1_0000_0000, true);
  view.setUint32(8, Math.floor(offset / 0x1_0000_0000), true);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function downmix(stereo: Int16Array): Int16Array {
  const frames = stereo.length >> 1;
  const out = new Int16Array(frames);
  for (let i = 0, s = 0; i < frames; i++, s += 2) out[i] = (stereo[s]! + stereo[s + 1]! + 1) >> 1;
  return out;
}

export interface LiveHubOptions {
  history: FeedHistory;
  queueSeconds: number;
  /** The filter of the live output's resamplers (default {@link LIVE_FILTERS}.speech). */
  filter?: FilterDesign;
  /** Live audio per binary message (ms of the master; 0: every output step as it comes). */
  batchMs?: number;
  pingSec: number;
  idleSec: number;
  roomIdleSec: number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * Every subscriber of this host and the tracks they read. A live recording is tapped only
 * while it has a feed; room subscriptions get every recording opened in their room.
 */
export class LiveHub {
  readonly history: FeedHistory;
  readonly logger: Logger;
  readonly metrics: Metrics;
  private readonly tracks = new Map<string, LiveTrack>();
  private readonly subscribers = new Set<Subscriber>();
  private readonly rooms = new Map<string, Set<Subscriber>>();
  private readonly perTenant = new Map<string, number>();
  /** Sockets closed gracefully, cut if still open after this deadline (a peer that never reads). */
  private readonly closingAt = new Map<Subscriber, number>();
  private timer: NodeJS.Timeout | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private bytes = 0;
  readonly batchMs: number;
  readonly filter: FilterDesign;

  constructor(private readonly opts: LiveHubOptions) {
    this.history = opts.history;
    this.logger = opts.logger;
    this.metrics = opts.metrics;
    this.batchMs = opts.batchMs ?? DEFAULT_BATCH_MS;
    this.filter = opts.filter ?? LIVE_FILTERS.speech;
  }

  /** Subscribers with messages held for the end of the tick. */
  private readonly held = new Set<Subscriber>();
  private tickRunning = false;

  /** In the live tick: a subscriber of several tracks holds its messages for one write at its end. */
  get inTick(): boolean {
    return this.tickRunning;
  }

  /** A subscriber's first held message of this tick. */
  holding(sub: Subscriber): void {
    this.held.add(sub);
  }

  /** Every track's batch out; each subscriber's messages of the tick in one write. */
  private tick(): void {
    this.tickRunning = true;
    try {
      for (const t of this.tracks.values()) t.flush();
    } finally {
      this.tickRunning = false;
      for (const sub of this.held) sub.release();
      this.held.clear();
    }
  }

  /** Master frames a live batch holds at most: two ticks of audio. */
  maxBatchFrames(masterRate: number): number {
    return Math.max(1, Math.round((masterRate * 2 * this.batchMs) / 1000));
  }

  /** Live audio is gathered and sent by one timer for every track (`live.batchMs` > 0). */
  get ticking(): boolean {
    return this.batchTimer !== undefined;
  }

  get queueSeconds(): number {
    return this.opts.queueSeconds;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  tenantSubscribers(tenant: string): number {
    return this.perTenant.get(tenant) ?? 0;
  }

  start(): void {
    this.timer = setInterval(() => this.sweep(), 1000);
    this.timer.unref();
    if (this.batchMs > 0) {
      // one wake-up sends every track's batch (not one send per track whenever its frames arrive)
      this.batchTimer = setInterval(() => this.tick(), this.batchMs);
      this.batchTimer.unref();
    }
  }

  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.batchTimer);
    this.batchTimer = undefined;
    for (const s of [...this.subscribers]) s.close(1001, 'server shutting down');
    this.flushCounters();
  }

  /** The live track of a recording (made on first use). */
  trackOf(recording: Recording): LiveTrack {
    const id = recording.identity.recordingId;
    let t = this.tracks.get(id);
    if (t === undefined) {
      this.tracks.set(id, (t = new LiveTrack(this, { recording })));
      // ended between the upgrade's checks and now: what it has is read back, and its end told
      if (!recording.isLive) t.end(recording.endReason ?? 'normal', recording.frames);
    }
    return t;
  }

  /** A track already known here (live with subscribers, or finishing). */
  known(recordingId: string): LiveTrack | undefined {
    return this.tracks.get(recordingId);
  }

  storedTrack(stored: StoredTrack): LiveTrack {
    return new LiveTrack(this, { stored });
  }

  /**
   * A track without feeds leaves the registry, ended or not: it is the recording's tap only
   * while it has feeds, so it would not hear the recording's end, and a later subscription
   * would wait on it for audio that never comes. The next one gets a new track (trackOf).
   */
  forget(track: LiveTrack): void {
    if (track.feeds.size === 0 && this.tracks.get(track.info.recordingId) === track) this.tracks.delete(track.info.recordingId);
  }

  add(sub: Subscriber): void {
    this.subscribers.add(sub);
    this.perTenant.set(sub.tenant, this.tenantSubscribers(sub.tenant) + 1);
    this.metrics.liveSubscribers.set(this.subscribers.size);
    if ('roomName' in sub.selection) {
      const k = roomKey(sub.tenant, sub.selection.roomName);
      let set = this.rooms.get(k);
      if (set === undefined) this.rooms.set(k, (set = new Set()));
      set.add(sub);
    }
  }

  /**
   * A subscriber ended gracefully: its close frame waits behind the audio still buffered. A
   * consumer that reads nothing for {@link CLOSE_GRACE_MS} is cut then; one still reading a
   * backlog is not (each drain moves its deadline).
   */
  closing(sub: Subscriber): void {
    this.closingAt.set(sub, Date.now() + CLOSE_GRACE_MS);
  }

  /** The socket of a closing subscriber took more of its buffered audio. */
  closingProgress(sub: Subscriber): void {
    if (this.closingAt.has(sub)) this.closingAt.set(sub, Date.now() + CLOSE_GRACE_MS);
  }

  removed(sub: Subscriber, _wasOpen: boolean): void {
    this.closingAt.delete(sub);
    if (!this.subscribers.delete(sub)) return;
    const n = this.tenantSubscribers(sub.tenant) - 1;
    if (n > 0) this.perTenant.set(sub.tenant, n);
    else this.perTenant.delete(sub.tenant);
    this.metrics.liveSubscribers.set(this.subscribers.size);
    if ('roomName' in sub.selection) {
      const k = roomKey(sub.tenant, sub.selection.roomName);
      const set = this.rooms.get(k);
      set?.delete(sub);
      if (set?.size === 0) this.rooms.delete(k);
    }
  }

  /** A recording opened on this host: every room subscription of its room (and participant) gets it. */
  opened(recording: Recording): void {
    const id = recording.identity;
    const subs = this.rooms.get(roomKey(id.tenant, id.roomName));
    if (subs === undefined) return;
    for (const sub of subs) {
      if (sub.closed || sub.roomFinished) continue;
      const sel = sub.selection as { participant: string | undefined };
      if (sel.participant !== undefined && sel.participant !== id.participant) continue;
      sub.addTrack(this.trackOf(recording), undefined);
    }
  }

  trackEnded(track: LiveTrack): void {
    if (track.feeds.size === 0) this.forget(track);
  }

  /** room_finished: room subscriptions close once their tracks have ended (tenant `*` = any). */
  roomFinished(tenant: string, roomName: string): void {
    for (const [k, subs] of this.rooms) {
      const [t, r] = k.split('\u0000') as [string, string];
      if (r !== roomName || (tenant !== '*' && tenant !== t)) continue;
      for (const sub of subs) {
        sub.roomFinished = true;
        if (sub.feeds.every((f) => f.mode === 'done')) sub.close(1000, 'room finished');
      }
    }
  }

  countSent(bytes: number, t0: number | undefined): void {
    this.bytes += bytes;
    if (t0 !== undefined) this.metrics.liveDeliveryLatency.record((performance.now() - t0) / 1000);
  }

  private flushCounters(): void {
    if (this.bytes > 0) this.metrics.liveBytesSent.inc(this.bytes);
    this.bytes = 0;
  }

  /** Once a second: counters, pings, idle consumers, idle room subscriptions, peers that never read a close. */
  private sweep(): void {
    this.flushCounters();
    const now = Date.now();
    for (const sub of this.subscribers) {
      if (sub.closed) continue;
      if (now - sub.lastLife > this.opts.idleSec * 1000) {
        sub.close(1001, 'idle');
        continue;
      }
      if (sub.idleSince !== undefined && now - sub.idleSince >= this.opts.roomIdleSec * 1000) {
        sub.close(1000, 'room session ended');
        continue;
      }
      if (now - sub.lastPing >= this.opts.pingSec * 1000) {
        sub.lastPing = now;
        sub.ws.ping();
      }
    }
    for (const [sub, deadline] of this.closingAt) {
      if (now < deadline) continue;
      this.closingAt.delete(sub);
      try {
        sub.ws.close();
      } catch {
        // already gone
      }
    }
  }
}

export function roomKey(tenant: string, roomName: string): string {
  return `${tenant}\u0000${roomName}`;
}
