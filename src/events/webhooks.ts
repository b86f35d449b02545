import { request, type Dispatcher } from 'undici';
import { DeliveryError } from './delivery-error.js';
import type { GiveUp, OutboxEvent, Sink } from './sink.js';
import { isMonitoringEvent } from './types.js';
import { signatureHeaders, type WebhookKeys } from './webhook-signing.js';

export { signWebhook, verifyWebhookSignature } from './webhook-signing.js';

/** Why a webhook delivery was abandoned; handed to `onGiveUp` (the app turns it into queue.error). */
export type WebhookGiveUp = GiveUp;

export interface WebhookSinkOptions {
  /** Endpoint the events are POSTed to. */
  url: string;
  /** Signature scheme and keys, from `parseWebhookSecrets(WEBHOOK_SIGNATURE, WEBHOOK_SECRET)`. */
  keys: WebhookKeys;
  /** `main` takes every non-monitoring event; `monitoring` takes queue.error, queue.stats, filter.applied. */
  role: 'main' | 'monitoring';
  /** Sink name (cursor file, metric label). Default `webhook` / `monitoring` by role. */
  name?: string;
  /** Per-request timeout (connect + answer), ms. Default 10 000. */
  timeoutMs?: number;
  /** Attempts before a retriable failure is given up (the delivery loop counts them). Default 8. */
  maxAttempts?: number;
  /** Called once per event abandoned (4xx other than 408/429, or maxAttempts reached). */
  onGiveUp?: (info: WebhookGiveUp) => void | Promise<void>;
  /** undici dispatcher (connection pool, proxy); default the global one. */
  dispatcher?: Dispatcher;
}

/** Statuses worth retrying among the 4xx. */
const RETRIABLE_4XX = new Set([408, 429]);

/**
 * Outbox sink POSTing one signed event per request. 2xx confirms; a 4xx other than 408/429 is a
 * permanent `DeliveryError` (given up at once); anything else a retryable one, carrying the
 * receiver's Retry-After. The delivery loop retries it with backoff, up to `maxAttempts`.
 */
export class WebhookSink implements Sink {
  readonly name: string;
  readonly maxBatch = 1;
  readonly maxAttempts: number;
  private readonly options: WebhookSinkOptions;
  private readonly timeoutMs: number;
  private lastOk = true;

  constructor(options: WebhookSinkOptions) {
    this.options = options;
    this.name = options.name ?? (options.role === 'main' ? 'webhook' : 'monitoring');
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxAttempts = options.maxAttempts ?? 8;
  }

  accepts(event: OutboxEvent): boolean {
    return isMonitoringEvent(event) === (this.options.role === 'monitoring');
  }

  ready(): boolean {
    return this.lastOk;
  }

  async deliver(batch: OutboxEvent[]): Promise<void> {
    for (const event of batch) await this.deliverOne(event);
  }

  async onGiveUp(info: GiveUp): Promise<void> {
    await this.options.onGiveUp?.(info);
  }

  private async deliverOne(event: OutboxEvent): Promise<void> {
    let answer: { status: number; retryAfterMs: number | undefined };
    try {
      answer = await this.post(event);
    } catch (err) {
      this.lastOk = false;
      throw new DeliveryError((err as Error).message, { cause: err });
    }
    const { status, retryAfterMs } = answer;
    this.lastOk = status >= 200 && status < 300;
    if (this.lastOk) return;
    const permanent = status >= 400 && status < 500 && !RETRIABLE_4XX.has(status);
    throw new DeliveryError(`HTTP ${status}`, { status, permanent, retryAfterMs });
  }

  /** One signed POST; resolves with the status (and Retry-After), rejects on network errors and timeouts. */
  private async post(event: OutboxEvent): Promise<{ status: number; retryAfterMs: number | undefined }> {
    const body = JSON.stringify(event);
    const timestamp = Math.floor(Date.now() / 1000);
    const res = await request(this.options.url, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'audio-ingestd',
        // signed anew per attempt (fresh timestamp); the id is the event's, the same on every retry
        ...signatureHeaders(this.options.keys, event.id, timestamp, body),
      },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      signal: AbortSignal.timeout(this.timeoutMs),
      ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
    });
    await res.body.dump();
    return { status: res.statusCode, retryAfterMs: parseRetryAfter(res.headers['retry-after']) };
  }
}

/** `Retry-After` as seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
