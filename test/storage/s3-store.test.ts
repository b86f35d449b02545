import t from 'tap';
import { randomBytes } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import { writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { request } from 'undici';
import { runConformance } from '../helpers/storage-conformance.js';
import { type ProxiedRequest, startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { startS3rver, s3rverStore } from '../helpers/storage-s3rver.js';
import type { S3ObjectStore } from '../../src/storage/s3-store.js';
import { isRetryableS3Error, mapS3Error, S3_CALLS_IN_FLIGHT } from '../../src/storage/s3-store.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = await tempDir(t, 'storage-s3-');
const server = await startS3rver(dir);
const stores: S3ObjectStore[] = [];
t.teardown(async () => {
  for (const s of stores) await s.stop();
  await server.close();
});

let n = 0;
t.test('conformance', async (t) => {
  runConformance(t, async () => {
    const store = s3rverStore(server.endpoint);
    stores.push(store);
    await store.ping();
    // one bucket for all cases: each case works under its own folder by prefixing keys
    const prefix = `case${++n}/`;
    const scoped = scopedStore(store, prefix);
    return {
      store: scoped,
      async fetchPresigned(url) {
        const res = await request(url);
        const body = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode !== 200) throw new Error(`presigned GET answered ${res.statusCode}`);
        return body;
      },
      async refusesTampered(url) {
        // s3rver lets unsigned GETs through, so only the URL's signing is checked here
        const u = new URL(url);
        t.equal(u.searchParams.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
        t.equal(u.searchParams.get('X-Amz-Expires'), '60', 'TTL carried');
        t.match(u.searchParams.get('X-Amz-Credential') ?? '', /^S3RVER\//);
        t.match(u.searchParams.get('X-Amz-Signature') ?? '', /^[0-9a-f]{64}$/);
        t.ok(u.pathname.startsWith('/audio-test/'), 'path-style URL');
      },
    };
  });
});

t.test('ping and errors when the endpoint is down', async (t) => {
  const store = s3rverStore('http://127.0.0.1:1');
  stores.push(store);
  await t.rejects(store.ping(), { code: 'STORAGE_UNAVAILABLE' });
  await t.rejects(store.put('a.wav', Buffer.from('x'), { contentType: 'audio/wav' }), { code: 'STORAGE_UNAVAILABLE' });
  const missingBucket = s3rverStore(server.endpoint, { bucket: 'no-such-bucket' });
  stores.push(missingBucket);
  await t.rejects(missingBucket.put('a.wav', Buffer.from('x'), { contentType: 'audio/wav' }), { code: 'STORAGE_ERROR' });
});

t.test('abort tolerates a store without AbortMultipartUpload', async (t) => {
  const store = s3rverStore(server.endpoint);
  stores.push(store);
  const id = await store.createMultipart('abort/x.wav', { contentType: 'audio/wav' });
  await store.uploadPart('abort/x.wav', id, 1, Buffer.alloc(10));
  await t.resolves(store.abortMultipart('abort/x.wav', id));
  t.equal(await store.head('abort/x.wav'), null);
});

t.test('checksums on the wire: Content-MD5 (default), CRC32 header, SDK trailer-less CRC32 for buffers, or none', async (t) => {
  const dir2 = await tempDir(t, 'storage-s3-sum-');
  const file = join(dir2, 'part');
  await writeFile(file, randomBytes(5 * 1024 * 1024 + 333));
  const proxy = await startRecordingProxy(server.endpoint);
  t.teardown(() => proxy.close());
  const last = (): ProxiedRequest => proxy.requests[proxy.requests.length - 1]!;
  const writes = async (store: S3ObjectStore, tag: string): Promise<ProxiedRequest[]> => {
    const seen: ProxiedRequest[] = [];
    await store.put(`sum/${tag}/buf.bin`, randomBytes(1000), { contentType: 'application/octet-stream' });
    seen.push(last());
    await store.putFile(`sum/${tag}/file.bin`, file, { contentType: 'application/octet-stream' });
    seen.push(last());
    const id = await store.createMultipart(`sum/${tag}/mp.bin`, { contentType: 'application/octet-stream' });
    const p1 = await store.uploadPartFile(`sum/${tag}/mp.bin`, id, 1, file);
    seen.push(last());
    const p2 = await store.uploadPart(`sum/${tag}/mp.bin`, id, 2, randomBytes(777));
    seen.push(last());
    await store.completeMultipart(`sum/${tag}/mp.bin`, id, [p1, p2]);
    // a stream of unknown length longer than one part: multipart of buffers
    await store.put(`sum/${tag}/stream.bin`, Readable.from([randomBytes(6 * 1024 * 1024), randomBytes(3 * 1024 * 1024)]), { contentType: 'application/octet-stream' });
    seen.push(...proxy.requests.slice(-4, -1).filter((r) => r.method === 'PUT'));
    return seen;
  };
  const md5 = s3rverStore(proxy.endpoint);
  stores.push(md5);
  const md5Writes = await writes(md5, 'md5');
  t.equal(md5Writes.length, 6);
  for (const r of md5Writes) {
    t.equal(r.headers['content-md5'], r.bodyMd5, `${r.method} ${r.path}${r.query.has('partNumber') ? ` part ${r.query.get('partNumber')}` : ''}: Content-MD5 of its bytes`);
    t.equal(r.headers['content-length'], String(r.bodyBytes), 'sent with its length');
  }
  const crc = s3rverStore(proxy.endpoint, { checksum: 'crc32' });
  stores.push(crc);
  for (const r of await writes(crc, 'crc')) {
    t.equal(r.headers['x-amz-checksum-crc32'], r.bodyCrc32, `${r.method} ${r.path}: x-amz-checksum-crc32 of its bytes`);
    t.notOk(String(r.headers['content-encoding'] ?? '').includes('aws-chunked'), 'a header, not a trailer');
  }
  t.ok((await crc.get('sum/crc/mp.bin')).length === 5 * 1024 * 1024 + 333 + 777, 'the store took every write');
  const none = s3rverStore(proxy.endpoint, { checksum: 'none' });
  stores.push(none);
  await none.put('sum/none/x.bin', Buffer.from('abc'), { contentType: 'text/plain' });
  t.equal(last().headers['content-md5'], undefined);
  t.notOk(Object.keys(last().headers).some((h) => h.startsWith('x-amz-checksum-')), 'none: no checksum header');
  const sdk = s3rverStore(proxy.endpoint, { checksum: 'sdk' });
  stores.push(sdk);
  await sdk.put('sum/sdk/x.bin', Buffer.from('abc'), { contentType: 'text/plain' });
  t.equal(last().headers['x-amz-checksum-crc32'], last().bodyCrc32, 'sdk: the SDK computed CRC32 for a buffer body');
});

t.test('error classification', async (t) => {
  t.ok(isRetryableS3Error({ name: 'SlowDown', $metadata: { httpStatusCode: 503 } }));
  t.ok(isRetryableS3Error({ name: 'InternalError', $metadata: { httpStatusCode: 500 } }));
  t.ok(isRetryableS3Error(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' })));
  t.notOk(isRetryableS3Error({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));
  t.equal(mapS3Error('get', { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }).code, 'NOT_FOUND');
  t.equal(mapS3Error('put', { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }).code, 'STORAGE_ERROR');
  t.equal(mapS3Error('put', { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }).retryAfterSec, 5);
});

/** Same store, every key under `prefix`: lets cases share one bucket without seeing each other. */
function scopedStore(store: S3ObjectStore, prefix: string): S3ObjectStore {
  const k = (key: string): string => (key.startsWith('/') || key === '' || key.startsWith('..') ? key : prefix + key);
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      if (prop === 'list') {
        return async function* (p: string) {
          for await (const o of target.list(prefix + p)) yield { ...o, key: o.key.slice(prefix.length) };
        };
      }
      if (['put', 'putFile', 'get', 'getRange', 'head', 'delete', 'presign', 'createMultipart', 'uploadPart', 'completeMultipart', 'abortMultipart', 'replaceMetadata'].includes(prop as string)) {
        return async (key: string, ...rest: unknown[]) => {
          const res = await (v as (...a: unknown[]) => Promise<unknown>).call(target, k(key), ...rest);
          if (res !== null && typeof res === 'object' && 'key' in res) return { ...(res as object), key };
          return res;
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

t.test('a burst of writes is prepared as sockets free: at most S3_CALLS_IN_FLIGHT requests exist at once', async (t) => {
  const store = s3rverStore(server.endpoint);
  stores.push(store);
  // node:http publishes every client request when it is created (the SDK has serialized and
  // signed it by then) and when its answer's head arrives
  let open = 0;
  let most = 0;
  const started = (): void => {
    open++;
    most = Math.max(most, open);
  };
  const answered = (): void => {
    open--;
  };
  dc.subscribe('http.client.request.start', started);
  dc.subscribe('http.client.response.finish', answered);
  t.teardown(() => {
    dc.unsubscribe('http.client.request.start', started);
    dc.unsubscribe('http.client.response.finish', answered);
  });
  const BURST = 300;
  await Promise.all(Array.from({ length: BURST }, (_, i) => store.put(`burst/${i}.json`, Buffer.from(`{"i":${i}}`), { contentType: 'application/json' })));
  t.ok(most > 1 && most <= S3_CALLS_IN_FLIGHT, `${BURST} puts at once: at most ${most} requests existed together (limit ${S3_CALLS_IN_FLIGHT})`);
  t.equal((await store.get('burst/299.json')).toString(), '{"i":299}', 'every write went through');
});
