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

export type VadRequest =
  | { type: 'open'; id: number; rate: number; channels: number; settings: VadSettings }
  /** s16le samples of the master (interleaved when channels > 1), in an ArrayBuffer of their own. */
  | { type: 'pcm'; id: number; pcm: ArrayBuffer }
  | { type: 'end'; id: number }
  | { type: 'stop' };

export type VadReply =
  | { type: 'edge'; id: number; on: boolean; offset: number }
  /** A `pcm` message was processed (its bytes). */
  | { type: 'ack'; id: number; bytes: number }
  | { type: 'done'; id: number; intervals: { start: number; end: number }[] }
  | { type: 'error'; id: number; message: string };
