import t, { type Test } from 'tap';
import { appendFile, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SegmentLog } from '../../src/events/segment-log.js';
import type { OutboxEvent } from '../../src/events/sink.js';
import { completedEvent } from '../helpers/events-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

const segmentsIn = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith('seg-')).sort();
const ids = (events: OutboxEvent[]): string[] => events.map((e) => e.id);

/** Everything after `after`, read in batches of `max` the way a reader does (each read goes on where the last ended). */
async function readAll(t: Test, log: SegmentLog, after: number, max: number): Promise<{ events: OutboxEvent[]; reads: number }> {
  const events: OutboxEvent[] = [];
  let pos = null;
  let seq = after;
  let reads = 0;
  for (;;) {
    const r = await log.read(seq, pos, max);
    reads++;
    pos = r.next;
    if (r.firstSeq === undefined) return { events, reads };
    t.ok(r.events.length <= max, 'no read returns more than asked');
    t.equal(r.firstSeq, seq + 1, 'a read starts right after the seq it was given');
    events.push(...r.events);
    seq = r.lastSeq;
  }
}

t.test('appends of one tick share one write+fsync and read back in order, line by line', async (t) => {
  const dir = await tempDir(t);
  const log = new SegmentLog({ dir, confirmedThrough: () => 0 });
  await log.open();
  const events = Array.from({ length: 100 }, (_, i) => completedEvent(i));
  await Promise.all(events.map((e) => log.append(e)));
  t.equal(log.appended, 100);
  t.equal(log.flushes, 1, 'one group commit for 100 concurrent appends');
  t.equal(log.lastSeq, 100);
  const lines = (await readFile(join(dir, (await segmentsIn(dir))[0]!), 'utf8')).trimEnd().split('\n');
  t.same(lines.map((l) => (JSON.parse(l) as { seq: number }).seq), events.map((_, i) => i + 1), 'one {"seq","event"} line per event');
  const { events: read } = await readAll(t, log, 0, 7);
  t.same(ids(read), ids(events), 'read back in batches of 7, same order');
  t.same(read[5], JSON.parse(JSON.stringify(events[5])), 'an event round-trips');
  const tail = await log.read(90, null, 100);
  t.same(ids(tail.events), ids(events.slice(90)), 'a reader past seq 90 gets only what follows');
  await log.close();
  await t.rejects(log.append(completedEvent(1000)), { code: 'DRAINING' }, 'a closed log takes no appends');
});

t.test('a segment is closed past segmentBytes; closed segments go once every reader is past them', async (t) => {
  const dir = await tempDir(t);
  let confirmed = 0;
  const log = new SegmentLog({ dir, segmentBytes: 2048, confirmedThrough: () => confirmed });
  await log.open();
  const events = Array.from({ length: 40 }, (_, i) => completedEvent(i));
  for (const e of events) await log.append(e);
  const segs = await segmentsIn(dir);
  t.ok(segs.length > 2, `rotated into ${segs.length} segments`);
  t.equal(log.segmentCount, segs.length);
  const { events: read } = await readAll(t, log, 0, 1000);
  t.same(ids(read), ids(events), 'one reader crosses every segment boundary');
  await log.deleteConfirmed();
  t.equal((await segmentsIn(dir)).length, segs.length, 'nothing confirmed, nothing deleted');
  const secondFirst = Number(/^seg-(\d+)/.exec(segs[1]!)![1]);
  confirmed = secondFirst - 2;
  await log.deleteConfirmed();
  t.equal((await segmentsIn(dir)).length, segs.length, 'a segment is kept while its last event is unconfirmed');
  confirmed = secondFirst - 1;
  await log.deleteConfirmed();
  t.same(await segmentsIn(dir), segs.slice(1), 'the first segment goes once its last event is confirmed');
  t.equal(log.firstRetainedSeq, secondFirst);
  confirmed = 40;
  await log.deleteConfirmed();
  t.same(await segmentsIn(dir), segs.slice(-1), 'the active segment stays even when all is confirmed');
  const resumed = await log.read(secondFirst - 1, { segFirstSeq: secondFirst, offset: 0 }, 100);
  t.equal(resumed.firstSeq, log.firstRetainedSeq, 'a reader standing in a deleted segment resumes at the oldest retained event');
  t.same(ids(resumed.events), ids(events.slice(log.firstRetainedSeq - 1)));
  await log.close();
});

t.test('a reader holding a position in a segment deleted under it goes on from its seq', async (t) => {
  const dir = await tempDir(t);
  let confirmed = 0;
  const log = new SegmentLog({ dir, segmentBytes: 4096, confirmedThrough: () => confirmed });
  await log.open();
  const events = Array.from({ length: 30 }, (_, i) => completedEvent(i));
  for (const e of events) await log.append(e);
  const first = await log.read(0, null, 2);
  t.equal(first.next!.segFirstSeq, 1, 'the reader stands in the first segment');
  confirmed = 20; // another reader's confirmations delete the segment this reader stands in
  await log.deleteConfirmed();
  t.notOk((await segmentsIn(dir)).includes('seg-0000000000000001.ndjson'), 'the first segment is gone');
  const oldest = log.firstRetainedSeq;
  t.ok(oldest > 3 && oldest <= 21, `events from ${oldest} on are held`);
  const next = await log.read(first.lastSeq, first.next, 100);
  t.equal(next.firstSeq, oldest, 'reading goes on at the oldest retained event');
  t.same(ids(next.events), ids(events.slice(oldest - 1)));
  await log.close();
});

t.test('open: a torn last line is ignored, a segment holding only a torn line is deleted, numbering goes on', async (t) => {
  const dir = await tempDir(t);
  const first = new SegmentLog({ dir, confirmedThrough: () => 0 });
  await first.open();
  const events = [completedEvent(1), completedEvent(2)];
  for (const e of events) await first.append(e);
  await first.close();
  const [seg] = await segmentsIn(dir);
  await appendFile(join(dir, seg!), '{"seq":3,"event":{"id":"torn","ty');
  await writeFile(join(dir, 'seg-0000000000000003.ndjson'), '{"seq":3,"ev'); // a run that crashed mid first write

  const second = new SegmentLog({ dir, confirmedThrough: () => 0 });
  await second.open();
  t.equal(second.lastSeq, 2, 'the last complete line');
  t.same(await segmentsIn(dir), [seg], 'the segment with nothing complete in it is gone');
  const later = completedEvent(3);
  await second.append(later);
  t.equal(second.lastSeq, 3);
  t.equal((await segmentsIn(dir)).length, 2, 'this run writes into a fresh segment, never after the torn line');
  const { events: read } = await readAll(t, second, 0, 10);
  t.same(ids(read), ids([...events, later]), 'the torn line is skipped, the later append is intact');
  await second.close();
});

t.test('open(seqAtLeast): with every segment deleted, numbering goes on after the readers’ cursors', async (t) => {
  const dir = await tempDir(t);
  const log = new SegmentLog({ dir, confirmedThrough: () => 0 });
  await log.open(41);
  t.equal(log.lastSeq, 41);
  t.equal(log.firstRetainedSeq, 42, 'nothing held: the next seq');
  t.same(await log.read(41, null, 10), { events: [], firstSeq: undefined, lastSeq: 41, next: null }, 'nothing to read, no position');
  await log.append(completedEvent(1));
  t.equal(log.lastSeq, 42);
  t.same(await segmentsIn(dir), ['seg-0000000000000042.ndjson'], 'a segment is named by its first seq');
  await log.close();
});

t.test('a line longer than one read chunk is read whole', async (t) => {
  const dir = await tempDir(t);
  const log = new SegmentLog({ dir, confirmedThrough: () => 0 });
  await log.open();
  const big = { ...completedEvent(1), padding: 'x'.repeat(600 * 1024) } as unknown as OutboxEvent;
  await log.append(big);
  await log.append(completedEvent(2));
  const r = await log.read(0, null, 10);
  t.equal(r.events.length, 2);
  t.equal((r.events[0] as unknown as { padding: string }).padding.length, 600 * 1024);
  await log.close();
});

t.test('flush listeners are told after each durable group', async (t) => {
  const dir = await tempDir(t);
  const log = new SegmentLog({ dir, confirmedThrough: () => 0 });
  const seen: number[] = [];
  log.onFlush(() => seen.push(log.lastSeq));
  await log.open();
  await Promise.all([log.append(completedEvent(1)), log.append(completedEvent(2))]);
  await log.append(completedEvent(3));
  t.same(seen, [2, 3], 'one call per group, after lastSeq moved');
  t.throws(() => new SegmentLog({ dir, segmentBytes: 0, confirmedThrough: () => 0 }), RangeError);
  await log.close();
});

t.test('a reader that is caught up is handed the events just committed from memory: the segment is not read back', async (t) => {
  const dir = await tempDir(t);
  let confirmed = 0;
  const log = new SegmentLog({ dir, confirmedThrough: () => confirmed });
  await log.open();
  const events = Array.from({ length: 20 }, (_, i) => completedEvent(i));
  await Promise.all(events.slice(0, 10).map((e) => log.append(e)));
  const [seg] = await segmentsIn(dir);
  const size = (await stat(join(dir, seg!))).size;
  // a second log on the same directory reads the file, to tell where the lines end
  const fromFile = new SegmentLog({ dir, confirmedThrough: () => 0, memoryBytes: 0 });
  await fromFile.open();
  const onDisk = await fromFile.read(0, null, 4);
  await unlink(join(dir, seg!)); // nothing can be read back from the file now
  const first = await log.read(0, null, 4);
  t.same(ids(first.events), ids(events.slice(0, 4)), 'the first four, in order');
  t.equal(first.firstSeq, 1);
  t.equal(first.lastSeq, 4);
  t.same(first.next, onDisk.next, 'the position after them is where their lines end in the file');
  confirmed = 4;
  const rest = await log.read(4, first.next, 100);
  t.same(ids(rest.events), ids(events.slice(4, 10)));
  t.same(rest.next, { segFirstSeq: 1, offset: size }, 'after the last line of the segment');
  t.same(await log.read(10, rest.next, 100), { events: [], firstSeq: undefined, lastSeq: 10, next: rest.next }, 'caught up: nothing, same position');
  await Promise.all(events.slice(10).map((e) => log.append(e)));
  const later = await log.read(10, rest.next, 100);
  t.same(ids(later.events), ids(events.slice(10)), 'the next group as well');
  t.equal(later.events[0], events[10], 'handed as appended, not parsed back from the file');
  t.equal(log.segmentReads, 0, 'no segment was read');
  await fromFile.close();
  await log.close();
});

t.test('a reader further behind than memoryBytes reads the segments, then goes on from memory', async (t) => {
  const dir = await tempDir(t);
  let confirmed = 0;
  const log = new SegmentLog({ dir, segmentBytes: 4096, memoryBytes: 3000, confirmedThrough: () => confirmed });
  await log.open();
  const events = Array.from({ length: 40 }, (_, i) => completedEvent(i));
  for (const e of events) await log.append(e);
  t.ok((await segmentsIn(dir)).length > 2, 'several segments');
  const behind = await readAll(t, log, 0, 5);
  t.same(ids(behind.events), ids(events), 'every event once, in order, across segments and into what memory holds');
  const fileReads = log.segmentReads;
  t.ok(fileReads > 0, `the old part came from the files (${fileReads} reads)`);
  confirmed = 40;
  await log.append(completedEvent(40));
  const next = await log.read(40, null, 10);
  t.equal(next.firstSeq, 41);
  t.equal(log.segmentReads, fileReads, 'the reader that caught up reads no file');
  await log.close();
});

t.test('after a failed write, memory lets go: a reader goes back to the file and gets every committed event once, in order', async (t) => {
  const dir = await tempDir(t);
  const log = new SegmentLog({ dir, segmentBytes: 1024, confirmedThrough: () => 0 });
  await log.open();
  const events = Array.from({ length: 8 }, (_, i) => completedEvent(i));
  let committed: OutboxEvent[] = [];
  for (const e of events.slice(0, 4)) {
    await log.append(e);
    committed.push(e);
  }
  // the segment the next group opens already exists: its open fails, the group is refused
  const blocker = join(dir, `seg-${String(log.lastSeq + 1).padStart(16, '0')}.ndjson`);
  await writeFile(blocker, '');
  const refused = completedEvent(100);
  await t.rejects(log.append(refused), { code: 'STORAGE_ERROR' }, 'the write failed');
  await unlink(blocker);
  for (const e of events.slice(4)) {
    await log.append(e);
    committed.push(e);
  }
  committed = committed.filter((e) => e !== refused);
  const { events: read } = await readAll(t, log, 0, 3);
  t.same(ids(read), ids(committed), 'the committed events, in order, none twice');
  const mid = await readAll(t, log, 2, 100);
  t.same(ids(mid.events), ids(committed.slice(2)), 'a reader standing before the failure gets the rest');
  await log.close();
});
