import { spawn } from 'node:child_process';
import { appendFile, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { journalBody } from '../helpers/fs-journal-body.js';
import { tempDir } from '../helpers/temp-dir.js';

const newRoot = (): Promise<string> => tempDir(t, 'aid-journal-');

const store = (root: string): FsObjectStore => new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1', secret: 's' } });

t.test('putBatch: every object readable with its metadata at once; a stop checkpoints and empties the journal', async (t) => {
  const root = await newRoot();
  const s = store(root);
  await s.start();
  const items = Array.from({ length: 40 }, (_, i) => ({ key: `a/${i}.wav`, body: journalBody(i), options: { contentType: 'audio/wav', metadata: { seq: String(i) } } }));
  await s.putBatch(items);
  await s.putBatch([{ key: 'a/plain.json', body: Buffer.from('{}'), options: { contentType: 'application/json' } }]);
  for (const it of items) {
    t.ok((await s.get(it.key)).equals(it.body), `${it.key} bytes`);
  }
  t.match(await s.head('a/7.wav'), { size: journalBody(7).length, contentType: 'audio/wav', metadata: { seq: '7' } });
  t.equal((await readdir(join(root, '.journal'))).length, 1, 'one journal segment open');
  await s.stop();
  t.same(await readdir(join(root, '.journal')), [], 'checkpointed at stop: no segment left');
  t.same(await readdir(join(root, '.tmp')), [], 'no temp file left');
  await t.rejects(s.putBatch([{ key: '../x', body: Buffer.from('x'), options: { contentType: 'audio/wav' } }]), { code: 'INVALID_PARAMETER' }, 'unsafe keys refused before anything is written');
});

t.test('a crash mid-batch loses no acknowledged object, even when the objects themselves never reached the disk', async (t) => {
  const root = await newRoot();
  const child = spawn(process.execPath, [...process.execArgv, 'test/helpers/fs-journal-child.ts', root], { stdio: ['ignore', 'pipe', 'inherit'] });
  let acked = -1;
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const l of lines) acked = Number(l);
      if (acked >= 16 * 30 && !child.killed) {
        child.kill('SIGKILL');
        resolve();
      }
    });
  });
  await new Promise((r) => child.once('exit', r));
  t.ok(acked >= 16 * 30 - 1, `${acked + 1} objects acknowledged before the kill`);
  const segments = await readdir(join(root, '.journal'));
  t.equal(segments.length, 1, 'the journal segment is still there');
  // the power loss: the objects written without fsync are gone; and a record cut mid-append
  await rm(join(root, 'objects'), { recursive: true, force: true });
  await rm(join(root, '.meta'), { recursive: true, force: true });
  const seg = join(root, '.journal', segments[0]!);
  const header = Buffer.from(JSON.stringify({ key: 'rec/r1/chunks/cut.wav', contentType: 'audio/wav', metadata: {}, size: 5000 }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length, 0);
  await appendFile(seg, Buffer.concat([len, header, Buffer.alloc(100)]));

  const s = store(root);
  await s.start();
  t.ok((await s.recoverJournal()) >= acked + 1, 'every acknowledged object replayed');
  let restored = 0;
  for (let i = 0; i <= acked; i++) {
    const key = `rec/r1/chunks/${String(i).padStart(6, '0')}.wav`;
    const got = await s.get(key).catch(() => null);
    if (got === null || !got.equals(journalBody(i))) {
      t.fail(`acknowledged object ${key} lost or damaged`);
      break;
    }
    restored++;
  }
  t.equal(restored, acked + 1, 'every acknowledged object is back, byte for byte');
  t.match(await s.head('rec/r1/chunks/000003.wav'), { metadata: { seq: '3' } }, 'with its metadata');
  t.equal(await s.head('rec/r1/chunks/cut.wav'), null, 'the record cut by the crash was never acknowledged and is not made up');
  t.same(await readdir(join(root, '.journal')), [], 'replayed segments are deleted after the flush');
  await s.stop();
  t.ok((await readFile(join(root, 'objects', 'rec', 'r1', 'chunks', '000000.wav'))).equals(journalBody(0)));
});
