import t from 'tap';
import { rm, readdir, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FsObjectStore, verifyPresigned } from '../../src/storage/fs-store.js';
import { runConformance } from '../helpers/storage-conformance.js';
import { tempDir } from '../helpers/temp-dir.js';

const SECRET = 'fs-presign-secret';

async function freshStore(): Promise<{ store: FsObjectStore; root: string }> {
  const root = await tempDir(t, 'storage-fs-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1:8080/', secret: SECRET } });
  await store.start();
  return { store, root };
}

/** Parses a presigned fs URL the way the HTTP route will. */
function parse(url: string): { key: string; expires: string; signature: string } {
  const u = new URL(url);
  const key = u.pathname.replace(/^\/v1\/objects\//, '').split('/').map(decodeURIComponent).join('/');
  return { key, expires: u.searchParams.get('expires') ?? '', signature: u.searchParams.get('signature') ?? '' };
}

t.test('conformance', async (t) => {
  runConformance(t, async () => {
    const { store } = await freshStore();
    return {
      store,
      async fetchPresigned(url) {
        const p = parse(url);
        if (!verifyPresigned(SECRET, p.key, p.expires, p.signature)) throw new Error('signature refused');
        const opened = await store.openRead(p.key);
        if (opened === null) throw new Error('missing');
        const chunks: Buffer[] = [];
        for await (const c of opened.stream) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      },
      async refusesTampered(url, key) {
        const p = parse(url);
        t.equal(p.key, key, 'the URL names the key');
        t.ok(url.startsWith('http://127.0.0.1:8080/v1/objects/'), 'base URL without a double slash');
        t.ok(verifyPresigned(SECRET, p.key, p.expires, p.signature), 'accepted as issued');
        t.notOk(verifyPresigned(SECRET, `${p.key}x`, p.expires, p.signature), 'other key refused');
        t.notOk(verifyPresigned(SECRET, p.key, String(Number(p.expires) + 1), p.signature), 'other expiry refused');
        t.notOk(verifyPresigned('other-secret', p.key, p.expires, p.signature), 'other secret refused');
        t.notOk(verifyPresigned(SECRET, p.key, p.expires, p.signature.slice(0, 10)), 'short signature refused');
        t.notOk(verifyPresigned(SECRET, p.key, p.expires, p.signature, new Date((Number(p.expires) + 1) * 1000)), 'expired refused');
        t.notOk(verifyPresigned(SECRET, p.key, 'abc', p.signature), 'non-numeric expiry refused');
      },
    };
  });
});

t.test('no temp files are left and a multipart upload leaves nothing behind', async (t) => {
  const { store, root } = await freshStore();
  await store.put('x/y.wav', Buffer.alloc(100), { contentType: 'audio/wav' });
  const id = await store.createMultipart('x/z.wav', { contentType: 'audio/wav' });
  const p = await store.uploadPart('x/z.wav', id, 1, Buffer.alloc(10, 1));
  await store.completeMultipart('x/z.wav', id, [p]);
  t.same(await readdir(join(root, '.tmp')), [], 'temp folder empty');
  t.same(await readdir(join(root, '.uploads')), [], 'uploads folder empty');
  t.equal((await store.get('x/z.wav')).length, 10);
});

t.test('completion refuses a wrong ETag and an unknown upload', async (t) => {
  const { store } = await freshStore();
  const id = await store.createMultipart('x/e.wav', { contentType: 'audio/wav' });
  await store.uploadPart('x/e.wav', id, 1, Buffer.alloc(10, 1));
  await t.rejects(store.completeMultipart('x/e.wav', id, [{ partNumber: 1, etag: '"0000"' }]), { code: 'STORAGE_ERROR' });
  await t.rejects(store.uploadPart('x/e.wav', 'f'.repeat(32), 1, Buffer.alloc(1)), { code: 'STORAGE_ERROR' });
  await t.rejects(store.uploadPart('x/other.wav', id, 1, Buffer.alloc(1)), { code: 'STORAGE_ERROR' }, 'upload id of another key');
  t.equal(await store.head('x/e.wav'), null);
});

t.test('a symlink inside the root cannot be used to escape through list', async (t) => {
  const { store, root } = await freshStore();
  // plain files dropped beside objects are listed like any object, nothing outside the root is
  await mkdir(join(root, 'objects', 'ext'), { recursive: true });
  await writeFile(join(root, 'objects', 'ext', 'f.wav'), 'abc');
  const keys: string[] = [];
  for await (const o of store.list('')) keys.push(o.key);
  t.same(keys, ['ext/f.wav']);
  await t.resolves(store.ping());
});

t.test('a sidecar is written only when it says more than the key: none for a plain .json, removed when an object loses its metadata', async (t) => {
  const { store, root } = await freshStore();
  const sidecars = async (): Promise<string[]> => (await readdir(join(root, '.meta'), { recursive: true })).filter((f) => f.endsWith('.json'));
  await store.put('t/idempotency/ab/cd.json', Buffer.from('{"a":1}\n'), { contentType: 'application/json' });
  t.same(await sidecars(), [], 'no sidecar for a JSON object without metadata');
  let info = await store.head('t/idempotency/ab/cd.json');
  t.equal(info?.contentType, 'application/json', 'its type comes from the extension');
  t.same(info?.metadata, {});
  t.same(await store.get('t/idempotency/ab/cd.json'), Buffer.from('{"a":1}\n'));

  await store.put('t/x/note.wav', Buffer.from('RIFF'), { contentType: 'audio/wav', metadata: { tenant: 't' } });
  t.same(await sidecars(), ['t/x/note.wav.json'], 'metadata needs a sidecar');
  await store.put('t/x/note.wav', Buffer.from('RIFF2'), { contentType: 'audio/wav' });
  t.same(await sidecars(), [], 'the stale sidecar is gone once the object has no metadata');
  info = await store.head('t/x/note.wav');
  t.same(info?.metadata, {}, 'no metadata of the older version');
  t.equal(info?.contentType, 'audio/wav');

  await store.put('t/y/blob.json', Buffer.from('x'), { contentType: 'text/plain' });
  t.equal((await store.head('t/y/blob.json'))?.contentType, 'text/plain', 'a type other than the implied one is kept in a sidecar');
  t.same((await readdir(join(root, '.tmp'))).length, 0, 'no temp files left');
});

t.test('putFile moves the file into place: the object is the same inode, nothing copied, no temp file left', async (t) => {
  const { store, root } = await freshStore();
  const src = join(root, '..', `${Date.now()}-spool.pcm`);
  await writeFile(src, Buffer.alloc(1024 * 1024, 3));
  t.teardown(() => rm(src, { force: true }));
  const ino = (await stat(src)).ino;
  await store.putFile('m/x/master.wav', src, { contentType: 'audio/wav', metadata: { tenant: 't' } });
  t.equal((await stat(join(root, 'objects', 'm', 'x', 'master.wav'))).ino, ino, 'renamed, not rewritten');
  t.same(await readdir(join(root, '.tmp')), []);
});
