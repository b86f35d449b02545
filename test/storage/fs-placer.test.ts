import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { FsPlacer } from '../../src/storage/fs-placer.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('bodies given as ranges of a journal segment are read from it by the worker and put into place', async (t) => {
  const dir = await tempDir(t);
  const segment = join(dir, 'segment.log');
  const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) % 251));
  await writeFile(segment, bytes);
  const placer = new FsPlacer();
  t.teardown(() => placer.stop());
  const ranges = [
    { offset: 0, size: 1000 },
    { offset: 1000, size: 250_000 }, // larger than the worker's buffer so far: it grows
    { offset: 7, size: 3 },
    { offset: 299_990, size: 10 },
  ];
  const items = ranges.map((body, i) => ({
    path: join(dir, 'objects', `${i}.wav`),
    sidecarPath: join(dir, 'meta', `${i}.json`),
    sidecar: i === 0 ? '{"seq":"0"}' : null,
    tmp: join(dir, `.tmp-${i}`),
    sidecarTmp: join(dir, `.tmp-side-${i}`),
    body,
  }));
  await placer.place(items, segment);
  for (const [i, r] of ranges.entries()) {
    t.ok((await readFile(items[i]!.path)).equals(bytes.subarray(r.offset, r.offset + r.size)), `object ${i}: bytes ${r.offset}..${r.offset + r.size} of the segment`);
  }
  t.equal(await readFile(items[0]!.sidecarPath, 'utf8'), '{"seq":"0"}', 'with its sidecar');

  const past = { ...items[3]!, path: join(dir, 'objects', 'past.wav'), tmp: join(dir, '.tmp-past'), body: { offset: 299_995, size: 10 } };
  await t.rejects(placer.place([past], segment), { code: 'EIO' }, 'a range past the end of the segment fails the batch');
  t.notOk((await readdir(dir)).some((n) => n.startsWith('.tmp')), 'no temp file left');
  t.notOk((await readdir(join(dir, 'objects'))).includes('past.wav'));
  await t.rejects(placer.place([{ ...past, body: { offset: 0, size: 1 } }]), { code: 'EINVAL' }, 'a range without its segment is refused');
});
