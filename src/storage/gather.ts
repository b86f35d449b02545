/** One caller's item in a {@link Gather}, and how its promise settles. */
export interface Gathered<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

/** Options of {@link Gather}. */
export interface GatherOptions {
  /** Most items in one group. */
  maxItems: number;
  /** Groups under way at once; while they run, the next one gathers. */
  inFlight: number;
}

/**
 * Items that many callers hand over at the same moment (a meeting's tracks starting or ending)
 * leave together: those of one tick, and those that arrive while earlier groups are under way,
 * go to `run` as one group (at most `maxItems`, at most `inFlight` groups at once). `run` settles
 * each job of its group; if it throws, the jobs it left unsettled are rejected with its error.
 */
export class Gather<T, R> {
  private readonly queue: Gathered<T, R>[] = [];
  private running = 0;
  private pumpQueued = false;
  private readonly maxItems: number;
  private readonly inFlight: number;

  constructor(
    private readonly run: (jobs: Gathered<T, R>[]) => Promise<void>,
    options: GatherOptions,
  ) {
    this.maxItems = Math.max(1, options.maxItems);
    this.inFlight = Math.max(1, options.inFlight);
  }

  /** Settles as `run` settles this item's job. */
  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      // the items of one tick gather before the first group leaves
      if (this.pumpQueued) return;
      this.pumpQueued = true;
      queueMicrotask(() => {
        this.pumpQueued = false;
        this.pump();
      });
    });
  }

  private pump(): void {
    while (this.running < this.inFlight && this.queue.length > 0) {
      const jobs = this.queue.splice(0, this.maxItems);
      this.running++;
      void this.run(jobs)
        .catch((err: unknown) => {
          for (const j of jobs) j.reject(err); // a job already settled stays as it was
        })
        .finally(() => {
          this.running--;
          this.pump();
        });
    }
  }
}
