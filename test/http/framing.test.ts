import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { HttpServer, json } from '../../src/http/server.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { chunk, LAST_CHUNK, RawClient } from '../helpers/raw-http.js';

// Request smuggling needs two parsers that see different request boundaries. uWS takes the first
// of two Content-Length headers and reads "gzip, chunked" as plain chunked; a proxy in front may
// not. Such requests are refused before any handler runs, and the connection is closed.

const sink = new Writable({ write: (_c, _e, cb) => cb() });
const handled: string[] = [];

async function start(t: Test): Promise<number> {
  const server = new HttpServer({ logger: createLogger({ level: 'silent', destination: sink as never }), metrics: new Metrics({ defaultMetrics: false }), requestTimeoutSec: 30 });
  server.route('post', '/upload', 'upload', async (ctx) => {
    handled.push(ctx.id);
    const body = await ctx.readBody(1024 * 1024);
    return json(200, { size: body.length });
  });
  server.fallback();
  const port = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.stop());
  return port;
}

const head = (id: string, lines: string[]): string => `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: ${id}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;

t.test('ambiguous body framing is refused with 400 BAD_REQUEST and the connection closed; clear framing is served', async (t) => {
  const port = await start(t);
  const body = Buffer.alloc(100, 7);
  const refused: [string, string[], Buffer][] = [
    ['two Content-Length, the first larger', ['content-length: 100', 'content-length: 10'], body],
    ['two Content-Length, the first smaller', ['content-length: 10', 'content-length: 100'], body],
    ['Transfer-Encoding gzip, chunked', ['transfer-encoding: gzip, chunked'], Buffer.concat([chunk(body), LAST_CHUNK])],
  ];
  for (const [name, lines, bytes] of refused) {
    const id = `framing-${refused.findIndex((r) => r[0] === name)}`;
    const c = await RawClient.connect(port);
    await c.write(Buffer.concat([Buffer.from(head(id, lines)), bytes]));
    const end = await c.ended;
    const [answer, ...more] = c.parsed().answers;
    t.equal(answer?.status, 400, `${name}: 400`);
    t.match(JSON.parse(answer?.body.toString() ?? '{}'), { error: { code: 'BAD_REQUEST' } }, `${name}: the coded JSON body`);
    t.equal(more.length, 0, `${name}: nothing more is answered (no second request read from the body)`);
    t.ok(end.fin || end.reset, `${name}: the connection is closed`);
    t.notOk(handled.includes(id), `${name}: no handler ran`);
  }

  // a Content-Length list uWS's parser refuses itself: the connection is closed unanswered, no handler runs
  const list = await RawClient.connect(port);
  await list.write(Buffer.concat([Buffer.from(head('framing-list', ['content-length: 10, 100'])), body]));
  const listEnd = await list.ended;
  t.ok((listEnd.fin || listEnd.reset) && list.parsed().answers.every((a) => a.status === 400), 'a Content-Length list: closed, never served');
  t.notOk(handled.includes('framing-list'));

  const served: [string, string[], Buffer][] = [
    ['one Content-Length', ['content-length: 100'], body],
    ['the same Content-Length twice', ['content-length: 100', 'content-length: 100'], body],
    ['chunked', ['transfer-encoding: chunked'], Buffer.concat([chunk(body), LAST_CHUNK])],
  ];
  for (const [name, lines, bytes] of served) {
    const c = await RawClient.connect(port);
    await c.write(Buffer.concat([Buffer.from(head(`ok-${name}`, lines)), bytes]));
    const [answer] = await c.answers(1);
    t.equal(answer?.status, 200, `${name}: 200`);
    t.same(JSON.parse(answer?.body.toString() ?? '{}'), { size: 100 }, `${name}: the whole body read`);
    c.destroy();
  }
});
