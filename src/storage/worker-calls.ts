import type { Worker } from 'node:worker_threads';

/** What a worker answers a call with: `{ id, ok: true, …result }` or `{ id, ok: false, message, code }`. */
export type WorkerReply<R extends object> = ({ ok: true } & R & { id: number }) | { id: number; ok: false; message: string; code?: string };

/** Options of {@link WorkerCalls}. */
export interface WorkerCallsOptions {
  /** Starts the worker (at the first call, or {@link WorkerCalls.warm}; again after it died). */
  spawn: () => Worker;
  /** The error a failed call rejects with, from the worker's message and errno code. */
  failure: (message: string, code: string | undefined) => Error;
  /** The error the calls still out reject with when the worker dies. */
  death: (detail: string) => Error;
}

/**
 * Request/answer calls to one worker thread: each call posts `{ id, …request }` and resolves
 * with the answer carrying that id. The worker starts with the first call, holds the process
 * open only while a call is out, and is started again after it died (the calls it had reject).
 */
export class WorkerCalls<Q extends object, R extends object> {
  private worker: Worker | null = null;
  private ids = 0;
  private readonly pending = new Map<number, { resolve: (r: R) => void; reject: (err: Error) => void }>();
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: WorkerCallsOptions) {}

  call(request: Q): Promise<R> {
    const worker = this.warm();
    const id = ++this.ids;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ ...request, id });
    });
  }

  /** Starts the worker now, so the first call does not wait for it. */
  warm(): Worker {
    return this.worker ?? (this.worker = this.spawn());
  }

  /** Calls waiting for their answer. */
  get outstanding(): number {
    return this.pending.size;
  }

  /** Resolves once no call is out. */
  idle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Ends the worker; calls still out reject with `err`. A later call starts a new one. */
  async terminate(err: Error): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.failAll(err);
    if (worker !== null) await worker.terminate();
  }

  private spawn(): Worker {
    const worker = this.opts.spawn();
    worker.unref(); // idle, it must not hold the process open; ref'd while a call is out
    worker.on('message', (reply: WorkerReply<R>) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      this.settled(worker);
      if (reply.ok) p.resolve(reply);
      else p.reject(this.opts.failure(reply.message, reply.code));
    });
    const die = (detail: string): void => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.failAll(this.opts.death(detail));
    };
    worker.on('error', (err) => die(err.message));
    worker.on('exit', (code) => die(`exited (${code})`));
    return worker;
  }

  private settled(worker: Worker): void {
    if (this.pending.size > 0) return;
    worker.unref();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private failAll(err: Error): void {
    const waiters = [...this.pending.values()];
    this.pending.clear();
    for (const w of waiters) w.reject(err);
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
