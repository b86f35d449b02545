// Type only: the answer's shape is the daemon's own; nothing of the server is loaded at run time.
import type { VoiceNoteAnswer } from '../voicenotes/voice-note-service.js';
/**
 * Forwards WhatsApp audio received by a Baileys socket to audio-ingestd
 * (`POST /v1/whatsapp/audio`), streaming the media from WhatsApp's CDN without buffering it.
 * Ships to users: depends on nothing but Node; Baileys' own `downloadMediaMessage` is injected.
 */

/** A protobuf Long (or anything else that prints as a decimal integer). */
export interface LongLike {
  toString(): string;
}

/** The part of Baileys' `proto.Message.IAudioMessage` the forwarder reads. */
export interface AudioMessageLike {
  mimetype?: string | null;
  seconds?: number | null;
  ptt?: boolean | null;
  fileLength?: number | LongLike | null;
  fileSha256?: Uint8Array | null;
}

/** The part of Baileys' `WAMessage` the forwarder reads. */
export interface WAMessageLike {
  key: { remoteJid?: string | null; id?: string | null; fromMe?: boolean | null; [k: string]: unknown };
  message?: { audioMessage?: AudioMessageLike | null; [k: string]: unknown } | null;
  messageTimestamp?: number | LongLike | null;
}

/** What Baileys' `downloadMediaMessage(msg, 'stream', options)` resolves to. */
export type MediaStream = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

/** Options of {@link createBaileysForwarder}. */
export interface BaileysForwarderOptions<M extends WAMessageLike = WAMessageLike> {
  /** Base URL of the daemon, e.g. `https://ingest.example.com` (a path prefix is kept). */
  endpoint: string;
  /** API key, sent as the `apikey` header. */
  apiKey: string;
  /** Sent as `X-Tenant-Id` when given; otherwise the daemon derives the tenant from the key. */
  tenant?: string;
  /** Name of this WhatsApp instance (`X-Instance`, and the first half of `Idempotency-Key`). */
  instance: string;
  /** Baileys' `downloadMediaMessage`; called once per attempt since a stream is read once. */
  downloadMediaMessage: (msg: M, type: 'stream', options: object) => Promise<MediaStream>;
  /** Passed as the third argument of `downloadMediaMessage`. Default `{}`. */
  downloadOptions?: object;
  /** Retries after the first attempt (on 429, 503 and network errors). Default 5. */
  maxRetries?: number;
  /** Longest wait between attempts, in seconds; also caps `Retry-After`. Default 30. */
  maxRetryWaitSec?: number;
  /** First backoff after a network error or a 429/503 without `Retry-After`, doubled each time. Default 500 ms. */
  retryBaseDelayMs?: number;
  /**
   * Reacts to the message: ⏳ while forwarding, ✅ when stored, ❌ when it failed. With Baileys:
   * `(jid, key, emoji) => sock.sendMessage(jid, { react: { text: emoji, key } })`.
   */
  react?: (jid: string, key: unknown, emoji: string) => Promise<void>;
  /** A fetch implementation; default Node's global fetch. */
  fetch?: typeof fetch;
}

/** The daemon's answer to a stored (201) or repeated (200) voice note (fields a newer daemon adds are kept). */
export type ForwardResult = VoiceNoteAnswer & { [field: string]: unknown };

export interface BaileysForwarder<M extends WAMessageLike = WAMessageLike> {
  /** Streams the message's audio to the daemon; resolves with its answer or throws {@link ForwardError}. */
  forward(msg: M): Promise<ForwardResult>;
}

/**
 * A failed forward. `status` is the daemon's HTTP status (undefined when no answer came);
 * `code` is the daemon's stable error code, or one of `NOT_AUDIO` / `INVALID_MESSAGE` (refused
 * before sending), `NETWORK_ERROR` (download or request failed on every attempt), `BAD_RESPONSE`
 * (a 200/201 that is not JSON) and `HTTP_<status>` (an error answer without a JSON body).
 */
export class ForwardError extends Error {
  readonly status: number | undefined;
  readonly code: string;
  /** Requests sent (0 when refused before sending). */
  readonly attempts: number;

  constructor(code: string, message: string, options: { status?: number; attempts: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ForwardError';
    this.code = code;
    this.status = options.status;
    this.attempts = options.attempts;
  }
}

const RETRYABLE_STATUS = new Set([429, 503]);

export function createBaileysForwarder<M extends WAMessageLike>(options: BaileysForwarderOptions<M>): BaileysForwarder<M> {
  const url = new URL('v1/whatsapp/audio', options.endpoint.endsWith('/') ? options.endpoint : `${options.endpoint}/`);
  const maxRetries = options.maxRetries ?? 5;
  const maxWaitMs = (options.maxRetryWaitSec ?? 30) * 1000;
  const baseDelayMs = options.retryBaseDelayMs ?? 500;
  const doFetch = options.fetch ?? globalThis.fetch;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new TypeError(`maxRetries must be an integer >= 0, got ${maxRetries}`);
  if (!(maxWaitMs >= 0)) throw new TypeError(`maxRetryWaitSec must be >= 0, got ${options.maxRetryWaitSec}`);
  for (const [name, value] of [['instance', options.instance], ['tenant', options.tenant], ['apiKey', options.apiKey]] as const) {
    if (value !== undefined && !isHeaderSafe(value)) throw new TypeError(`${name} must be printable ASCII, got ${JSON.stringify(value)}`);
  }
  if (options.instance === '') throw new TypeError('instance must not be empty');

  async function attempt(msg: M, headers: Record<string, string>): Promise<Response> {
    const media = await options.downloadMediaMessage(msg, 'stream', options.downloadOptions ?? {});
    try {
      // duplex 'half' lets fetch send a streamed body (chunked) without reading it first.
      return await doFetch(url, { method: 'POST', headers, body: asBytes(media), duplex: 'half' } as RequestInit);
    } catch (err) {
      // A body fetch never started reading would keep the CDN download open.
      (media as { destroy?: () => void }).destroy?.();
      throw err;
    }
  }

  async function send(msg: M, headers: Record<string, string>): Promise<ForwardResult> {
    for (let attemptNo = 1; ; attemptNo++) {
      const retriesLeft = attemptNo <= maxRetries;
      let response: Response;
      try {
        response = await attempt(msg, headers);
      } catch (err) {
        if (!retriesLeft) {
          throw new ForwardError('NETWORK_ERROR', `no answer after ${attemptNo} attempts: ${(err as Error).message}`, {
            attempts: attemptNo,
            cause: err,
          });
        }
        await sleep(backoffMs(attemptNo));
        continue;
      }
      if (response.status === 200 || response.status === 201) {
        const text = await response.text();
        try {
          return JSON.parse(text) as ForwardResult;
        } catch (err) {
          throw new ForwardError('BAD_RESPONSE', `answer ${response.status} is not JSON`, {
            status: response.status,
            attempts: attemptNo,
            cause: err,
          });
        }
      }
      const error = await readError(response);
      if (RETRYABLE_STATUS.has(response.status) && retriesLeft) {
        const hinted = parseRetryAfter(response.headers.get('retry-after'), Date.now());
        await sleep(Math.min(maxWaitMs, hinted ?? backoffMs(attemptNo)));
        continue;
      }
      throw new ForwardError(error.code, error.message, { status: response.status, attempts: attemptNo });
    }
  }

  function backoffMs(attemptNo: number): number {
    return Math.min(maxWaitMs, baseDelayMs * 2 ** (attemptNo - 1));
  }

  async function react(msg: M, emoji: string): Promise<void> {
    const jid = msg.key.remoteJid;
    if (options.react === undefined || !jid) return;
    try {
      await options.react(jid, msg.key, emoji);
    } catch {
      // A reaction is a courtesy to the chat; failing to show it must not fail the forward.
    }
  }

  return {
    async forward(msg: M): Promise<ForwardResult> {
      const headers = headersFor(msg, options);
      await react(msg, '⏳');
      try {
        const result = await send(msg, headers);
        await react(msg, '✅');
        return result;
      } catch (err) {
        await react(msg, '❌');
        throw err;
      }
    },
  };
}

/** The request headers for `msg`; throws before any request when it carries no usable audio. */
function headersFor(
  msg: WAMessageLike,
  options: Pick<BaileysForwarderOptions, 'apiKey' | 'instance' | 'tenant'>,
): Record<string, string> {
  const audio = msg.message?.audioMessage;
  const chatId = msg.key?.remoteJid;
  const messageId = msg.key?.id;
  if (audio === undefined || audio === null) throw new ForwardError('NOT_AUDIO', 'message has no audioMessage', { attempts: 0 });
  if (!chatId || !messageId) throw new ForwardError('INVALID_MESSAGE', 'message has no key.remoteJid or key.id', { attempts: 0 });
  const headers: Record<string, string> = {
    'Content-Type': audio.mimetype || 'application/octet-stream',
    apikey: options.apiKey,
    'X-Instance': options.instance,
    'X-Chat-Id': chatId,
    'X-Message-Id': messageId,
    'Idempotency-Key': `${options.instance}:${messageId}`,
  };
  if (options.tenant !== undefined) headers['X-Tenant-Id'] = options.tenant;
  if (typeof audio.seconds === 'number') headers['X-Audio-Seconds'] = String(audio.seconds);
  if (typeof audio.ptt === 'boolean') headers['X-Audio-Ptt'] = String(audio.ptt);
  if (audio.fileLength !== undefined && audio.fileLength !== null) headers['X-File-Length'] = audio.fileLength.toString();
  if (audio.fileSha256 instanceof Uint8Array && audio.fileSha256.length > 0) {
    headers['X-File-Sha256'] = Buffer.from(audio.fileSha256.buffer, audio.fileSha256.byteOffset, audio.fileSha256.byteLength).toString('base64');
  }
  if (msg.messageTimestamp !== undefined && msg.messageTimestamp !== null) headers['X-Message-Timestamp'] = msg.messageTimestamp.toString();
  for (const [name, value] of Object.entries(headers)) {
    if (!isHeaderSafe(value)) throw new ForwardError('INVALID_MESSAGE', `${name} is not a valid header value: ${JSON.stringify(value)}`, { attempts: 0 });
  }
  return headers;
}

/**
 * Milliseconds to wait as told by a `Retry-After` value: delta-seconds or an HTTP date
 * (never negative); `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

async function readError(response: Response): Promise<{ code: string; message: string }> {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === 'string') {
      return { code: body.error.code, message: typeof body.error.message === 'string' ? body.error.message : body.error.code };
    }
  } catch {
    // Not JSON (e.g. a proxy's HTML page): described by its status below.
  }
  return { code: `HTTP_${response.status}`, message: `daemon answered ${response.status} ${response.statusText}`.trim() };
}

/** Normalises a media stream to Uint8Array chunks, pulling one chunk at a time. */
async function* asBytes(media: MediaStream): AsyncGenerator<Uint8Array> {
  for await (const chunk of media as AsyncIterable<Uint8Array | string>) {
    yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
  }
}

function isHeaderSafe(value: string): boolean {
  return /^[\x20-\x7e]*$/.test(value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
