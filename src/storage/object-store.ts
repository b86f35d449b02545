import type { Readable } from 'node:stream';

/** Metadata stored with every object (S3 user metadata / fs sidecar). Keys are lower-case. */
export type ObjectMetadata = Record<string, string>;

export interface PutOptions {
  contentType: string;
  /** Values must be printable US-ASCII (S3 user metadata); drivers refuse others. */
  metadata?: ObjectMetadata;
  /**
   * Object tags (S3 `x-amz-tagging`), when the store is configured to tag: they add to (and
   * override) the `tenant` and `source` tags taken from the metadata. The fs driver ignores them.
   */
  tags?: ObjectTags;
}

/** Tag names and values (S3 allows letters, digits, spaces and `+ - = . _ : / @`). */
export type ObjectTags = Record<string, string>;

/** One object of {@link ObjectStore.putBatch}. */
export interface BatchItem {
  key: string;
  body: Buffer;
  options: PutOptions;
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
  contentType?: string;
  metadata: ObjectMetadata;
}

export interface PartRef {
  partNumber: number;
  etag: string;
  /** The part's checksum as the store wants it quoted back at completion (S3 with CRC32: base64); absent when none is needed. */
  checksum?: string;
  /** Bytes of the part, when known: a completion whose every part says its size learns the object's size without asking the store. */
  size?: number;
}

/**
 * What every driver (`fs`, `s3`) provides, with the same semantics, proven by one shared
 * conformance suite. Keys are already sanitized by `keys.ts`; drivers still refuse keys that
 * escape their root.
 */
export interface ObjectStore {
  readonly driver: 'fs' | 's3';
  /**
   * True when {@link ObjectStore.putFile} moves the file into place instead of sending its bytes
   * (the fs driver on its own filesystem): a master is then written in one file and put at its end.
   */
  readonly putFileMoves: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Cheap reachability probe for /ready; throws AppError STORAGE_UNAVAILABLE when down. */
  ping(): Promise<void>;

  put(key: string, body: Buffer | Readable, options: PutOptions): Promise<{ key: string; size: number }>;
  /**
   * Stores many small objects with one durable write (group commit), when the driver can do
   * better than one `put` each (the fs driver: one journal append and one fdatasync for the
   * whole batch). Resolves when every object is durable and readable; all or none on error.
   */
  putBatch?(items: BatchItem[]): Promise<void>;
  /**
   * Stores a local file as the object without reading it into memory: the fs driver moves it into
   * place (rename, no copy), S3 streams it in one PUT (≤ 5 GiB). The caller gives the file up:
   * afterwards its path may be gone, and it must not change while the call runs.
   */
  putFile(key: string, path: string, options: PutOptions): Promise<{ key: string; size: number }>;
  get(key: string): Promise<Buffer>;
  getRange(key: string, start: number, endInclusive: number): Promise<Buffer>;
  head(key: string): Promise<ObjectInfo | null>;
  delete(key: string): Promise<void>;
  /**
   * Every object whose key starts with `prefix`, in key order. Items carry key, size and
   * lastModified only (`metadata` is empty): use `head` for metadata.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** A URL that GETs the object without credentials until `ttlSec` passes. */
  presign(key: string, ttlSec: number): Promise<string>;

  createMultipart(key: string, options: PutOptions): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartRef>;
  /**
   * Uploads a part from a local file without reading it into memory (the fs driver links it,
   * S3 streams it). The file must not change afterwards; the caller may delete its own name.
   */
  uploadPartFile(key: string, uploadId: string, partNumber: number, path: string): Promise<PartRef & { size: number }>;
  completeMultipart(key: string, uploadId: string, parts: PartRef[]): Promise<{ key: string; size: number }>;
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** Replaces content type and metadata of an existing object (bytes unchanged). */
  replaceMetadata(key: string, options: PutOptions): Promise<void>;
}

/** Shared check of metadata: lower-case token names, printable ASCII values (what S3 keeps intact). */
export function metadataProblem(metadata: ObjectMetadata | undefined): string | null {
  if (metadata === undefined) return null;
  for (const [k, v] of Object.entries(metadata)) {
    if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(k)) return `metadata name ${JSON.stringify(k)} must be lower-case [a-z0-9-]`;
    if (typeof v !== 'string' || !/^[\x20-\x7e]{0,1024}$/.test(v)) return `metadata ${k} must be printable ASCII`;
  }
  return null;
}
