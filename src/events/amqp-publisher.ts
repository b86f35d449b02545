import { hostname } from 'node:os';
import type { ConfirmChannel, Options } from 'amqplib';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { AmqpConnection } from './amqp-connection.js';
import type { BackoffOptions } from '../backoff.js';
import type { OutboxEvent, Sink } from './sink.js';
import { GLOBAL_QUEUE_PRIORITY, toGlobalQueueMessage } from './types.js';

export interface AmqpPublisherOptions {
  /** Broker URL (`AMQP_URL`). */
  url: string;
  /** Sink name (cursor file, metric label). Default `amqp`. */
  name?: string;
  /** Durable topic exchange; routing key = event type. Default `audio.events`. */
  exchange?: string;
  /** Seed queue fed with `voicenote.stored` as GlobalQueueMessage; null disables. Default `global.messages`. */
  globalQueue?: string | null;
  /** `x-max-priority` of the global queue. Default 10. */
  globalQueueMaxPriority?: number;
  /** `x-message-ttl` of the global queue, ms. Default 3 600 000. */
  globalQueueTtlMs?: number;
  /** Broker-visible connection name. Default `audio-ingestd-events@<hostname>`. */
  connectionName?: string;
  /** How long a delivery waits for a (re)connect before failing (the outbox retries). Default 5 000 ms. */
  connectWaitMs?: number;
  /** How long a batch waits for publisher confirms. Default 30 000 ms. */
  confirmTimeoutMs?: number;
  /** Reconnect backoff. Default 100 ms .. 10 s. */
  reconnect?: BackoffOptions;
  /** Most events per batch (publishes are pipelined, confirms awaited per batch). Default 256. */
  maxBatch?: number;
  /**
   * Largest message body published; a larger event is refused (given up and reported, the others
   * go on). Default 128 MiB, RabbitMQ's `max_message_size` default: the broker would close the
   * channel on it (PRECONDITION_FAILED) at every retry, and no later event would get through.
   */
  maxMessageBytes?: number;
  logger?: Logger;
}

/**
 * Outbox sink publishing to RabbitMQ on a confirm channel: persistent JSON messages with
 * `messageId` = event id, `type` = event type, routed by type on a durable topic exchange.
 * A batch resolves only once the broker confirmed every message of it.
 */
export class AmqpPublisher implements Sink {
  readonly name: string;
  readonly maxBatch: number;
  readonly exchange: string;
  readonly globalQueue: string | null;
  private readonly connection: AmqpConnection<ConfirmChannel>;
  private readonly connectWaitMs: number;
  private readonly confirmTimeoutMs: number;
  private readonly maxMessageBytes: number;
  /** Bodies made by {@link refuses}, reused by {@link deliver} (one JSON.stringify per event). */
  private readonly bodies = new WeakMap<OutboxEvent, Buffer>();

  constructor(options: AmqpPublisherOptions) {
    this.name = options.name ?? 'amqp';
    this.maxBatch = options.maxBatch ?? 256;
    this.exchange = options.exchange ?? 'audio.events';
    this.globalQueue = options.globalQueue === undefined ? 'global.messages' : options.globalQueue;
    this.connectWaitMs = options.connectWaitMs ?? 5_000;
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 30_000;
    this.maxMessageBytes = options.maxMessageBytes ?? 128 * 1024 * 1024;
    const maxPriority = options.globalQueueMaxPriority ?? 10;
    const messageTtl = options.globalQueueTtlMs ?? 3_600_000;
    this.connection = new AmqpConnection<ConfirmChannel>({
      url: options.url,
      connectionName: options.connectionName ?? `audio-ingestd-events@${hostname()}`,
      reconnect: options.reconnect,
      logger: options.logger,
      openChannel: (model) => model.createConfirmChannel(),
      setup: async (ch) => {
        await ch.assertExchange(this.exchange, 'topic', { durable: true });
        if (this.globalQueue) {
          await ch.assertQueue(this.globalQueue, { durable: true, maxPriority, messageTtl });
        }
      },
    });
  }

  start(): void {
    this.connection.start();
  }

  stop(): Promise<void> {
    return this.connection.stop();
  }

  ready(): boolean {
    return this.connection.isOpen();
  }

  /** Connections opened so far (1 + reconnects). */
  get connectionCount(): number {
    return this.connection.openCount;
  }

  refuses(event: OutboxEvent): string | undefined {
    const body = this.body(event);
    return body.length > this.maxMessageBytes ? `the event's ${body.length} bytes exceed the broker's message limit (${this.maxMessageBytes})` : undefined;
  }

  private body(event: OutboxEvent): Buffer {
    let b = this.bodies.get(event);
    if (b === undefined) this.bodies.set(event, (b = Buffer.from(JSON.stringify(event))));
    return b;
  }

  async deliver(batch: OutboxEvent[]): Promise<void> {
    const ch = await this.connection.waitOpen(this.connectWaitMs);
    const confirms: Promise<void>[] = [];
    try {
      for (const event of batch) {
        const props: Options.Publish = {
          persistent: true,
          messageId: event.id,
          type: event.type,
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          timestamp: Math.floor(Date.parse(event.occurredAt) / 1000),
          appId: 'audio-ingestd',
          headers: { tenant: event.tenant },
        };
        await publish(ch, confirms, this.exchange, event.type, this.body(event), props);
        if (event.type === 'voicenote.stored' && this.globalQueue) {
          const body = Buffer.from(JSON.stringify(toGlobalQueueMessage(event)));
          await publish(ch, confirms, '', this.globalQueue, body, { ...props, type: 'audio', priority: GLOBAL_QUEUE_PRIORITY });
        }
      }
    } finally {
      // every publish already sent must settle, or its rejection would go unhandled
      for (const p of confirms) p.catch(() => undefined);
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all(confirms),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new AppError('BROKER_UNAVAILABLE', `no publisher confirm within ${this.confirmTimeoutMs} ms`)),
            this.confirmTimeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Publishes one message, collecting its confirm; waits for 'drain' when the channel's buffer is full. */
async function publish(
  ch: ConfirmChannel,
  confirms: Promise<void>[],
  exchange: string,
  routingKey: string,
  body: Buffer,
  props: Options.Publish,
): Promise<void> {
  let accepted = true;
  confirms.push(
    new Promise<void>((resolve, reject) => {
      accepted = ch.publish(exchange, routingKey, body, props, (err: unknown) =>
        err ? reject(new AppError('BROKER_UNAVAILABLE', 'message not confirmed by the broker', { cause: err })) : resolve(),
      );
    }),
  );
  if (!accepted) {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        ch.off('drain', done);
        ch.off('close', done);
        resolve();
      };
      ch.on('drain', done);
      ch.on('close', done);
    });
  }
}
