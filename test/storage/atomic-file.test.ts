import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { writeJsonFileAtomic } from '../../src/limits/atomic-json-file.js';
import { fsyncDir, writeFileAtomic } from '../../src/storage/atomic-file.js';

t.test('an atomic write leaves the new content and no temporary file', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'sub', 'state.json');
  await writeFileAtomic(target, 'one');
  await writeFileAtomic(target, Buffer.from('two'));
  t.equal(await readFile(target, 'utf8'), 'two');
  t.same(await readdir(join(dir, 'sub')), ['state.json']);
  await writeJsonFileAtomic(target, { a: 1 });
  t.same(JSON.parse(await readFile(target, 'utf8')), { a: 1 }, 'the JSON writer is the same primitive');
  t.same(await readdir(join(dir, 'sub')), ['state.json']);
});

t.test('a directory that cannot be synced is an error, not a silent success', async (t) => {
  const dir = t.testdir();
  await t.rejects(fsyncDir(join(dir, 'missing')), { code: 'ENOENT' });
  await t.resolves(fsyncDir(dir));
});
