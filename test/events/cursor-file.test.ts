import t from 'tap';
import { open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CursorFile } from '../../src/events/cursor-file.js';
import { Outbox, type OutboxEvent, type Sink } from '../../src/events/outbox.js';
import { completedEvent } from '../helpers/events-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('a cursor is rewritten in place: same inode, no other file, newest value read back', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'cursor-x');
  const { file, seq } = await CursorFile.open(path);
  t.equal(seq, null, 'a new cursor has no position');
  await file.write(5);
  const ino = (await stat(path)).ino;
  for (let s = 6; s <= 40; s++) await file.write(s);
  await file.close();
  t.equal((await stat(path)).ino, ino, 'same file after 36 writes');
  t.same(await readdir(dir), ['cursor-x'], 'no temp files left');
  t.equal((await stat(path)).size, 128, 'two 64-byte slots');
  const again = await CursorFile.open(path);
  t.equal(again.seq, 40);
  await again.file.write(41);
  await again.file.close();
  t.equal((await CursorFile.open(path).then(async (r) => (await r.file.close(), r.seq))), 41, 'generations go on after a reopen');
});

t.test('a torn newest slot falls back to the other one; two bad slots mean no position', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'cursor-y');
  const { file } = await CursorFile.open(path);
  await file.write(100); // gen 1 → slot 1
  await file.write(200); // gen 2 → slot 0
  await file.close();
  const text = await readFile(path, 'latin1');
  t.match(text.slice(0, 64), /^200 2 [0-9a-f]{8} +\n$/);
  t.match(text.slice(64), /^100 1 [0-9a-f]{8} +\n$/);
  // a write cut short: the digits changed, the CRC did not
  const fh = await open(path, 'r+');
  await fh.write(Buffer.from('29'), 0, 2, 0);
  await fh.close();
  let r = await CursorFile.open(path);
  await r.file.close();
  t.equal(r.seq, 100, 'the older valid slot wins over a slot whose CRC fails');
  await writeFile(path, Buffer.alloc(128, 0x20));
  r = await CursorFile.open(path);
  await r.file.close();
  t.equal(r.seq, null, 'nothing valid: no position (replay from the oldest retained event)');
});

t.test('a cursor of the older JSON format is taken over and its file removed', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'cursor-z.json'), '{"seq":42}');
  const r = await CursorFile.open(join(dir, 'cursor-z'), join(dir, 'cursor-z.json'));
  await r.file.close();
  t.equal(r.seq, 42);
  t.same(await readdir(dir), ['cursor-z']);
  const again = await CursorFile.open(join(dir, 'cursor-z'), join(dir, 'cursor-z.json'));
  await again.file.close();
  t.equal(again.seq, 42, 'kept in the new format');
});

class Collect implements Sink {
  readonly received: OutboxEvent[] = [];
  constructor(readonly name: string) {}
  async deliver(batch: OutboxEvent[]): Promise<void> {
    this.received.push(...batch);
  }
  async until(n: number): Promise<void> {
    while (this.received.length < n) await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('the outbox writes cursors at most every cursorSyncMs: a crash replays at most that window, a stop nothing', async (t) => {
  const events = Array.from({ length: 10 }, (_, i) => completedEvent(i));
  const run = async (dir: string, cursorSyncMs: number, waitMs: number, stop: boolean): Promise<number> => {
    const sink = new Collect('log');
    const first = new Outbox({ dir, sinks: [sink], cursorSyncMs });
    await first.start();
    for (const e of events) await first.append(e);
    await sink.until(10);
    await new Promise((r) => setTimeout(r, waitMs));
    if (stop) await first.stop();
    // no stop(): what a kill -9 leaves; the next process opens the same directory
    const again = new Collect('log');
    const second = new Outbox({ dir, sinks: [again], cursorSyncMs });
    await second.start();
    await new Promise((r) => setTimeout(r, 100));
    await second.stop();
    return again.received.length;
  };
  t.equal(await run(await tempDir(t), 60_000, 0, false), 10, 'cursor not yet written: everything is sent again (at least once)');
  t.equal(await run(await tempDir(t), 50, 300, false), 0, 'written after the sync interval: nothing is sent again');
  t.equal(await run(await tempDir(t), 60_000, 0, true), 0, 'a stop writes the cursor at once');
});
