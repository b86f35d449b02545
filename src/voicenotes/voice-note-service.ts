import { randomUUID } from 'node:crypto';
import { finished, type Readable } from 'node:stream';
import { decodeAudio, type DecodedAudio } from '../audio/decode.js';
import type { FfmpegPool } from '../audio/ffmpeg-pool.js';
import type { OpusWorkerPool } from '../audio/opus-workers.js';
import { normalize } from '../audio/normalize.js';
import type { SniffedFormat } from '../audio/sniff.js';
import { encodeWav } from '../audio/wav.js';
import { AppError, type ErrorCode, isAppError } from '../errors.js';
import type { OutboxEvent } from '../events/outbox.js';
import { filterApplied, voiceNoteRejected, voiceNoteStored } from '../events/types.js';
import { type DurationFilter, durationRejectionError } from '../limits/duration-filter.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { ObjectKeys, VoiceNoteKeyParts } from '../storage/keys.js';
import type { ObjectMetadata, ObjectStore } from '../storage/object-store.js';
import { BodyVerifier } from './body-verifier.js';
import type { IdempotencyClaim, IdempotencyStore } from './idempotency-store.js';

/** What the sender declared about the media (all optional, all verified when present). */
/** How far past its declared length a note may decode: the larger of 5 s and 10 %. */
const DECLARED_SLACK_SEC = 5;
const DECLARED_SLACK_RATIO = 0.1;

export interface DeclaredFacts {
  /** Duration from the message (`audioMessage.seconds`), checked before the body is read. */
  seconds?: number | undefined;
  /** Push-to-talk (a recorded voice note rather than a forwarded audio file). */
  ptt?: boolean | undefined;
  /** Exact body size in bytes. */
  fileLength?: number | undefined;
  /** Base64 SHA-256 of the body, as Baileys gives `fileSha256`. */
  sha256Base64?: string | undefined;
  /** The message's mimetype; informative only, the format is sniffed. */
  mimetype?: string | undefined;
  /** When the message was sent; names the date folders of the key (now when unknown). */
  messageTimestamp?: Date | undefined;
}

/** One voice note to ingest, whatever transport brought it. */
export interface VoiceNoteRequest {
  tenant: string;
  instance: string;
  chatId: string;
  messageId: string;
  /** Repeats of a key within a tenant answer the first result and store nothing. */
  idempotencyKey: string;
  declared: DeclaredFacts;
  /** The original media bytes; read at most once, after the declared checks pass. */
  body: Readable;
  /** Aborting it (client gone) stops the decode: nothing is stored and no event is written. */
  signal?: AbortSignal | undefined;
}

/** The answer body of a stored voice note (CONTRACT §2.2). */
export interface VoiceNoteAnswer {
  id: string;
  status: 'stored';
  key: string;
  url: string;
  durationSec: number;
  sampleRate: number;
  channels: number;
}

export interface IngestResult {
  /** 201 when this call stored the note, 200 for a repeat of its idempotency key. */
  status: 201 | 200;
  body: VoiceNoteAnswer;
}

/** Options of {@link VoiceNoteService}. */
export interface VoiceNoteServiceOptions {
  store: ObjectStore;
  keys: ObjectKeys;
  /** Where `voicenote.*` and `filter.applied` events go (the outbox); resolves once durable. */
  events: { append(event: OutboxEvent): Promise<void> };
  filter: DurationFilter;
  idempotency: IdempotencyStore<VoiceNoteAnswer>;
  /** Shared ffmpeg concurrency limit. */
  pool?: FfmpegPool | undefined;
  /** Worker threads for Ogg/Opus; decoded on the event loop without them. */
  opusWorkers?: OpusWorkerPool | undefined;
  /** Output rate of the WAV (mono, 16-bit). */
  sampleRate: number;
  /** Largest media body accepted, in bytes. */
  maxBytes: number;
  /** Also store the original bytes beside the WAV (held in memory, never on local disk). */
  keepOriginal: boolean;
  /** Wall-clock limit of one decode. */
  decodeTimeoutSec: number;
  /** CPU seconds one ffmpeg child may use; derived from the deadline when unset. */
  decoderCpuSec?: number | undefined;
  /** Address space of one ffmpeg child, in MiB. */
  decoderMemoryMiB?: number | undefined;
  /** Gain normalization of the decoded audio. */
  normalize: { mode: 'none' | 'peak' | 'loudness'; targetDb?: number | undefined };
  /** Lifetime of the presigned URL in answers and events. */
  presignTtlSec: number;
  logger: Logger;
  metrics: Metrics;
}

/** Longest audio any instance may accept (CONTRACT §2.2), used when the filter is off. */
const HARD_MAX_SEC = 7200;
const CHANNELS = 1;
/** Retry-After for a storage outage when the driver gave none. */
const STORAGE_RETRY_SEC = 5;

const ORIGINAL_EXTENSION: Record<SniffedFormat, string> = {
  'ogg-opus': 'ogg',
  ogg: 'ogg',
  mp4: 'm4a',
  mp3: 'mp3',
  amr: 'amr',
  'aac-adts': 'aac',
  wav: 'wav',
  webm: 'webm',
  flac: 'flac',
  unknown: 'bin',
};

const ORIGINAL_TYPE: Record<SniffedFormat, string> = {
  'ogg-opus': 'audio/ogg; codecs=opus',
  ogg: 'audio/ogg',
  mp4: 'audio/mp4',
  mp3: 'audio/mpeg',
  amr: 'audio/amr',
  'aac-adts': 'audio/aac',
  wav: 'audio/wav',
  webm: 'audio/webm',
  flac: 'audio/flac',
  unknown: 'application/octet-stream',
};

/** Codes that mean "this media will never be accepted": they are announced as rejections. */
const REJECTION_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'DURATION_TOO_SHORT',
  'DURATION_TOO_LONG',
  'POLICY_REJECTED',
  'PAYLOAD_TOO_LARGE',
  'LENGTH_MISMATCH',
  'HASH_MISMATCH',
  'UNSUPPORTED_MEDIA_TYPE',
  'EMPTY_BODY',
  'UNKNOWN_FORMAT',
  'CORRUPT_AUDIO',
  'TRUNCATED_AUDIO',
  'DECODE_TIMEOUT',
]);

/**
 * The WhatsApp voice-note pipeline, whatever transport brought the note: idempotency →
 * declared duration → verified, sniffed decode → decoded duration → normalize → WAV →
 * object store → `voicenote.stored` in the outbox → answer. The media is held in memory
 * only; a storage outage is answered STORAGE_UNAVAILABLE for the sender to retry.
 */
export class VoiceNoteService {
  constructor(private readonly options: VoiceNoteServiceOptions) {}

  async ingest(req: VoiceNoteRequest): Promise<IngestResult> {
    const answered = this.options.metrics.voiceNoteAnswer.startTimer();
    const expectedSha256 = parseSha256(req.declared.sha256Base64);
    const { body, fresh } = await this.options.idempotency
      .run(req.tenant, req.idempotencyKey, (claim) => this.store(req, expectedSha256, claim), req.signal)
      .catch((err: unknown) => {
        answered({ outcome: 'error' });
        throw err;
      });
    if (!fresh) {
      // the body of a repeat is not needed: release it instead of reading it
      req.body.destroy();
      this.options.metrics.voiceNotes.inc({ outcome: 'duplicate', format: 'unknown' });
      this.options.logger.info({ tenant: req.tenant, instance: req.instance, messageId: req.messageId, voiceNoteId: body.id }, 'voice note repeated: answered from its idempotency record');
    }
    answered({ outcome: fresh ? 'stored' : 'duplicate' });
    return { status: fresh ? 201 : 200, body };
  }

  private async store(req: VoiceNoteRequest, expectedSha256: Buffer | undefined, claim: IdempotencyClaim<VoiceNoteAnswer>): Promise<VoiceNoteAnswer> {
    const o = this.options;
    let format: SniffedFormat = 'unknown';
    try {
      // given up while the idempotency record was looked up: release the claim at once
      req.signal?.throwIfAborted();
      const declared = req.declared;
      if (declared.fileLength !== undefined && declared.fileLength > o.maxBytes) {
        throw new AppError('PAYLOAD_TOO_LARGE', `declared file length ${declared.fileLength} exceeds ${o.maxBytes} bytes`, { details: { limit: o.maxBytes } });
      }
      if (declared.seconds !== undefined) this.checkDuration(req.tenant, req.instance, declared.seconds);

      const verifier = new BodyVerifier({ expectedLength: declared.fileLength, expectedSha256, keep: o.keepOriginal });
      const decoded = await this.decode(req, verifier);
      format = decoded.format;
      this.checkDuration(req.tenant, req.instance, decoded.durationSec);
      req.signal?.throwIfAborted();

      const answer = await this.persist(req, decoded, verifier, claim);
      o.metrics.voiceNotes.inc({ outcome: 'stored', format });
      o.metrics.audioSeconds.inc({ source: 'whatsapp' }, decoded.durationSec);
      return answer;
    } catch (err) {
      req.body.destroy();
      await this.failed(req, err, format);
      throw err;
    }
  }

  /** Streams the body through the verifier into the decoder; a verification failure wins over what the decoder made of it. */
  private async decode(req: VoiceNoteRequest, verifier: BodyVerifier): Promise<DecodedAudio> {
    const o = this.options;
    const limits = o.filter.get(req.instance, req.tenant);
    // one second of slack so that the filter, not the decoder's cut-off, names the reason at the boundary
    const maxSec = (limits.enabled ? limits.maxSec : HARD_MAX_SEC) + 1;
    // A note that declares its length is not decoded far past it: a small file of long silence
    // declared short would otherwise cost up to maxSec of PCM in memory.
    const declared = req.declared.seconds;
    const declaredCapSec = declared === undefined ? Infinity : declared + Math.max(DECLARED_SLACK_SEC, declared * DECLARED_SLACK_RATIO);
    const capSec = Math.min(maxSec, declaredCapSec);
    // A failed body ends the verifier instead of failing it: the decoder then stops on a short
    // input. finished() also reports a body that had already failed or closed before this point.
    let bodyError: unknown;
    finished(req.body, (err) => {
      if (err === undefined || err === null) return;
      bodyError = err;
      verifier.end();
    });
    req.body.pipe(verifier);
    let decoded: DecodedAudio;
    try {
      decoded = await decodeAudio(verifier, {
        output: { sampleRate: o.sampleRate, channels: CHANNELS },
        signal: req.signal,
        maxBytes: o.maxBytes,
        timeoutMs: o.decodeTimeoutSec * 1000,
        cpuSeconds: o.decoderCpuSec,
        addressSpaceBytes: o.decoderMemoryMiB === undefined ? undefined : o.decoderMemoryMiB * 1024 * 1024,
        maxOutputBytes: Math.ceil(capSec * o.sampleRate) * 2 * CHANNELS,
        pool: o.pool,
        opusWorkers: o.opusWorkers,
        metrics: o.metrics,
      });
    } catch (err) {
      req.body.unpipe(verifier);
      req.body.destroy();
      if (req.signal?.aborted === true) throw err;
      if (bodyError !== undefined) throw bodyFailure(bodyError);
      if (verifier.mismatch !== undefined) throw verifier.mismatch;
      if (isAppError(err, 'DURATION_TOO_LONG') && capSec < maxSec) {
        throw new AppError('POLICY_REJECTED', `audio lasts longer than the ${declared} s it declared (X-Audio-Seconds)`, {
          details: { declaredSec: declared, decodedAtLeastSec: Math.floor(capSec) },
        });
      }
      if (isAppError(err, 'DURATION_TOO_LONG')) {
        throw new AppError('DURATION_TOO_LONG', `audio lasts longer than the ${maxSec - 1} s maximum of instance "${req.instance}"`, {
          details: { minSec: limits.minSec, maxSec: maxSec - 1 },
        });
      }
      throw err;
    }
    if (!verifier.verified) await verifier.drain();
    if (bodyError !== undefined) throw bodyFailure(bodyError);
    if (verifier.mismatch !== undefined) throw verifier.mismatch;
    return decoded;
  }

  private checkDuration(tenant: string, instance: string, seconds: number): void {
    const check = this.options.filter.check(instance, seconds, tenant);
    if (!check.ok) throw durationRejectionError(check, round3(seconds));
  }

  /** Normalizes, encodes and stores the WAV (and the original), then announces it. */
  private async persist(req: VoiceNoteRequest, decoded: DecodedAudio, verifier: BodyVerifier, claim: IdempotencyClaim<VoiceNoteAnswer>): Promise<VoiceNoteAnswer> {
    const o = this.options;
    let pcm = decoded.pcm;
    if (o.normalize.mode !== 'none') {
      // Int16Array views need an even byte offset
      if (pcm.byteOffset % 2 !== 0) pcm = Buffer.from(pcm);
      normalize(new Int16Array(pcm.buffer, pcm.byteOffset, pcm.byteLength / 2), o.sampleRate, CHANNELS, { mode: o.normalize.mode, targetDb: o.normalize.targetDb });
    }
    const wav = encodeWav(pcm, { sampleRate: o.sampleRate, channels: CHANNELS });
    const durationSec = round3(decoded.durationSec);
    const parts: VoiceNoteKeyParts = { tenant: req.tenant, instance: req.instance, messageId: req.messageId, timestamp: req.declared.messageTimestamp ?? new Date() };
    const key = o.keys.voiceNote(parts);
    const id = randomUUID();
    const metadata: ObjectMetadata = {
      tenant: ascii(req.tenant),
      source: 'whatsapp',
      'sample-rate': String(o.sampleRate),
      channels: String(CHANNELS),
      'duration-sec': String(durationSec),
      'voicenote-id': id,
      instance: ascii(req.instance),
      'chat-id': ascii(req.chatId),
      'message-id': ascii(req.messageId),
      format: decoded.format,
    };
    let originalKey: string | null = null;
    let url: string;
    try {
      if (o.keepOriginal) {
        originalKey = o.keys.voiceNoteOriginal(parts, ORIGINAL_EXTENSION[decoded.format]);
        await o.store.put(originalKey, verifier.original(), { contentType: ORIGINAL_TYPE[decoded.format], metadata });
      }
      await o.store.put(key, wav, { contentType: 'audio/wav', metadata });
      url = await o.store.presign(key, o.presignTtlSec);
    } catch (err) {
      throw storageError(err);
    }
    const storedAt = new Date();
    const answer: VoiceNoteAnswer = { id, status: 'stored', key, url, durationSec, sampleRate: o.sampleRate, channels: CHANNELS };
    // The idempotency record is written while the event is: a repeat is recognised as soon as
    // the answer goes out. Should the event not be written, the record is taken back so that
    // the sender's retry stores and announces the note.
    const recorded = claim.remember(answer);
    try {
      await o.events.append(
        voiceNoteStored({
          voicenote_id: id,
          tenant_id: req.tenant,
          platform: 'whatsapp',
          instance: req.instance,
          chat_id: req.chatId,
          message_id: req.messageId,
          key,
          original_key: originalKey,
          url,
          url_expires_at: new Date(storedAt.getTime() + o.presignTtlSec * 1000).toISOString(),
          duration_sec: durationSec,
          sample_rate: o.sampleRate,
          channels: CHANNELS,
          size_bytes: wav.length,
          format: decoded.format,
          ptt: req.declared.ptt ?? null,
          message_timestamp: req.declared.messageTimestamp?.toISOString() ?? null,
          stored_at: storedAt.toISOString(),
        }),
      );
    } catch (err) {
      await claim.forget();
      throw err;
    }
    await recorded;
    o.logger.info(
      { voiceNoteId: id, tenant: req.tenant, instance: req.instance, messageId: req.messageId, key, originalKey, durationSec, format: decoded.format, decoder: decoded.decoder, bytes: verifier.bytes },
      'voice note stored',
    );
    return answer;
  }

  /** Counts a failure and, when the media itself was refused, announces the rejection. */
  private async failed(req: VoiceNoteRequest, err: unknown, format: SniffedFormat): Promise<void> {
    const o = this.options;
    const code = err instanceof AppError ? err.code : 'INTERNAL';
    const rejected = REJECTION_CODES.has(code);
    const outcome = rejected ? (code.startsWith('DURATION_') ? 'rejected' : 'invalid') : code === 'REQUEST_TIMEOUT' ? 'timeout' : code === 'CLIENT_ABORTED' || req.signal?.aborted ? 'aborted' : 'failed';
    o.metrics.voiceNotes.inc({ outcome, format });
    const fields = { tenant: req.tenant, instance: req.instance, messageId: req.messageId, code };
    if (!rejected) {
      if (outcome === 'failed') o.logger.warn({ ...fields, err }, 'voice note not stored');
      else if (outcome === 'timeout') o.logger.info(fields, 'voice note not received in time');
      else if (code === 'DRAINING') o.logger.info(fields, 'voice note given up: the daemon is stopping');
      else o.logger.info(fields, 'voice note aborted by the client');
      return;
    }
    const e = err as AppError;
    const seconds = typeof e.details?.['seconds'] === 'number' ? e.details['seconds'] : null;
    o.logger.info({ ...fields, reason: e.message }, 'voice note rejected');
    try {
      await o.events.append(
        voiceNoteRejected({ tenant_id: req.tenant, platform: 'whatsapp', instance: req.instance, chat_id: req.chatId, message_id: req.messageId, code, reason: e.message, duration_sec: seconds }),
      );
      if (code === 'DURATION_TOO_SHORT' || code === 'DURATION_TOO_LONG') {
        const limits = o.filter.get(req.instance, req.tenant);
        await o.events.append(
          filterApplied({
            tenant_id: req.tenant,
            instance: req.instance,
            filter: 'duration',
            action: 'rejected',
            reason: code,
            duration_sec: seconds,
            min_sec: limits.minSec,
            max_sec: limits.maxSec,
            chat_id: req.chatId,
            message_id: req.messageId,
          }),
        );
      }
    } catch (appendErr) {
      // the client still gets its rejection; the lost event is the operator's to see
      o.logger.error({ ...fields, err: appendErr }, 'voice note rejection event not written');
    }
  }
}

/** Decodes a declared base64 SHA-256; INVALID_PARAMETER when it is not 32 bytes of base64. */
function parseSha256(b64: string | undefined): Buffer | undefined {
  if (b64 === undefined) return undefined;
  const clean = b64.trim();
  const digest = /^[A-Za-z0-9+/_-]+={0,2}$/.test(clean) ? Buffer.from(clean, clean.includes('-') || clean.includes('_') ? 'base64url' : 'base64') : Buffer.alloc(0);
  if (digest.length !== 32) {
    throw new AppError('INVALID_PARAMETER', 'file SHA-256 must be 32 bytes in base64', { details: { field: 'sha256', value: b64.slice(0, 100), allowed: 'base64 of a 32-byte SHA-256 digest' } });
  }
  return digest;
}

function bodyFailure(err: unknown): AppError {
  return err instanceof AppError ? err : new AppError('CLIENT_ABORTED', 'the request body ended with an error', { cause: err });
}

/** Every storage failure is answered as retryable: WhatsApp audio is never spooled locally. */
function storageError(err: unknown): AppError {
  if (isAppError(err, 'STORAGE_UNAVAILABLE')) {
    return err.retryAfterSec === undefined ? new AppError('STORAGE_UNAVAILABLE', err.message, { retryAfterSec: STORAGE_RETRY_SEC, retryable: err.retryable, cause: err }) : err;
  }
  if (err instanceof AppError) return err;
  return new AppError('STORAGE_UNAVAILABLE', 'object store unavailable', { retryAfterSec: STORAGE_RETRY_SEC, cause: err });
}

/** Metadata values must be printable ASCII: anything else is percent-encoded. */
function ascii(value: string): string {
  const v = /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
  return v.slice(0, 1024);
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}
