import type { ErrorCode } from '../errors.js';
import type { PcmFormat } from './pcm-format.js';

/** Messages from the pool to an Opus worker; `id` names the job. */
export type WorkerRequest =
  | { type: 'start'; id: number; output: PcmFormat; head: ArrayBuffer; maxOutputBytes: number | undefined }
  | { type: 'data'; id: number; chunk: ArrayBuffer }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number }
  /** Abandon every job and exit once idle: the only safe way to stop a worker (see OpusWorkerPool.stop). */
  | { type: 'stop' };

/** Messages from an Opus worker: the decoded PCM (transferred), or the AppError it failed with. */
export type WorkerReply =
  | { type: 'done'; id: number; pcm: ArrayBuffer; frames: number; preSkip: number; inputRate: number; streamChannels: number }
  | { type: 'error'; id: number; code: ErrorCode; message: string; details?: Record<string, unknown> };
