// The s3rver the storage tests run answers a write once its file holds every byte
// (test/helpers/s3rver-writes.mjs): its own store answered before, which let a
// CompleteMultipartUpload remove an upload's folder under a part still being written.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { installDurableWrites } from '../helpers/s3rver-writes.mjs';
import { tempDir } from '../helpers/temp-dir.js';

installDurableWrites();
const FilesystemStore = createRequire(import.meta.url)('s3rver/lib/stores/filesystem.js');

/** 4 MiB in 64 KiB chunks of distinct bytes, as a request body arrives. */
function body(): { stream: Readable; bytes: Buffer } {
  const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(64 * 1024, i));
  return { stream: Readable.from(chunks), bytes: Buffer.concat(chunks) };
}
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

t.test('an UploadPart is answered with every byte of the part in its file', async (t) => {
  const root = await tempDir(t, 's3rver-writes-');
  const store = new FilesystemStore(root);
  const { stream, bytes } = body();
  const answer = await store.putPart('bucket', 'upload-1', 2, stream);
  const partPath = join(root, 'bucket', '._S3rver_uploads', 'upload-1', '2');
  t.equal((await stat(partPath)).size, bytes.length, 'the part file is whole when the store answers');
  t.same(answer, { size: bytes.length, md5: md5(bytes) });
  t.equal(await readFile(`${partPath}.md5`, 'utf8'), md5(bytes));
});

t.test('a PutObject is answered with every byte of the object in its file', async (t) => {
  const root = await tempDir(t, 's3rver-writes-');
  const store = new FilesystemStore(root);
  const { stream, bytes } = body();
  const answer = await store.putObject({ bucket: 'bucket', key: 'a/b.wav', content: stream, metadata: { 'content-type': 'audio/wav', 'x-amz-meta-tenant': 'acme' } });
  t.same(answer, { size: bytes.length, md5: md5(bytes) });
  t.ok((await readFile(join(root, 'bucket', 'a', 'b.wav._S3rver_object'))).equals(bytes), 'the object file is whole when the store answers');
  t.same(JSON.parse(await readFile(join(root, 'bucket', 'a', 'b.wav._S3rver_metadata.json'), 'utf8')), { 'content-type': 'audio/wav', 'x-amz-meta-tenant': 'acme' });

  const small = Buffer.from('hello');
  t.same(await store.putObject({ bucket: 'bucket', key: 'small', content: small, metadata: {} }), { size: 5, md5: md5(small) });
  t.equal(await readFile(join(root, 'bucket', 'small._S3rver_object'), 'utf8'), 'hello');
});

t.test('a body that fails midway rejects the write, nothing thrown elsewhere', async (t) => {
  const root = await tempDir(t, 's3rver-writes-');
  const store = new FilesystemStore(root);
  const failing = new Readable({
    read() {
      this.push(Buffer.alloc(1024));
      this.destroy(new Error('client went away'));
    },
  });
  await t.rejects(store.putPart('bucket', 'upload-2', 1, failing), /client went away/);
});
