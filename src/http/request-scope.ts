/** The request a piece of work belongs to, named in the log line of an uncaught exception. */
export interface RequestScope {
  /** Bounded route label (as in `http_requests_total`). */
  route: string;
  requestId: string;
}

// The scope of the callback running now. Synchronous on purpose: an AsyncLocalStorage would
// carry it into promises, but once used it installs promise hooks for the whole process, so
// every promise of every stream (spool writes, uploads, the outbox) pays for them; the daemon's
// callbacks that can throw enter their request's scope themselves (uWS callbacks, timers).
let current: RequestScope | undefined;
// An error thrown synchronously out of a scope (a uWS callback) has left it by the time the
// process handler sees it: remember where it came from.
const thrownIn = new WeakMap<object, RequestScope>();

/** Runs `fn` as work of `scope` (the scope holds while it runs, not in what it leaves for later). */
export function inRequestScope<T>(scope: RequestScope, fn: () => T): T {
  const outer = current;
  current = scope;
  try {
    return fn();
  } catch (err) {
    if (typeof err === 'object' && err !== null && !thrownIn.has(err)) thrownIn.set(err, scope);
    throw err;
  } finally {
    current = outer;
  }
}

/** The request an error was thrown in, or the one running now; undefined outside requests. */
export function requestScopeOf(err: unknown): RequestScope | undefined {
  return (typeof err === 'object' && err !== null ? thrownIn.get(err) : undefined) ?? current;
}
