import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { AppError } from '../../src/errors.js';
import { FILE_BODY_CHUNK_BYTES, FILE_BODY_DEPTH, FileBody, fileBodyBuffers, ReadBufferPool } from '../../src/storage/file-body.js';
import { startS3rver, s3rverStore } from '../helpers/storage-s3rver.js';
import { tempDir } from '../helpers/temp-dir.js';

const md5 = (b: Buffer | Uint8Array): string => createHash('md5').update(b).digest('hex');
/** Descriptors of this process open on files under `dir`. */
const openIn = (dir: string): number => readdirSync('/proc/self/fd').filter((fd) => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
  } catch {
    return false;
  }
}).length;

t.test('every byte of many parts sent at once through the shared read buffers is stored as spooled (s3rver, MD5 of each part and object)', async (t) => {
  const dir = await tempDir(t, 'file-body-');
  const s3dir = await tempDir(t, 'file-body-s3-');
  const server = await startS3rver(s3dir);
  // no checksum header: a body corrupted by a reused buffer would be stored, not refused
  const store = s3rverStore(server.endpoint, { checksum: 'none' });
  t.teardown(async () => {
    await store.stop();
    await server.close();
  });
  const UPLOADS = 24;
  // sizes across the read size: a 5 MiB part (+ the header bytes of part 1), an odd last part, exact multiples, one byte
  const sizes = [5 * 1024 * 1024, 2 * 1024 * 1024 + 4097, FILE_BODY_CHUNK_BYTES, 3 * FILE_BODY_CHUNK_BYTES - 1, 1];
  const files = await Promise.all(Array.from({ length: UPLOADS }, async (_, i) => {
    const parts = await Promise.all([sizes[0]!, sizes[1 + (i % 4)]!].map(async (size, p) => {
      const bytes = randomBytes(size);
      const path = join(dir, `u${i}-part-${p + 1}.pcm`);
      await writeFile(path, bytes);
      return { path, bytes };
    }));
    return { key: `fb/${i}.wav`, parts };
  }));
  const allocatedBefore = fileBodyBuffers.allocated;
    const ids = await Promise.all(files.map((f) => store.createMultipart(f.key, { contentType: 'audio/wav' })));
  // every part and a few whole files at once: the bodies share the pool while sockets are busy
  const [uploads, singles] = await Promise.all([
    Promise.all(files.map((f, i) => Promise.all(f.parts.map((p, k) => store.uploadPartFile(f.key, ids[i]!, k + 1, p.path))))),
    Promise.all(files.slice(0, 6).map((f, i) => store.putFile(`fb/single-${i}.wav`, f.parts[1]!.path, { contentType: 'audio/wav' }))),
  ]);
  // completed one at a time: 24 at once against the in-process s3rver failed now and then (store unavailable)
  for (const [i, f] of files.entries()) await store.completeMultipart(f.key, ids[i]!, uploads[i]!);
  const etags = uploads.map((refs) => refs.map((r) => r.etag.replace(/"/g, '')));
  const chunksSent = files.reduce((s, f) => s + f.parts.reduce((a, p) => a + Math.ceil(p.bytes.length / FILE_BODY_CHUNK_BYTES), 0), 0);
  const allocated = fileBodyBuffers.allocated - allocatedBefore;
  for (const [i, f] of files.entries()) {
    t.same(etags[i], f.parts.map((p) => md5(p.bytes)), `${f.key}: each part's ETag (s3rver's MD5 of what it received) is the MD5 of its spool file`);
    t.equal(md5(await store.get(f.key)), md5(Buffer.concat(f.parts.map((p) => p.bytes))), `${f.key}: the object is its files end to end`);
  }
  for (const [i, s] of singles.entries()) t.equal(md5(await store.get(s.key)), md5(files[i]!.parts[1]!.bytes), `${s.key}: a putFile body is its file`);
  t.ok(allocated <= (UPLOADS * 2 + singles.length) * FILE_BODY_DEPTH && allocated < chunksSent / 4,
    `the reads reused their buffers: ${allocated} allocated for ${chunksSent} reads`);
  t.equal(openIn(dir), 0, 'every spool file was closed');
});

/** A local HTTP server reading each request's body; `cut` closes a request's socket after its first bytes. */
async function bodySink(t: { teardown(fn: () => unknown): void }, cut = false): Promise<{ port: number; bodies: Buffer[] }> {
  const bodies: Buffer[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      parts.push(c);
      if (cut) req.socket.destroy();
    });
    req.on('end', () => {
      bodies.push(Buffer.concat(parts));
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return { port: (server.address() as AddressInfo).port, bodies };
}

/** Pipes `body` into a PUT to the sink, as the SDK's node:http handler does; resolves with the request's outcome. */
function put(port: number, body: FileBody, length: number): Promise<{ status?: number; error?: unknown }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/', headers: { 'content-length': length } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode! }));
    });
    req.on('error', (error) => resolve({ error }));
    body.pipe(req);
  });
}

t.test('a file shorter than its declared size fails the request with STORAGE_ERROR and is closed', async (t) => {
  const dir = await tempDir(t, 'file-body-');
  const sink = await bodySink(t);
  const path = join(dir, 'short');
  await writeFile(path, randomBytes(300_000));
  const out = await put(sink.port, new FileBody(path, 400_000), 400_000);
  t.ok(out.error instanceof AppError && out.error.code === 'STORAGE_ERROR', `the request failed with STORAGE_ERROR (${String(out.error)})`);
  const missing = await put(sink.port, new FileBody(join(dir, 'nope'), 10), 10);
  t.ok(missing.error instanceof AppError && missing.error.code === 'STORAGE_ERROR', 'a missing file too');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(openIn(dir), 0, 'the files were closed');
});

t.test('a request destroyed mid-body ends the send: the file is closed, nothing waits', async (t) => {
  const dir = await tempDir(t, 'file-body-');
  const sink = await bodySink(t, true);
  const path = join(dir, 'big');
  await writeFile(path, randomBytes(8 * 1024 * 1024));
  const body = new FileBody(path, 8 * 1024 * 1024);
  const out = await put(sink.port, body, 8 * 1024 * 1024);
  t.ok(out.error !== undefined, 'the request failed');
  await new Promise<void>((r) => (body.destroyed ? r() : body.once('close', () => r())));
  t.equal(openIn(dir), 0, 'the file was closed');
});

t.test('read any other way it is an ordinary Readable of fresh chunks, exactly the declared bytes', async (t) => {
  const dir = await tempDir(t, 'file-body-');
  const path = join(dir, 'f');
  const bytes = randomBytes(5 * FILE_BODY_CHUNK_BYTES + 17);
  await writeFile(path, bytes);
  const pool = new ReadBufferPool(FILE_BODY_CHUNK_BYTES, 4);
  const chunks: Buffer[] = [];
  for await (const c of new FileBody(path, bytes.length - 1000, pool)) chunks.push(c as Buffer);
  t.equal(md5(Buffer.concat(chunks)), md5(bytes.subarray(0, bytes.length - 1000)), 'the first `size` bytes');
  t.equal(new Set(chunks.map((c) => c.buffer)).size, chunks.length, 'each chunk its own memory (a reader may keep it)');
  t.equal(pool.allocated, 0, 'no pool buffer used');
  // the same file piped into an http request takes the pooled path
  const sink = await bodySink(t);
  const viaPipe = await put(sink.port, new FileBody(path, bytes.length, pool), bytes.length);
  t.equal(viaPipe.status, 200);
  t.equal(md5(sink.bodies[0]!), md5(bytes), 'piped into an http request: every byte');
  t.ok(pool.allocated <= FILE_BODY_DEPTH, `piped into an http request it used at most ${FILE_BODY_DEPTH} pool buffers (${pool.allocated})`);
});
