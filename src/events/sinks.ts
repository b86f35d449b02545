import { join } from 'node:path';
import type { Logger } from '../observability/logger.js';
import { AmqpPublisher } from './amqp-publisher.js';
import { NdjsonSink } from './ndjson-sink.js';
import type { Outbox } from './outbox.js';
import type { Sink } from './sink.js';
import { queueError } from './types.js';
import { parseWebhookSecrets, type WebhookScheme } from './webhook-signing.js';
import { type WebhookGiveUp, WebhookSink } from './webhooks.js';

/** The `events` settings the sinks are made from (config `events.*`). */
export interface EventSinkSettings {
  /** RabbitMQ; unset: the NDJSON log instead. */
  amqpUrl?: string | undefined;
  exchange: string;
  globalQueue?: string | undefined;
  webhookUrl?: string | undefined;
  monitoringWebhookUrl?: string | undefined;
  /** Present and valid whenever a webhook URL is: `parseConfig()` checks it. */
  webhookSecret?: string | undefined;
  webhookSignature: WebhookScheme;
  webhookMaxAttempts: number;
}

/** Options of {@link createEventSinks}. */
export interface EventSinksOptions {
  events: EventSinkSettings;
  /** Where the NDJSON log goes when no broker is configured. */
  dataDir: string;
  logger: Logger;
  /** Told when the main webhook abandons an event (see {@link reportGiveUp}). */
  onGiveUp: (g: WebhookGiveUp) => Promise<void>;
}

/** The outbox's destinations: RabbitMQ when AMQP_URL is set, else the NDJSON log; plus webhooks when configured. */
export function createEventSinks(args: EventSinksOptions): Sink[] {
  const { events: ev, logger } = args;
  const sinks: Sink[] = [];
  if (ev.amqpUrl) {
    sinks.push(new AmqpPublisher({ url: ev.amqpUrl, exchange: ev.exchange, globalQueue: ev.globalQueue, connectionName: 'audio-ingestd', logger }));
  } else {
    sinks.push(new NdjsonSink({ path: join(args.dataDir, 'events.ndjson') }));
  }
  if (!ev.webhookUrl && !ev.monitoringWebhookUrl) return sinks;
  const keys = ev.webhookSecret === undefined ? null : parseWebhookSecrets(ev.webhookSignature, ev.webhookSecret).keys;
  if (keys === null) throw new TypeError('webhook secrets were not checked: parse the config with parseConfig()');
  logger.info({ scheme: keys.scheme, standardKeys: keys.standard.length, legacyKey: keys.legacy !== null }, 'webhooks signed');
  if (ev.webhookUrl) {
    sinks.push(new WebhookSink({ url: ev.webhookUrl, keys, role: 'main', maxAttempts: ev.webhookMaxAttempts, onGiveUp: args.onGiveUp }));
  }
  if (ev.monitoringWebhookUrl) {
    sinks.push(new WebhookSink({ url: ev.monitoringWebhookUrl, keys, role: 'monitoring', maxAttempts: ev.webhookMaxAttempts }));
  }
  return sinks;
}

/** A main-webhook delivery was abandoned: logged, and told to the monitoring webhook (queue.error). */
export async function reportGiveUp(outbox: Pick<Outbox, 'append'>, g: WebhookGiveUp, logger: Logger): Promise<void> {
  logger.error({ sink: g.sink, eventId: g.event.id, type: g.event.type, attempts: g.attempts, status: g.status, error: g.error }, 'webhook delivery abandoned');
  await outbox.append(
    queueError(g.event.tenant, {
      sink: g.sink,
      failed_event_id: g.event.id,
      failed_event_type: g.event.type,
      attempts: g.attempts,
      error: g.error,
      status: g.status,
      gave_up_at: new Date().toISOString(),
    }),
  );
}
