import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { AppError, toAppError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { type FsObjectStore, verifyPresigned } from '../storage/fs-store.js';
import { errorReply, type HttpServer, type Reply, type RequestContext } from './server.js';

export interface ObjectRoutesOptions {
  server: HttpServer;
  store: FsObjectStore;
  secret: string;
  /** Refuses requests while the daemon cannot serve them (starting, draining); undefined admits. */
  admit?: () => AppError | undefined;
  metrics?: Metrics;
  logger?: Logger;
}

const ROUTE_LABEL = 'objects';

/**
 * `GET /v1/objects/<key>?expires=…&signature=…`: what the fs store's presigned URLs point at,
 * so the embedded default hands out working links like S3 does. The signature covers the key
 * and the expiry. The body is streamed from disk with the socket's backpressure (one read
 * buffer in memory per download, however large the recording), and `Range: bytes=a-b` is
 * answered with 206, as audio players seek with it.
 *
 * Registered on the uWS app itself rather than through `HttpServer.route`, whose one-shot
 * `Reply` cannot carry a stream; admission, error mapping and the request metric are the same.
 */
export function registerObjectRoutes(o: ObjectRoutesOptions): void {
  o.server.app.get('/v1/objects/*', (res, req) => {
    const ctx = o.server.context(res, req, ROUTE_LABEL);
    const count = (status: number, code?: string): void => {
      o.metrics?.httpRequests.inc({ route: ROUTE_LABEL, status: String(status) });
      if (code !== undefined) o.metrics?.errors.inc({ code });
    };
    const fail = (err: unknown): void => {
      const appErr = toAppError(err);
      if (appErr.code === 'INTERNAL' || appErr.code === 'STORAGE_ERROR') o.logger?.error({ err, requestId: ctx.id, route: ROUTE_LABEL }, 'request failed');
      answer(ctx, errorReply(appErr), count);
    };
    const refusal = o.admit?.();
    if (refusal) return fail(refusal);
    serveObject(ctx, o, count).catch(fail);
  });
}

/** Sends a whole (small) answer once, unless the client is gone. */
function answer(ctx: RequestContext, reply: Reply, count: (status: number, code?: string) => void): void {
  if (ctx.answered) return;
  count(reply.status, reply.errorCode);
  ctx.send(reply);
}

async function serveObject(ctx: RequestContext, o: ObjectRoutesOptions, count: (status: number, code?: string) => void): Promise<void> {
  let key: string;
  try {
    key = ctx.path
      .slice('/v1/objects/'.length)
      .split('/')
      .map((s) => decodeURIComponent(s))
      .join('/');
  } catch {
    throw new AppError('INVALID_SIGNATURE', 'the link is invalid or has expired');
  }
  const expires = ctx.query.get('expires') ?? '';
  const signature = ctx.query.get('signature') ?? '';
  if (!verifyPresigned(o.secret, key, expires, signature)) throw new AppError('INVALID_SIGNATURE', 'the link is invalid or has expired');
  const opened = await o.store.openRead(key);
  if (!opened) throw new AppError('NOT_FOUND', 'no such object');
  const { size, contentType } = opened;
  const range = parseRange(ctx.headers['range'], size);
  if (range === 'unsatisfiable') {
    opened.stream.destroy();
    // 416 has no code of its own in errors.ts; the status and Content-Range are what clients read
    const err = new AppError('INVALID_PARAMETER', `range not satisfiable: ${ctx.headers['range']}`);
    answer(ctx, { status: 416, body: err.toBody(), errorCode: err.code, headers: { 'Content-Range': `bytes */${size}`, 'Accept-Ranges': 'bytes' } }, count);
    return;
  }
  const headers: [string, string][] = [
    ['Content-Type', contentType],
    ['Accept-Ranges', 'bytes'],
    ['X-Request-Id', ctx.id],
  ];
  let stream: Readable = opened.stream;
  let status = 200;
  let length = size;
  if (range) {
    // the store's stream reads the whole file: reopen that same file for just the range
    opened.stream.destroy();
    stream = createReadStream(opened.stream.path, { start: range.start, end: range.end });
    status = 206;
    length = range.end - range.start + 1;
    headers.push(['Content-Range', `bytes ${range.start}-${range.end}/${size}`]);
  }
  count(status);
  await streamBody(ctx, stream, status === 206 ? '206 Partial Content' : '200 OK', headers, length, o.logger);
}

/**
 * Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against the object size.
 * Null means "serve the whole object" (no header, a syntax we ignore, or several ranges).
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  const a = m[1] === '' ? undefined : Number(m[1]);
  const b = m[2] === '' ? undefined : Number(m[2]);
  if ((a !== undefined && !Number.isSafeInteger(a)) || (b !== undefined && !Number.isSafeInteger(b))) return null;
  if (a === undefined) {
    // suffix: the last b bytes
    if (b === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - b!), end: size - 1 };
  }
  if (b !== undefined && b < a) return null;
  if (a >= size) return 'unsatisfiable';
  return { start: a, end: Math.min(b ?? size - 1, size - 1) };
}

/**
 * Writes status, headers and `length` bytes of `stream` with uWS backpressure: `tryEnd` sends
 * what the socket takes; when it is full the file stream pauses until `onWritable`, which
 * resends the unsent tail of the same chunk. Resolves when the body is sent, the client is
 * gone, or the response had to be cut.
 */
function streamBody(ctx: RequestContext, stream: Readable, status: string, headers: [string, string][], length: number, logger: Logger | undefined): Promise<void> {
  const res = ctx.response;
  return new Promise<void>((resolve) => {
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      stream.destroy();
      resolve();
    };
    // The client went away: the guard makes every later write a no-op; stop reading the file.
    ctx.signal.addEventListener('abort', finish, { once: true });
    if (!res.startStream(status, headers)) return finish();
    if (length === 0) {
      res.tryEnd(Buffer.alloc(0), 0);
      return finish();
    }
    stream.on('data', (chunk: Buffer) => {
      if (finished) return;
      const offsetBefore = res.writeOffset;
      const [ok, done] = res.tryEnd(chunk, length);
      if (done) return finish();
      if (ok) return;
      stream.pause();
      res.onWritable((offset) => {
        if (finished) return true;
        const [retryOk, retryDone] = res.tryEnd(chunk.subarray(offset - offsetBefore), length);
        if (retryDone) finish();
        else if (retryOk) stream.resume();
        return retryOk;
      });
    });
    const cut = (err: Error | undefined): void => {
      if (finished) return;
      logger?.error({ err, requestId: ctx.id }, 'object download cut short');
      if (res.headersSent) {
        // headers (and a Content-Length) are out: closing is the only honest signal left
        finished = true;
        stream.destroy();
        res.cut();
        resolve();
        return;
      }
      finish();
      const appErr = new AppError((err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' ? 'NOT_FOUND' : 'STORAGE_ERROR', 'the object could not be read');
      ctx.send(errorReply(appErr));
    };
    stream.on('error', (err) => cut(err));
    // the file ended before `length` bytes: it changed under us
    stream.on('end', () => cut(undefined));
  });
}
