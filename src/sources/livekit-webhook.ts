import { WebhookReceiver } from 'livekit-server-sdk';
import { AppError } from '../errors.js';
import { json, type HttpServer } from '../http/server.js';
import type { Logger } from '../observability/logger.js';

export interface LiveKitWebhookOptions {
  server: HttpServer;
  apiKey: string;
  apiSecret: string;
  /** A room ended: finalize its streams on every host (the caller fans it out). */
  onRoomFinished: (roomName: string) => Promise<void>;
  logger: Logger;
  maxBodyBytes: number;
  /** How many webhook ids are remembered to drop duplicates. */
  dedupeSize?: number;
}

/**
 * `POST /livekit/webhook`: verified with livekit-server-sdk's own receiver (JWT in
 * Authorization signed with the API secret, its `sha256` claim = SHA-256 of the raw body).
 * `room_finished` finalizes the room's streams; `egress_ended` is logged; repeats of an event
 * id are answered 200 and ignored.
 */
export function registerLiveKitWebhook(options: LiveKitWebhookOptions): void {
  const receiver = new WebhookReceiver(options.apiKey, options.apiSecret);
  const seen = new Set<string>();
  const limit = options.dedupeSize ?? 10_000;
  options.server.route('post', '/livekit/webhook', 'livekit-webhook', async (ctx) => {
    const body = (await ctx.readBody(options.maxBodyBytes)).toString('utf8');
    const auth = ctx.headers['authorization'];
    if (!auth) throw new AppError('UNAUTHORIZED', 'Authorization header is required');
    let event;
    try {
      event = await receiver.receive(body, auth);
    } catch (err) {
      throw new AppError('INVALID_SIGNATURE', 'webhook signature or body hash is not valid', { cause: err });
    }
    if (event.id && seen.has(event.id)) return json(200, { ok: true, duplicate: true });
    if (event.id) {
      seen.add(event.id);
      if (seen.size > limit) seen.delete(seen.values().next().value as string);
    }
    const log = options.logger.child({ webhookId: event.id, event: event.event });
    switch (event.event) {
      case 'room_finished': {
        const roomName = event.room?.name;
        if (roomName) {
          log.info({ roomName }, 'room finished: finalizing its streams');
          await options.onRoomFinished(roomName);
        }
        break;
      }
      case 'egress_ended':
        log.info({ egressId: event.egressInfo?.egressId, roomName: event.egressInfo?.roomName, status: event.egressInfo?.status, error: event.egressInfo?.error }, 'egress ended');
        break;
      default:
        log.debug('webhook ignored');
    }
    return json(200, { ok: true });
  });
}
