import t from 'tap';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CursorFile } from '../../src/events/cursor-file.js';
import { SinkCursor } from '../../src/events/sink-cursor.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The position on disk, read by a second handle the way the next process would. */
async function onDisk(dir: string, sink: string): Promise<number | null> {
  const { file, seq } = await CursorFile.open(join(dir, `cursor-${sink}`));
  await file.close();
  return seq;
}

t.test('a sink seen for the first time has no stored position; place() writes its start at once', async (t) => {
  const dir = await tempDir(t);
  const cursor = await SinkCursor.open(dir, 'amqp');
  t.equal(cursor.stored, null);
  await cursor.place(7);
  t.equal(cursor.seq, 7);
  t.equal(await onDisk(dir, 'amqp'), 7, 'durable before place() resolves');
  await cursor.close();
  const again = await SinkCursor.open(dir, 'amqp');
  t.equal(again.stored, 7);
  t.equal(again.seq, 7);
  await again.close();
  t.same(await readdir(dir), ['cursor-amqp'], 'one file per sink');
});

t.test('advance() keeps the position in memory up to syncMs; close() writes it', async (t) => {
  const dir = await tempDir(t);
  const cursor = await SinkCursor.open(dir, 'webhook', { syncMs: 60_000 });
  await cursor.place(0);
  for (let s = 1; s <= 50; s++) cursor.advance(s);
  t.equal(cursor.seq, 50, 'the next delivery starts after 50');
  t.equal(await onDisk(dir, 'webhook'), 0, 'not written yet: a crash now replays from 0 (at least once)');
  await cursor.close();
  t.equal(await onDisk(dir, 'webhook'), 50, 'close writes the newest position');
  cursor.advance(60);
  t.equal(await onDisk(dir, 'webhook'), 50, 'after close an advance stays in memory');
});

t.test('with syncMs 0 every advance is written, the newest one last', async (t) => {
  const dir = await tempDir(t);
  const cursor = await SinkCursor.open(dir, 'log', { syncMs: 0 });
  await cursor.place(0);
  for (let s = 1; s <= 20; s++) cursor.advance(s);
  // a write in progress picks up the newest position when it is done; tap's timeout bounds the wait
  let last = await onDisk(dir, 'log');
  while (last !== 20) {
    t.ok(last !== null && last <= 20, `on disk meanwhile: ${last}`);
    await new Promise((r) => setTimeout(r, 5));
    last = await onDisk(dir, 'log');
  }
  t.equal(last, 20, 'written without a close');
  await cursor.close();
});

t.test('with a short syncMs the position reaches the disk without a close', async (t) => {
  const dir = await tempDir(t);
  const cursor = await SinkCursor.open(dir, 'log', { syncMs: 20 });
  await cursor.place(0);
  cursor.advance(5);
  let seen = await onDisk(dir, 'log');
  while (seen !== 5) {
    await new Promise((r) => setTimeout(r, 10));
    seen = await onDisk(dir, 'log');
  }
  t.equal(seen, 5, 'written by the deferred sync');
  await cursor.close();
});

t.test('a cursor of the older JSON format is taken over', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'cursor-webhook.json'), '{"seq":42}');
  const cursor = await SinkCursor.open(dir, 'webhook');
  t.equal(cursor.stored, 42);
  await cursor.close();
  t.same(await readdir(dir), ['cursor-webhook'], 'the legacy file is gone');
});
