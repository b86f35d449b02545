import { createHash } from 'node:crypto';
// Type only: the answer's shape is the daemon's own; nothing of the server is loaded at run time.
import type { VoiceNoteAnswer } from '../voicenotes/voice-note-service.js';
/**
 * Forwards WhatsApp audio received by a Baileys socket to audio-ingestd
 * (`POST /v1/whatsapp/audio`), streaming the media from WhatsApp's CDN without buffering it.
 * Ships to users and runs inside their bot: depends on nothing but Node, never lets an error
 * escape as an unhandled `'error'` event, and bounds every download in time. Baileys' own
 * `downloadMediaMessage` is injected.
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

/**
 * The part of Baileys' `WAMessage` (`proto.IWebMessageInfo`) the forwarder reads. The audio may
 * also sit inside a wrapper (`ephemeralMessage`, `viewOnceMessage`…), as WhatsApp sends it.
 */
export interface WAMessageLike {
  key: { remoteJid?: string | null; id?: string | null; fromMe?: boolean | null };
  /** Its content (`proto.IMessage`): an `audioMessage`, possibly inside a wrapper. */
  message?: (object & { audioMessage?: AudioMessageLike | null }) | null;
  messageTimestamp?: number | LongLike | null;
}

/** What Baileys' `downloadMediaMessage(msg, 'stream', options)` resolves to. */
export type MediaStream = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

/** The third argument of Baileys' `downloadMediaMessage` (its `MediaDownloadOptions`). */
export interface MediaDownloadOptionsLike {
  startByte?: number;
  endByte?: number;
  /** axios request options (Baileys downloads with axios), e.g. `httpsAgent`, `proxy`, `headers`. */
  options?: object;
}

/** Baileys' `DownloadMediaMessageContext`: how expired media is asked for again. */
export interface ReuploadContext<M> {
  /**
   * Asks the sender's phone to upload the media again and resolves with the message pointing at
   * the new copy: Baileys' `sock.updateMediaMessage`.
   */
  reuploadRequest(msg: M): Promise<M>;
  /** Not used by the forwarder; allowed so that the object given to Baileys fits as it is. */
  logger?: unknown;
}

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
  /**
   * Baileys' `downloadMediaMessage`; called once per attempt since a stream is read once.
   * (Callbacks are declared as methods so that Baileys' own functions, typed with its full
   * `WAMessage`, fit without a cast.)
   */
  downloadMediaMessage(msg: M, type: 'stream', options: MediaDownloadOptionsLike): Promise<MediaStream>;
  /**
   * Passed as the third argument of `downloadMediaMessage` (default `{}`), with an abort
   * `signal` added to `options` so that a timed-out download also closes its CDN connection.
   */
  downloadOptions?: MediaDownloadOptionsLike;
  /**
   * Media that WhatsApp's CDN no longer has (404/410, after a few weeks) is asked for once
   * through `ctx.reuploadRequest` and downloaded once more. Without it such media fails at once
   * with `MEDIA_EXPIRED`. The same object Baileys takes as `downloadMediaMessage`'s fourth
   * argument fits: `{ reuploadRequest: sock.updateMediaMessage, logger }`. The forwarder makes
   * the request itself instead of handing `ctx` to Baileys, so it is made at most once per
   * forward and every later attempt downloads the updated message.
   */
  ctx?: ReuploadContext<M>;
  /** Longest wait for the next bytes of a download, in ms (the CDN went quiet). Default 20 000. */
  downloadIdleTimeoutMs?: number;
  /** Longest time for one whole download, from the request to the last byte, in ms. Default 300 000. */
  downloadTimeoutMs?: number;
  /** Retries after the first attempt (network errors, download timeouts, CDN 5xx, daemon 429/503). Default 5. */
  maxRetries?: number;
  /** Longest wait between attempts, in seconds; also caps `Retry-After`. Default 30. */
  maxRetryWaitSec?: number;
  /** First backoff after a network error or a 429/503 without `Retry-After`, doubled each time. Default 500 ms. */
  retryBaseDelayMs?: number;
  /**
   * Reacts to the message: ⏳ while forwarding, ✅ when stored, ❌ when it failed. With Baileys:
   * `(jid, key, emoji) => sock.sendMessage(jid, { react: { text: emoji, key } })`.
   */
  react?(jid: string, key: M['key'], emoji: string): Promise<unknown>;
  /** A fetch implementation; default Node's global fetch. */
  fetch?: typeof fetch;
}

/**
 * The daemon's answer to a stored or repeated voice note (fields a newer daemon adds are kept),
 * and `created`: true when this call stored it (201), false for a repeat of a note already
 * stored (200).
 */
export type ForwardResult = VoiceNoteAnswer & { created: boolean; [field: string]: unknown };

export interface BaileysForwarder<M extends WAMessageLike = WAMessageLike> {
  /** Streams the message's audio to the daemon; resolves with its answer or throws {@link ForwardError}. */
  forward(msg: M): Promise<ForwardResult>;
}

/**
 * Codes of failures the forwarder names itself (the daemon's own codes pass through as they are):
 * - `NOT_AUDIO`, `INVALID_MESSAGE`: refused before any download;
 * - `MEDIA_DECRYPT_FAILED`: the media does not decrypt with the message's key (wrong key, corrupt file);
 * - `MEDIA_INTEGRITY_FAILED`: the decrypted bytes do not match the message's `fileLength` / `fileSha256`;
 * - `MEDIA_EXPIRED`: the CDN answered 404/410, and the re-upload (when a `ctx` was given) did not help;
 * - `MEDIA_REJECTED`: the CDN answered another 4xx;
 * - `MEDIA_DOWNLOAD_FAILED`: the download failed in a way no retry fixes (no media key, not a media message…);
 * - `MEDIA_TIMEOUT`: the download stalled or ran past its deadline on every attempt;
 * - `NETWORK_ERROR`: the CDN (network errors, 5xx) or the daemon (no answer) failed on every attempt;
 * - `BAD_RESPONSE`: a 200/201 that is not JSON; `HTTP_<status>`: an error answer without a JSON body.
 */
export type ForwarderErrorCode =
  | 'NOT_AUDIO'
  | 'INVALID_MESSAGE'
  | 'MEDIA_DECRYPT_FAILED'
  | 'MEDIA_INTEGRITY_FAILED'
  | 'MEDIA_EXPIRED'
  | 'MEDIA_REJECTED'
  | 'MEDIA_DOWNLOAD_FAILED'
  | 'MEDIA_TIMEOUT'
  | 'NETWORK_ERROR'
  | 'BAD_RESPONSE';

/**
 * A failed forward. `status` is the daemon's HTTP status (undefined when it gave no answer);
 * `code` is the daemon's stable error code or a {@link ForwarderErrorCode}; `retryable` says
 * whether forwarding the same message later may succeed (the failure was transient and the
 * retries ran out), as opposed to a failure no retry fixes.
 */
export class ForwardError extends Error {
  readonly status: number | undefined;
  readonly code: string;
  /** Attempts made: downloads started (0 when refused before any). */
  readonly attempts: number;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { status?: number; attempts: number; retryable?: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ForwardError';
    this.code = code;
    this.status = options.status;
    this.attempts = options.attempts;
    this.retryable = options.retryable ?? false;
  }
}

/** Why one attempt failed, and whether another attempt may succeed. */
interface AttemptFailure {
  code: string;
  message: string;
  retryable: boolean;
  /** The CDN no longer has the media: a re-upload may bring it back. */
  expired?: boolean;
  status?: number;
  /** Milliseconds the daemon asked to wait (`Retry-After`). */
  retryAfterMs?: number;
  cause?: unknown;
}

const RETRYABLE_STATUS = new Set([429, 503]);
/** Error codes of a connection that failed or broke: worth another attempt. */
const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH',
  'EHOSTUNREACH', 'ENETDOWN', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_SOCKET_CONNECTION_TIMEOUT',
  'ERR_NETWORK',
]);

export function createBaileysForwarder<M extends WAMessageLike>(options: BaileysForwarderOptions<M>): BaileysForwarder<M> {
  const url = new URL('v1/whatsapp/audio', options.endpoint.endsWith('/') ? options.endpoint : `${options.endpoint}/`);
  const maxRetries = options.maxRetries ?? 5;
  const maxWaitMs = (options.maxRetryWaitSec ?? 30) * 1000;
  const baseDelayMs = options.retryBaseDelayMs ?? 500;
  const limits: DownloadLimits = { idleMs: options.downloadIdleTimeoutMs ?? 20_000, totalMs: options.downloadTimeoutMs ?? 300_000 };
  const doFetch = options.fetch ?? globalThis.fetch;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new TypeError(`maxRetries must be an integer >= 0, got ${maxRetries}`);
  if (!(maxWaitMs >= 0)) throw new TypeError(`maxRetryWaitSec must be >= 0, got ${options.maxRetryWaitSec}`);
  for (const [name, value] of [['downloadIdleTimeoutMs', limits.idleMs], ['downloadTimeoutMs', limits.totalMs]] as const) {
    if (!(value > 0 && value <= 2 ** 31 - 1)) throw new TypeError(`${name} must be a number of ms in 1..${2 ** 31 - 1}, got ${value}`);
  }
  for (const [name, value] of [['instance', options.instance], ['tenant', options.tenant], ['apiKey', options.apiKey]] as const) {
    if (value !== undefined && !isHeaderSafe(value)) throw new TypeError(`${name} must be printable ASCII, got ${JSON.stringify(value)}`);
  }
  if (options.instance === '') throw new TypeError('instance must not be empty');
  if (options.ctx !== undefined && typeof options.ctx.reuploadRequest !== 'function') {
    throw new TypeError('ctx.reuploadRequest must be a function (e.g. sock.updateMediaMessage)');
  }

  /** One attempt: download, and once the first bytes are in, stream them to the daemon. */
  async function attempt(msg: M, request: VoiceNoteRequest): Promise<{ ok: ForwardResult } | { failed: AttemptFailure }> {
    const media = new MediaDownload(limits, request.expected);
    try {
      const userOptions = options.downloadOptions ?? {};
      try {
        await media.open((signal) =>
          options.downloadMediaMessage(msg, 'stream', { ...userOptions, options: { ...userOptions.options, signal: combineSignals(userOptions.options, signal) } }),
        );
      } catch (err) {
        return { failed: classifyDownloadError(err) };
      }
      let response: Response;
      try {
        // duplex 'half' lets fetch send a streamed body (chunked) without reading it first.
        // The signal ends the request too when the download fails while the daemon is not reading.
        response = await doFetch(url, { method: 'POST', headers: request.headers, body: media.body(), duplex: 'half', signal: media.signal } as RequestInit);
      } catch (err) {
        // A failed download aborts the request; its own failure says more than fetch's.
        const failure = media.failure;
        if (failure !== undefined) return { failed: classifyDownloadError(failure) };
        return { failed: { code: 'NETWORK_ERROR', message: `daemon unreachable: ${describe(err)}`, retryable: true, cause: err } };
      }
      return await readAnswer(response);
    } finally {
      media.close();
    }
  }

  async function send(msg: M, request: VoiceNoteRequest): Promise<ForwardResult> {
    let reuploaded = false;
    for (let attemptNo = 1, retries = 0; ; attemptNo++) {
      const outcome = await attempt(msg, request);
      if ('ok' in outcome) return outcome.ok;
      const failure = outcome.failed;
      if (failure.expired === true && options.ctx !== undefined && !reuploaded) {
        reuploaded = true;
        try {
          msg = (await options.ctx.reuploadRequest(msg)) ?? msg; // Baileys updates the message in place and returns it
        } catch (err) {
          throw new ForwardError('MEDIA_EXPIRED', `${failure.message}; re-upload request failed: ${describe(err)}`, { attempts: attemptNo, cause: err });
        }
        continue; // the one more try a re-upload earns, whatever the retries left
      }
      if (!failure.retryable || retries >= maxRetries) {
        const message = failure.retryable ? `${failure.message} (after ${attemptNo} attempts)` : failure.message;
        throw new ForwardError(failure.code, message, { status: failure.status, attempts: attemptNo, retryable: failure.retryable, cause: failure.cause });
      }
      retries++;
      await sleep(Math.min(maxWaitMs, failure.retryAfterMs ?? backoffMs(retries)));
    }
  }

  // The client's own small backoff, deliberately separate from the daemon's retry machinery:
  // this file ships to users and loads nothing of the server.
  function backoffMs(retryNo: number): number {
    return Math.min(maxWaitMs, baseDelayMs * 2 ** (retryNo - 1));
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
      const request = requestFor(msg, options);
      await react(msg, '⏳');
      try {
        const result = await send(msg, request);
        await react(msg, '✅');
        return result;
      } catch (err) {
        await react(msg, '❌');
        throw err;
      }
    },
  };
}

interface VoiceNoteRequest {
  headers: Record<string, string>;
  /** What the decrypted bytes must be, when the message says. */
  expected: { length: bigint | undefined; sha256: Buffer | undefined };
}

/** Wrappers WhatsApp puts around a message's content (disappearing, view-once, edited…). */
const WRAPPERS = ['ephemeralMessage', 'viewOnceMessage', 'viewOnceMessageV2', 'viewOnceMessageV2Extension', 'documentWithCaptionMessage', 'editedMessage'];

/**
 * Reads a field only when the message carries it. A decoded protobuf message answers every
 * absent field with its default (0, false, "") from its prototype; those defaults are not facts
 * about the note, so only own properties count.
 */
function own(obj: object | null | undefined, name: string): unknown {
  if (obj === null || obj === undefined || !Object.prototype.hasOwnProperty.call(obj, name)) return undefined;
  return (obj as Record<string, unknown>)[name] ?? undefined;
}

function findAudio(message: unknown, depth = 0): AudioMessageLike | undefined {
  if (message === null || typeof message !== 'object' || depth > 3) return undefined;
  const audio = own(message, 'audioMessage');
  if (audio !== undefined && typeof audio === 'object') return audio as AudioMessageLike;
  for (const wrapper of WRAPPERS) {
    const found = findAudio(own(own(message, wrapper) as object | undefined, 'message'), depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The request for `msg`; throws before any download when it carries no usable audio. */
function requestFor(msg: WAMessageLike, options: Pick<BaileysForwarderOptions, 'apiKey' | 'instance' | 'tenant'>): VoiceNoteRequest {
  const audio = findAudio(msg.message);
  const chatId = msg.key?.remoteJid;
  const messageId = msg.key?.id;
  if (audio === undefined) throw new ForwardError('NOT_AUDIO', 'message has no audioMessage', { attempts: 0 });
  if (!chatId || !messageId) throw new ForwardError('INVALID_MESSAGE', 'message has no key.remoteJid or key.id', { attempts: 0 });
  const mimetype = own(audio, 'mimetype');
  const headers: Record<string, string> = {
    'Content-Type': typeof mimetype === 'string' && mimetype !== '' ? mimetype : 'application/octet-stream',
    apikey: options.apiKey,
    'X-Instance': options.instance,
    'X-Chat-Id': chatId,
    'X-Message-Id': messageId,
    'Idempotency-Key': `${options.instance}:${messageId}`,
  };
  if (options.tenant !== undefined) headers['X-Tenant-Id'] = options.tenant;
  // Absent facts are left out, never sent as 0: the daemon then decides from the bytes. A zero
  // is no fact either (no note lasts 0 s, weighs 0 bytes or was sent in 1970).
  const seconds = own(audio, 'seconds');
  if (typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0) headers['X-Audio-Seconds'] = String(seconds);
  const ptt = own(audio, 'ptt');
  if (typeof ptt === 'boolean') headers['X-Audio-Ptt'] = String(ptt);
  const fileLength = positiveInteger(own(audio, 'fileLength'));
  if (fileLength !== undefined) headers['X-File-Length'] = fileLength.toString();
  const fileSha256 = own(audio, 'fileSha256');
  const sha256 = fileSha256 instanceof Uint8Array && fileSha256.length === 32 ? Buffer.from(fileSha256) : undefined;
  if (sha256 !== undefined) headers['X-File-Sha256'] = sha256.toString('base64');
  const timestamp = positiveInteger(own(msg, 'messageTimestamp'));
  if (timestamp !== undefined) headers['X-Message-Timestamp'] = timestamp.toString();
  for (const [name, value] of Object.entries(headers)) {
    if (!isHeaderSafe(value)) throw new ForwardError('INVALID_MESSAGE', `${name} is not a valid header value: ${JSON.stringify(value)}`, { attempts: 0 });
  }
  return { headers, expected: { length: fileLength, sha256 } };
}

/**
 * A positive integer from a number, a decimal string, a protobuf Long, or a Long that went
 * through JSON (`{low, high}`); undefined for anything else, zero included.
 */
function positiveInteger(value: unknown): bigint | undefined {
  let n: bigint | undefined;
  if (typeof value === 'number') n = Number.isSafeInteger(value) ? BigInt(value) : undefined;
  else if (typeof value === 'bigint') n = value;
  else if (typeof value === 'string') n = /^\d{1,20}$/.test(value) ? BigInt(value) : undefined;
  else if (typeof value === 'object' && value !== null) {
    const text = String(value);
    if (/^\d{1,20}$/.test(text)) n = BigInt(text);
    else {
      const { low, high } = value as { low?: unknown; high?: unknown };
      if (typeof low === 'number' && typeof high === 'number') n = (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
    }
  }
  return n !== undefined && n > 0n ? n : undefined;
}

interface DownloadLimits {
  idleMs: number;
  totalMs: number;
}

/** A download that stalled or ran past its deadline. */
class MediaTimeoutError extends Error {
  readonly code = 'MEDIA_TIMEOUT';
}

/** Decrypted bytes that are not what the message describes. */
class MediaIntegrityError extends Error {
  readonly code = 'MEDIA_INTEGRITY_FAILED';
}

/**
 * One attempt's download from the CDN. Its stream gets an `'error'` listener the moment it
 * exists (Baileys' decipher fails at the end of a small file, before anyone reads it, and an
 * `'error'` without a listener would crash the bot); each wait for bytes is bounded by the idle
 * and total deadlines (Baileys pipes the CDN response without passing its errors on, so a
 * dropped connection leaves its stream open forever); the bytes are checked against the
 * message's length and SHA-256 before the last of them is handed on.
 */
class MediaDownload {
  /** The first failure; later ones are consequences. */
  failure: Error | undefined;
  private readonly abort = new AbortController();
  /** Aborted when the download fails or is closed. */
  readonly signal = this.abort.signal;
  private readonly hash = createHash('sha256');
  private bytes = 0n;
  private stream: MediaStream | undefined;
  private iterator: AsyncIterator<Uint8Array | string> | undefined;
  private first: Uint8Array | undefined;
  private totalTimer: NodeJS.Timeout | undefined;
  /** Rejects the wait in progress, if any. */
  private interrupt: ((err: Error) => void) | undefined;
  private closed = false;

  constructor(
    private readonly limits: DownloadLimits,
    private readonly expected: VoiceNoteRequest['expected'],
  ) {}

  /** Starts the download and waits for its first bytes (or its end, or its failure). */
  async open(start: (signal: AbortSignal) => Promise<MediaStream>): Promise<void> {
    this.totalTimer = setTimeout(() => this.fail(new MediaTimeoutError(`download took longer than ${this.limits.totalMs} ms`)), this.limits.totalMs);
    const started = Promise.resolve()
      .then(() => start(this.signal))
      .then((stream) => {
        // Runs the moment the stream exists. Its failure surfaces through the iterator; the
        // listener only keeps it from crashing the process in the meantime.
        (stream as Partial<NodeJS.EventEmitter>).on?.('error', () => undefined);
        if (this.closed) destroy(stream); // resolved after the deadline: nobody will read it
        else this.stream = stream;
        return stream;
      });
    const stream = await this.wait(started, this.limits.idleMs);
    this.iterator = (stream as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]();
    this.first = await this.read();
  }

  /** The request body: the first bytes, then the rest as the daemon takes them. */
  async *body(): AsyncGenerator<Uint8Array> {
    let chunk = this.first;
    this.first = undefined;
    while (chunk !== undefined) {
      yield chunk;
      chunk = await this.read();
    }
  }

  /** Ends the download: timers cleared, stream destroyed, CDN request aborted. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.totalTimer);
    this.abort.abort();
    if (this.stream !== undefined) destroy(this.stream);
    this.iterator?.return?.().catch(() => undefined); // ending the iterator early may reject; the forwarder is closing
  }

  /** The next chunk, or undefined at the end once the bytes checked out. */
  private async read(): Promise<Uint8Array | undefined> {
    let result: IteratorResult<Uint8Array | string>;
    try {
      result = await this.wait(this.iterator!.next(), this.limits.idleMs);
    } catch (err) {
      throw this.fail(err);
    }
    if (result.done === true) {
      // The deadlines are the download's: the daemon's decoding after the last byte is not.
      clearTimeout(this.totalTimer);
      this.verify();
      return undefined;
    }
    const chunk = typeof result.value === 'string' ? Buffer.from(result.value) : result.value;
    this.bytes += BigInt(chunk.byteLength);
    this.hash.update(chunk);
    return chunk;
  }

  private verify(): void {
    const { length, sha256 } = this.expected;
    if (length !== undefined && this.bytes !== length) {
      throw this.fail(new MediaIntegrityError(`the media has ${this.bytes} bytes, the message says ${length}`));
    }
    if (sha256 !== undefined && !this.hash.digest().equals(sha256)) {
      throw this.fail(new MediaIntegrityError('the media does not match the message\'s fileSha256'));
    }
  }

  /** `promise`, unless a deadline passes first (the idle one only if given). */
  private wait<T>(promise: Promise<T>, idleMs?: number): Promise<T> {
    if (this.failure !== undefined) {
      promise.catch(() => undefined); // the stored failure is thrown instead; this promise's own rejection is not unhandled
      return Promise.reject(this.failure);
    }
    return new Promise<T>((resolve, reject) => {
      const idle = idleMs === undefined ? undefined : setTimeout(() => this.fail(new MediaTimeoutError(`no media bytes for ${idleMs} ms`)), idleMs);
      this.interrupt = reject;
      const settle = (): void => {
        clearTimeout(idle);
        this.interrupt = undefined;
      };
      promise.then(
        (value) => {
          settle();
          resolve(value);
        },
        (err: unknown) => {
          settle();
          reject(err);
        },
      );
    });
  }

  /** Records the first failure, stops the download, and rejects the wait in progress. */
  private fail(err: unknown): Error {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.failure === undefined) {
      this.failure = error;
      this.interrupt?.(error);
      this.close();
    }
    return this.failure;
  }
}

function destroy(stream: MediaStream): void {
  const s = stream as { destroy?: () => void; destroyed?: boolean };
  if (typeof s.destroy === 'function' && s.destroyed !== true) s.destroy();
}

/** Ours, or one that fires with either when the caller's axios options carry a signal too. */
function combineSignals(axiosOptions: object | undefined, ours: AbortSignal): AbortSignal {
  const user = (axiosOptions as { signal?: unknown } | undefined)?.signal;
  return user instanceof AbortSignal ? AbortSignal.any([user, ours]) : ours;
}

/** Sorts a download failure into permanent (one attempt), expired (re-upload) or transient (retry). */
function classifyDownloadError(err: unknown): AttemptFailure {
  const e = err as { code?: unknown; message?: unknown; response?: { status?: unknown }; isAxiosError?: unknown; cause?: { code?: unknown } };
  const message = describe(err);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (err instanceof MediaTimeoutError) return { code: 'MEDIA_TIMEOUT', message: `media download timed out: ${message}`, retryable: true, cause: err };
  if (err instanceof MediaIntegrityError) return { code: 'MEDIA_INTEGRITY_FAILED', message, retryable: false, cause: err };
  // Baileys deciphers with node:crypto: a wrong media key or a corrupt file ends in an OpenSSL error.
  if (code !== undefined && code.startsWith('ERR_OSSL_')) {
    return { code: 'MEDIA_DECRYPT_FAILED', message: `the media does not decrypt with the message's key: ${message}`, retryable: false, cause: err };
  }
  const status = typeof e?.response?.status === 'number' ? e.response.status : undefined;
  if (status !== undefined) {
    if (status === 404 || status === 410) return { code: 'MEDIA_EXPIRED', message: `the media is no longer on WhatsApp's CDN (${status})`, retryable: false, expired: true, cause: err };
    if (status === 408 || status === 429 || status >= 500) return { code: 'NETWORK_ERROR', message: `media download failed: CDN answered ${status}`, retryable: true, cause: err };
    if (status >= 400) return { code: 'MEDIA_REJECTED', message: `media download refused: CDN answered ${status}`, retryable: false, cause: err };
  }
  const causeCode = typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  if ((code !== undefined && NETWORK_CODES.has(code)) || (causeCode !== undefined && NETWORK_CODES.has(causeCode)) || (e?.isAxiosError === true && status === undefined)) {
    return { code: 'NETWORK_ERROR', message: `media download failed: ${message}`, retryable: true, cause: err };
  }
  return { code: 'MEDIA_DOWNLOAD_FAILED', message: `media download failed: ${message}`, retryable: false, cause: err };
}

/** The daemon's answer as an outcome: stored or repeated, a retryable refusal, or a final one. */
async function readAnswer(response: Response): Promise<{ ok: ForwardResult } | { failed: AttemptFailure }> {
  const status = response.status;
  if (status === 200 || status === 201) {
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      return { failed: { code: 'BAD_RESPONSE', message: `answer ${status} is not JSON`, status, retryable: false, cause: err } };
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return { failed: { code: 'BAD_RESPONSE', message: `answer ${status} is not a JSON object`, status, retryable: false } };
    }
    return { ok: { ...(body as VoiceNoteAnswer), created: status === 201 } };
  }
  const error = await readError(response);
  if (RETRYABLE_STATUS.has(status)) {
    return { failed: { ...error, status, retryable: true, retryAfterMs: parseRetryAfter(response.headers.get('retry-after'), Date.now()) } };
  }
  return { failed: { ...error, status, retryable: false } };
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

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isHeaderSafe(value: string): boolean {
  return /^[\x20-\x7e]*$/.test(value);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
