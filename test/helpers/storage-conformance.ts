import { Readable } from 'node:stream';
import { existsSync } from 'node:fs';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AppError } from '../../src/errors.js';
import type { ObjectStore } from '../../src/storage/object-store.js';

import type { Test, TestOpts } from 'tap';
import type { BuiltPlugins } from '@tapjs/test';
import { tempDir } from './temp-dir.js';

/** A tap test object as given to subtests. */
export type Tap = Test<BuiltPlugins, TestOpts> & BuiltPlugins;

/** What a driver's test file gives the shared suite. */
export interface ConformanceTarget {
  store: ObjectStore;
  /** Fetches a presigned URL the way its consumer would and returns the body, or throws. */
  fetchPresigned(url: string, key: string): Promise<Buffer>;
  /** Proves a presigned URL for `key` is refused once altered or expired. */
  refusesTampered(url: string, key: string): Promise<void>;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function rejectsCode(t: Tap, p: Promise<unknown>, code: string, msg: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: resolved`);
  } catch (err) {
    t.ok(err instanceof AppError, `${msg}: AppError`);
    t.equal((err as AppError).code, code, msg);
  }
}

/** The semantics every ObjectStore driver must share; `target()` gives a fresh, empty store. */
export function runConformance(t: Tap, target: () => Promise<ConformanceTarget>): void {
  t.test('put, get, head with metadata, range, delete', async (t) => {
    const { store } = await target();
    const body = randomBytes(10_000);
    const r = await store.put('a/b/one.bin', body, { contentType: 'application/x-test', metadata: { tenant: 'acme', 'sample-rate': '48000' } });
    t.same(r, { key: 'a/b/one.bin', size: 10_000 });
    t.ok((await store.get('a/b/one.bin')).equals(body), 'get returns the bytes');
    const info = await store.head('a/b/one.bin');
    t.equal(info?.size, 10_000);
    t.equal(info?.contentType, 'application/x-test');
    t.same(info?.metadata, { tenant: 'acme', 'sample-rate': '48000' });
    t.ok(info!.lastModified.getTime() > Date.now() - 600_000, 'lastModified is recent');
    t.ok((await store.getRange('a/b/one.bin', 100, 199)).equals(body.subarray(100, 200)), 'range');
    t.ok((await store.getRange('a/b/one.bin', 9_990, 20_000)).equals(body.subarray(9_990)), 'range clipped at the end');
    t.equal(await store.head('a/b/missing.bin'), null, 'head of a missing key is null');
    await rejectsCode(t, store.get('a/b/missing.bin'), 'NOT_FOUND', 'get of a missing key');
    await store.delete('a/b/one.bin');
    t.equal(await store.head('a/b/one.bin'), null, 'deleted');
    await store.delete('a/b/one.bin');
    t.pass('delete of a missing key is fine');
  });

  t.test('put of a stream, overwrite, replaceMetadata', async (t) => {
    const { store } = await target();
    const chunks = [randomBytes(70_000), randomBytes(1), randomBytes(33_333)];
    const r = await store.put('s/stream.bin', Readable.from(chunks), { contentType: 'audio/wav', metadata: { a: '1' } });
    t.equal(r.size, 103_334);
    t.ok((await store.get('s/stream.bin')).equals(Buffer.concat(chunks)));
    await store.put('s/stream.bin', Buffer.from('short'), { contentType: 'text/plain' });
    t.equal((await store.get('s/stream.bin')).toString(), 'short', 'overwrite replaces');
    await store.replaceMetadata('s/stream.bin', { contentType: 'text/x-new', metadata: { b: '2' } });
    const info = await store.head('s/stream.bin');
    t.equal(info?.contentType, 'text/x-new');
    t.same(info?.metadata, { b: '2' });
    t.equal((await store.get('s/stream.bin')).toString(), 'short', 'bytes kept');
  });

  t.test('list by prefix, in key order', async (t) => {
    const { store } = await target();
    for (const k of ['p/x/2.wav', 'p/x/1.wav', 'p/y/1.wav', 'p/xz.wav', 'q/1.wav']) {
      await store.put(k, Buffer.from(k), { contentType: 'audio/wav' });
    }
    t.same((await collect(store.list('p/x'))).map((o) => o.key), ['p/x/1.wav', 'p/x/2.wav', 'p/xz.wav']);
    t.same((await collect(store.list('p/x/'))).map((o) => o.key), ['p/x/1.wav', 'p/x/2.wav']);
    const all = await collect(store.list('p/'));
    t.equal(all.length, 4);
    t.equal(all[0]?.size, 'p/x/1.wav'.length, 'items carry sizes');
    t.same(await collect(store.list('nothing/')), []);
  });

  t.test('multipart with several parts, abort', async (t) => {
    const { store } = await target();
    const p1 = randomBytes(5 * 1024 * 1024);
    const p2 = randomBytes(5 * 1024 * 1024);
    const p3 = randomBytes(12_345);
    const id = await store.createMultipart('m/big.wav', { contentType: 'audio/wav', metadata: { tenant: 't1' } });
    const r3 = await store.uploadPart('m/big.wav', id, 3, p3);
    const r1 = await store.uploadPart('m/big.wav', id, 1, p1);
    const r2 = await store.uploadPart('m/big.wav', id, 2, p2);
    t.equal(await store.head('m/big.wav'), null, 'invisible before completion');
    const done = await store.completeMultipart('m/big.wav', id, [r1, r2, r3]);
    t.same(done, { key: 'm/big.wav', size: p1.length + p2.length + p3.length });
    t.ok((await store.get('m/big.wav')).equals(Buffer.concat([p1, p2, p3])), 'parts joined in order');
    const info = await store.head('m/big.wav');
    t.equal(info?.contentType, 'audio/wav');
    t.same(info?.metadata, { tenant: 't1' });

    const id2 = await store.createMultipart('m/gone.wav', { contentType: 'audio/wav' });
    await store.uploadPart('m/gone.wav', id2, 1, randomBytes(100));
    await store.abortMultipart('m/gone.wav', id2);
    t.equal(await store.head('m/gone.wav'), null, 'aborted upload leaves no object');
  });

  t.test('multipart parts uploaded from files, mixed with buffers; the source name may go away', async (t) => {
    const { store } = await target();
    const dir = await tempDir(t, 'aid-partfile-');
    const p1 = randomBytes(5 * 1024 * 1024);
    const p2 = randomBytes(5 * 1024 * 1024);
    const p3 = randomBytes(777);
    await writeFile(join(dir, 'p2'), p2);
    await writeFile(join(dir, 'p3'), p3);
    const id = await store.createMultipart('m/files.wav', { contentType: 'audio/wav' });
    const r2 = await store.uploadPartFile('m/files.wav', id, 2, join(dir, 'p2'));
    t.equal(r2.size, p2.length);
    await unlink(join(dir, 'p2'));
    const r3 = await store.uploadPartFile('m/files.wav', id, 3, join(dir, 'p3'));
    await unlink(join(dir, 'p3'));
    const r1 = await store.uploadPart('m/files.wav', id, 1, p1);
    const done = await store.completeMultipart('m/files.wav', id, [r1, r2, r3]);
    t.equal(done.size, p1.length + p2.length + p3.length);
    t.ok((await store.get('m/files.wav')).equals(Buffer.concat([p1, p2, p3])), 'file parts joined in order');
    await t.rejects(store.uploadPartFile('m/files.wav', id, 4, join(dir, 'missing')), 'a missing file is an error');
  });

  t.test('putFile stores a local file with its metadata, replaces an object, refuses a missing file', async (t) => {
    const { store } = await target();
    const dir = await tempDir(t, 'aid-putfile-');
    const body = randomBytes(3 * 1024 * 1024 + 17);
    await writeFile(join(dir, 'a'), body);
    const r = await store.putFile('f/one.wav', join(dir, 'a'), { contentType: 'audio/wav', metadata: { tenant: 'acme' } });
    t.same(r, { key: 'f/one.wav', size: body.length });
    t.ok((await store.get('f/one.wav')).equals(body), 'the bytes of the file');
    const info = await store.head('f/one.wav');
    t.equal(info?.contentType, 'audio/wav');
    t.same(info?.metadata, { tenant: 'acme' });
    if (store.putFileMoves) t.notOk(existsSync(join(dir, 'a')), 'moved: the file is now the object');
    await writeFile(join(dir, 'b'), 'second');
    await store.putFile('f/one.wav', join(dir, 'b'), { contentType: 'text/plain' });
    t.equal((await store.get('f/one.wav')).toString(), 'second', 'replaces the object');
    t.same((await store.head('f/one.wav'))?.metadata, {}, 'and its metadata');
    await rejectsCode(t, store.putFile('f/two.wav', join(dir, 'missing'), { contentType: 'audio/wav' }), 'STORAGE_ERROR', 'a missing file');
    t.equal(await store.head('f/two.wav'), null);
  });

  t.test('presigned GET', async (t) => {
    const tgt = await target();
    const body = randomBytes(4096);
    await tgt.store.put('r/ü ber/x.wav', body, { contentType: 'audio/wav' });
    const url = await tgt.store.presign('r/ü ber/x.wav', 60);
    t.ok((await tgt.fetchPresigned(url, 'r/ü ber/x.wav')).equals(body), 'presigned URL gives the bytes');
    await tgt.refusesTampered(url, 'r/ü ber/x.wav');
  });

  t.test('hostile keys are refused', async (t) => {
    const { store } = await target();
    for (const key of ['../escape.wav', 'a/../../escape.wav', '/abs.wav', 'a//b.wav', 'a/./b.wav', 'nul\u0000.wav', 'back\\slash.wav', '', 'a/..']) {
      await rejectsCode(t, store.put(key, Buffer.from('x'), { contentType: 'text/plain' }), 'INVALID_PARAMETER', `put ${JSON.stringify(key)}`);
      await rejectsCode(t, store.get(key), 'INVALID_PARAMETER', `get ${JSON.stringify(key)}`);
    }
    await rejectsCode(t, store.put('ok.wav', Buffer.from('x'), { contentType: 'text/plain', metadata: { Bad: 'x' } }), 'INVALID_PARAMETER', 'upper-case metadata name');
    await rejectsCode(t, store.put('ok.wav', Buffer.from('x'), { contentType: 'text/plain', metadata: { a: 'é' } }), 'INVALID_PARAMETER', 'non-ASCII metadata value');
  });
}
