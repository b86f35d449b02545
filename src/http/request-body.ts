import { Readable } from 'node:stream';
import type { GuardedResponse } from './guarded-response.js';

/**
 * uWS closes a request, unanswered, when its body brings less than 16 KiB per second over its
 * 10 s window (compiled into uWebSockets, HttpContext.h: HTTP_IDLE_TIMEOUT_S and
 * HTTP_RECEIVE_THROUGHPUT_BYTES). Its timer restarts each time this many bytes arrived since
 * the last restart, on resume, and stops while the request is paused or once the body ended.
 */
export const UWS_BODY_WINDOW_BYTES = 16 * 1024 * 10;

/**
 * uSockets checks socket timeouts once every 4 s (LIBUS_TIMEOUT_GRANULARITY): uWS's "10 s" is
 * three of those sweeps, so it closes 8 to 12 s after it armed the timer, not at 10 s. An idle
 * deadline of 8 s therefore raced uWS's close whenever the event loop ran its timer late, and
 * one of 9 s lost to it about one time in four (the connection closed without an answer). So
 * while a body is idle the daemon re-arms uWS's timer every this many ms: uWS can then close no
 * sooner than 8 s after the last re-arm, i.e. ≥ 3 s after any deadline of up to 9 s.
 */
export const UWS_TIMEOUT_SWEEP_MS = 4000;

/** Options of {@link RequestBody}. */
export interface RequestBodyOptions {
  /** Bytes held before the socket is paused (read-ahead, also while no handler reads yet). */
  highWaterMark: number;
  /**
   * The body's idle deadline: called when it went this long without a uWS window's worth of
   * bytes (or its end), so the request is answered before uWS closes it. Not running while the
   * daemon itself paused the body.
   */
  idleMs: number;
  onIdle: () => void;
  /** The last byte arrived (before anyone read it). */
  onComplete?: () => void;
}

/**
 * The body of one request as a Readable, created with the request — before any handler asks
 * for it, since uWS delivers body bytes as they come — with its error handling in place: it
 * may be destroyed with an error (client gone, deadline passed) whoever is, or is not yet,
 * reading it. The error is kept (`errored`) and given to every reader; it is never an
 * uncaught 'error' event. Backpressure: past the highWaterMark the socket is paused, so the
 * client's TCP window closes.
 */
export class RequestBody extends Readable {
  private received = 0;
  private sinceWindow = 0;
  private ended = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** When the body last made progress (performance.now()): the idle deadline counts from here. */
  private idleSince = 0;

  constructor(
    private readonly response: GuardedResponse,
    private readonly options: RequestBodyOptions,
  ) {
    super({ highWaterMark: options.highWaterMark });
    // Readers get the error from `errored`, for await and pipeline(); this listener only keeps
    // a body destroyed before anyone listens from becoming an uncaught exception.
    this.on('error', () => undefined);
    response.onBody((chunk, last) => this.accept(chunk, last));
    this.armIdle();
  }

  /** Body bytes received so far. */
  get bytesReceived(): number {
    return this.received;
  }

  /** The last byte arrived. */
  get complete(): boolean {
    return this.ended;
  }

  override _read(): void {
    if (this.response.resume()) this.armIdle();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.stopIdle();
    callback(err);
  }

  private accept(chunk: Buffer, last: boolean): void {
    if (this.destroyed) return;
    this.received += chunk.length;
    if (last) {
      this.ended = true;
      this.stopIdle();
      this.options.onComplete?.();
    } else {
      this.sinceWindow += chunk.length;
      if (this.sinceWindow >= UWS_BODY_WINDOW_BYTES) {
        this.sinceWindow = 0;
        this.armIdle();
      }
    }
    const more = chunk.length > 0 ? this.push(chunk) : true;
    if (last) this.push(null);
    else if (!more && this.response.pause()) this.stopIdle();
  }

  private armIdle(): void {
    this.stopIdle();
    if (this.ended || this.destroyed) return;
    this.idleSince = performance.now();
    this.waitIdle(this.options.idleMs);
  }

  /** The next step towards the deadline: at most one uWS sweep interval, so uWS's timer is re-armed before it can fire. */
  private waitIdle(leftMs: number): void {
    this.idleTimer = setTimeout(() => this.idleStep(), Math.min(leftMs, UWS_TIMEOUT_SWEEP_MS));
    this.idleTimer.unref();
  }

  private idleStep(): void {
    this.idleTimer = undefined;
    const left = this.options.idleMs - (performance.now() - this.idleSince);
    if (left < 1) {
      this.options.onIdle();
      return;
    }
    this.response.holdTransport();
    this.waitIdle(left);
  }

  private stopIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
