import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FileDigester, FileDigestError } from '../../src/storage/file-digest.js';
import { tempDir } from '../helpers/temp-dir.js';

const crcBase64 = (b: Buffer): string => {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(crc32(b) >>> 0, 0);
  return out.toString('base64');
};

t.test('MD5 and CRC32 of files of every size class equal those of their bytes, computed on the worker', async (t) => {
  const dir = await tempDir(t, 'digest-');
  const d = new FileDigester();
  t.teardown(() => d.close());
  d.warm();
  // empty, below one read, exactly one read (1 MiB), across reads, a 5 MiB part + 44 bytes
  for (const size of [0, 1, 44, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 - 7, 5 * 1024 * 1024 + 44]) {
    const bytes = randomBytes(size);
    const path = join(dir, `f-${size}`);
    await writeFile(path, bytes);
    const [md5, crc] = await Promise.all([d.digest(path, 'md5'), d.digest(path, 'crc32')]);
    t.same(md5, { digest: createHash('md5').update(bytes).digest('base64'), size }, `md5 of ${size} bytes`);
    t.same(crc, { digest: crcBase64(bytes), size }, `crc32 of ${size} bytes`);
  }
  t.equal(d.queued, 0, 'every request answered');
});

t.test('many requests at once are answered each with its own file', async (t) => {
  const dir = await tempDir(t, 'digest-');
  const d = new FileDigester();
  t.teardown(() => d.close());
  const files = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const bytes = randomBytes(64 * 1024 + i * 997);
    const path = join(dir, `p-${i}`);
    await writeFile(path, bytes);
    return { path, md5: createHash('md5').update(bytes).digest('base64') };
  }));
  const got = await Promise.all(files.map((f) => d.digest(f.path, 'md5')));
  t.same(got.map((g) => g.digest), files.map((f) => f.md5));
});

t.test('a missing file rejects with its errno code; the worker keeps serving; a closed digester refuses', async (t) => {
  const dir = await tempDir(t, 'digest-');
  const d = new FileDigester();
  const err = await d.digest(join(dir, 'nope'), 'md5').then(() => null, (e: unknown) => e);
  t.ok(err instanceof FileDigestError);
  t.equal((err as FileDigestError).code, 'ENOENT');
  await writeFile(join(dir, 'yes'), 'abc');
  t.equal((await d.digest(join(dir, 'yes'), 'md5')).digest, createHash('md5').update('abc').digest('base64'));
  await d.close();
  await t.rejects(d.digest(join(dir, 'yes'), 'md5'), FileDigestError);
});
