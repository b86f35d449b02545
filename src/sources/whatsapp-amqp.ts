import type { Channel, ConsumeMessage } from 'amqplib';
import { Readable } from 'node:stream';
import { AppError, type ErrorCode } from '../errors.js';
import { AmqpConnection } from '../events/amqp-connection.js';
import { sleep } from '../backoff.js';
import type { Logger } from '../observability/logger.js';
import { parseEvolutionUpsert } from '../voicenotes/evolution-envelope.js';
import type { VoiceNoteService } from '../voicenotes/voice-note-service.js';

/** Options of {@link WhatsAppAmqpConsumer}. */
export interface WhatsAppAmqpConsumerOptions {
  /** Broker URL (`events.amqpUrl`). */
  url: string;
  /** Evolution API's exchange (topic, durable): `evolution_exchange` unless renamed. */
  exchange: string;
  /** Routing key of the upserts: `messages.upsert`. */
  routingKey: string;
  /** Our durable queue; poison messages go to `<queue>.dead-letter`. */
  queue: string;
  /** Messages handled at once (unacked at the broker). */
  prefetch: number;
  /** Tenant the consumed voice notes belong to (the broker carries no API key). */
  tenant: string;
  service: VoiceNoteService;
  /** Largest media accepted (`whatsapp.maxBytes`). */
  maxBytes: number;
  logger: Logger;
  /** Shown by the broker, so operators can tell connections apart. Default `audio-ingestd-whatsapp`. */
  connectionName?: string;
}

/** The daemon cannot store right now: the message goes back to the queue after a pause. */
const RETRY_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['STORAGE_UNAVAILABLE', 'OVERLOADED', 'DRAINING', 'BROKER_UNAVAILABLE', 'CLIENT_ABORTED', 'SPOOL_FULL']);
/** Refused by policy: announced as rejected, not poison, so acked. */
const POLICY_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['DURATION_TOO_SHORT', 'DURATION_TOO_LONG', 'POLICY_REJECTED']);
const MAX_RETRY_PAUSE_MS = 30_000;

/**
 * Consumes Evolution API's `messages.upsert` from its exchange into the voice-note pipeline.
 * Acks only after the note is stored and its event is in the outbox; requeues when storage
 * is unavailable (after the suggested pause, holding the prefetch slot so the queue is not
 * spun); dead-letters what can never succeed (bad envelopes, undecodable media).
 */
export class WhatsAppAmqpConsumer {
  private readonly connection: AmqpConnection<Channel>;
  private readonly stopping = new AbortController();
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly options: WhatsAppAmqpConsumerOptions) {
    this.connection = new AmqpConnection<Channel>({
      url: options.url,
      connectionName: options.connectionName ?? 'audio-ingestd-whatsapp',
      openChannel: (model) => model.createChannel(),
      setup: (ch) => this.setup(ch),
      logger: options.logger,
    });
  }

  get deadLetterQueue(): string {
    return `${this.options.queue}.dead-letter`;
  }

  /** Connects in the background (and reconnects); never throws for an unreachable broker. */
  start(): void {
    this.connection.start();
  }

  /** Connected and consuming. */
  isOpen(): boolean {
    return this.connection.isOpen();
  }

  /** Stops consuming: in-flight notes are aborted and go back to the queue. */
  async stop(): Promise<void> {
    this.stopping.abort(new AppError('DRAINING', 'the daemon is shutting down'));
    await Promise.allSettled([...this.inflight]);
    await this.connection.stop();
  }

  private async setup(ch: Channel): Promise<void> {
    const o = this.options;
    await ch.assertExchange(o.exchange, 'topic', { durable: true });
    await ch.assertQueue(this.deadLetterQueue, { durable: true });
    await ch.assertQueue(o.queue, { durable: true, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': this.deadLetterQueue } });
    await ch.bindQueue(o.queue, o.exchange, o.routingKey);
    await ch.prefetch(o.prefetch);
    await ch.consume(o.queue, (msg) => {
      if (msg === null) return; // cancelled by the broker; the connection loop sets up again
      const p = this.handle(ch, msg).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    });
  }

  private async handle(ch: Channel, msg: ConsumeMessage): Promise<void> {
    const o = this.options;
    const log = { deliveryTag: msg.fields.deliveryTag, redelivered: msg.fields.redelivered };
    let verdict: 'ack' | 'requeue' | 'dead-letter';
    try {
      const parsed = parseEvolutionUpsert(JSON.parse(msg.content.toString('utf8')) as unknown, o.maxBytes);
      if (parsed.kind === 'ignored') {
        o.logger.debug({ ...log, reason: parsed.reason, instance: parsed.instance }, 'amqp message ignored');
        verdict = 'ack';
      } else {
        await o.service.ingest({
          tenant: o.tenant,
          instance: parsed.instance,
          chatId: parsed.chatId,
          messageId: parsed.messageId,
          idempotencyKey: `${parsed.instance}:${parsed.messageId}`,
          declared: parsed.declared,
          body: Readable.from([parsed.media]),
          signal: this.stopping.signal,
        });
        verdict = 'ack';
      }
    } catch (err) {
      const code: ErrorCode = err instanceof AppError ? err.code : err instanceof SyntaxError ? 'INVALID_JSON' : 'INTERNAL';
      if (RETRY_CODES.has(code)) {
        verdict = 'requeue';
        const pauseMs = Math.min(MAX_RETRY_PAUSE_MS, ((err as AppError).retryAfterSec ?? 1) * 1000);
        if (!this.stopping.signal.aborted) await sleep(pauseMs, this.stopping.signal); // returns early, without throwing, on stop
      } else verdict = POLICY_CODES.has(code) ? 'ack' : 'dead-letter';
      o.logger.warn({ ...log, code, verdict, err: code === 'INTERNAL' ? err : (err as Error).message }, 'amqp message not stored');
    }
    try {
      if (verdict === 'ack') ch.ack(msg);
      else ch.nack(msg, false, verdict === 'requeue');
    } catch (err) {
      // the channel closed: the broker redelivers, and the idempotency record answers the repeat
      o.logger.warn({ ...log, err: (err as Error).message }, 'amqp settle failed');
    }
  }
}
