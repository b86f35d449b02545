import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { Outbox } from '../../src/events/outbox.js';
import { parseWebhookSecrets } from '../../src/events/webhook-signing.js';
import { parseRetryAfter, WebhookSink } from '../../src/events/webhooks.js';
import { completedEvent } from '../helpers/events-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('Retry-After is read as seconds or an HTTP date', async (t) => {
  const now = Date.parse('2026-11-25T12:00:00Z');
  t.equal(parseRetryAfter('3', now), 3000);
  t.equal(parseRetryAfter('Wed, 25 Nov 2026 12:00:10 GMT', now), 10_000);
  t.equal(parseRetryAfter('Wed, 25 Nov 2026 11:00:00 GMT', now), 0, 'a past date means now');
  t.equal(parseRetryAfter(undefined, now), undefined);
  t.equal(parseRetryAfter('soon', now), undefined);
});

t.test('a receiver answering 429 with Retry-After is not asked again before that', async (t) => {
  const arrivals: number[] = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      arrivals.push(Date.now());
      if (arrivals.length === 1) res.writeHead(429, { 'Retry-After': '2' }).end();
      else res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const outbox = new Outbox({ dir: await tempDir(t), sinks: [new WebhookSink({ url, keys: parseWebhookSecrets('legacy', 'legacy-secret-retry-after').keys!, role: 'main' })], retry: { baseMs: 10, maxMs: 20 } });
  await outbox.start();
  t.teardown(() => outbox.stop());
  await outbox.append(completedEvent(1));
  await waitFor(() => arrivals.length >= 2);
  const gap = arrivals[1]! - arrivals[0]!;
  // the backoff alone would retry within 20 ms; the receiver asked for 2 s
  t.ok(gap >= 1900, `second attempt ${gap} ms after the first`);
  await waitFor(() => outbox.stats().sinks['webhook']?.pending === 0);
  t.equal(arrivals.length, 2, 'delivered on the second attempt');
});
