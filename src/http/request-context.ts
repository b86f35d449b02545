import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { AppError, type ErrorCode } from '../errors.js';
import { statusLine } from './error-status.js';
import type { CorkAnchor } from './cork-anchor.js';
import { type AfterAnswer, GuardedResponse } from './guarded-response.js';
import { RequestBody } from './request-body.js';
import { inRequestScope, type RequestScope } from './request-scope.js';
import type { HttpRequest, HttpResponse } from './uws.js';

/** What a handler answers; bodies that are not Buffers or strings are sent as JSON. */
export interface Reply {
  status: number;
  body?: unknown;
  /** The error this answer reports (counted in `errors_total`); set by `errorReply`. */
  errorCode?: ErrorCode;
  headers?: Record<string, string>;
  contentType?: string;
}

/** Deadlines and buffering of a request (server-wide settings). */
export interface RequestLimits {
  /** The whole request (headers and body) must have arrived within this, or it is answered 408. */
  requestTimeoutMs: number;
  /** The body's idle deadline (see {@link RequestBody}); 408 past it. */
  bodyIdleTimeoutMs: number;
  /** Body read-ahead before the socket is paused. */
  bodyHighWaterMark: number;
}

/** Methods whose requests may carry a body. */
export const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * What is left of a body after an early answer that is read and dropped, keeping the
 * connection; past it (or when the length is unknown) the connection is closed instead.
 */
export const DISCARD_MAX_BYTES = 1024 * 1024;

/**
 * One HTTP request. Everything is copied out of uWS's stack-allocated request object up front,
 * so handlers may await freely; the response is reached only through its {@link GuardedResponse},
 * and the body is a {@link RequestBody} that exists from the start.
 *
 * A request ends once: answered, given up by the client (CLIENT_ABORTED) or by a deadline
 * (REQUEST_TIMEOUT, answered 408), or stopped by the shutdown (DRAINING). The last three abort
 * `signal` and destroy the body with that reason, so work still running for it stops and
 * releases what it holds, and bytes arriving later are never read.
 */
export class RequestContext {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Record<string, string> = {};
  readonly params: string[] = [];
  readonly scope: RequestScope;
  /** A path parameter was not valid percent-encoding. */
  malformedPath = false;
  /**
   * Why the body's framing is ambiguous (RFC 9112 §6): Content-Length given twice with different
   * values or not a number, a Transfer-Encoding other than one `chunked`, or both headers. uWS's
   * parser takes the first Content-Length and reads `gzip, chunked` as chunked, so a proxy that
   * read them otherwise would see another request boundary; the server refuses such a request
   * (400) and closes the connection. Undefined when the framing is clear.
   */
  framingError: string | undefined;
  readonly response: GuardedResponse;
  private readonly controller = new AbortController();
  private readonly body: RequestBody | undefined;
  private bodyTaken = false;
  private requestTimer: NodeJS.Timeout | undefined;
  /** Told when a deadline gave the request up (the server answers it 408). */
  onDeadline: ((err: AppError) => void) | undefined;

  constructor(res: HttpResponse, req: HttpRequest, route: string, paramCount: number, limits: RequestLimits, corkAnchor?: CorkAnchor) {
    this.method = req.getMethod().toUpperCase();
    this.path = req.getUrl();
    this.query = new URLSearchParams(req.getQuery() ?? '');
    req.forEach((k, v) => {
      if (k === 'content-length' || k === 'transfer-encoding') this.checkFraming(k, v);
      this.headers[k] = v;
    });
    if (this.framingError === undefined && this.headers['content-length'] !== undefined && this.headers['transfer-encoding'] !== undefined) {
      this.framingError = 'both Content-Length and Transfer-Encoding';
    }
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
    const given = this.headers['x-request-id'];
    this.id = given && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
    this.scope = { route, requestId: this.id };
    const takesBody = BODY_METHODS.has(this.method);
    this.response = new GuardedResponse(res, this.scope, { body: takesBody, corkAnchor });
    this.response.onAbort(() => this.end(new AppError('CLIENT_ABORTED', 'the client closed the connection')));
    if (!takesBody) return;
    // created in the request's scope, so its timers name the request if they ever throw
    this.body = inRequestScope(this.scope, () => {
      this.requestTimer = setTimeout(() => this.expire(`request not received within ${limits.requestTimeoutMs / 1000}s`), limits.requestTimeoutMs);
      this.requestTimer.unref();
      return new RequestBody(this.response, {
        highWaterMark: limits.bodyHighWaterMark,
        idleMs: limits.bodyIdleTimeoutMs,
        onIdle: () => this.expire(`no request body received for ${limits.bodyIdleTimeoutMs / 1000}s`),
        onComplete: () => clearTimeout(this.requestTimer),
      });
    });
  }

  get remoteAddress(): string {
    return this.response.remoteAddress;
  }

  /** Aborted when the request is given up before its answer: client gone, deadline passed, shutdown. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  /** No answer can be given any more (answered, or the client is gone). */
  get answered(): boolean {
    return !this.response.isOpen;
  }

  private checkFraming(name: 'content-length' | 'transfer-encoding', value: string): void {
    if (this.framingError !== undefined) return;
    const v = value.trim().toLowerCase();
    if (name === 'content-length') {
      const before = this.headers['content-length'];
      if (!/^\d+$/.test(v)) this.framingError = 'Content-Length is not a number';
      else if (before !== undefined && before.trim() !== v) this.framingError = 'conflicting Content-Length headers';
      return;
    }
    if (v !== 'chunked' || this.headers['transfer-encoding'] !== undefined) this.framingError = 'a Transfer-Encoding other than chunked';
  }

  /** The body as it was declared: its Content-Length, undefined when chunked or absent. */
  get declaredLength(): number | undefined {
    const v = this.headers['content-length'];
    return v !== undefined && /^\d{1,15}$/.test(v.trim()) ? Number(v) : undefined;
  }

  /**
   * The body as a Readable with real backpressure: when the reader falls behind, the socket
   * is paused. Readable once; bodiless methods get an empty stream.
   */
  bodyStream(): Readable {
    if (this.bodyTaken) throw new Error('the request body can be read only once');
    this.bodyTaken = true;
    return this.body ?? Readable.from([]);
  }

  /** The whole body, refused with PAYLOAD_TOO_LARGE past `maxBytes` (checked against Content-Length first). */
  async readBody(maxBytes: number): Promise<Buffer> {
    const declared = this.declaredLength;
    if (declared !== undefined && declared > maxBytes) {
      throw new AppError('PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds ${maxBytes}`, { details: { limit: maxBytes } });
    }
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.bodyStream()) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) throw new AppError('PAYLOAD_TOO_LARGE', `body exceeds ${maxBytes} bytes`, { details: { limit: maxBytes } });
      parts.push(chunk as Buffer);
    }
    return Buffer.concat(parts, size);
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
   * Gives the request up (client gone, deadline, shutdown): `signal` aborts with `reason`, the
   * body is destroyed with it, and no later byte is read. The first reason wins.
   */
  end(reason: AppError): void {
    if (this.aborted) return;
    clearTimeout(this.requestTimer);
    this.controller.abort(reason);
    this.body?.destroy(reason);
  }

  /** Writes the answer once; later calls (or calls after an abort) are ignored. */
  send(reply: Reply): void {
    if (this.answered) return;
    clearTimeout(this.requestTimer);
    let body: string | Buffer;
    let contentType = reply.contentType;
    if (reply.body === undefined) body = '';
    else if (Buffer.isBuffer(reply.body) || typeof reply.body === 'string') body = reply.body;
    else {
      body = JSON.stringify(reply.body);
      contentType ??= 'application/json';
    }
    const headers: [string, string][] = [];
    if (contentType) headers.push(['Content-Type', contentType]);
    headers.push(['X-Request-Id', this.id]);
    for (const [k, v] of Object.entries(reply.headers ?? {})) headers.push([k, v]);
    this.response.answer(statusLine(reply.status), headers, body, this.afterAnswer(reply.status));
    // the handler is done: nothing reads what may still be buffered
    if (this.body && !this.body.complete) this.body.destroy();
  }

  /**
   * Keep the connection when nothing of the body is left, or when what is left is declared
   * and small enough to read and drop; close it when the request was refused for its size or
   * given up, when the length is unknown (chunked) or too large, or when the client asked to.
   */
  private afterAnswer(status: number): AfterAnswer {
    if (this.response.bodyComplete) return 'keep-alive';
    if (status === 408 || status === 413 || this.aborted || this.framingError !== undefined) return 'close';
    if (this.headers['connection']?.toLowerCase().includes('close')) return 'close';
    const declared = this.declaredLength;
    if (declared === undefined || this.headers['transfer-encoding'] !== undefined) return 'close';
    return declared - (this.body?.bytesReceived ?? 0) <= DISCARD_MAX_BYTES ? 'keep-alive' : 'close';
  }

  private expire(message: string): void {
    if (this.aborted || this.response.bodyComplete) return;
    const err = new AppError('REQUEST_TIMEOUT', message);
    this.end(err);
    this.onDeadline?.(err);
  }
}
