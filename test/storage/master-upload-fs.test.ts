import t from 'tap';
import { rm } from 'node:fs/promises';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { runMasterCases, tempDir } from '../helpers/storage-master-cases.js';

const dirs: string[] = [];
t.teardown(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

runMasterCases(t, async () => {
  const root = await tempDir('storage-fsmaster-');
  dirs.push(root);
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' } });
  await store.start();
  // the fs store takes any part size; a small one keeps the test quick with the same shape
  return { store, partSize: 1024 * 1024, childStoreArgs: ['fs', root] };
});
