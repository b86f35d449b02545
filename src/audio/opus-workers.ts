import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { OpusDecodeOptions, OpusDecodeResult } from './decode-opus.js';
import { abortError } from './ffmpeg-pool.js';
import type { WorkerReply, WorkerRequest } from './opus-worker-protocol.js';

/** Options of {@link OpusWorkerPool}. */
export interface OpusWorkerPoolOptions {
  /** Worker threads; 'auto' is one per CPU, at most 4. */
  size: number | 'auto';
  logger?: Logger | undefined;
}

interface Job {
  resolve: (r: OpusDecodeResult) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
  dead: boolean;
}

/** How long a worker may take to exit by itself when the pool stops. */
const STOP_GRACE_MS = 5000;

/** Threads for 'auto': one per CPU the process may use, at most 4 (decoding is not the only work). */
export function autoWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** The worker script beside this module (`.ts` when the sources run directly, as in the tests). */
const WORKER_URL = new URL(`./opus-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/** A copy of the bytes in an ArrayBuffer of their own, so it can be transferred (a Buffer may share its pool's). */
function ownBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/**
 * Decodes Ogg/Opus on worker threads, so notes are decoded on every core and the event loop
 * that serves live streams never runs libopus. `decode` has the contract of
 * {@link decodeOggOpus}: the body is read on this thread as it arrives and its chunks are handed
 * to the least busy worker; the PCM comes back without a copy. A worker that dies fails its
 * jobs (INTERNAL) and is replaced.
 */
export class OpusWorkerPool {
  private readonly slots: Slot[] = [];
  private readonly logger: Logger | undefined;
  private readonly wanted: number;
  private nextId = 1;
  private stopped = false;

  /** Only checks its options: the threads start in {@link start} (or at the first decode). */
  constructor(options: OpusWorkerPoolOptions) {
    this.logger = options.logger;
    const n = options.size === 'auto' ? autoWorkers() : options.size;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`OpusWorkerPool size must be a positive integer, got ${String(n)}`);
    this.wanted = n;
  }

  /** Starts the worker threads (module load, libopus), so the first note does not wait for them. */
  start(): void {
    if (this.stopped || this.slots.length > 0) return;
    for (let i = 0; i < this.wanted; i++) this.slots.push(this.spawn());
  }

  /** Worker threads in the pool. */
  get size(): number {
    return this.wanted;
  }

  /** Jobs being decoded now, over all workers. */
  get active(): number {
    return this.slots.reduce((s, x) => s + x.jobs.size, 0);
  }

  async decode(input: Readable, opts: OpusDecodeOptions): Promise<OpusDecodeResult> {
    if (this.stopped) throw new AppError('DRAINING', 'decoder pool is stopped');
    this.start();
    const { signal } = opts;
    if (signal?.aborted === true) {
      input.destroy();
      throw abortError(signal);
    }
    const slot = this.slots.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
    const id = this.nextId++;
    const result = new Promise<OpusDecodeResult>((resolve, reject) => {
      slot.jobs.set(id, {
        resolve,
        reject: (err) => {
          // an early failure (corrupt packet, too long) ends the reading of the body too
          input.destroy();
          reject(err);
        },
      });
    });
    result.catch(() => undefined); // awaited below; not unhandled while the body is read
    const onAbort = (): void => this.abandon(slot, id, abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const head = opts.head ?? Buffer.alloc(0);
      const start = ownBuffer(head);
      this.post(slot, { type: 'start', id, output: opts.output, head: start, maxOutputBytes: opts.maxOutputBytes }, [start]);
      try {
        for await (const chunk of input) {
          if (!slot.jobs.has(id)) break; // answered (failed) already
          const data = ownBuffer(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
          this.post(slot, { type: 'data', id, chunk: data }, [data]);
        }
      } catch (err) {
        if (!slot.jobs.has(id)) return await result; // the job's own failure (or the abort) explains it
        this.abandon(slot, id, err instanceof AppError ? err : new AppError('CLIENT_ABORTED', 'audio input ended with an error', { cause: err }));
        return await result;
      }
      if (slot.jobs.has(id)) this.post(slot, { type: 'end', id });
      return await result;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Stops the workers; jobs still running fail with DRAINING. Each worker is asked to stop and
   * exits by itself between two decode steps: `terminate()` lands wherever the thread is, and
   * inside libopus it makes the addon's next throw fatal for the whole process (SIGABRT). It is
   * used only on a worker that did not exit within `gracefulMs`. Resolves once every thread is
   * gone, so a process exit after it never tears down a thread mid-decode.
   */
  async stop(gracefulMs = STOP_GRACE_MS): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const slots = this.slots.splice(0);
    for (const s of slots) this.failAll(s, new AppError('DRAINING', 'decoder pool stopped'));
    await Promise.all(slots.map((s) => this.stopWorker(s, gracefulMs)));
  }

  private async stopWorker(slot: Slot, gracefulMs: number): Promise<void> {
    if (slot.dead) return;
    const exited = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
    this.post(slot, { type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), gracefulMs);
    });
    const outcome = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      this.logger?.warn({ gracefulMs }, 'opus decoder worker did not stop in time; terminating it');
      await slot.worker.terminate();
    }
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_URL);
    worker.unref(); // idle workers do not keep the process alive
    const slot: Slot = { worker, jobs: new Map(), dead: false };
    worker.on('message', (msg: WorkerReply) => {
      const job = slot.jobs.get(msg.id);
      if (job === undefined) return; // abandoned
      slot.jobs.delete(msg.id);
      if (msg.type === 'done') {
        job.resolve({ pcm: Buffer.from(msg.pcm), frames: msg.frames, preSkip: msg.preSkip, inputRate: msg.inputRate, streamChannels: msg.streamChannels });
      } else {
        job.reject(new AppError(msg.code, msg.message, msg.details === undefined ? {} : { details: msg.details }));
      }
    });
    const lost = (why: string, err?: unknown): void => {
      if (this.stopped || slot.dead) return;
      slot.dead = true;
      this.logger?.error({ err, jobs: slot.jobs.size }, `opus decoder worker ${why}; replaced`);
      this.failAll(slot, new AppError('INTERNAL', 'the audio decoder stopped', { cause: err }));
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots[i] = this.spawn();
    };
    worker.on('error', (err) => lost('failed', err));
    worker.on('exit', (code) => lost(`exited with ${code}`));
    return slot;
  }

  private post(slot: Slot, msg: WorkerRequest, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(msg, transfer);
  }

  /** Gives up on a job: the worker drops it, its caller gets `err`. */
  private abandon(slot: Slot, id: number, err: unknown): void {
    const job = slot.jobs.get(id);
    if (job === undefined) return;
    slot.jobs.delete(id);
    this.post(slot, { type: 'abort', id });
    job.reject(err);
  }

  private failAll(slot: Slot, err: AppError): void {
    const jobs = [...slot.jobs.values()];
    slot.jobs.clear();
    for (const j of jobs) j.reject(err);
  }
}
