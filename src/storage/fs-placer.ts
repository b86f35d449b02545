import { Worker } from 'node:worker_threads';
import type { PlaceItem, PlaceReply, PlaceRequest } from './fs-place-protocol.js';

/** The worker script beside this module (`.ts` when the sources run directly, as in the tests). */
const WORKER_URL = new URL(`./fs-place-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/**
 * Hands batches of objects to one worker thread that writes them into place with synchronous
 * calls (src/storage/fs-place-worker.ts), so many small objects cost the event loop one message
 * per batch. Batches are placed in the order given. A worker that dies fails what it had and
 * is replaced at the next batch.
 */
export class FsPlacer {
  private worker: Worker | null = null;
  private ids = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  /** Resolves when every object of the batch is in place; rejects with an errno-carrying Error otherwise. */
  place(items: PlaceItem[]): Promise<void> {
    if (items.length === 0) return Promise.resolve();
    const worker = this.worker ?? this.spawn();
    const id = ++this.ids;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, items } satisfies PlaceRequest);
    });
  }

  /** Ends the worker once nothing is pending (later batches start a new one). */
  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker === null) return;
    await Promise.allSettled([...this.pending.values()].map((p) => new Promise<void>((r) => {
      const { resolve, reject } = p;
      p.resolve = () => { resolve(); r(); };
      p.reject = (err) => { reject(err); r(); };
    })));
    await worker.terminate();
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_URL);
    worker.unref(); // idle, it must not hold the process open; ref'd while a batch is out
    worker.on('message', (reply: PlaceReply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.ok) p.resolve();
      else p.reject(Object.assign(new Error(reply.message), { code: reply.code }));
    });
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = null;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(err);
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(Object.assign(new Error(`fs place worker exited (${code})`), { code: 'EIO' })));
    this.worker = worker;
    return worker;
  }
}
