import { AppError, toAppError } from '../errors.js';
import { CorkAnchor } from './cork-anchor.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { httpStatus } from './error-status.js';
import { type Reply, RequestContext, type RequestLimits } from './request-context.js';
import { inRequestScope } from './request-scope.js';
import uws, { type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket } from './uws.js';

export { type Reply, RequestContext } from './request-context.js';

export type Handler = (ctx: RequestContext) => Promise<Reply> | Reply;

export interface HttpServerOptions {
  logger: Logger;
  metrics: Metrics;
  /** Seconds the whole request (headers and body) may take to arrive before it is answered 408 and closed. */
  requestTimeoutSec: number;
  /** Seconds the body may go idle (see RequestBody: uWS's own close is kept ≥ 3 s beyond it) before 408. Default 8. */
  bodyIdleTimeoutSec?: number;
  /** Body read-ahead before the socket is paused. Default 256 KiB. */
  bodyHighWaterMark?: number;
  /** Checked before every route handler (by route label); an error answers the request instead. */
  gate?: (route: string) => AppError | undefined;
}

type Method = 'get' | 'post' | 'put' | 'del' | 'patch' | 'any';

/** The uWS app plus routing with one error mapping for every route. */
export class HttpServer {
  readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | undefined;
  private listenPort = 0;
  private readonly inflight = new Set<RequestContext>();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly limits: RequestLimits;
  /** Holds the loop's cork for WebSocket upgrades made after their upgrade handler returned. */
  private readonly corkAnchor: CorkAnchor;

  constructor(private readonly options: HttpServerOptions) {
    this.app = uws.App();
    this.corkAnchor = new CorkAnchor(options.logger);
    this.limits = {
      requestTimeoutMs: options.requestTimeoutSec * 1000,
      bodyIdleTimeoutMs: (options.bodyIdleTimeoutSec ?? 8) * 1000,
      bodyHighWaterMark: options.bodyHighWaterMark ?? 256 * 1024,
    };
  }

  /** A request for a route registered on `app` directly (a stream, a download): same guard, body and deadlines. */
  context(res: HttpResponse, req: HttpRequest, label: string, paramCount = 0): RequestContext {
    const ctx = new RequestContext(res, req, label, paramCount, this.limits, this.corkAnchor);
    ctx.onDeadline = (err) => this.reply(ctx, label, errorReply(err));
    return ctx;
  }

  /** Registers a route; `label` is the bounded metric label (never the raw URL). */
  route(method: Method, pattern: string, label: string, handler: Handler): this {
    const paramCount = (pattern.match(/\/:/g) ?? []).length;
    this.app[method](pattern, (res, req) => {
      const ctx = this.context(res, req, label, paramCount);
      inRequestScope(ctx.scope, () => this.run(ctx, label, handler));
    });
    return this;
  }

  /** Answers everything no route matched with a JSON 404. */
  fallback(): this {
    this.app.any('/*', (res, req) => {
      const ctx = this.context(res, req, 'unmatched');
      this.reply(ctx, 'unmatched', errorReply(new AppError('NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`)));
    });
    return this;
  }

  private run(ctx: RequestContext, label: string, handler: Handler): void {
    const refusal = ctx.malformedPath
      ? new AppError('INVALID_PARAMETER', 'the path is not valid percent-encoding')
      : ctx.framingError !== undefined
        ? new AppError('BAD_REQUEST', `the request's body framing is ambiguous: ${ctx.framingError}`)
        : this.options.gate?.(label);
    if (refusal) {
      this.reply(ctx, label, errorReply(refusal));
      return;
    }
    this.inflight.add(ctx);
    let result: Promise<Reply> | Reply;
    try {
      result = handler(ctx);
    } catch (err) {
      result = Promise.reject(err);
    }
    Promise.resolve(result)
      .then(
        (reply) => this.reply(ctx, label, reply),
        (err: unknown) => {
          const appErr = toAppError(err);
          // once the request was given up, its handler's failure is only the consequence
          if (appErr.code === 'INTERNAL' && !ctx.aborted) this.options.logger.error({ err, requestId: ctx.id, route: label }, 'request failed');
          this.reply(ctx, label, errorReply(appErr));
        },
      )
      .finally(() => {
        // a client that went away before its answer is counted too, as 499 CLIENT_ABORTED
        if (ctx.response.isAborted) {
          this.options.metrics.errors.inc({ code: 'CLIENT_ABORTED' });
          this.options.metrics.httpRequests.inc({ route: label, status: '499' });
        }
        this.inflight.delete(ctx);
        if (this.inflight.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
  }

  /** Answers a request of a route registered on `app` directly (see {@link context}) with an error. */
  answerError(ctx: RequestContext, label: string, err: AppError): void {
    this.reply(ctx, label, errorReply(err));
  }

  private reply(ctx: RequestContext, label: string, reply: Reply): void {
    if (ctx.answered) return;
    if (reply.errorCode !== undefined) this.options.metrics.errors.inc({ code: reply.errorCode });
    this.options.metrics.httpRequests.inc({ route: label, status: String(reply.status) });
    ctx.send(reply);
  }

  /** Starts the cork anchor (see {@link CorkAnchor}), then listens; resolves with the port. */
  async listen(host: string, port: number): Promise<number> {
    await this.corkAnchor.start();
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (socket) => {
        if (!socket) {
          reject(new Error(`cannot listen on ${host}:${port}`));
          return;
        }
        this.listenSocket = socket;
        this.listenPort = uws.us_socket_local_port(socket as never);
        resolve(this.listenPort);
      });
    });
  }

  /** Stops accepting connections; requests already in flight are left to finish. */
  stop(): void {
    if (this.listenSocket) {
      uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
    this.corkAnchor.stop();
  }

  /** The port listened on (0 before `listen`); differs from the one asked for when that was 0. */
  get port(): number {
    return this.listenPort;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Resolves when no request handler is running. */
  whenIdle(): Promise<void> {
    if (this.inflight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Gives up every request still running (shutdown after the drain window): their work stops
   * at its next step, and each answers with `reason` unless it had already got past the
   * point of no return (a note being stored gets its real answer).
   */
  abortInflight(reason: AppError): number {
    for (const ctx of this.inflight) ctx.end(reason);
    return this.inflight.size;
  }
}

/** The one mapping of AppError → HTTP answer. */
export function errorReply(err: AppError): Reply {
  const headers: Record<string, string> = {};
  if (err.retryAfterSec !== undefined) headers['Retry-After'] = String(Math.max(1, Math.ceil(err.retryAfterSec)));
  return { status: httpStatus(err.code), body: err.toBody(), headers, errorCode: err.code };
}

export function json(status: number, body: unknown, headers?: Record<string, string>): Reply {
  return headers ? { status, body, headers } : { status, body };
}
