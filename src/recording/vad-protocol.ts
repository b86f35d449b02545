/** Messages between {@link VadPool} and its worker threads (`vad-worker.ts`). */

export interface VadSettings {
  /** fvad mode: 0 quality … 3 very aggressive. */
  mode: 0 | 1 | 2 | 3;
  /** VAD frame length. */
  frameMs: 10 | 20 | 30;
  minSpeechMs: number;
  minSilenceMs: number;
  /** Report `on`/`off` edges as they are found. */
  live: boolean;
}

/** What a stream's first `pcm` message carries: the worker opens the stream with it. */
export interface VadOpen {
  rate: number;
  channels: number;
  settings: VadSettings;
}

export type VadRequest =
  /**
   * s16le samples of the master (interleaved when channels > 1): the first `bytes` of `pcm`, an
   * ArrayBuffer transferred to the worker and handed back with the `ack`, for the next chunk.
   * The first of a stream carries `open` (one message per stream fewer than a separate open,
   * and none at all for a recording that ends before its first chunk).
   */
  | { type: 'pcm'; id: number; pcm: ArrayBuffer; bytes: number; open?: VadOpen }
  | { type: 'end'; id: number }
  | { type: 'stop' };

export type VadReply =
  | { type: 'edge'; id: number; on: boolean; offset: number }
  /** A `pcm` message was processed (its bytes); its buffer comes back (transferred) to be filled again. */
  | { type: 'ack'; id: number; bytes: number; pcm: ArrayBuffer }
  | { type: 'done'; id: number; intervals: { start: number; end: number }[] }
  | { type: 'error'; id: number; message: string };
