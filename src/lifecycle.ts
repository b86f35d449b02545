import type { ReadinessCheck } from './http/ops-routes.js';
import type { Logger } from './observability/logger.js';

/** One part of the daemon as the lifecycle sees it. */
export interface Service {
  /** Names the part in logs (`component`). */
  name: string;
  /** Begins the part's work; may do I/O. A failure fails the daemon's start. */
  start?(): Promise<void> | void;
  /** Ends it (see docs/architecture.md, "Shutdown verbs"); called whether or not start ran or succeeded. */
  stop?(): Promise<void> | void;
  /** Probes `/ready` runs once the part has started. */
  checks?: ReadinessCheck[];
}

/** Options of {@link Lifecycle.stop}. */
export interface LifecycleStopOptions {
  /** The one deadline of the whole stop, in ms: a part still stopping then is logged and left behind. */
  deadlineMs: number;
}

/**
 * Runs a list of services: `start()` in order (the first failure is thrown), `stop()` in
 * reverse over every service, each error captured and logged, all under one deadline.
 */
export class Lifecycle {
  private readonly started = new Set<Service>();

  constructor(
    private readonly services: readonly Service[],
    private readonly logger: Logger,
  ) {
    const names = new Set<string>();
    for (const s of services) {
      if (names.has(s.name)) throw new TypeError(`service "${s.name}" is listed twice`);
      names.add(s.name);
    }
  }

  /** Starts each service after the previous one; throws the first failure (the caller then stops them all). */
  async start(): Promise<void> {
    for (const s of this.services) {
      await s.start?.();
      this.started.add(s);
    }
  }

  /** The readiness probes of the services started so far. */
  checks(): ReadinessCheck[] {
    return this.services.filter((s) => this.started.has(s)).flatMap((s) => s.checks ?? []);
  }

  /**
   * Stops every service, last first, each once the one after it has stopped. An error is logged
   * and the next service stopped; past the deadline, a service still stopping is logged and the
   * rest are stopped without waiting for it.
   */
  async stop(options: LifecycleStopOptions): Promise<void> {
    const deadline = Date.now() + options.deadlineMs;
    for (const s of [...this.services].reverse()) {
      if (!s.stop) continue;
      const stopping = (async () => s.stop!())().catch((err: unknown) => this.logger.error({ err, component: s.name }, 'component failed to stop cleanly'));
      if ((await untilDeadline(stopping, deadline)) === 'timeout') {
        this.logger.error({ component: s.name, deadlineMs: options.deadlineMs }, 'component still stopping at the stop deadline: the others stop without it');
      }
    }
    this.started.clear();
  }
}

/** 'done' once `p` settles, or 'timeout' at `deadline` (epoch ms). */
async function untilDeadline(p: Promise<unknown>, deadline: number): Promise<'done' | 'timeout'> {
  // past the deadline a stop still gets the current turn: one that is done by then is not reported
  const left = Math.max(0, deadline - Date.now());
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), left);
  });
  try {
    return await Promise.race([p.then(() => 'done' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
