import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Channel } from 'amqplib';
import type { Logger } from 'pino';
import { AmqpConnection } from './amqp-connection.js';
import type { BackoffOptions } from '../backoff.js';

/** A room's end, announced to every host (LiveKit's room_finished). */
export interface RoomFinished {
  tenant: string;
  roomName: string;
}

export type RoomFinishedHandler = (signal: RoomFinished) => void;

/** Cross-host room signals. Both implementations deliver to local handlers too. */
export interface RoomSignals {
  start(): Promise<void> | void;
  stop(): Promise<void>;
  publishRoomFinished(signal: RoomFinished): Promise<void>;
  /** Registers a handler; returns a function that removes it. */
  onRoomFinished(handler: RoomFinishedHandler): () => void;
}

/** Single-host bus used when no broker is configured. */
export class LocalRoomSignals implements RoomSignals {
  private readonly handlers = new Set<RoomFinishedHandler>();
  start(): void {}
  async stop(): Promise<void> {
    this.handlers.clear();
  }
  async publishRoomFinished(signal: RoomFinished): Promise<void> {
    for (const h of this.handlers) h({ ...signal });
  }
  onRoomFinished(handler: RoomFinishedHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
}

export interface AmqpRoomSignalsOptions {
  url: string;
  /** Fanout exchange shared by all hosts. Default `audio.signals`. */
  exchange?: string;
  /** Broker-visible connection name. Default `audio-ingestd-signals@<hostname>`. */
  connectionName?: string;
  /** How long publishRoomFinished waits for a (re)connect. Default 5 000 ms. */
  connectWaitMs?: number;
  reconnect?: BackoffOptions;
  logger?: Logger;
}

/**
 * Room signals over a RabbitMQ fanout exchange, one exclusive auto-delete queue per host
 * (redeclared on every reconnect). Signals are transient: a host that is down misses them,
 * which is fine because its streams ended with it.
 */
export class AmqpRoomSignals implements RoomSignals {
  private readonly handlers = new Set<RoomFinishedHandler>();
  private readonly connection: AmqpConnection<Channel>;
  private readonly exchange: string;
  private readonly connectWaitMs: number;
  private readonly logger: Logger | undefined;

  constructor(options: AmqpRoomSignalsOptions) {
    this.exchange = options.exchange ?? 'audio.signals';
    this.connectWaitMs = options.connectWaitMs ?? 5_000;
    this.logger = options.logger;
    this.connection = new AmqpConnection<Channel>({
      url: options.url,
      connectionName: options.connectionName ?? `audio-ingestd-signals@${hostname()}-${randomUUID().slice(0, 8)}`,
      reconnect: options.reconnect,
      logger: options.logger,
      openChannel: (model) => model.createChannel(),
      setup: async (ch) => {
        await ch.assertExchange(this.exchange, 'fanout', { durable: true });
        const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
        await ch.bindQueue(queue, this.exchange, '');
        await ch.consume(queue, (msg) => msg && this.dispatch(msg.content), { noAck: true });
      },
    });
  }

  /** Starts connecting and waits up to connectWaitMs for the host's queue to exist. */
  async start(): Promise<void> {
    this.connection.start();
    await this.connection.waitOpen(this.connectWaitMs).catch((err: unknown) => {
      this.logger?.warn({ err }, 'room signals: broker not reachable yet; will keep trying');
    });
  }

  async stop(): Promise<void> {
    await this.connection.stop();
    this.handlers.clear();
  }

  ready(): boolean {
    return this.connection.isOpen();
  }

  async publishRoomFinished(signal: RoomFinished): Promise<void> {
    const ch = await this.connection.waitOpen(this.connectWaitMs);
    const body = Buffer.from(JSON.stringify({ type: 'room.finished', tenant: signal.tenant, roomName: signal.roomName }));
    ch.publish(this.exchange, '', body, { contentType: 'application/json', type: 'room.finished' });
  }

  onRoomFinished(handler: RoomFinishedHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  private dispatch(content: Buffer): void {
    try {
      const v = JSON.parse(content.toString('utf8')) as { type?: unknown; tenant?: unknown; roomName?: unknown };
      if (v.type !== 'room.finished' || typeof v.tenant !== 'string' || typeof v.roomName !== 'string') return;
      for (const h of this.handlers) h({ tenant: v.tenant, roomName: v.roomName });
    } catch (err) {
      this.logger?.warn({ err }, 'room signals: unreadable message ignored');
    }
  }
}
