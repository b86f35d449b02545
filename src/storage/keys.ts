import { createHash } from 'node:crypto';
import { AppError } from '../errors.js';

/**
 * Object keys of CONTRACT §4. Every id segment comes from a client or a token, so each one is
 * sanitized: NFC, no `/` or `\`, no control characters, no leading dot (so neither `.`/`..` nor
 * the fs store's hidden folders), at most {@link MAX_SEGMENT_BYTES} UTF-8 bytes, never empty.
 * Distinct ids give distinct segments: an id kept as it is has no `~`; any other (changed by
 * these rules, cut, or holding a `~`) is the cleaned text, `~`, and a hash of the id as given.
 * Without the hash, `M/1` and `M_1` (two WhatsApp messages, two recordings' participants) were one
 * key, and the second object replaced the first.
 */

/** Longest segment in UTF-8 bytes; longer ids are cut and suffixed with a hash of the original. */
export const MAX_SEGMENT_BYTES = 128;

const HASH_SUFFIX_CHARS = 16;
 
const UNSAFE = /[\u0000-\u001f\u007f-\u009f/\\\u2028\u2029\ufeff]/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The rules' text of one segment, without the hash that keeps distinct ids apart. */
function cleanSegment(raw: string): string {
  const s = raw.replace(LONE_SURROGATE, '_').normalize('NFC').replace(UNSAFE, '_');
  const t = s.replace(/^\.+/, (dots) => '_'.repeat(dots.length));
  return t.length === 0 ? '_' : t;
}

/** Makes one path segment safe; the same input always gives the same output, and distinct inputs distinct outputs. */
export function sanitizeSegment(raw: string): string {
  const s = cleanSegment(raw);
  if (s === raw && !raw.includes('~') && Buffer.byteLength(s, 'utf8') <= MAX_SEGMENT_BYTES) return s;
  const hash = createHash('sha256').update(raw, 'utf8').digest('hex').slice(0, HASH_SUFFIX_CHARS);
  return `${cutUtf8(s.replace(/~/g, '_'), MAX_SEGMENT_BYTES - HASH_SUFFIX_CHARS - 1)}~${hash}`;
}

/** The longest prefix of `s` that fits in `maxBytes` UTF-8 bytes without splitting a code point. */
function cutUtf8(s: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += ch.length;
  }
  return s.slice(0, end);
}

/** A file extension reduced to 1–8 lower-case alphanumerics; anything else becomes `bin`. */
export function sanitizeExtension(ext: string): string {
  const e = ext.replace(/^\./, '').toLowerCase();
  return /^[a-z0-9]{1,8}$/.test(e) ? e : 'bin';
}

/**
 * Refuses a key that a driver must never touch: empty, absolute, empty/`.`/`..` segments,
 * control characters or backslashes. Keys built here always pass.
 */
export function assertSafeKey(key: string): void {
   
  const bad = key.length === 0 || key.length > 1024 || /[\u0000-\u001f\u007f\\]/.test(key)
    || key.split('/').some((seg) => seg === '' || seg === '.' || seg === '..');
  if (bad) {
    throw new AppError('INVALID_PARAMETER', 'object key refused', { details: { key: key.slice(0, 200) } });
  }
}

/** Options of {@link ObjectKeys}. */
export interface ObjectKeysOptions {
  /** Folder(s) in front of every key, e.g. `prod` or `env/eu`; each segment is sanitized. Empty for none. */
  prefix?: string;
}

/** Identity of a live track's recording. */
export interface RecordingKeyParts {
  tenant: string;
  /** Preferred over roomName when set. */
  meetingId?: string | undefined;
  roomName: string;
  participant: string;
  trackId: string;
  recordingId: string;
}

/** Identity of a WhatsApp voice note. */
export interface VoiceNoteKeyParts {
  tenant: string;
  instance: string;
  messageId: string;
  /** When the message was sent (or received); its UTC date names the folders. */
  timestamp: Date;
}

/** Builds every object key the daemon writes. */
export class ObjectKeys {
  /** The sanitized prefix with a trailing `/`, or '' when none. */
  readonly prefix: string;

  constructor(options: ObjectKeysOptions = {}) {
    // the operator's folders: cleaned by the same rules, kept readable (no hash: nothing to tell apart)
    const segs = (options.prefix ?? '').split('/').filter((s) => s.length > 0).map((seg) => cutUtf8(cleanSegment(seg), MAX_SEGMENT_BYTES));
    this.prefix = segs.length > 0 ? `${segs.join('/')}/` : '';
  }

  /** `recordings/<tenant>/<meetingId|roomName>/<participant>/<trackId>/<recordingId>.wav` */
  master(p: RecordingKeyParts): string {
    return `${this.recordingBase(p)}.wav`;
  }

  /** `…/<recordingId>/chunks/<seq:000000>.wav` */
  chunk(p: RecordingKeyParts, seq: number): string {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new AppError('INVALID_PARAMETER', `chunk seq must be a non-negative integer, got ${seq}`);
    return `${this.recordingBase(p)}/chunks/${String(seq).padStart(6, '0')}.wav`;
  }

  /** The folder holding every object of one recording (for listing and retention). */
  recordingFolder(p: RecordingKeyParts): string {
    return `${this.recordingBase(p)}/`;
  }

  /** `whatsapp/<tenant>/<instance>/<yyyy>/<mm>/<dd>/<messageId>.wav` */
  voiceNote(p: VoiceNoteKeyParts): string {
    return `${this.voiceNoteBase(p)}.wav`;
  }

  /** The original media beside the WAV, with its own extension (e.g. `ogg`). */
  voiceNoteOriginal(p: VoiceNoteKeyParts, extension: string): string {
    return `${this.voiceNoteBase(p)}.${sanitizeExtension(extension)}`;
  }

  private recordingBase(p: RecordingKeyParts): string {
    const place = p.meetingId !== undefined && p.meetingId.length > 0 ? p.meetingId : p.roomName;
    return this.prefix + ['recordings', p.tenant, place, p.participant, p.trackId, p.recordingId].map((s, i) => (i === 0 ? s : sanitizeSegment(s))).join('/');
  }

  private voiceNoteBase(p: VoiceNoteKeyParts): string {
    const ts = p.timestamp;
    if (Number.isNaN(ts.getTime())) throw new AppError('INVALID_PARAMETER', 'voice note timestamp is not a valid date');
    const yyyy = String(ts.getUTCFullYear()).padStart(4, '0');
    const mm = String(ts.getUTCMonth() + 1).padStart(2, '0');
    const dd = String(ts.getUTCDate()).padStart(2, '0');
    return `${this.prefix}whatsapp/${sanitizeSegment(p.tenant)}/${sanitizeSegment(p.instance)}/${yyyy}/${mm}/${dd}/${sanitizeSegment(p.messageId)}`;
  }
}
