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
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import { assertSafeKey } from './keys.js';
import { metadataProblem } from './object-store.js';
import type { ObjectInfo, ObjectStore, PartRef, PutOptions } from './object-store.js';

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
  logger?: Logger;
  metrics?: Metrics;
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

/** Maps an SDK error to STORAGE_UNAVAILABLE (retryable), NOT_FOUND, INVALID_PARAMETER or STORAGE_ERROR. */
export function mapS3Error(op: string, err: unknown, key?: string): AppError {
  if (err instanceof AppError) return err;
  const name = s3ErrorName(err);
  const status = (err as SdkError | null)?.$metadata?.httpStatusCode;
  const details = { op, s3: name, ...(status === undefined ? {} : { status }), ...(key === undefined ? {} : { key }) };
  if (isRetryableS3Error(err)) {
    return new AppError('STORAGE_UNAVAILABLE', `object store unavailable during ${op}`, { cause: err, retryAfterSec: 5, details });
  }
  if (name === 'NoSuchKey' || name === 'NotFound') return new AppError('NOT_FOUND', 'object not found', { cause: err, details });
  if (name === 'InvalidRange') return new AppError('INVALID_PARAMETER', 'range not satisfiable', { cause: err, details });
  return new AppError('STORAGE_ERROR', `object store ${op} failed (${name})`, { cause: err, details });
}

/** Counts bytes flowing through, for the size of a streamed put. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

export class S3ObjectStore implements ObjectStore {
  readonly driver = 's3' as const;
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly streamClient: S3Client;
  private readonly logger: Logger | undefined;
  private readonly metrics: Metrics | undefined;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.logger = options.logger;
    this.metrics = options.metrics;
    const config = {
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      // S3-compatible services often reject the newer default checksum trailers
      requestChecksumCalculation: 'WHEN_REQUIRED',
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
  }

  async stop(): Promise<void> {
    this.client.destroy();
    this.streamClient.destroy();
  }

  async ping(): Promise<void> {
    await this.run('ping', undefined, () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions): Promise<{ key: string; size: number }> {
    this.check(key, options);
    if (Buffer.isBuffer(body)) {
      await this.run('put', key, () => this.client.send(new PutObjectCommand({
        Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, ContentType: options.contentType, Metadata: options.metadata,
      })));
      this.metrics?.storeBytes.inc({ driver: 's3' }, body.length);
      return { key, size: body.length };
    }
    const counter = new ByteCounter();
    body.on('error', (err) => counter.destroy(err));
    body.pipe(counter);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: counter, ContentType: options.contentType, Metadata: options.metadata },
      queueSize: 2,
      leavePartsOnError: false,
    });
    await this.run('put', key, () => upload.done());
    this.metrics?.storeBytes.inc({ driver: 's3' }, counter.bytes);
    return { key, size: counter.bytes };
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
      Bucket: this.bucket, Key: key, ContentType: options.contentType, Metadata: options.metadata,
    })));
    if (res.UploadId === undefined) throw new AppError('STORAGE_ERROR', 'object store returned no upload id');
    return res.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartRef> {
    assertSafeKey(key);
    const res = await this.run('uploadPart', key, () => this.client.send(new UploadPartCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length,
    })));
    if (res.ETag === undefined) throw new AppError('STORAGE_ERROR', 'object store returned no ETag for a part');
    this.metrics?.storeBytes.inc({ driver: 's3' }, body.length);
    return { partNumber, etag: res.ETag };
  }

  async uploadPartFile(key: string, uploadId: string, partNumber: number, path: string): Promise<PartRef & { size: number }> {
    assertSafeKey(key);
    const { size } = await stat(path).catch((err: unknown) => {
      throw new AppError('STORAGE_ERROR', `part file ${path} cannot be read`, { cause: err });
    });
    // Streamed from the spool file: a 5 MiB part never sits in memory. A retry opens a new stream.
    const res = await this.run('uploadPart', key, () => this.streamClient.send(new UploadPartCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: createReadStream(path), ContentLength: size,
    })));
    if (res.ETag === undefined) throw new AppError('STORAGE_ERROR', 'object store returned no ETag for a part');
    this.metrics?.storeBytes.inc({ driver: 's3' }, size);
    return { partNumber, etag: res.ETag, size };
  }

  async completeMultipart(key: string, uploadId: string, parts: PartRef[]): Promise<{ key: string; size: number }> {
    assertSafeKey(key);
    await this.run('completeMultipart', key, () => this.client.send(new CompleteMultipartUploadCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId,
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
    })));
    const info = await this.head(key);
    if (info === null) throw new AppError('STORAGE_ERROR', 'completed object is not visible', { details: { key } });
    return { key, size: info.size };
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
    })));
  }

  private check(key: string, options: PutOptions): void {
    assertSafeKey(key);
    const problem = metadataProblem(options.metadata);
    if (problem !== null) throw new AppError('INVALID_PARAMETER', problem);
  }

  /** Runs one SDK call, maps its error, counts the outcome. */
  private async run<T>(op: string, key: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      const res = await fn();
      this.metrics?.storeOps.inc({ driver: 's3', op, outcome: 'ok' });
      return res;
    } catch (err) {
      const mapped = mapS3Error(op, err, key);
      this.metrics?.storeOps.inc({ driver: 's3', op, outcome: mapped.code === 'NOT_FOUND' ? 'not_found' : 'error' });
      throw mapped;
    }
  }
}
