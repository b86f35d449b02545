import { Worker } from 'node:worker_threads';
import type { Logger } from '../observability/logger.js';
import type { SpeechInterval } from './speech.js';
import type { VadReply, VadRequest, VadSettings } from './vad-protocol.js';

/** The worker script beside this module (`.ts` when the sources run directly, as in the tests). */
const WORKER_URL = new URL(`./vad-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

export interface VadPoolOptions {
  settings: VadSettings;
  /** Worker threads (recordings are spread over them). */
  workers: number;
  /** PCM handed over and not yet answered, summed over every stream; beyond it a stream gives up (speech null). */
  maxQueueBytes?: number;
  /** How long `finish` waits for the last answer. */
  finishTimeoutMs?: number;
  logger: Logger;
}

/** One recording's VAD: chunks in as they are made, speech intervals out at the end. */
export interface VadStream {
  /** A stored chunk of the master (s16le, the master's format), copied into a buffer moved to the worker; never blocks. */
  push(pcm: Uint8Array): void;
  /** Speech intervals in the master's samples, or null when the VAD could not follow. */
  finish(): Promise<SpeechInterval[] | null>;
}

interface Slot {
  worker: Worker;
  streams: Map<number, Pending>;
  dead: boolean;
  /** performance.now() of the worker's last message (or its start). */
  lastReply: number;
}

interface Pending {
  /** Sent with the first chunk; undefined once sent. */
  open: { rate: number; channels: number } | undefined;
  failed: boolean;
  queued: number;
  onEdge: ((on: boolean, offset: number) => void) | undefined;
  done?: (intervals: SpeechInterval[] | null) => void;
  result?: SpeechInterval[] | null;
}

/** Buffers kept for the next chunks (bytes, summed), as they come back from the workers. */
const SPARE_BYTES = 8 * 1024 * 1024;

/**
 * Runs the VAD of every live recording on worker threads, so the event loop that takes the
 * frames never runs it: per chunk (2 s by default) the samples are copied into a buffer that is
 * transferred to the worker and comes back with its ack, so the copy lands in memory already
 * mapped instead of a fresh allocation per chunk; the worker answers at the end. A worker that
 * dies fails its streams (speech null) and is replaced.
 */
export class VadPool {
  private readonly slots: Slot[] = [];
  private next = 0;
  private ids = 0;
  private queuedBytes = 0;
  private readonly spare: ArrayBuffer[] = [];
  private spareBytes = 0;
  private readonly maxQueueBytes: number;
  private readonly finishTimeoutMs: number;
  private closed = false;

  constructor(private readonly opts: VadPoolOptions) {
    this.maxQueueBytes = opts.maxQueueBytes ?? 64 * 1024 * 1024;
    this.finishTimeoutMs = opts.finishTimeoutMs ?? 30_000;
  }

  /** Starts the first worker (module load, wasm compile) before any recording needs it; {@link open} starts workers as needed too. */
  start(): void {
    if (!this.closed && this.slots.length === 0) this.slots.push(this.spawn());
  }

  get settings(): VadSettings {
    return this.opts.settings;
  }

  /** Starts the VAD of one recording; `onEdge` hears live `on`/`off` edges when the settings ask for them. */
  open(rate: number, channels: number, onEdge?: (on: boolean, offset: number) => void): VadStream {
    const id = ++this.ids;
    const p: Pending = { open: { rate, channels }, failed: false, queued: 0, onEdge };
    if (this.closed) {
      p.failed = true;
      return this.stream(undefined, id, p);
    }
    // nothing is posted yet: the worker hears of the stream with its first chunk
    const slot = this.slot();
    slot.streams.set(id, p);
    return this.stream(slot, id, p);
  }

  /** Stops the workers; streams still open end with speech null. */
  async stop(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(
      slots.map(async (s) => {
        s.dead = true;
        this.failAll(s);
        await s.worker.terminate();
      }),
    );
  }

  private stream(slot: Slot | undefined, id: number, p: Pending): VadStream {
    return {
      push: (pcm) => {
        if (p.failed || slot === undefined || slot.dead) return;
        if (this.queuedBytes + pcm.byteLength > this.maxQueueBytes) {
          this.opts.logger.warn({ queuedBytes: this.queuedBytes }, 'VAD workers cannot keep up: this recording gets no speech intervals');
          this.fail(slot, id, p);
          return;
        }
        const bytes = pcm.byteLength;
        p.queued += bytes;
        this.queuedBytes += bytes;
        const buf = this.buffer(bytes);
        new Uint8Array(buf, 0, bytes).set(pcm);
        const open = p.open;
        p.open = undefined;
        this.post(slot, open === undefined ? { type: 'pcm', id, pcm: buf, bytes } : { type: 'pcm', id, pcm: buf, bytes, open: { ...open, settings: this.opts.settings } }, [buf]);
      },
      finish: () => {
        if (p.failed || slot === undefined || slot.dead) {
          this.release(slot, id, p);
          return Promise.resolve(null);
        }
        if (p.open !== undefined) {
          // no chunk ever reached the worker: no audio, no speech
          this.release(slot, id, p);
          return Promise.resolve([]);
        }
        return new Promise<SpeechInterval[] | null>((resolve) => {
          // The worker answers in order: an end waits behind every chunk queued before it, of
          // every stream on that worker (at a meeting's end, all of them). It gives up only when
          // the worker has answered nothing for the timeout (stuck), never while it works through a backlog.
          const check = (): void => {
            const quiet = performance.now() - slot.lastReply;
            if (quiet < this.finishTimeoutMs) {
              timer = setTimeout(check, this.finishTimeoutMs - quiet);
              return;
            }
            this.opts.logger.warn({ timeoutMs: this.finishTimeoutMs }, 'VAD worker answered nothing in time: speech intervals left out');
            this.fail(slot, id, p);
          };
          let timer = setTimeout(check, this.finishTimeoutMs);
          p.done = (r) => {
            clearTimeout(timer);
            resolve(r);
          };
          this.post(slot, { type: 'end', id });
        });
      },
    };
  }

  /** A buffer of at least `bytes`: one that came back, or a new one. */
  private buffer(bytes: number): ArrayBuffer {
    const top = this.spare.at(-1);
    if (top !== undefined && top.byteLength >= bytes) {
      this.spare.pop();
      this.spareBytes -= top.byteLength;
      return top;
    }
    return new ArrayBuffer(bytes);
  }

  private slot(): Slot {
    const want = Math.max(1, this.opts.workers);
    for (let i = this.slots.length - 1; i >= 0; i--) if (this.slots[i]!.dead) this.slots.splice(i, 1);
    if (this.slots.length < want) {
      const s = this.spawn();
      this.slots.push(s);
      return s;
    }
    return this.slots[this.next++ % this.slots.length]!;
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_URL);
    worker.unref();
    const slot: Slot = { worker, streams: new Map(), dead: false, lastReply: performance.now() };
    worker.on('message', (msg: VadReply) => {
      slot.lastReply = performance.now();
      const p = slot.streams.get(msg.id);
      if (p === undefined) return;
      if (msg.type === 'edge') {
        p.onEdge?.(msg.on, msg.offset);
        return;
      }
      if (msg.type === 'ack') {
        p.queued -= msg.bytes;
        this.queuedBytes -= msg.bytes;
        if (this.spareBytes + msg.pcm.byteLength <= SPARE_BYTES) {
          this.spare.push(msg.pcm);
          this.spareBytes += msg.pcm.byteLength;
        }
        return;
      }
      if (msg.type === 'error') {
        this.opts.logger.error({ error: msg.message }, 'VAD failed for a recording: speech intervals left out');
        this.fail(slot, msg.id, p);
        return;
      }
      this.release(slot, msg.id, p);
      p.done?.(msg.intervals);
    });
    const die = (err?: unknown): void => {
      if (slot.dead) return;
      slot.dead = true;
      if (!this.closed) this.opts.logger.error({ err }, 'VAD worker stopped: its recordings get no speech intervals');
      this.failAll(slot);
    };
    worker.on('error', die);
    worker.on('exit', () => die());
    return slot;
  }

  private post(slot: Slot, msg: VadRequest, transfer?: ArrayBuffer[]): void {
    try {
      slot.worker.postMessage(msg, transfer);
    } catch (err) {
      this.opts.logger.error({ err }, 'VAD worker refused a message');
      this.failAll(slot);
    }
  }

  private fail(slot: Slot, id: number, p: Pending): void {
    if (!p.failed) {
      p.failed = true;
      this.release(slot, id, p);
      if (!slot.dead && p.open === undefined) this.post(slot, { type: 'end', id }); // frees the worker's instance; its answer is ignored
      p.done?.(null);
    }
  }

  private failAll(slot: Slot): void {
    for (const [id, p] of [...slot.streams]) this.fail(slot, id, p);
  }

  /** Forgets a stream and the bytes it still had queued. */
  private release(slot: Slot | undefined, id: number, p: Pending): void {
    this.queuedBytes -= p.queued;
    p.queued = 0;
    slot?.streams.delete(id);
  }
}
