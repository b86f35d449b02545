import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import uws, { type HttpResponse, type TemplatedApp, type us_listen_socket } from './uws.js';

/** How long after losing its connection the anchor connects again. */
const RECONNECT_MS = 100;

/**
 * A request of the daemon to itself, held unanswered on a private listener (127.0.0.1, a port
 * of the kernel's choice), whose only use is to hold the uWS loop's cork while a WebSocket
 * upgrade runs after its upgrade handler returned (see {@link run}).
 *
 * Why: uWS before upstream fe7c01a (2026-07; our pinned 20.30 build is of uWebSockets 7999d09,
 * 2023-05) checks, at the end of `res.cork(cb)`, whether `cb` upgraded the socket only by its
 * address. The upgrade reallocs the socket to the smaller WebSocket size, which glibc does in
 * place, so after every such upgrade `cork` reads the HTTP state word at its old place (now a
 * freed heap tail) and, if it reads "connection close, nothing pending", shuts the new
 * WebSocket down (1006 at the client). Whether it does depends on who reused those bytes
 * during the open handler. Run inside another socket's cork instead, the upgrading socket is
 * not the corked one: `res.cork` and `res.upgrade` skip the check (and write directly), and the
 * check at the end runs on the anchor, a real HTTP response that stays pending, so it never
 * closes anything. uWS counts the call as corked, so it prints no warning.
 */
export class CorkAnchor {
  private readonly app: TemplatedApp;
  private readonly secret = randomBytes(16).toString('hex');
  private listenSocket: us_listen_socket | undefined;
  private port = 0;
  private client: Socket | undefined;
  private held: HttpResponse | undefined;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heldWaiters: ((err?: Error) => void)[] = [];

  constructor(private readonly logger: Logger) {
    this.app = uws.App();
    this.app.any('/*', (res, req) => {
      if (this.held || this.stopped || req.getHeader('x-cork-anchor') !== this.secret) {
        res.close();
        return;
      }
      res.onAborted(() => this.lost(res));
      this.held = res;
      for (const wake of this.heldWaiters.splice(0)) wake();
    });
  }

  /** Listens privately and connects to itself; resolves once the anchor request is held. */
  async start(): Promise<void> {
    this.stopped = false;
    this.port = await new Promise<number>((resolve, reject) => {
      this.app.listen('127.0.0.1', 0, (socket) => {
        if (!socket) {
          reject(new Error('the cork anchor cannot listen on 127.0.0.1'));
          return;
        }
        this.listenSocket = socket;
        resolve(uws.us_socket_local_port(socket as never));
      });
    });
    const held = new Promise<void>((resolve, reject) => this.heldWaiters.push((err) => (err ? reject(err) : resolve())));
    this.connect();
    await held;
  }

  /**
   * Runs `fn` while the anchor holds the loop's cork; false (and `fn` not run) while no anchor
   * request is held (before start, after stop, for a moment after its connection was lost).
   */
  run(fn: () => void): boolean {
    const held = this.held;
    if (!held) return false;
    held.cork(fn);
    return true;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.held = undefined;
    this.client?.destroy();
    this.client = undefined;
    if (this.listenSocket) {
      uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
    for (const wake of this.heldWaiters.splice(0)) wake(new Error('the cork anchor was stopped'));
  }

  private connect(): void {
    const client = connect(this.port, '127.0.0.1', () => {
      client.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Cork-Anchor: ${this.secret}\r\n\r\n`);
    });
    client.unref();
    client.on('error', (err) => {
      this.logger.warn({ err }, 'cork anchor connection failed');
      for (const wake of this.heldWaiters.splice(0)) wake(err); // a start still waiting fails
    });
    client.on('close', () => {
      if (this.client === client) this.client = undefined;
      if (!this.stopped && !this.held) this.scheduleReconnect();
    });
    this.client = client;
  }

  private lost(res: HttpResponse): void {
    if (this.held !== res) return;
    this.held = undefined;
    if (this.stopped) return;
    this.logger.warn('cork anchor connection lost; reconnecting (upgrades meanwhile run uncorked)');
    this.client?.destroy();
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (!this.stopped && !this.held && !this.client) this.connect();
    }, RECONNECT_MS);
    this.reconnectTimer.unref();
  }
}
