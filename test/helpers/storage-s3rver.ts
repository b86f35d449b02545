import S3rver from 's3rver';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import type { S3ObjectStoreOptions } from '../../src/storage/s3-store.js';
import { installDurableWrites } from './s3rver-writes.mjs';
import { tempDir } from './temp-dir.js';

installDurableWrites();

export const S3RVER_BUCKET = 'audio-test';

/** A real s3rver on 127.0.0.1 over `directory`; `port` 0 picks a free one. */
export interface RunningS3rver {
  port: number;
  endpoint: string;
  close(): Promise<void>;
}

export async function startS3rver(directory: string, port = 0): Promise<RunningS3rver> {
  const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: S3RVER_BUCKET }] });
  const addr = await server.run();
  let closed = false;
  return {
    port: addr.port,
    endpoint: `http://127.0.0.1:${addr.port}`,
    async close() {
      if (closed) return;
      closed = true;
      // keep-alive sockets of the SDK would hold close() open
      server.httpServer.closeAllConnections();
      await server.close();
    },
  };
}

/** An S3ObjectStore on an s3rver endpoint (s3rver's fixed credentials). */
export function s3rverStore(endpoint: string, extra: Partial<S3ObjectStoreOptions> = {}): S3ObjectStore {
  return new S3ObjectStore({
    endpoint,
    region: 'us-east-1',
    bucket: S3RVER_BUCKET,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    maxAttempts: 1,
    connectionTimeoutMs: 2_000,
    requestTimeoutMs: 20_000,
    ...extra,
  });
}

/**
 * An s3rver in a temporary directory for the test `t` (closed and removed at its teardown), with
 * the credentials it accepts in the environment, and the `storage` config of a daemon using it.
 */
export async function s3rverStorage(t: { teardown(fn: () => unknown): void }, prefix: string): Promise<{ storage: { driver: 's3'; s3: { endpoint: string; bucket: string; forcePathStyle: true } } }> {
  const dir = await tempDir(t, prefix);
  const s3 = await startS3rver(dir);
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  t.teardown(() => s3.close());
  return { storage: { driver: 's3', s3: { endpoint: s3.endpoint, bucket: S3RVER_BUCKET, forcePathStyle: true } } };
}
