/**
 * Bounds the end-of-recording work that runs at once. When a meeting ends every stream ends in
 * the same second; each finalization holds a few file descriptors, sockets and stream buffers
 * while it uploads its last parts and completes its master, so they run `concurrency` at a
 * time and the rest wait their turn in arrival order. Each result is its own: a finalization
 * never waits for another one to be announced.
 */
export interface FinalizeQueueObserver {
  /** Seconds a finalization waited for its slot (0 when one was free). */
  waited?: (seconds: number) => void;
  /** Seconds a finalization ran, once it settled (any outcome). */
  ran?: (seconds: number) => void;
}

export class FinalizeQueue {
  readonly concurrency: number;
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly observer: FinalizeQueueObserver;

  constructor(concurrency: number, observer: FinalizeQueueObserver = {}) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`finalize concurrency must be a positive integer, got ${concurrency}`);
    this.concurrency = concurrency;
    this.observer = observer;
  }

  /** Finalizations running now. */
  get active(): number {
    return this.running;
  }

  /** Finalizations waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Runs `fn` once a slot is free; the slot is handed to the next in line when it settles. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const asked = performance.now();
    if (this.running < this.concurrency) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    const started = performance.now();
    this.observer.waited?.((started - asked) / 1000);
    try {
      return await fn();
    } finally {
      this.observer.ran?.((performance.now() - started) / 1000);
      const next = this.waiting.shift();
      if (next === undefined) this.running--;
      else next();
    }
  }
}
