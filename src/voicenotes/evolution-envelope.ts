import { AppError } from '../errors.js';
import { longToNumber, parseMessageTimestamp } from './message-timestamp.js';
import type { DeclaredFacts } from './voice-note-service.js';

/**
 * Evolution API's `messages.upsert` envelope (webhook body and RabbitMQ message alike):
 * `{event, instance, data:{key:{remoteJid,id,fromMe}, message:{audioMessage:{…}, base64?},
 * messageType?, messageTimestamp, pushName}, …}`. The media bytes are present only when the
 * instance has "webhook base64" on (`data.message.base64`; some versions put it in `data.base64`).
 */
export type EvolutionUpsert =
  | {
      kind: 'audio';
      instance: string;
      chatId: string;
      messageId: string;
      fromMe: boolean;
      declared: DeclaredFacts;
      /** The decoded `base64` field. */
      media: Buffer;
    }
  | { kind: 'ignored'; reason: string; instance: string | undefined; messageId: string | undefined };

const UPSERT_EVENTS = new Set(['messages.upsert', 'MESSAGES_UPSERT', 'messages-upsert']);
/** Wrappers WhatsApp puts around a message (disappearing, view-once, edited…). */
const WRAPPERS = ['ephemeralMessage', 'viewOnceMessage', 'viewOnceMessageV2', 'viewOnceMessageV2Extension', 'documentWithCaptionMessage', 'editedMessage'];

/**
 * Reads one envelope. Other events and messages without audio are `ignored` (a webhook
 * subscription usually carries more than audio); a malformed envelope or an audio message
 * without its bytes is an AppError. `maxBytes` bounds the decoded media.
 */
export function parseEvolutionUpsert(input: unknown, maxBytes: number): EvolutionUpsert {
  const env = asObject(input, 'envelope');
  const event = typeof env['event'] === 'string' ? env['event'] : undefined;
  const data = env['data'];
  const instance = optString(env['instance']) ?? optString(asObjectOrUndefined(data)?.['instance']);
  if (event === undefined || !UPSERT_EVENTS.has(event)) {
    return { kind: 'ignored', reason: `event ${JSON.stringify(event ?? null)} is not messages.upsert`, instance, messageId: undefined };
  }
  // Evolution may batch upserts as an array; one envelope, one message is what it sends in practice
  const d = asObject(Array.isArray(data) && data.length === 1 ? data[0] : data, 'data');
  const key = asObject(d['key'], 'data.key');
  const messageId = requiredString(key['id'], 'data.key.id');
  const chatId = requiredString(key['remoteJid'], 'data.key.remoteJid');
  if (instance === undefined) throw new AppError('MISSING_PARAMETER', 'instance is required', { details: { field: 'instance' } });
  const message = asObjectOrUndefined(d['message']);
  const audio = findAudio(message);
  if (audio === undefined) return { kind: 'ignored', reason: 'not an audio message', instance, messageId };
  const b64 = optString(message?.['base64']) ?? optString(d['base64']);
  if (b64 === undefined) {
    throw new AppError('MISSING_PARAMETER', 'the audio message carries no media bytes: turn on "webhook base64" for the instance', {
      details: { field: 'data.message.base64' },
    });
  }
  const media = decodeBase64(b64, maxBytes);
  const declared: DeclaredFacts = {
    seconds: optNumber(audio['seconds']),
    ptt: typeof audio['ptt'] === 'boolean' ? audio['ptt'] : undefined,
    fileLength: optNumber(audio['fileLength']),
    sha256Base64: bytesToBase64(audio['fileSha256']),
    mimetype: optString(audio['mimetype']),
    messageTimestamp: parseMessageTimestamp(d['messageTimestamp']),
  };
  return { kind: 'audio', instance, chatId, messageId, fromMe: key['fromMe'] === true, declared, media };
}

function findAudio(message: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (message === undefined) return undefined;
  const direct = asObjectOrUndefined(message['audioMessage']);
  if (direct !== undefined) return direct;
  for (const w of WRAPPERS) {
    const inner = asObjectOrUndefined(asObjectOrUndefined(message[w])?.['message']);
    const found = findAudio(inner);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Plain or data-URL base64; PAYLOAD_TOO_LARGE past `maxBytes`, INVALID_PARAMETER when not base64. */
function decodeBase64(text: string, maxBytes: number): Buffer {
  const comma = text.startsWith('data:') ? text.indexOf(',') : -1;
  const clean = (comma >= 0 ? text.slice(comma + 1) : text).replace(/\s+/g, '');
  if (Math.floor((clean.length * 3) / 4) - 2 > maxBytes) {
    throw new AppError('PAYLOAD_TOO_LARGE', `media larger than ${maxBytes} bytes`, { details: { limit: maxBytes } });
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 === 1) {
    throw new AppError('INVALID_PARAMETER', 'data.message.base64 is not valid base64', { details: { field: 'data.message.base64' } });
  }
  return Buffer.from(clean, 'base64');
}

/** Baileys digests arrive as base64 strings, Node Buffer JSON, or index-keyed byte objects. */
function bytesToBase64(v: unknown): string | undefined {
  if (typeof v === 'string' && v.length > 0) return v;
  const o = asObjectOrUndefined(v);
  if (o === undefined) return undefined;
  if (o['type'] === 'Buffer' && Array.isArray(o['data'])) return Buffer.from(o['data'] as number[]).toString('base64');
  const values = Object.keys(o).every((k) => /^\d+$/.test(k)) ? Object.values(o) : [];
  if (values.length > 0 && values.every((x) => typeof x === 'number')) return Buffer.from(values as number[]).toString('base64');
  return undefined;
}

/** A finite non-negative number from a number, a numeric string or a protobuf Long. */
function optNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v)) return Number(v);
  return longToNumber(v);
}

function optString(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function requiredString(v: unknown, field: string): string {
  const s = optString(v);
  if (s === undefined) throw new AppError('MISSING_PARAMETER', `${field} is required`, { details: { field } });
  return s;
}

function asObjectOrUndefined(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function asObject(v: unknown, field: string): Record<string, unknown> {
  const o = asObjectOrUndefined(v);
  if (o === undefined) throw new AppError('INVALID_PARAMETER', `${field} must be an object`, { details: { field } });
  return o;
}
