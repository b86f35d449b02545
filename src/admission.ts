import { AppError } from './errors.js';

export type DaemonState = 'created' | 'starting' | 'running' | 'draining' | 'stopped';

/**
 * What the daemon admits in each state: while starting, work is refused with OVERLOADED (the
 * daemon already listens, so an operator sees it during recovery); while draining, with
 * DRAINING. Ops routes always pass.
 */
export class Admission {
  state: DaemonState = 'created';

  /** Whether new streams and requests are taken. */
  get admitting(): boolean {
    return this.state === 'running';
  }

  get draining(): boolean {
    return this.state === 'draining' || this.state === 'stopped';
  }

  /** The refusal of a request for `route` (a route label), or undefined when it may run. */
  gate(route: string): AppError | undefined {
    if (route === 'health' || route === 'ready' || route === 'metrics') return undefined;
    if (this.state === 'starting') return new AppError('OVERLOADED', 'the daemon is starting', { retryAfterSec: 2 });
    if (this.draining) return new AppError('DRAINING', 'the daemon is shutting down', { retryAfterSec: 5 });
    return undefined;
  }
}
