import type { CorkAnchor } from './cork-anchor.js';
import { inRequestScope, type RequestScope } from './request-scope.js';
import type { HttpResponse, us_socket_context_t } from './uws.js';

/**
 * How the connection goes on after an answer: `keep-alive` lets uWS end the answer, read the
 * rest of the body and drop it, and serve the next request; `close` ends the connection.
 */
export type AfterAnswer = 'keep-alive' | 'close';

/**
 * How long a closing connection whose body had not ended is still read (and dropped) after
 * its answer. Closing a socket with unread bytes makes the kernel send a reset, which can
 * destroy the answer before the client read it; so the daemon reads on until the client,
 * told `Connection: close`, closes, or this passes (a lingering close, as nginx does).
 */
export const LINGER_MS = 2000;

type State =
  | 'open' // no answer yet
  | 'streaming' // a streamed answer (a download) is being written: its headers are out
  | 'lingering' // a whole answer is out; the client closes, or the daemon after LINGER_MS
  | 'ended' // the answer is complete and uWS owns the connection again
  | 'aborted' // the client went away before the answer was complete
  | 'closed'; // closed by the daemon after lingering, or a download cut short

const CRLF = Buffer.from('\r\n');

/**
 * The one object that touches a uWS `HttpResponse`. uWS throws on any access after the
 * response was aborted or ended — from inside a native callback, so as an uncaught exception
 * — and terminates the process if a handler returns without an abort handler. Here the abort
 * and data handlers are attached at once, every call checks the state first, and once the
 * client is gone or the answer is complete every call is a no-op.
 */
export class GuardedResponse {
  private state: State = 'open';
  private paused = false;
  private bodyEnded: boolean;
  private lingerTimer: NodeJS.Timeout | undefined;
  private chunkHandler: ((chunk: Buffer, last: boolean) => void) | undefined;
  private abortHandler: (() => void) | undefined;
  private streamHead: { status: string; headers: [string, string][] } | undefined;
  /** The peer's address, read while the response was certainly alive. */
  readonly remoteAddress: string;
  /** Body bytes that arrived after the answer (or after the request was given up) and were dropped. */
  discardedBytes = 0;

  private readonly corkAnchor: CorkAnchor | undefined;

  constructor(
    private readonly res: HttpResponse,
    private readonly scope: RequestScope,
    options: { body: boolean; corkAnchor?: CorkAnchor | undefined },
  ) {
    this.corkAnchor = options.corkAnchor;
    res.onAborted(() => inRequestScope(scope, () => this.onAborted()));
    // uWS drops body chunks that arrive while no data handler is attached: attach it now
    this.bodyEnded = !options.body;
    if (options.body) res.onData((ab, last) => inRequestScope(scope, () => this.onData(ab, last)));
    this.remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
  }

  /** No answer yet and the client still there: an answer may be given. */
  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** The client went away before its answer was complete. */
  get isAborted(): boolean {
    return this.state === 'aborted';
  }

  /** The request body's last byte has arrived (always true for requests without a body). */
  get bodyComplete(): boolean {
    return this.bodyEnded;
  }

  /** Receives the body while no answer was given; later chunks are dropped. Copies: uWS reuses its buffer. */
  onBody(handler: (chunk: Buffer, last: boolean) => void): void {
    this.chunkHandler = handler;
  }

  /** Called once if the client goes away before its answer is complete. */
  onAbort(handler: () => void): void {
    this.abortHandler = handler;
  }

  /** Stops reading the body (the client's TCP window closes). True if this call paused it. */
  pause(): boolean {
    if (this.state !== 'open' || this.paused) return false;
    this.paused = true;
    this.res.pause();
    return true;
  }

  /**
   * Re-arms uWS's own timeout of this connection (its resume sets it to 10 s), so uWS does not
   * close it within the next 8 s (see UWS_TIMEOUT_SWEEP_MS in request-body.ts). Nothing while
   * the daemon paused the body (uWS's timer is off then) or once the connection is not live.
   */
  holdTransport(): void {
    if (!this.live || this.paused) return;
    this.res.pause();
    this.res.resume();
  }

  /** Reads the body again. True if this call resumed it. */
  resume(): boolean {
    if (!this.live || !this.paused) return false;
    this.paused = false;
    this.res.resume();
    return true;
  }

  /**
   * Sends a whole answer, once; later calls, and calls after an abort, do nothing (false).
   * With `close` and a body still arriving, the answer is written as raw bytes through uWS's
   * header writer (`end` would let uWS close at once, onto unread bytes): uWS then still
   * counts the request as pending, so this object keeps reading and dropping the body and
   * closes the connection when the client has not closed it within {@link LINGER_MS}.
   */
  answer(status: string, headers: [string, string][], body: string | Buffer, after: AfterAnswer): boolean {
    if (this.state !== 'open') return false;
    const res = this.res;
    const linger = after === 'close' && !this.bodyEnded;
    this.state = linger ? 'lingering' : 'ended';
    res.cork(() => {
      // a paused socket neither reads nor writes: the answer would wait forever behind it
      if (this.paused) {
        this.paused = false;
        res.resume();
      }
      res.writeStatus(status);
      for (const [k, v] of headers) res.writeHeader(k, v);
      if (!linger) {
        res.end(body, after === 'close');
        return;
      }
      res.writeHeader('Connection', 'close');
      // "Content-Length: n\r\n\r\n<body>" + the "\r\n" writeHeader appends, counted in n: a valid answer
      const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
      res.writeHeader('Content-Length', Buffer.concat([Buffer.from(`${bytes.length + CRLF.length}\r\n\r\n`), bytes]));
    });
    if (linger) {
      // uWS's body timer is still armed from before the answer and would close 0-4 s after a
      // 408 (see UWS_TIMEOUT_SWEEP_MS), cutting the linger short: re-armed, it waits ≥ 8 s
      this.holdTransport();
      this.lingerTimer = setTimeout(() => inRequestScope(this.scope, () => this.closeLingering()), LINGER_MS);
      this.lingerTimer.unref();
    }
    return true;
  }

  /**
   * Hands the connection to a WebSocket; false when the client is already gone. Never inside
   * this response's own cork: after an upgrade made once the upgrade handler returned, uWS 20.30's
   * `res.cork` can close the new WebSocket at once (see CorkAnchor). The anchor holds the cork
   * instead; without one (not started, or reconnecting) the upgrade runs uncorked, which is as
   * safe, only slower and noisy (uWS prints a warning).
   */
  upgrade<T>(userData: T, key: string, protocol: string, extensions: string, context: us_socket_context_t): boolean {
    if (this.state !== 'open') return false;
    this.state = 'ended';
    const upgrade = (): void => this.res.upgrade(userData, key, protocol, extensions, context);
    if (!this.corkAnchor?.run(upgrade)) upgrade();
    return true;
  }

  /**
   * Prepares a streamed answer (see {@link tryEnd}): its status and headers go out with the
   * first bytes, so until then a whole answer (an error) may still be given instead.
   */
  startStream(status: string, headers: [string, string][]): boolean {
    if (this.state !== 'open') return false;
    this.streamHead = { status, headers };
    this.resume();
    return true;
  }

  /** Status and headers of a streamed answer are out: only {@link cut} can signal a failure now. */
  get headersSent(): boolean {
    return this.state !== 'open';
  }

  /**
   * Writes what the socket takes of `chunk`, part of a `total`-byte streamed answer: `[ok, done]`
   * as uWS's tryEnd (ok false: wait for {@link onWritable}). `[false, true]` once the stream is over.
   */
  tryEnd(chunk: Buffer, total: number): [boolean, boolean] {
    const head = this.state === 'open' ? this.streamHead : undefined;
    if (head === undefined && this.state !== 'streaming') return [false, true];
    this.state = 'streaming';
    this.streamHead = undefined;
    let result: [boolean, boolean] = [false, false];
    this.res.cork(() => {
      if (head) {
        this.res.writeStatus(head.status);
        for (const [k, v] of head.headers) this.res.writeHeader(k, v);
      }
      result = this.res.tryEnd(chunk, total);
    });
    if (result[1]) this.state = 'ended';
    return result;
  }

  /** Bytes of the streamed answer's body written so far (uWS's write offset). */
  get writeOffset(): number {
    return this.state === 'streaming' ? this.res.getWriteOffset() : 0;
  }

  /** Called when the socket can take more of a streamed answer (write with {@link tryEnd}); returns as uWS's onWritable. */
  onWritable(handler: (offset: number) => boolean): void {
    if (this.state !== 'streaming') return;
    this.res.onWritable((offset) => inRequestScope(this.scope, () => (this.state === 'streaming' ? handler(offset) : true)));
  }

  /** Closes the connection mid-answer (a download that cannot go on): the only honest signal once headers are out. */
  cut(): void {
    if (this.state !== 'open' && this.state !== 'streaming') return;
    this.state = 'closed';
    this.res.close();
  }

  private get live(): boolean {
    return this.state === 'open' || this.state === 'streaming' || this.state === 'lingering';
  }

  private onData(ab: ArrayBuffer, last: boolean): void {
    if (last) this.bodyEnded = true;
    if (this.state === 'open' && this.chunkHandler) {
      this.chunkHandler(Buffer.from(new Uint8Array(ab)), last);
      return;
    }
    this.discardedBytes += ab.byteLength;
    // Not closed at the body's end: bytes the client still has in flight (a chunked body's last
    // CRLF, a request it pipelined) would meet a closed socket, whose reset destroys the answer
    // before the client read it. Told `Connection: close`, the client closes once it has the
    // answer; the linger timer closes a client that does not.
  }

  private onAborted(): void {
    clearTimeout(this.lingerTimer);
    const before = this.state;
    if (before === 'open' || before === 'streaming') {
      this.state = 'aborted';
      this.abortHandler?.();
    } else if (before === 'lingering') this.state = 'closed';
  }

  private closeLingering(): void {
    if (this.state !== 'lingering') return;
    clearTimeout(this.lingerTimer);
    this.state = 'closed';
    this.res.close(); // runs onAborted at once; the state says there is nothing left to do
  }
}
