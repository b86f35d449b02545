/**
 * Speech intervals from per-frame voice decisions, with a minimum speech and a minimum silence
 * duration: gaps shorter than `minSilence` inside speech are bridged, then runs of speech
 * shorter than `minSpeech` are dropped (in that order, online). Positions are in samples of the
 * recording; `end` is exclusive. Used inside the VAD workers; pure, so tests can drive it.
 *
 * `hangover`: WebRTC's VAD keeps saying "speech" for a fixed number of frames after speech ends
 * (its overhang); that many samples are taken off the end of every raw run of speech frames.
 */

/**
 * libfvad's overhang after a run of speech (kOverHangMax2 in vad_core.c), in ms, by mode and
 * frame length: modes 0 and 1 hold 14/7/5 frames of 10/20/30 ms, modes 2 and 3 hold 9/5/3.
 */
export function fvadHangoverMs(mode: number, frameMs: 10 | 20 | 30): number {
  const frames = mode <= 1 ? { 10: 14, 20: 7, 30: 5 }[frameMs] : { 10: 9, 20: 5, 30: 3 }[frameMs];
  return frames * frameMs;
}

export interface SpeechInterval {
  start: number;
  end: number;
}

export interface SpeechEdge {
  on: boolean;
  /** `on`: the interval's start; `off`: its end (exclusive). */
  offset: number;
}

export class SpeechSegmenter {
  private readonly minSpeech: number;
  private readonly minSilence: number;
  private readonly onEdge: ((edge: SpeechEdge) => void) | undefined;
  readonly intervals: SpeechInterval[] = [];
  /** The open candidate: [start, end) of speech with gaps < minSilence bridged; -1 when none. */
  private start = -1;
  private end = -1;
  private announced = false;
  private readonly hangover: number;
  /** Start of the current raw run of speech frames; -1 after a non-speech frame. */
  private rawStart = -1;
  /** The candidate's end before the current raw run (what trimming the whole run gives back). */
  private endBeforeRaw = -1;

  /** Durations in samples. `onEdge` hears `on` once a candidate is long enough and `off` when it closes. */
  constructor(minSpeechSamples: number, minSilenceSamples: number, onEdge?: (edge: SpeechEdge) => void, hangoverSamples = 0) {
    this.minSpeech = Math.max(0, minSpeechSamples);
    this.minSilence = Math.max(1, minSilenceSamples);
    this.onEdge = onEdge;
    this.hangover = Math.max(0, hangoverSamples);
  }

  /** One frame's decision: samples [at, at + length) are speech or not. */
  frame(at: number, length: number, speech: boolean): void {
    if (speech) {
      const fresh = this.rawStart < 0;
      if (fresh) this.rawStart = at;
      if (this.start >= 0 && at - this.end < this.minSilence) {
        if (fresh) this.endBeforeRaw = this.end;
        this.end = at + length;
      } else {
        this.close();
        this.start = at;
        this.end = at + length;
        this.endBeforeRaw = at;
      }
      if (!this.announced && this.end - this.start >= this.minSpeech) {
        this.announced = true;
        this.onEdge?.({ on: true, offset: this.start });
      }
      return;
    }
    if (this.rawStart >= 0 && this.start >= 0) this.end = Math.max(this.endBeforeRaw, this.end - this.hangover);
    this.rawStart = -1;
    if (this.start >= 0 && at + length - this.end >= this.minSilence) this.close();
  }

  /** Ends the stream: an open candidate is closed (kept when long enough). */
  finish(): SpeechInterval[] {
    this.close();
    return this.intervals;
  }

  private close(): void {
    if (this.start < 0) return;
    if (this.end > this.start && (this.announced || this.end - this.start >= this.minSpeech)) {
      this.intervals.push({ start: this.start, end: this.end });
      if (this.announced) this.onEdge?.({ on: false, offset: this.end });
    }
    this.start = this.end = -1;
    this.announced = false;
  }
}
