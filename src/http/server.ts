import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { AppError, statusLine, toAppError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import uws, { type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket } from './uws.js';

/** What a handler answers; bodies that are not Buffers or strings are sent as JSON. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  contentType?: string;
}

/**
 * One HTTP request, with everything copied out of uWS's stack-allocated request object up
 * front, so handlers may await freely.
 */
export class RequestContext {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Record<string, string> = {};
  readonly params: string[] = [];
  readonly remoteAddress: string;
  /** A path parameter was not valid percent-encoding. */
  malformedPath = false;
  private readonly controller = new AbortController();
  private done = false;
  private bodyStarted = false;
  // Body bytes that arrive before a handler asks for the body (it may await auth or a rate
  // limiter first): kept, and the request paused once EARLY_BODY_BYTES are waiting.
  private early: { chunk: Buffer; last: boolean }[] = [];
  private earlyBytes = 0;
  private earlyPaused = false;
  private consumer: ((chunk: Buffer, last: boolean) => boolean) | undefined;
  private consumerStopped = false;

  constructor(
    readonly res: HttpResponse,
    req: HttpRequest,
    paramCount: number,
  ) {
    this.method = req.getMethod().toUpperCase();
    this.path = req.getUrl();
    this.query = new URLSearchParams(req.getQuery() ?? '');
    req.forEach((k, v) => {
      this.headers[k] = v;
    });
    for (let i = 0; i < paramCount; i++) {
      const raw = req.getParameter(i) ?? '';
      try {
        this.params.push(decodeURIComponent(raw));
      } catch {
        // A malformed %-escape: answered 400 by the server, never thrown inside uWS's callback.
        this.params.push(raw);
        this.malformedPath = true;
      }
    }
    this.remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
    const given = this.headers['x-request-id'];
    this.id = given && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
    res.onAborted(() => {
      this.done = true;
      this.controller.abort(new AppError('CLIENT_ABORTED', 'the client closed the connection'));
    });
    // uWS drops body chunks that arrive while no onData handler is attached, so attach it now.
    if (BODY_METHODS.has(this.method)) res.onData((ab, last) => this.onData(ab, last));
  }

  private onData(ab: ArrayBuffer, last: boolean): void {
    // uWS detaches the ArrayBuffer after the callback: copy it.
    const chunk = Buffer.from(new Uint8Array(ab));
    if (this.consumer) {
      if (!this.consumerStopped && !this.consumer(chunk, last)) this.consumerStopped = true;
      return;
    }
    this.early.push({ chunk, last });
    this.earlyBytes += chunk.length;
    if (!last && !this.earlyPaused && this.earlyBytes >= EARLY_BODY_BYTES) {
      this.earlyPaused = true;
      this.res.pause();
    }
  }

  /** Aborted when the client goes away before the answer. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  get answered(): boolean {
    return this.done;
  }

  /** The whole body, refused with PAYLOAD_TOO_LARGE past `maxBytes` (checked against Content-Length first). */
  readBody(maxBytes: number): Promise<Buffer> {
    const declared = this.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBytes) {
      return Promise.reject(new AppError('PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds ${maxBytes}`));
    }
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let size = 0;
      this.onBody(
        (chunk, last) => {
          size += chunk.byteLength;
          if (size > maxBytes) {
            reject(new AppError('PAYLOAD_TOO_LARGE', `body exceeds ${maxBytes} bytes`));
            return false;
          }
          parts.push(chunk);
          if (last) resolve(Buffer.concat(parts, size));
          return true;
        },
        reject,
      );
    });
  }

  /** The body as JSON, with INVALID_JSON for anything unparsable. */
  async readJson(maxBytes: number): Promise<unknown> {
    const body = await this.readBody(maxBytes);
    if (body.length === 0) throw new AppError('INVALID_JSON', 'a JSON body is required');
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new AppError('INVALID_JSON', `body is not valid JSON: ${(err as Error).message}`);
    }
  }

  /**
   * The body as a Readable with real backpressure: when the consumer falls behind the
   * highWaterMark, the uWS response is paused, so the client's TCP window closes.
   */
  bodyStream(highWaterMark = 256 * 1024): Readable {
    let paused = false;
    const stream = new Readable({
      highWaterMark,
      read: () => {
        if (paused && !this.done) {
          paused = false;
          this.res.resume();
        }
      },
    });
    this.onBody(
      (chunk, last) => {
        const more = chunk.length > 0 ? stream.push(chunk) : true;
        if (last) stream.push(null);
        else if (!more && !paused) {
          paused = true;
          this.res.pause();
        }
        return true;
      },
      (err) => stream.destroy(err),
    );
    return stream;
  }

  private onBody(onChunk: (chunk: Buffer, last: boolean) => boolean, onError: (err: Error) => void): void {
    if (this.bodyStarted) throw new Error('the request body can be read only once');
    this.bodyStarted = true;
    this.signal.addEventListener('abort', () => onError(this.signal.reason as Error), { once: true });
    if (!BODY_METHODS.has(this.method)) {
      queueMicrotask(() => onChunk(Buffer.alloc(0), true));
      return;
    }
    this.consumer = onChunk;
    // Resume first: no chunk is delivered while the replay below runs synchronously, and a
    // consumer that falls behind during the replay pauses the request again itself.
    if (this.earlyPaused && !this.done) {
      this.earlyPaused = false;
      this.res.resume();
    }
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    for (const { chunk, last } of early) {
      if (this.consumerStopped) break;
      if (!onChunk(chunk, last)) this.consumerStopped = true;
    }
  }

  /** Writes the answer once; later calls (or calls after an abort) are ignored. */
  send(reply: Reply): void {
    if (this.done) return;
    this.done = true;
    let body: string | Buffer;
    let contentType = reply.contentType;
    if (reply.body === undefined) body = '';
    else if (Buffer.isBuffer(reply.body) || typeof reply.body === 'string') body = reply.body;
    else {
      body = JSON.stringify(reply.body);
      contentType ??= 'application/json';
    }
    this.res.cork(() => {
      this.res.writeStatus(statusLine(reply.status));
      if (contentType) this.res.writeHeader('Content-Type', contentType);
      this.res.writeHeader('X-Request-Id', this.id);
      for (const [k, v] of Object.entries(reply.headers ?? {})) this.res.writeHeader(k, v);
      this.res.end(body);
    });
  }
}

export type Handler = (ctx: RequestContext) => Promise<Reply> | Reply;

/** Methods whose requests may carry a body. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Body bytes held for a handler that has not asked for the body yet, before the request is paused. */
const EARLY_BODY_BYTES = 256 * 1024;

export interface HttpServerOptions {
  logger: Logger;
  metrics: Metrics;
  /** Seconds a request may take before it is answered 408 and closed. */
  requestTimeoutSec: number;
  /** Checked before every route handler (by route label); an error answers the request instead. */
  gate?: (route: string) => AppError | undefined;
}

type Method = 'get' | 'post' | 'put' | 'del' | 'patch' | 'any';

/** The uWS app plus routing with one error mapping for every route. */
export class HttpServer {
  readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | undefined;
  private readonly inflight = new Set<RequestContext>();

  constructor(private readonly options: HttpServerOptions) {
    this.app = uws.App();
  }

  /** Registers a route; `label` is the bounded metric label (never the raw URL). */
  route(method: Method, pattern: string, label: string, handler: Handler): this {
    const paramCount = (pattern.match(/\/:/g) ?? []).length;
    this.app[method](pattern, (res, req) => {
      const ctx = new RequestContext(res, req, paramCount);
      this.run(ctx, label, handler);
    });
    return this;
  }

  /** Answers everything no route matched with a JSON 404. */
  fallback(): this {
    this.app.any('/*', (res, req) => {
      const ctx = new RequestContext(res, req, 0);
      this.reply(ctx, 'unmatched', errorReply(new AppError('NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`)));
    });
    return this;
  }

  private run(ctx: RequestContext, label: string, handler: Handler): void {
    const refusal = ctx.malformedPath ? new AppError('INVALID_PARAMETER', 'the path is not valid percent-encoding') : this.options.gate?.(label);
    if (refusal) {
      this.reply(ctx, label, errorReply(refusal));
      return;
    }
    this.inflight.add(ctx);
    const timer = setTimeout(() => {
      if (!ctx.answered) {
        this.reply(ctx, label, errorReply(new AppError('REQUEST_TIMEOUT', `request not completed within ${this.options.requestTimeoutSec}s`)));
      }
    }, this.options.requestTimeoutSec * 1000);
    timer.unref();
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
          if (appErr.code === 'INTERNAL') this.options.logger.error({ err, requestId: ctx.id, route: label }, 'request failed');
          this.reply(ctx, label, errorReply(appErr));
        },
      )
      .finally(() => {
        clearTimeout(timer);
        this.inflight.delete(ctx);
      });
  }

  private reply(ctx: RequestContext, label: string, reply: Reply): void {
    if (ctx.answered) return;
    const code = (reply.body as { error?: { code?: string } } | undefined)?.error?.code;
    if (code) this.options.metrics.errors.inc({ code });
    this.options.metrics.httpRequests.inc({ route: label, status: String(reply.status) });
    ctx.send(reply);
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (socket) => {
        if (!socket) {
          reject(new Error(`cannot listen on ${host}:${port}`));
          return;
        }
        this.listenSocket = socket;
        resolve(uws.us_socket_local_port(socket as never));
      });
    });
  }

  /** Stops accepting connections; requests already in flight are left to finish. */
  stopListening(): void {
    if (this.listenSocket) {
      uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
  }

  get inflightCount(): number {
    return this.inflight.size;
  }
}

/** The one mapping of AppError → HTTP answer. */
export function errorReply(err: AppError): Reply {
  const headers: Record<string, string> = {};
  if (err.retryAfterSec !== undefined) headers['Retry-After'] = String(Math.max(1, Math.ceil(err.retryAfterSec)));
  return { status: err.status, body: err.toBody(), headers };
}

export function json(status: number, body: unknown, headers?: Record<string, string>): Reply {
  return headers ? { status, body, headers } : { status, body };
}
