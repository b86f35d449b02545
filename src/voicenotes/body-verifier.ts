import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import { AppError } from '../errors.js';

/** Options of {@link BodyVerifier}. */
export interface BodyVerifierOptions {
  /** Bytes the sender declared (`X-File-Length`, `fileLength`); LENGTH_MISMATCH otherwise. */
  expectedLength?: number | undefined;
  /** Raw SHA-256 digest the sender declared (`X-File-Sha256`, `fileSha256`); HASH_MISMATCH otherwise. */
  expectedSha256?: Buffer | undefined;
  /** Keep a copy of every byte (to store the original); bounded by the decoder's byte limit. */
  keep?: boolean;
}

/**
 * Passes the media bytes through unchanged while counting and hashing them. It never fails
 * its stream: past the declared length it passes nothing more and ends cleanly, so the
 * decoder stops, and the caller reads `mismatch` once the decoder is done.
 */
export class BodyVerifier extends Transform {
  private readonly hash: Hash | undefined;
  private readonly kept: Buffer[] | undefined;
  private seen = 0;
  /** The mismatch found, if any. */
  mismatch: AppError | undefined;
  private flushed = false;

  constructor(private readonly options: BodyVerifierOptions) {
    super();
    this.hash = options.expectedSha256 === undefined ? undefined : createHash('sha256');
    this.kept = options.keep === true ? [] : undefined;
  }

  /** Bytes that went through so far. */
  get bytes(): number {
    return this.seen;
  }

  /** True once the whole body went through and matched what was declared. */
  get verified(): boolean {
    return this.flushed && this.mismatch === undefined;
  }

  /** The original bytes (only with `keep`). */
  original(): Buffer {
    return Buffer.concat(this.kept ?? [], this.seen);
  }

  /**
   * Reads whatever the consumer left unread (a decoder may stop at the end of the audio
   * stream), so trailing bytes are still counted and hashed before `mismatch` is read.
   */
  async drain(): Promise<void> {
    if (this.flushed) return;
    this.unpipe();
    this.resume();
    await finished(this);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    const expected = this.options.expectedLength;
    if (this.mismatch !== undefined) {
      cb();
      return;
    }
    if (expected !== undefined && this.seen > expected) {
      this.mismatch = new AppError('LENGTH_MISMATCH', `body is longer than the declared ${expected} bytes`, { details: { declared: expected } });
      cb();
      return;
    }
    this.hash?.update(chunk);
    this.kept?.push(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const expected = this.options.expectedLength;
    this.flushed = true;
    if (this.mismatch !== undefined) {
      cb();
      return;
    }
    if (expected !== undefined && this.seen !== expected) {
      cb(this.fail(new AppError('LENGTH_MISMATCH', `body has ${this.seen} bytes, ${expected} were declared`, { details: { declared: expected, received: this.seen } })));
      return;
    }
    if (this.hash !== undefined && this.options.expectedSha256 !== undefined) {
      const digest = this.hash.digest();
      if (!digest.equals(this.options.expectedSha256)) {
        cb(this.fail(new AppError('HASH_MISMATCH', 'body SHA-256 does not match the declared one', {
          details: { declared: this.options.expectedSha256.toString('base64'), received: digest.toString('base64') },
        })));
        return;
      }
    }
    cb();
  }

  /** Records the mismatch and lets the stream end normally. */
  private fail(err: AppError): undefined {
    this.mismatch = err;
    return undefined;
  }
}
