import { spawn } from 'node:child_process';
import { access, appendFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { journalBody } from '../helpers/fs-journal-body.js';
import { tempDir } from '../helpers/temp-dir.js';

const newRoot = (): Promise<string> => tempDir(t, 'aid-journal-');

const store = (root: string): FsObjectStore => new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1', secret: 's' } });

/**
 * Runs a child script of the crash tests, reads the indexes it prints once each is acknowledged,
 * and SIGKILLs it right after the `n`th (or sees it die by itself, which fails the caller's count).
 */
async function killAfterAcks(args: string[], n: number): Promise<number[]> {
  const child = spawn(process.execPath, [...process.execArgv, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const acked: number[] = [];
  let out = '';
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise<void>((resolve) => {
    void exited.then(() => resolve());
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const l of lines) acked.push(Number(l));
      if (acked.length >= n && !child.killed) {
        child.kill('SIGKILL');
        resolve();
      }
    });
  });
  await exited;
  return acked;
}

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

t.test('putBatch of the bytes already in place keeps the object\'s and the sidecar\'s files (no inode made or freed) and refreshes the time; other bytes replace them', async (t) => {
  const root = await newRoot();
  const s = store(root);
  await s.start();
  t.teardown(() => s.stop());
  const { stat, utimes } = await import('node:fs/promises');
  const entry = { key: 'catalog/rooms/t/r/0001_abc', body: Buffer.from('abc'), options: { contentType: 'text/plain', metadata: { tenant: 't' } } };
  const record = { key: 'catalog/recordings/t/abc.json', body: Buffer.from('{"state":"recording"}'), options: { contentType: 'application/json', metadata: { tenant: 't' } } };
  await s.putBatch([entry, record]);
  const file = (key: string): string => join(root, 'objects', ...key.split('/'));
  const side = (key: string): string => `${join(root, '.meta', ...key.split('/'))}.json`;
  const old = new Date(Date.now() - 3_600_000);
  for (const p of [file(entry.key), file(record.key)]) await utimes(p, old, old);
  const before = { entry: await stat(file(entry.key)), entrySide: await stat(side(entry.key)), record: await stat(file(record.key)), recordSide: await stat(side(record.key)) };

  const ended = { ...record, body: Buffer.from('{"state":"completed"}') };
  await s.putBatch([entry, ended]);
  const after = { entry: await stat(file(entry.key)), entrySide: await stat(side(entry.key)), record: await stat(file(record.key)), recordSide: await stat(side(record.key)) };
  t.equal(after.entry.ino, before.entry.ino, 'the same bytes: the same file');
  t.ok(after.entry.mtimeMs > old.getTime() + 1_800_000, 'its modification time refreshed, as a replacement would have');
  t.ok((await s.head(entry.key))!.lastModified.getTime() > old.getTime() + 1_800_000, 'head reports the new time');
  t.equal(after.entrySide.ino, before.entrySide.ino, 'the same sidecar: the same file');
  t.equal(after.recordSide.ino, before.recordSide.ino, 'the record\'s unchanged sidecar kept');
  t.not(after.record.ino, before.record.ino, 'other bytes: a new file, put in place by rename');
  t.ok((await s.get(record.key)).equals(ended.body), 'the new bytes read back');
  t.same(await s.head(entry.key), { key: entry.key, size: 3, lastModified: after.entry.mtime, contentType: 'text/plain', metadata: { tenant: 't' } });

  await s.putBatch([{ ...entry, options: { contentType: 'text/plain', metadata: { tenant: 'u' } } }]);
  t.not((await stat(side(entry.key))).ino, before.entrySide.ino, 'other metadata: the sidecar replaced');
  t.match(await s.head(entry.key), { metadata: { tenant: 'u' } });
  t.same(await readdir(join(root, '.tmp')), [], 'no temp file left');
});

t.test('a crash mid-batch loses no acknowledged object, even when the objects themselves never reached the disk', async (t) => {
  const root = await newRoot();
  // the child prints the index of the last object of each acknowledged batch of 16
  const acked = (await killAfterAcks(['test/helpers/fs-journal-child.ts', root], 30)).at(-1) ?? -1;
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

t.test('putFile: the sidecar goes through the journal (no fsync of its own) and comes back after a crash that lost it', async (t) => {
  const root = await newRoot();
  const spool = join(root, 'spool');
  await mkdir(spool);
  const acked = new Set(await killAfterAcks(['test/helpers/fs-putfile-child.ts', root, spool, '4', 'flat'], 60));
  t.ok(acked.size >= 60, `${acked.size} masters acknowledged before the kill`);
  // the power loss: the sidecars were put in place without an fsync; the objects were synced (data and folder)
  await rm(join(root, '.meta'), { recursive: true, force: true });

  const s = store(root);
  await s.start();
  t.ok((await s.recoverJournal()) >= acked.size, 'every acknowledged sidecar replayed');
  let whole = 0;
  for (const i of acked) {
    const key = `rec/m${i}/master.wav`;
    const info = await s.head(key);
    const body = await s.get(key).catch(() => null);
    if (info === null || body === null || !body.equals(journalBody(i)) || info.contentType !== 'audio/wav' || info.metadata['seq'] !== String(i) || info.metadata['duration-sec'] !== '1.5') {
      t.fail(`acknowledged master ${key} lost, damaged or without its metadata: ${JSON.stringify(info)}`);
      break;
    }
    whole++;
  }
  t.equal(whole, acked.size, 'every acknowledged master is there with its bytes, content type and metadata');
  t.same(await readdir(join(root, '.journal')), [], 'replayed segments are deleted after the flush');
  await s.stop();
});

t.test('putFile: a master\'s sidecar is one journal record without audio; an object without metadata leaves no sidecar; nothing is copied', async (t) => {
  const root = await newRoot();
  // no checkpoint while it runs (a slow start of the worker threads must not empty the journal before it is read)
  const s = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1', secret: 's' }, journalSegmentMs: 3_600_000 });
  await s.start();
  t.teardown(() => s.stop());
  const spool = join(root, 'spool');
  await mkdir(spool);
  const { writeFile, stat } = await import('node:fs/promises');
  const n = 24;
  await Promise.all(Array.from({ length: n }, (_, i) => writeFile(join(spool, `${i}.pcm`), journalBody(i))));
  await Promise.all(Array.from({ length: n }, (_, i) => s.putFile(`m/${i}.wav`, join(spool, `${i}.pcm`), { contentType: 'audio/wav', metadata: { seq: String(i) } })));
  for (let i = 0; i < n; i++) t.match(await s.head(`m/${i}.wav`), { size: journalBody(i).length, metadata: { seq: String(i) } });
  const segments = await readdir(join(root, '.journal'));
  t.equal(segments.length, 1);
  const records = (await readFile(join(root, '.journal', segments[0]!))).toString('latin1').split('"sidecarOnly":true').length - 1;
  t.equal(records, n, 'one sidecar record per master in the journal');
  t.equal((await stat(join(root, '.journal', segments[0]!))).size < n * 200, true, 'the records hold no audio');
  await writeFile(join(spool, 'bare.pcm'), journalBody(99));
  await s.putFile('m/bare.wav', join(spool, 'bare.pcm'), { contentType: 'audio/wav' });
  await t.rejects(readFile(join(root, '.meta', 'm', 'bare.wav.json')), { code: 'ENOENT' }, 'no sidecar for an object the key describes');
  t.same(await readdir(spool), [], 'every file was moved, none copied');
});

t.test('a checkpoint never deletes the journal records of objects still being put into place', async (t) => {
  const root = await newRoot();
  // a segment is due for its checkpoint 1 ms after it opened: the checkpoint comes while the batch is placed
  const s = new FsObjectStore({ root, presign: { baseUrl: 'http://127.0.0.1', secret: 's' }, journalSegmentMs: 1 });
  await s.start();
  const items = Array.from({ length: 24 }, (_, i) => ({ key: `big/${i}.wav`, body: Buffer.alloc(2 * 1024 * 1024, i + 1), options: { contentType: 'audio/wav' } }));
  const last = join(root, 'objects', 'big', '23.wav');
  let settled = false;
  const put = s.putBatch(items).finally(() => (settled = true));
  let journalled = false;
  let exposed = 0;
  while (!settled) {
    const segments = (await readdir(join(root, '.journal'))).filter((n) => n.endsWith('.log'));
    if (segments.length > 0) journalled = true;
    else if (journalled && !(await access(last).then(() => true, () => false))) exposed++;
    await new Promise((r) => setImmediate(r));
  }
  await put;
  t.ok(journalled, 'the batch went through the journal');
  t.equal(exposed, 0, 'no moment with the journal deleted and the last object not yet in place');
  for (const it of items) t.ok((await s.get(it.key)).equals(it.body), `${it.key} intact`);
  await s.stop();
});

t.test('putBatch of bodies in shared memory (chunk WAVs): stored byte for byte', async (t) => {
  const root = await newRoot();
  const s = store(root);
  await s.start();
  const items = Array.from({ length: 8 }, (_, i) => {
    const body = Buffer.from(new SharedArrayBuffer(50_000 + i));
    body.set(journalBody(i).subarray(0, body.length));
    body.fill(i, journalBody(i).length);
    return { key: `shared/${i}.wav`, body, options: { contentType: 'audio/wav', metadata: { seq: String(i) } } };
  });
  await s.putBatch(items);
  for (const it of items) t.ok((await s.get(it.key)).equals(it.body), `${it.key} bytes`);
  await s.stop();
});

t.test('putFile: masters ending together are announced only once their group has them in place; a kill -9 mid-group leaves every announced master whole', async (t) => {
  const root = await newRoot();
  const spool = join(root, 'spool');
  await mkdir(spool);
  // killed right after an announcement, while the masters ending with it are being moved
  const acked = new Set(await killAfterAcks(['test/helpers/fs-putfile-child.ts', root, spool, '32', 'meeting'], 40));
  t.ok(acked.size >= 40, `${acked.size} masters announced before the kill`);
  const { masterBody } = await import('../helpers/fs-master-body.js');
  let whole = 0;
  for (const i of acked) {
    const got = await readFile(join(root, 'objects', 'rec', 'meeting', `p${i}`, `t${i}`, 'master.wav')).catch(() => null);
    if (got === null || !got.equals(masterBody(i))) {
      t.fail(`announced master ${i} ${got === null ? 'absent' : `damaged (${got.length} B)`} after the kill`);
      continue;
    }
    whole++;
  }
  t.equal(whole, acked.size, 'every announced master is in place, whole');
  t.notOk(acked.size > 0 && [...acked].some((i) => existsSync(join(spool, `part-${i}.pcm`))), 'no announced master left in the spool');
  const s = store(root);
  await s.start();
  await s.recoverJournal();
  for (const i of [...acked].slice(0, 5)) t.match(await s.head(`rec/meeting/p${i}/t${i}/master.wav`), { size: 1024 * 1024, metadata: { seq: String(i) } });
  await s.stop();
});

t.test('putFile: one master of a group that cannot be moved fails alone; the others of its group are stored', async (t) => {
  const root = await newRoot();
  const s = store(root);
  await s.start();
  t.teardown(() => s.stop());
  const spool = join(root, 'spool');
  await mkdir(spool);
  const { writeFile } = await import('node:fs/promises');
  const { masterBody } = await import('../helpers/fs-master-body.js');
  await Promise.all(Array.from({ length: 8 }, (_, i) => writeFile(join(spool, `${i}.pcm`), masterBody(i))));
  // master 3's target folder is taken by a file: its rename fails, in the same group as the rest
  await mkdir(join(root, 'objects', 'g'), { recursive: true });
  await writeFile(join(root, 'objects', 'g', 'p3'), 'not a folder');
  const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.putFile(`g/p${i}/master.wav`, join(spool, `${i}.pcm`), { contentType: 'audio/wav', metadata: { seq: String(i) } })));
  t.same(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  t.match((results[3] as PromiseRejectedResult).reason, { code: 'STORAGE_ERROR' });
  for (const i of [0, 1, 2, 4, 5, 6, 7]) t.ok((await s.get(`g/p${i}/master.wav`)).equals(masterBody(i)), `master ${i} stored`);
  t.ok(existsSync(join(spool, '3.pcm')), 'the failed master is still in the spool');
});
