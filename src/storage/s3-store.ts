import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { FinalizeQueue } from '../recording/finalize-queue.js';
import { FileBody } from './file-body.js';
import { FileDigester, type FileDigest } from './file-digest.js';
import { assertSafeKey } from './keys.js';
import { metadataProblem } from './object-store.js';
import type { ObjectInfo, ObjectMetadata, ObjectStore, ObjectTags, PartRef, PutOptions } from './object-store.js';

/** Options of {@link S3ObjectStore}. */
export interface S3ObjectStoreOptions {
  /** Endpoint of an S3-compatible service (MinIO, s3rver…); unset for AWS. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most S3-compatible services. */
  forcePathStyle: boolean;
  /** Static credentials; unset uses the SDK's default chain (AWS_ACCESS_KEY_ID, …). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** SDK attempts per request before an error surfaces (default 3). */
  maxAttempts?: number;
  /** Socket connect / whole request timeouts in ms (defaults 5 000 / 120 000). */
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /**
   * Integrity checksum of every PutObject / UploadPart (default `md5`):
   * - `md5`: Content-MD5, computed before the request (a file is read once more, on a worker
   *   thread, never on the event loop); accepted by AWS (Object Lock buckets included), R2,
   *   MinIO, Ceph, s3rver.
   * - `crc32`: an `x-amz-checksum-crc32` header computed the same way; multipart uploads declare
   *   CRC32 and quote each part's checksum at completion.
   * - `sdk`: the SDK computes CRC32 while it sends, in an aws-chunked trailer (one pass over the
   *   bytes; only for stores that read aws-chunked trailers, e.g. AWS itself).
   * - `none`: no checksum (stores that refuse both headers).
   */
  checksum?: S3ChecksumMode;
  /** Encryption, storage class and tags of every object this store writes. */
  objects?: S3ObjectSettings;
  logger?: Logger;
  metrics?: Metrics;
}

/** See {@link S3ObjectStoreOptions.checksum}. */
export type S3ChecksumMode = 'md5' | 'crc32' | 'sdk' | 'none';

/** Server-side encryption S3 applies: SSE-S3 (`AES256`), SSE-KMS (`aws:kms`) or dual-layer SSE-KMS. */
export type S3Encryption = 'AES256' | 'aws:kms' | 'aws:kms:dsse';

/** Storage classes whose objects can be read at once (the daemon reads its own records back). */
export const S3_STORAGE_CLASSES = ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'REDUCED_REDUNDANCY'] as const;
export type S3StorageClass = (typeof S3_STORAGE_CLASSES)[number];

/**
 * What every write (PutObject, CreateMultipartUpload, the CopyObject of a metadata change) carries,
 * for every kind of object alike. UploadPart carries none of it: S3 takes it from the upload.
 */
export interface S3ObjectSettings {
  /** `x-amz-server-side-encryption`; unset leaves it to the bucket's default encryption. */
  encryption?: S3Encryption;
  /** `x-amz-server-side-encryption-aws-kms-key-id` (KMS encryption only; unset: the account's aws/s3 key). */
  kmsKeyId?: string;
  /** `x-amz-server-side-encryption-bucket-key-enabled` (KMS encryption only). */
  bucketKey?: boolean;
  /** `x-amz-storage-class`; unset leaves it to the bucket (STANDARD). */
  storageClass?: S3StorageClass;
  /**
   * Tags every object with its `tenant` and `source` (from its metadata, or PutOptions.tags)
   * in `x-amz-tagging`, for cost allocation, lifecycle rules and access policies by tag.
   */
  tagObjects?: boolean;
}

/** The settings as the configuration (`storage.s3`) gives them; load.ts has refused the contradictory ones. */
export function objectSettingsOf(s3: { sse: 'none' | S3Encryption; kmsKeyId?: string | undefined; bucketKey: boolean; storageClass?: string | undefined; tagObjects: boolean }): S3ObjectSettings {
  if (s3.storageClass !== undefined && !(S3_STORAGE_CLASSES as readonly string[]).includes(s3.storageClass)) {
    throw new AppError('INVALID_PARAMETER', `storage class ${s3.storageClass} cannot be read back at once`);
  }
  return {
    ...(s3.sse === 'none' ? {} : { encryption: s3.sse }),
    ...(s3.kmsKeyId === undefined ? {} : { kmsKeyId: s3.kmsKeyId }),
    ...(s3.bucketKey ? { bucketKey: true } : {}),
    ...(s3.storageClass === undefined ? {} : { storageClass: s3.storageClass as S3StorageClass }),
    ...(s3.tagObjects ? { tagObjects: true } : {}),
  };
}

/** The tag names taken from an object's metadata. */
const TAGGED_METADATA = ['tenant', 'source'] as const;

/** Characters S3 allows in tag names and values. */
const TAG_TEXT = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

/** Why a tag cannot be sent, or null (S3: names 1–128 characters, values up to 256, a restricted alphabet). */
export function tagProblem(name: string, value: string): string | null {
  if (name.length < 1 || name.length > 128 || !TAG_TEXT.test(name) || name.startsWith('aws:')) return `tag name ${JSON.stringify(name)} is not allowed`;
  if (value.length > 256 || !TAG_TEXT.test(value)) return `tag ${name}=${JSON.stringify(value)}: values are up to 256 letters, digits, spaces and + - = . _ : / @`;
  return null;
}

/**
 * The `x-amz-tagging` value of a write: `name=value` pairs joined by `&`, each part URL-encoded
 * (encodeURIComponent: a space is %20, never `+`). Tags S3 would refuse are left out.
 */
export function taggingOf(metadata: ObjectMetadata | undefined, extra: ObjectTags | undefined): string | undefined {
  const tags = new Map<string, string>();
  for (const name of TAGGED_METADATA) {
    const v = metadata?.[name];
    if (v !== undefined && v !== '') tags.set(name, v);
  }
  for (const [name, v] of Object.entries(extra ?? {})) tags.set(name, v);
  const pairs: string[] = [];
  for (const [name, v] of tags) {
    if (tagProblem(name, v) === null) pairs.push(`${encodeURIComponent(name)}=${encodeURIComponent(v)}`);
  }
  return pairs.length === 0 ? undefined : pairs.join('&');
}

/** Largest single PUT S3 takes. */
export const S3_MAX_PUT_BYTES = 5 * 1024 * 1024 * 1024;

/** Part size of a streamed `put` of unknown length (all parts but the last are this long). */
const STREAM_PART_BYTES = 8 * 1024 * 1024;

/**
 * SDK calls in flight per client at most: as many as its agent has sockets (the SDK's node:http
 * handler keeps 50 per endpoint). A call beyond them would only wait in the agent's queue, after
 * the SDK had already serialized and signed it: when a meeting ends, its recordings' catalog and
 * room records are all written in the same moment (and the rooms' heartbeat re-writes every live
 * track's record from one timer), so hundreds of requests were prepared in one turn of the event
 * loop. Held here instead, each call is prepared when a socket can take it.
 */
export const S3_CALLS_IN_FLIGHT = 50;

/** What the checksum fields of one request carry. */
interface ChecksumFields {
  ContentMD5?: string;
  ChecksumCRC32?: string;
}

const RETRYABLE_NAMES = new Set([
  'SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeoutException',
  'ServiceUnavailable', 'InternalError', 'TimeoutError', 'RequestLimitExceeded', 'TooManyRequestsException',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET',
]);

interface SdkError {
  name?: string;
  code?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

/** True when an S3 error means "the store is down or busy, try again" rather than "this request is wrong". */
export function isRetryableS3Error(err: unknown): boolean {
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (e.name !== undefined && RETRYABLE_NAMES.has(e.name)) return true;
  if (e.code !== undefined && NETWORK_CODES.has(e.code)) return true;
  if (e.$retryable !== undefined) return true;
  // a response never arrived: socket-level failure
  return status === undefined && !(err instanceof AppError) && (e.name === 'Error' || e.name === 'AbortError' || e.code !== undefined);
}

function s3ErrorName(err: unknown): string {
  const e = (err ?? {}) as SdkError;
  return e.name ?? e.Code ?? 'Error';
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    throw new AppError('STORAGE_ERROR', `file ${path} cannot be read`, { cause: err });
  }
}

/** Maps an SDK error to STORAGE_UNAVAILABLE (retryable), NOT_FOUND, INVALID_PARAMETER or STORAGE_ERROR. */
export function mapS3Error(op: string, err: unknown, key?: string): AppError {
  if (err instanceof AppError) return err;
  const name = s3ErrorName(err);
  const status = (err as SdkError | null)?.$metadata?.httpStatusCode;
  const details = { op, s3: name, ...(status === undefined ? {} : { status }), ...(key === undefined ? {} : { key }) };
  if (isRetryableS3Error(err)) {
    return new AppError('STORAGE_UNAVAILABLE', `object store unavailable during ${op}`, { cause: err, retryAfterSec: 5, retryable: true, details });
  }
  if (name === 'NoSuchKey' || name === 'NotFound') return new AppError('NOT_FOUND', 'object not found', { cause: err, details });
  if (name === 'InvalidRange') return new AppError('INVALID_PARAMETER', 'range not satisfiable', { cause: err, details });
  return new AppError('STORAGE_ERROR', `object store ${op} failed (${name})`, { cause: err, details });
}

function crc32Base64(value: number): string {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b.toString('base64');
}

export class S3ObjectStore implements ObjectStore {
  readonly driver = 's3' as const;
  readonly putFileMoves = false;
  readonly bucket: string;
  readonly checksum: S3ChecksumMode;
  readonly objectSettings: Readonly<S3ObjectSettings>;
  private readonly client: S3Client;
  private readonly streamClient: S3Client;
  /** Calls in flight through each client (see S3_CALLS_IN_FLIGHT). */
  private readonly calls = new FinalizeQueue(S3_CALLS_IN_FLIGHT);
  private readonly streamCalls = new FinalizeQueue(S3_CALLS_IN_FLIGHT);
  /** Checksums of files sent (parts, putFile), off the event loop. */
  private readonly digester = new FileDigester();
  private readonly logger: Logger | undefined;
  private readonly metrics: Metrics | undefined;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.checksum = options.checksum ?? 'md5';
    this.objectSettings = { ...options.objects };
    this.logger = options.logger;
    this.metrics = options.metrics;
    const config = {
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      // The SDK's own checksums go in aws-chunked trailers for streams, which many S3-compatible
      // services cannot read: unless asked to (`sdk`), this store computes them before the request.
      requestChecksumCalculation: this.checksum === 'sdk' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: options.connectionTimeoutMs ?? 5_000, requestTimeout: options.requestTimeoutMs ?? 120_000 },
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    } as const;
    this.client = new S3Client({ ...config, maxAttempts: options.maxAttempts ?? 3 });
    // A streamed body can be sent once: the SDK must not retry it; callers retry with a new stream.
    this.streamClient = new S3Client({ ...config, maxAttempts: 1 });
  }

  async start(): Promise<void> {
    // the client connects lazily; /ready uses ping()
    this.digester.warm();
  }

  async stop(): Promise<void> {
    this.client.destroy();
    this.streamClient.destroy();
    await this.digester.close();
  }

  async ping(): Promise<void> {
    await this.run('ping', undefined, () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions): Promise<{ key: string; size: number }> {
    this.check(key, options);
    if (!Buffer.isBuffer(body)) return this.putStream(key, body, options);
    const sums = this.bufferChecksum(body);
    await this.run('put', key, () => this.client.send(new PutObjectCommand({
      Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, ContentType: options.contentType, Metadata: options.metadata, ...sums, ...this.writeFields(options),
    })));
    this.metrics?.storeBytes.inc({ driver: 's3' }, body.length);
    return { key, size: body.length };
  }

  async putFile(key: string, path: string, options: PutOptions): Promise<{ key: string; size: number }> {
    this.check(key, options);
    const size = await fileSize(path);
    if (size > S3_MAX_PUT_BYTES) throw new AppError('INVALID_PARAMETER', `${size} bytes is more than one PUT takes (${S3_MAX_PUT_BYTES})`, { details: { key } });
    const sums = await this.fileChecksum(path, size);
    // Streamed from the file through reused read buffers (FileBody); a retry (by the caller) opens a new body.
    await this.run('put', key, () => this.streamClient.send(new PutObjectCommand({
      Bucket: this.bucket, Key: key, Body: new FileBody(path, size), ContentLength: size, ContentType: options.contentType, Metadata: options.metadata, ...sums, ...this.writeFields(options),
    })), this.streamCalls);
    this.metrics?.storeBytes.inc({ driver: 's3' }, size);
    return { key, size };
  }

  /**
   * A body of unknown length: one PUT if it ends within the first part, else a multipart
   * upload of equal parts. Holds one part in memory.
   */
  private async putStream(key: string, body: Readable, options: PutOptions): Promise<{ key: string; size: number }> {
    let part = Buffer.allocUnsafe(STREAM_PART_BYTES);
    let fill = 0;
    let uploadId: string | null = null;
    const parts: PartRef[] = [];
    let size = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        let off = 0;
        while (off < chunk.length) {
          const n = Math.min(chunk.length - off, STREAM_PART_BYTES - fill);
          chunk.copy(part, fill, off, off + n);
          fill += n;
          off += n;
          if (fill === STREAM_PART_BYTES) {
            uploadId ??= await this.createMultipart(key, options);
            parts.push(await this.uploadPart(key, uploadId, parts.length + 1, part));
            size += fill;
            fill = 0;
            part = Buffer.allocUnsafe(STREAM_PART_BYTES);
          }
        }
      }
      if (uploadId === null) return await this.put(key, part.subarray(0, fill), options);
      if (fill > 0) parts.push(await this.uploadPart(key, uploadId, parts.length + 1, part.subarray(0, fill)));
      size += fill;
      await this.completeMultipart(key, uploadId, parts);
      return { key, size };
    } catch (err) {
      if (uploadId !== null) await this.abortMultipart(key, uploadId).catch(() => undefined); // cleanup after a failed upload: the upload's error is the one to report (S3 expires the rest)
      // store calls throw AppErrors already; anything else is the body's own error
      throw err;
    }
  }

  async get(key: string): Promise<Buffer> {
    assertSafeKey(key);
    return this.run('get', key, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    });
  }

  async getRange(key: string, start: number, endInclusive: number): Promise<Buffer> {
    assertSafeKey(key);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(endInclusive) || start < 0 || endInclusive < start) {
      throw new AppError('INVALID_PARAMETER', `invalid range ${start}-${endInclusive}`);
    }
    return this.run('getRange', key, async () => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${endInclusive}` }));
      return Buffer.from(await res.Body!.transformToByteArray());
    });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertSafeKey(key);
    try {
      const res = await this.run('head', key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.Metadata ?? {})) metadata[k.toLowerCase()] = v;
      return {
        key,
        size: res.ContentLength ?? 0,
        lastModified: res.LastModified ?? new Date(0),
        ...(res.ContentType === undefined ? {} : { contentType: res.ContentType }),
        metadata,
      };
    } catch (err) {
      if (err instanceof AppError && err.code === 'NOT_FOUND') return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    await this.run('delete', key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const res = await this.run('list', undefined, () => this.client.send(new ListObjectsV2Command({
        Bucket: this.bucket, Prefix: prefix, ...(token === undefined ? {} : { ContinuationToken: token }),
      })));
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0), metadata: {} };
      }
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async presign(key: string, ttlSec: number): Promise<string> {
    assertSafeKey(key);
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: Math.max(1, Math.floor(ttlSec)) });
  }

  async createMultipart(key: string, options: PutOptions): Promise<string> {
    this.check(key, options);
    const res = await this.run('createMultipart', key, () => this.client.send(new CreateMultipartUploadCommand({
      Bucket: this.bucket, Key: key, ContentType: options.contentType, Metadata: options.metadata, ...this.writeFields(options),
      // parts carry CRC32: the upload must say so, and completion quotes each part's value
      ...(this.checksum === 'crc32' || this.checksum === 'sdk' ? { ChecksumAlgorithm: 'CRC32' as const } : {}),
    })));
    if (res.UploadId === undefined) throw new AppError('STORAGE_ERROR', 'object store returned no upload id');
    return res.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartRef> {
    assertSafeKey(key);
    const sums = this.bufferChecksum(body);
    const res = await this.run('uploadPart', key, () => this.client.send(new UploadPartCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length, ...sums,
    })));
    if (res.ETag === undefined) throw new AppError('STORAGE_ERROR', 'object store returned no ETag for a part');
    this.metrics?.storeBytes.inc({ driver: 's3' }, body.length);
    return { ...this.partRef(partNumber, res.ETag, sums, res.ChecksumCRC32), size: body.length };
  }

  async uploadPartFile(key: string, uploadId: string, partNumber: number, path: string): Promise<PartRef & { size: number }> {
    assertSafeKey(key);
    const size = await fileSize(path);
    const sums = await this.fileChecksum(path, size);
    // Streamed from the spool file through reused read buffers (FileBody): a part never sits in
    // memory, and its reads allocate nothing. A retry opens a new body.
    const res = await this.run('uploadPart', key, () => this.streamClient.send(new UploadPartCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: new FileBody(path, size), ContentLength: size, ...sums,
    })), this.streamCalls);
    if (res.ETag === undefined) throw new AppError('STORAGE_ERROR', 'object store returned no ETag for a part');
    this.metrics?.storeBytes.inc({ driver: 's3' }, size);
    return { ...this.partRef(partNumber, res.ETag, sums, res.ChecksumCRC32), size };
  }

  async completeMultipart(key: string, uploadId: string, parts: PartRef[]): Promise<{ key: string; size: number }> {
    assertSafeKey(key);
    await this.run('completeMultipart', key, () => this.client.send(new CompleteMultipartUploadCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId,
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag, ...(p.checksum === undefined ? {} : { ChecksumCRC32: p.checksum }) })) },
    })));
    // S3 answers a completion once the object is there (read-after-write consistent): with every
    // part's size known, its size is their sum and a HEAD would only repeat it
    let known = 0;
    for (const p of parts) {
      if (p.size === undefined) {
        const info = await this.head(key);
        if (info === null) throw new AppError('STORAGE_ERROR', 'completed object is not visible', { details: { key } });
        return { key, size: info.size };
      }
      known += p.size;
    }
    return { key, size: known };
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    assertSafeKey(key);
    try {
      await this.run('abortMultipart', key, () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })));
    } catch (err) {
      const name = err instanceof AppError ? String(err.details?.['s3'] ?? '') : '';
      // some S3-compatible services lack abort; an unknown upload is already gone
      if (name === 'NotImplemented' || name === 'MethodNotAllowed' || name === 'NoSuchUpload') {
        this.logger?.warn({ key, uploadId, s3: name }, 'multipart abort not done by the store; treating it as done');
        return;
      }
      throw err;
    }
  }

  async replaceMetadata(key: string, options: PutOptions): Promise<void> {
    this.check(key, options);
    await this.run('replaceMetadata', key, () => this.client.send(new CopyObjectCommand({
      Bucket: this.bucket, Key: key, CopySource: `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`,
      MetadataDirective: 'REPLACE', ContentType: options.contentType, Metadata: options.metadata,
      // a copy is a new write: without them it would fall back to the bucket's encryption and
      // class; the tags are copied (TaggingDirective COPY, S3's default)
      ...this.encryptionFields(), ...this.classField(),
    })));
  }

  /** Encryption, class and tags of a PutObject / CreateMultipartUpload. */
  private writeFields(options: PutOptions): { Tagging?: string } & ReturnType<S3ObjectStore['encryptionFields']> & ReturnType<S3ObjectStore['classField']> {
    const tagging = this.objectSettings.tagObjects === true ? taggingOf(options.metadata, options.tags) : undefined;
    return { ...this.encryptionFields(), ...this.classField(), ...(tagging === undefined ? {} : { Tagging: tagging }) };
  }

  private encryptionFields(): { ServerSideEncryption?: S3Encryption; SSEKMSKeyId?: string; BucketKeyEnabled?: boolean } {
    const { encryption, kmsKeyId, bucketKey } = this.objectSettings;
    if (encryption === undefined) return {};
    if (encryption === 'AES256') return { ServerSideEncryption: encryption };
    return { ServerSideEncryption: encryption, ...(kmsKeyId === undefined ? {} : { SSEKMSKeyId: kmsKeyId }), ...(bucketKey === true ? { BucketKeyEnabled: true } : {}) };
  }

  private classField(): { StorageClass?: S3StorageClass } {
    return this.objectSettings.storageClass === undefined ? {} : { StorageClass: this.objectSettings.storageClass };
  }

  /** Checksum fields of a request whose body is `body` (nothing for `sdk`/`none`: the SDK or no one adds them). */
  private bufferChecksum(body: Buffer): ChecksumFields {
    if (this.checksum === 'md5') return { ContentMD5: createHash('md5').update(body).digest('base64') };
    if (this.checksum === 'crc32') return { ChecksumCRC32: crc32Base64(crc32(body)) };
    return {};
  }

  /** The same for a file, computed on the digest worker (never read or hashed on the event loop). */
  private async fileChecksum(path: string, size: number): Promise<ChecksumFields> {
    if (this.checksum !== 'md5' && this.checksum !== 'crc32') return {};
    let d: FileDigest;
    try {
      d = await this.digester.digest(path, this.checksum);
    } catch (err) {
      throw new AppError('STORAGE_ERROR', `file ${path} cannot be read`, { cause: err });
    }
    // the body is sent with the length stat gave: a file that changed meanwhile is refused here, not by the store
    if (d.size !== size) throw new AppError('STORAGE_ERROR', `file ${path} changed while it was being sent`, { details: { size, hashed: d.size } });
    return this.checksum === 'md5' ? { ContentMD5: d.digest } : { ChecksumCRC32: d.digest };
  }

  /** A part's reference; with CRC32 it keeps the checksum completion must quote (ours, or the one S3 computed). */
  private partRef(partNumber: number, etag: string, sums: ChecksumFields, answered: string | undefined): PartRef {
    const checksum = sums.ChecksumCRC32 ?? (this.checksum === 'sdk' ? answered : undefined);
    return { partNumber, etag, ...(checksum === undefined ? {} : { checksum }) };
  }

  private check(key: string, options: PutOptions): void {
    assertSafeKey(key);
    const problem = metadataProblem(options.metadata);
    if (problem !== null) throw new AppError('INVALID_PARAMETER', problem);
  }

  /** Runs one SDK call once the client has a slot for it (`calls`: the client's), maps its error, counts the outcome. */
  private async run<T>(op: string, key: string | undefined, fn: () => Promise<T>, calls = this.calls): Promise<T> {
    try {
      const res = await calls.run(fn);
      this.metrics?.storeOps.inc({ driver: 's3', op, outcome: 'ok' });
      return res;
    } catch (err) {
      const mapped = mapS3Error(op, err, key);
      this.metrics?.storeOps.inc({ driver: 's3', op, outcome: mapped.code === 'NOT_FOUND' ? 'not_found' : 'error' });
      throw mapped;
    }
  }
}
