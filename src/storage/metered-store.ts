import type { Readable } from 'node:stream';
import { isAppError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { BatchItem, ObjectInfo, ObjectStore, PartRef, PutOptions } from './object-store.js';

/** Operations that are timed and counted (every I/O method of the interface). */
const OPS = [
  'ping', 'put', 'putBatch', 'putFile', 'get', 'getRange', 'head', 'delete', 'list', 'presign', 'createMultipart', 'uploadPart',
  'uploadPartFile', 'completeMultipart', 'abortMultipart', 'replaceMetadata',
] as const;
type Op = (typeof OPS)[number];

/**
 * Wraps any driver to observe `audio_ingestd_store_operation_seconds{driver,op}` and count
 * `audio_ingestd_store_operations_total{driver,op,outcome}` (ok, not_found, error) — one place
 * for both drivers, so the dashboard and the alerts read the same series whatever the store.
 * The error series of every operation exist at 0 from the start, so the first error is an increase.
 */
export class MeteredObjectStore implements ObjectStore {
  readonly driver: 'fs' | 's3';
  /** Present when the driver has it. */
  readonly putBatch?: (items: BatchItem[]) => Promise<void>;

  constructor(
    private readonly inner: ObjectStore,
    private readonly metrics: Metrics,
  ) {
    this.driver = inner.driver;
    for (const op of OPS) metrics.storeOps.inc({ driver: this.driver, op, outcome: 'error' }, 0);
    if (inner.putBatch !== undefined) {
      const batch = inner.putBatch.bind(inner);
      this.putBatch = (items) => this.timed('putBatch', () => batch(items));
    }
  }

  get putFileMoves(): boolean {
    return this.inner.putFileMoves;
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  stop(): Promise<void> {
    return this.inner.stop();
  }

  ping(): Promise<void> {
    return this.timed('ping', () => this.inner.ping());
  }

  put(key: string, body: Buffer | Readable, options: PutOptions): Promise<{ key: string; size: number }> {
    return this.timed('put', () => this.inner.put(key, body, options));
  }

  putFile(key: string, path: string, options: PutOptions): Promise<{ key: string; size: number }> {
    return this.timed('putFile', () => this.inner.putFile(key, path, options));
  }

  get(key: string): Promise<Buffer> {
    return this.timed('get', () => this.inner.get(key));
  }

  getRange(key: string, start: number, endInclusive: number): Promise<Buffer> {
    return this.timed('getRange', () => this.inner.getRange(key, start, endInclusive));
  }

  head(key: string): Promise<ObjectInfo | null> {
    return this.timed('head', () => this.inner.head(key));
  }

  delete(key: string): Promise<void> {
    return this.timed('delete', () => this.inner.delete(key));
  }

  /** Timed from the first request to the end of the listing (or the consumer's break). */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const end = this.metrics.storeLatency.startTimer({ driver: this.driver, op: 'list' });
    let outcome = 'ok';
    try {
      yield* this.inner.list(prefix);
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      end();
      this.metrics.storeOps.inc({ driver: this.driver, op: 'list', outcome });
    }
  }

  presign(key: string, ttlSec: number): Promise<string> {
    return this.timed('presign', () => this.inner.presign(key, ttlSec));
  }

  createMultipart(key: string, options: PutOptions): Promise<string> {
    return this.timed('createMultipart', () => this.inner.createMultipart(key, options));
  }

  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer): Promise<PartRef> {
    return this.timed('uploadPart', () => this.inner.uploadPart(key, uploadId, partNumber, body));
  }

  uploadPartFile(key: string, uploadId: string, partNumber: number, path: string): Promise<PartRef & { size: number }> {
    return this.timed('uploadPartFile', () => this.inner.uploadPartFile(key, uploadId, partNumber, path));
  }

  completeMultipart(key: string, uploadId: string, parts: PartRef[]): Promise<{ key: string; size: number }> {
    return this.timed('completeMultipart', () => this.inner.completeMultipart(key, uploadId, parts));
  }

  abortMultipart(key: string, uploadId: string): Promise<void> {
    return this.timed('abortMultipart', () => this.inner.abortMultipart(key, uploadId));
  }

  replaceMetadata(key: string, options: PutOptions): Promise<void> {
    return this.timed('replaceMetadata', () => this.inner.replaceMetadata(key, options));
  }

  private async timed<T>(op: Op, fn: () => Promise<T>): Promise<T> {
    const end = this.metrics.storeLatency.startTimer({ driver: this.driver, op });
    try {
      const result = await fn();
      this.metrics.storeOps.inc({ driver: this.driver, op, outcome: 'ok' });
      return result;
    } catch (err) {
      this.metrics.storeOps.inc({ driver: this.driver, op, outcome: outcomeOf(err) });
      throw err;
    } finally {
      end();
    }
  }
}

/** A missing object is an answer, not a store failure. */
function outcomeOf(err: unknown): 'not_found' | 'error' {
  return isAppError(err, 'NOT_FOUND') ? 'not_found' : 'error';
}
