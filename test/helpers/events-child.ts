/**
 * Child process for the crash test: appends events to an outbox whose only sink never
 * confirms, and prints the id of each event once append() resolved. The parent kills it -9.
 */
import { Outbox } from '../../src/events/outbox.js';
import { completedEvent } from './events-fixtures.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: events-child.ts <outboxDir>');

const outbox = new Outbox({
  dir,
  segmentBytes: 16 * 1024, // several segments, so the crash test covers rotation too
  sinks: [{ name: 'stuck', deliver: () => new Promise<void>(() => undefined) }],
});
await outbox.start();
let i = 0;
for (;;) {
  // groups of concurrent appends, so kill -9 lands mid group commit
  const group = Array.from({ length: 20 }, () => completedEvent(i++));
  await Promise.all(
    group.map(async (e) => {
      await outbox.append(e);
      process.stdout.write(`${e.id}\n`);
    }),
  );
}
