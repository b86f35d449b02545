import { Worker } from 'node:worker_threads';
import type { MoveItem, MoveRequest, MoveResult, PlaceItem, PlaceRequest } from './fs-place-protocol.js';
import { WorkerCalls } from './worker-calls.js';

/** The worker script beside this module (`.ts` when the sources run directly, as in the tests). */
const WORKER_URL = new URL(`./fs-place-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

const errnoError = (message: string, code: string | undefined): Error => Object.assign(new Error(message), { code });

/**
 * Hands batches of objects to one worker thread that writes them into place with synchronous
 * calls (src/storage/fs-place-worker.ts), so many small objects cost the event loop one message
 * per batch. Batches are placed in the order given. A worker that dies fails what it had and
 * is replaced at the next batch.
 */
export class FsPlacer {
  private readonly calls = new WorkerCalls<Omit<PlaceRequest, 'id'> | Omit<MoveRequest, 'id'>, { results?: MoveResult[] }>({
    spawn: () => new Worker(WORKER_URL),
    failure: errnoError,
    // a transient outage of the store (storeError counts EIO as one): the batch is tried again
    death: (detail) => errnoError(`fs place worker ${detail}`, 'EIO'),
  });

  /**
   * Resolves when every object of the batch is in place; rejects with an errno-carrying Error
   * otherwise. Bodies given as ranges are read from the `journal` segment, which must stay
   * until then.
   */
  async place(items: PlaceItem[], journal?: string): Promise<void> {
    if (items.length === 0) return;
    await this.calls.call(journal === undefined ? { items } : { items, journal });
  }

  /**
   * Moves a group of files into place, each once its data is durable, and syncs every folder
   * the group changed once (src/storage/fs-place-worker.ts). Resolves with each move's outcome
   * in order; rejects only when the worker could not answer.
   */
  async move(moves: MoveItem[]): Promise<MoveResult[]> {
    if (moves.length === 0) return [];
    return (await this.calls.call({ moves })).results ?? [];
  }

  /** Ends the worker once nothing is pending (later batches start a new one). */
  async stop(): Promise<void> {
    await this.calls.idle();
    await this.calls.terminate(errnoError('fs placer stopped', 'EIO'));
  }
}
