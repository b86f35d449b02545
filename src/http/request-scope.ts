import { AsyncLocalStorage } from 'node:async_hooks';

/** The request a piece of work belongs to, named in the log line of an uncaught exception. */
export interface RequestScope {
  /** Bounded route label (as in `http_requests_total`). */
  route: string;
  requestId: string;
}

const current = new AsyncLocalStorage<RequestScope>();
// An error thrown synchronously out of a scope (a uWS callback) has left it by the time the
// process handler sees it: remember where it came from.
const thrownIn = new WeakMap<object, RequestScope>();

/** Runs `fn` as work of `scope`; the promises and timers it starts stay in the scope. */
export function inRequestScope<T>(scope: RequestScope, fn: () => T): T {
  try {
    return current.run(scope, fn);
  } catch (err) {
    if (typeof err === 'object' && err !== null && !thrownIn.has(err)) thrownIn.set(err, scope);
    throw err;
  }
}

/** The request an error was thrown in, or the one running now; undefined outside requests. */
export function requestScopeOf(err: unknown): RequestScope | undefined {
  return (typeof err === 'object' && err !== null ? thrownIn.get(err) : undefined) ?? current.getStore();
}
