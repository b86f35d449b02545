/**
 * Where a live recording's samples sit on the wall clock. LiveKit egress sends bare PCM with no
 * timestamps, so the only evidence is when each frame arrives: a frame holding input samples
 * [n, n + f) that arrives at wall time t says its samples were made no later than t, i.e. the
 * recording's sample 0 was made at about `t − (n + f) / rate` (its *residual*). Network delay
 * only ever makes a residual larger, so the smallest residuals are the best estimates.
 *
 * A *segment* is a contiguous run of samples whose residuals agree: a mute without fill starts
 * a new one (explicitly), and so does a stall after which the sender resumes at its live edge
 * (the residual jumps and stays up for `confirmMs`). A stall after which the sender catches up in
 * a burst is no gap: the residual jumps, then falls back, and the segment goes on; so is a jump
 * that the end of the stream (or a mute) cuts short before it is confirmed.
 *
 * Drift: per `blockMs` of samples the frame with the smallest residual is kept as a point
 * (sample count, arrival time); a least-squares line through the points of every segment (one
 * slope, an intercept per segment) gives the sender's real rate. Keeping only each block's
 * least-delayed frame makes the fit robust to jitter and to bursts.
 *
 * Per frame: a few arithmetic operations on numbers the caller already has (one clock read,
 * made by the recording), no allocation. Arrays grow once per segment, never per frame.
 */

export interface TimelineOptions {
  /** Input sample rate (the rate of the sample counts given to `frame`). */
  inputRate: number;
  /** A residual this much above the previous block's smallest one is a possible gap (ms). */
  gapMs?: number;
  /** How long a possible gap is watched before it is taken as real (ms of wall time). */
  confirmMs?: number;
  /** Length of a drift block in ms of samples. */
  blockMs?: number;
  /** Drift is reported only when the fitted points span at least this many seconds of samples in all. */
  minDriftSec?: number;
}

/** A contiguous run in the pipeline's output samples, with the wall clock of its first sample. */
export interface TimelineRun {
  start: number;
  samples: number;
  /** Epoch milliseconds (fractional) of the run's first sample. */
  wallMs: number;
}

/** What {@link Timeline.result} gives: runs in stored (master) samples, drift, start. */
export interface TimelineResult {
  runs: TimelineRun[];
  /** Epoch ms of stored sample 0, or null when nothing was stored. */
  startedAtMs: number | null;
  /** (samples received ÷ (wall time × rate) − 1) × 10⁶ over stored runs; null without enough points. */
  driftPpm: number | null;
}

interface Segment {
  /** First output sample of the segment (pipeline coordinates). */
  outStart: number;
  /** Epoch ms of the segment's first input sample (the smallest residual of its first block). */
  wallMs: number;
}

const NONE = Number.POSITIVE_INFINITY;

export class Timeline {
  private readonly rate: number;
  private readonly gapMs: number;
  private readonly confirmMs: number;
  private readonly blockSamples: number;
  private readonly segments: Segment[] = [];

  /** Input samples in the current segment (audio and silence fill). */
  private n = 0;
  /** True until the first frame of a new segment (after start, after a mute without fill). */
  private fresh = true;
  private firstBlockDone = false;
  /** Reference residual: the smallest one of the last complete block. */
  private ref = NONE;
  /** The current block: its end (in samples) and its smallest residual with where it was seen. */
  private blockEnd = 0;
  private blockMin = NONE;
  private blockMinN = 0;
  private blockMinT = 0;

  /** A possible gap being watched. */
  private pending = false;
  private pendingSince = 0;
  private pendingN = 0;
  private pendingOut = 0;
  private pendingMin = NONE;

  /** Least-squares sums of the current segment's block points (t in ms relative to tBase, n in samples). */
  private cnt = 0;
  private sn = 0;
  private st = 0;
  private snn = 0;
  private snt = 0;
  private tBase = 0;
  /** Pooled over closed segments: Σ(n−n̄)², Σ(n−n̄)(t−t̄). */
  private poolNN = 0;
  private poolNT = 0;
  /** Samples between the first and the last point, summed over segments. */
  private poolSpan = 0;
  private firstPointN = 0;
  private lastPointN = 0;
  private readonly minDriftSamples: number;

  /** Output ranges [start, end) the master did not keep (pipeline coordinates). */
  private readonly drops: { start: number; end: number }[] = [];

  constructor(opts: TimelineOptions) {
    this.rate = opts.inputRate;
    this.gapMs = opts.gapMs ?? 150;
    this.confirmMs = opts.confirmMs ?? 1000;
    this.blockSamples = Math.max(1, Math.round(((opts.blockMs ?? 1000) * opts.inputRate) / 1000));
    this.minDriftSamples = (opts.minDriftSec ?? 5) * opts.inputRate;
  }

  /**
   * An audio frame of `samples` input samples arrived at `nowMs` (epoch ms); `outFrames` is the
   * pipeline's output count before the frame is pushed. Call before pushing it.
   */
  frame(nowMs: number, samples: number, outFrames: number): void {
    if (this.fresh) this.open(outFrames, nowMs);
    this.n += samples;
    if (this.pending) {
      const r = nowMs - ((this.n - this.pendingN) * 1000) / this.rate;
      if (r < this.pendingMin) this.pendingMin = r;
      if (nowMs - this.pendingSince < this.confirmMs) return;
      this.resolvePending();
    }
    const n = this.n;
    const resid = nowMs - (n * 1000) / this.rate;
    if (this.firstBlockDone && !this.pending && resid - this.ref > this.gapMs) {
      this.pending = true;
      this.pendingSince = nowMs;
      this.pendingN = n - samples;
      this.pendingOut = outFrames;
      this.pendingMin = nowMs - (samples * 1000) / this.rate;
      return;
    }
    if (resid < this.blockMin) {
      this.blockMin = resid;
      this.blockMinN = n;
      this.blockMinT = nowMs;
    }
    if (n >= this.blockEnd) this.closeBlock();
  }

  /** Silence fill of `samples` input samples (a filled mute): part of the run, no evidence. */
  silence(samples: number): void {
    if (this.fresh) return; // a fill before the first frame: result() extends the first run back over it
    this.n += samples;
    // a block that spans the fill ends at its next frame; the fill itself is no observation
    if (this.n >= this.blockEnd) this.blockEnd = this.n + this.blockSamples;
  }

  /** A mute without fill began: the next frame starts a new segment. */
  cut(): void {
    if (this.fresh) return;
    this.pending = false; // not confirmed in time: no gap
    this.closeSegment();
    this.fresh = true;
  }

  /** The master did not keep output samples [start, start + samples). */
  dropped(start: number, samples: number): void {
    const last = this.drops[this.drops.length - 1];
    if (last !== undefined && last.end === start) last.end += samples;
    else this.drops.push({ start, end: start + samples });
  }

  /**
   * Ends the timeline: `totalOut` output samples were produced, at `outputRate`. Runs come back
   * in stored samples (dropped ranges taken out, later runs moved up), empty runs left out.
   */
  result(totalOut: number, outputRate: number): TimelineResult {
    this.pending = false; // a jump not confirmed before the end is lateness, not a gap
    if (!this.fresh) this.closeSegment();
    const first = this.segments[0];
    if (first !== undefined && first.outStart > 0) {
      // output before the first frame can only be a filled mute: part of the first run
      first.wallMs -= (first.outStart * 1000) / outputRate;
      first.outStart = 0;
    }
    const runs: TimelineRun[] = [];
    for (let i = 0; i < this.segments.length; i++) {
      const seg = this.segments[i]!;
      const end = i + 1 < this.segments.length ? this.segments[i + 1]!.outStart : totalOut;
      this.cutDrops(seg.outStart, end, seg.wallMs, outputRate, runs);
    }
    const drift = this.poolNN > 0 && this.poolSpan >= this.minDriftSamples ? ((this.poolNN / this.poolNT) * 1000) / this.rate - 1 : NaN;
    return {
      runs,
      startedAtMs: runs.length > 0 ? runs[0]!.wallMs : null,
      driftPpm: Number.isFinite(drift) ? Math.round(drift * 1e7) / 10 : null,
    };
  }

  private open(outFrames: number, nowMs: number): void {
    this.fresh = false;
    this.firstBlockDone = false;
    this.ref = NONE;
    this.n = 0;
    this.blockEnd = this.blockSamples;
    this.blockMin = NONE;
    this.cnt = this.sn = this.st = this.snn = this.snt = 0;
    this.tBase = nowMs;
    this.segments.push({ outStart: outFrames, wallMs: NONE });
  }

  private closeBlock(): void {
    if (this.blockMin !== NONE) {
      if (!this.firstBlockDone) {
        this.firstBlockDone = true;
        this.segments[this.segments.length - 1]!.wallMs = this.blockMin;
      }
      this.ref = this.blockMin;
      this.addPoint();
    }
    this.blockMin = NONE;
    this.blockEnd = this.n + this.blockSamples;
  }

  /** Adds the current segment's points to the pooled fit and fixes its start if still open. */
  private closeSegment(): void {
    const seg = this.segments[this.segments.length - 1];
    if (seg === undefined) return;
    if (seg.wallMs === NONE) seg.wallMs = this.blockMin;
    // the last, partial block counts as a point too
    if (this.blockMin !== NONE && this.firstBlockDone) this.addPoint();
    this.blockMin = NONE;
    if (this.cnt >= 2) {
      this.poolNN += this.snn - (this.sn * this.sn) / this.cnt;
      this.poolNT += this.snt - (this.sn * this.st) / this.cnt;
      this.poolSpan += this.lastPointN - this.firstPointN;
    }
    this.cnt = 0;
  }

  /** The current block's least-delayed frame as a point of the segment's fit. */
  private addPoint(): void {
    const t = this.blockMinT - this.tBase;
    const n = this.blockMinN;
    if (this.cnt === 0) this.firstPointN = n;
    this.lastPointN = n;
    this.cnt++;
    this.sn += n;
    this.st += t;
    this.snn += n * n;
    this.snt += n * t;
  }

  /** Decides a watched gap: real when the frames since it keep residuals above the old line. */
  private resolvePending(): void {
    this.pending = false;
    const expected = this.ref + (this.pendingN * 1000) / this.rate;
    const gap = this.pendingMin - expected;
    if (gap <= this.gapMs) {
      // late frames, then a catch-up: the same run; its block restarts from here
      this.blockMin = NONE;
      this.blockEnd = this.n + this.blockSamples;
      return;
    }
    const n = this.n - this.pendingN;
    this.closeSegment();
    this.segments.push({ outStart: this.pendingOut, wallMs: this.pendingMin });
    this.firstBlockDone = true;
    this.ref = this.pendingMin;
    this.n = n;
    this.cnt = this.sn = this.st = this.snn = this.snt = 0;
    this.tBase = this.pendingSince;
    this.blockMin = NONE;
    this.blockEnd = this.n + this.blockSamples;
  }

  private cutDrops(start: number, end: number, wallMs: number, outputRate: number, runs: TimelineRun[]): void {
    const piece = (a: number, b: number): void => {
      let before = 0;
      for (const d of this.drops) before += Math.max(0, Math.min(d.end, a) - d.start);
      runs.push({ start: a - before, samples: b - a, wallMs: wallMs + ((a - start) * 1000) / outputRate });
    };
    let at = start;
    for (const d of this.drops) {
      if (d.end <= at) continue;
      if (d.start >= end) break;
      if (d.start > at) piece(at, d.start);
      at = Math.max(at, Math.min(d.end, end));
    }
    if (at < end) piece(at, end);
  }
}
