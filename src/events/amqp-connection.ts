import type { Duplex } from 'node:stream';
import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js';

/** The connection's socket (amqplib keeps it as `connection.stream`). */
function socketOf(model: ChannelModel): Duplex | undefined {
  return (model as unknown as { connection?: { stream?: Duplex } }).connection?.stream;
}

/** How long closing a connection waits for the broker's CloseOk before its socket is dropped. */
const CLOSE_TIMEOUT_MS = 2000;

/**
 * Closes a connection that may be dying, and always returns. amqplib's `close()` settles only
 * on the broker's CloseOk: when the socket dies first (the broker closed the connection, a
 * reset) it stays pending for ever, and a reconnect loop awaiting it never reconnects. So this
 * waits for the first of CloseOk, the socket's close and `timeoutMs`, then destroys the socket.
 */
export async function closeConnection(model: ChannelModel, timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
  const stream = socketOf(model);
  const socketGone = stream === undefined || stream.destroyed ? Promise.resolve() : new Promise<void>((resolve) => stream.once('close', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      model.close().catch(() => undefined), // closing a dead connection may fail; it is dropped either way
      socketGone,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
  } finally {
    clearTimeout(timer);
    // with an error, since amqplib listens for its socket's 'error' and 'end', not 'close': so it
    // tidies up (channels closed, heartbeat timer stopped, 'close' emitted)
    if (stream !== undefined && !stream.destroyed) {
      model.on('error', () => undefined);
      stream.destroy(new Error('amqp connection dropped: its close was not answered'));
    }
  }
}

export interface AmqpConnectionOptions<C extends Channel> {
  /** Broker URL, e.g. `amqp://user:pass@host:5672/vhost`. */
  url: string;
  /** Shown by the broker (`connection_name`), so operators can tell connections apart. */
  connectionName: string;
  /** Opens the channel on a fresh connection (confirm or plain). */
  openChannel(model: ChannelModel): Promise<C>;
  /** Declares topology and consumers; runs after every (re)connect before the channel is used. */
  setup(channel: C): Promise<void>;
  /** Reconnect backoff (full jitter). Default 100 ms .. 10 s. */
  reconnect?: BackoffOptions;
  logger?: Logger;
}

/**
 * One AMQP connection with one channel, kept open: when either drops, it is reopened with
 * exponential backoff and `setup` runs again. States: stopped → connecting → open → connecting …
 */
export class AmqpConnection<C extends Channel = ConfirmChannel> {
  private readonly options: AmqpConnectionOptions<C>;
  private model: ChannelModel | null = null;
  private current: C | null = null;
  private loop: Promise<void> | null = null;
  private readonly stopController = new AbortController();
  private waiters = new Set<() => void>();
  private blocked = false;
  private opens = 0;

  constructor(options: AmqpConnectionOptions<C>) {
    this.options = options;
  }

  /** Starts connecting in the background; never throws for an unreachable broker. */
  start(): void {
    this.loop ??= this.run();
  }

  /** How many times a connection was opened and set up (1 + reconnects). */
  get openCount(): number {
    return this.opens;
  }

  /** The open channel, or null while (re)connecting. */
  get channel(): C | null {
    return this.current;
  }

  /** Connected, channel open, and the broker is not blocking publishers (memory/disk alarm). */
  isOpen(): boolean {
    return this.current !== null && !this.blocked;
  }

  /** The open channel, waiting up to `timeoutMs` for a (re)connect; BROKER_UNAVAILABLE otherwise. */
  async waitOpen(timeoutMs: number): Promise<C> {
    if (this.current) return this.current;
    if (this.stopController.signal.aborted) throw new AppError('BROKER_UNAVAILABLE', 'amqp connection stopped');
    let wake!: () => void;
    const opened = new Promise<void>((r) => (wake = r));
    this.waiters.add(wake);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([opened, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    } finally {
      clearTimeout(timer);
      this.waiters.delete(wake);
    }
    if (!this.current) throw new AppError('BROKER_UNAVAILABLE', 'amqp broker unreachable', { retryAfterSec: 1 });
    return this.current;
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    for (const w of this.waiters) w();
    const model = this.model;
    this.current = null;
    this.model = null;
    if (model) await closeConnection(model);
    await this.loop;
  }

  private async run(): Promise<void> {
    const { logger, connectionName } = this.options;
    const signal = this.stopController.signal;
    let attempt = 0;
    let model: ChannelModel | null = null;
    while (!signal.aborted) {
      model = null;
      try {
        model = await connect(this.options.url, { clientProperties: { connection_name: connectionName } });
        model.on('error', (err: Error) => logger?.warn({ connection: connectionName, err: err.message }, 'amqp connection error'));
        model.on('blocked', (reason: string) => {
          this.blocked = true;
          logger?.warn({ connection: connectionName, reason }, 'amqp connection blocked by broker');
        });
        model.on('unblocked', () => (this.blocked = false));
        const channel = await this.options.openChannel(model);
        channel.on('error', (err: Error) => logger?.warn({ connection: connectionName, err: err.message }, 'amqp channel error'));
        // the socket's own close too: amqplib emits no 'close' when its socket dies while it is
        // closing (a stop's close that is not answered ends in the socket destroyed, so here)
        const stream = socketOf(model);
        const lost = new Promise<void>((resolve) => {
          model!.once('close', () => resolve());
          channel.once('close', () => resolve());
          stream?.once('close', () => resolve());
        });
        await this.options.setup(channel);
        if (signal.aborted) break;
        this.model = model;
        this.current = channel;
        this.blocked = false;
        this.opens++;
        if (attempt > 0) logger?.info({ connection: connectionName, attempt }, 'amqp reconnected');
        attempt = 0;
        for (const w of this.waiters) w();
        await lost;
        this.current = null;
        this.model = null;
        if (signal.aborted) break;
        logger?.warn({ connection: connectionName }, 'amqp connection lost; reconnecting');
      } catch (err) {
        this.current = null;
        this.model = null;
        if (signal.aborted) break;
        logger?.warn({ connection: connectionName, attempt: attempt + 1, err: (err as Error).message }, 'amqp connect failed');
      }
      // a channel may close while its connection stays up: drop both and start clean
      if (model) await closeConnection(model);
      attempt++;
      await sleep(backoffDelay(attempt, { baseMs: 100, maxMs: 10_000, ...this.options.reconnect }), signal);
    }
    // stopped mid-connect: nothing else will close what was just opened
    if (model) await closeConnection(model);
  }
}
