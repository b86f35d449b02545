import t from 'tap';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { sweepRetention } from '../../src/storage/retention.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('deletes objects older than the retention, keeps the rest', async (t) => {
  const root = await tempDir(t, 'storage-ret-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' } });
  await store.start();
  for (const k of ['recordings/a/old.wav', 'recordings/a/new.wav', 'whatsapp/old.wav']) await store.put(k, Buffer.from(k), { contentType: 'audio/wav' });
  const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000);
  await utimes(join(root, 'objects', 'recordings', 'a', 'old.wav'), tenDaysAgo, tenDaysAgo);
  await utimes(join(root, 'objects', 'whatsapp', 'old.wav'), tenDaysAgo, tenDaysAgo);
  t.equal(await sweepRetention(store, 'recordings/', 7), 1);
  t.equal(await store.head('recordings/a/old.wav'), null);
  t.not(await store.head('recordings/a/new.wav'), null);
  t.not(await store.head('whatsapp/old.wav'), null, 'outside the prefix untouched');
  t.equal(await sweepRetention(store, '', 30), 0, 'nothing older than 30 days');
  t.equal(await sweepRetention(store, '', 7, new Date(Date.now() + 8 * 86_400_000)), 2, 'a later now ages everything');
  await t.rejects(sweepRetention(store, '', 0), RangeError);
});
