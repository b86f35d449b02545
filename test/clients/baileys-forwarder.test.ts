import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import {
  createBaileysForwarder,
  ForwardError,
  parseRetryAfter,
  type WAMessageLike,
} from '../../src/clients/baileys-forwarder.js';
import { closedPort } from '../helpers/limits-net.js';

const CHUNK = 16 * 1024;
const payload = randomBytes(3 * CHUNK);

interface Received {
  url: string;
  method: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

type Answer = (attempt: number, req: IncomingMessage, res: ServerResponse) => void;

/** The daemon's stand-in: records each request in full, then answers as `answer` says. */
async function daemon(t: Test, answer: Answer): Promise<{ url: string; received: Received[]; firstBytes: () => Promise<void> }> {
  const received: Received[] = [];
  let gate = deferred();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      chunks.push(c);
      gate.resolve(); // the CDN stand-in waits for this before sending more
    });
    req.on('end', () => {
      received.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      gate = deferred();
      answer(received.length, req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, received, firstBytes: () => gate.promise };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** WhatsApp's CDN stand-in: sends the payload in chunks, the 2nd only once the daemon has the 1st. */
function cdn(firstBytes?: () => Promise<void>): Readable {
  return Readable.from(
    (async function* () {
      yield payload.subarray(0, CHUNK);
      // Proves streaming: with a buffered body the daemon would never see these bytes first.
      if (firstBytes) await firstBytes();
      yield payload.subarray(CHUNK, 2 * CHUNK);
      yield payload.subarray(2 * CHUNK);
    })(),
  );
}

const long = (value: string): { low: number; high: number; toString(): string } => ({ low: Number(value), high: 0, toString: () => value });

function voiceNote(): WAMessageLike {
  return {
    key: { remoteJid: '5511999999999@s.whatsapp.net', id: '3EB0C767D26A1B2C', fromMe: false },
    message: {
      audioMessage: {
        mimetype: 'audio/ogg; codecs=opus',
        seconds: 12,
        ptt: true,
        fileLength: long(String(payload.length)),
        fileSha256: new Uint8Array(createHash('sha256').update(payload).digest()),
      },
    },
    messageTimestamp: long('1718000000'),
  };
}

const stored = { id: 'vn_1', status: 'stored', key: 'whatsapp/acme/sales/2024/06/10/3EB0C767D26A1B2C.wav', url: 'http://s3/x', durationSec: 12, sampleRate: 16000, channels: 1 };

t.test('429 with Retry-After: 1 once, then 201: one retry, every header on the wire, body streamed intact', { timeout: 20_000 }, async (t) => {
  const server = await daemon(t, (attempt, _req, res) => {
    if (attempt === 1) json(res, 429, { error: { code: 'RATE_LIMITED', message: 'slow down' } }, { 'retry-after': '1' });
    else json(res, 201, stored);
  });
  const downloads: unknown[][] = [];
  const reactions: [string, unknown, string][] = [];
  const msg = voiceNote();
  const forwarder = createBaileysForwarder({
    endpoint: server.url,
    apiKey: 'key-123',
    tenant: 'acme',
    instance: 'sales',
    downloadMediaMessage: async (m, type, options) => {
      downloads.push([m, type, options]);
      return cdn(server.firstBytes);
    },
    react: async (jid, key, emoji) => {
      reactions.push([jid, key, emoji]);
    },
  });
  const result = await forwarder.forward(msg);
  t.same(result, { ...stored, created: true }, '201: the daemon\'s answer, created');
  t.equal(server.received.length, 2, 'exactly one retry');
  t.equal(downloads.length, 2, 'the media is downloaded again for the retry');
  t.ok(downloads.every(([m, type]) => m === msg && type === 'stream'));
  for (const req of server.received) {
    t.equal(req.method, 'POST');
    t.equal(req.url, '/v1/whatsapp/audio');
    t.ok(req.body.equals(payload), 'body bytes equal');
    t.equal(req.headers['transfer-encoding'], 'chunked', 'streamed, not buffered');
    t.equal(req.headers['content-length'], undefined);
    t.same(
      {
        'content-type': req.headers['content-type'],
        apikey: req.headers.apikey,
        'x-tenant-id': req.headers['x-tenant-id'],
        'x-instance': req.headers['x-instance'],
        'x-chat-id': req.headers['x-chat-id'],
        'x-message-id': req.headers['x-message-id'],
        'idempotency-key': req.headers['idempotency-key'],
        'x-audio-seconds': req.headers['x-audio-seconds'],
        'x-audio-ptt': req.headers['x-audio-ptt'],
        'x-file-length': req.headers['x-file-length'],
        'x-file-sha256': req.headers['x-file-sha256'],
        'x-message-timestamp': req.headers['x-message-timestamp'],
      },
      {
        'content-type': 'audio/ogg; codecs=opus',
        apikey: 'key-123',
        'x-tenant-id': 'acme',
        'x-instance': 'sales',
        'x-chat-id': '5511999999999@s.whatsapp.net',
        'x-message-id': '3EB0C767D26A1B2C',
        'idempotency-key': 'sales:3EB0C767D26A1B2C',
        'x-audio-seconds': '12',
        'x-audio-ptt': 'true',
        'x-file-length': String(payload.length),
        'x-file-sha256': createHash('sha256').update(payload).digest('base64'),
        'x-message-timestamp': '1718000000',
      },
    );
  }
  t.same(
    reactions.map(([jid, key, emoji]) => [jid, key === msg.key, emoji]),
    [
      ['5511999999999@s.whatsapp.net', true, '⏳'],
      ['5511999999999@s.whatsapp.net', true, '✅'],
    ],
  );
});

t.test('415 is final: ForwardError with the daemon\'s code, no retry, ❌', { timeout: 20_000 }, async (t) => {
  const server = await daemon(t, (_attempt, _req, res) =>
    json(res, 415, { error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'not audio' } }),
  );
  let downloads = 0;
  const reactions: string[] = [];
  const forwarder = createBaileysForwarder({
    endpoint: `${server.url}/`,
    apiKey: 'key-123',
    instance: 'sales',
    downloadMediaMessage: async () => {
      downloads++;
      return cdn();
    },
    react: async (_jid, _key, emoji) => {
      reactions.push(emoji);
    },
  });
  const err = (await forwarder.forward(voiceNote()).catch((e: unknown) => e)) as ForwardError;
  t.ok(err instanceof ForwardError);
  t.equal(err.status, 415);
  t.equal(err.code, 'UNSUPPORTED_MEDIA_TYPE');
  t.equal(err.message, 'not audio');
  t.equal(err.attempts, 1);
  t.equal(server.received.length, 1, 'no retry');
  t.equal(downloads, 1);
  t.equal(server.received[0]?.headers['x-tenant-id'], undefined, 'no tenant header without a tenant');
  t.same(reactions, ['⏳', '❌']);
});

t.test('a message without audioMessage is refused before any request', async (t) => {
  const server = await daemon(t, (_attempt, _req, res) => json(res, 201, stored));
  let downloads = 0;
  const reactions: string[] = [];
  const forwarder = createBaileysForwarder({
    endpoint: server.url,
    apiKey: 'key-123',
    instance: 'sales',
    downloadMediaMessage: async () => {
      downloads++;
      return cdn();
    },
    react: async (_jid, _key, emoji) => {
      reactions.push(emoji);
    },
  });
  const conversation = { conversation: 'hi' };
  const text: WAMessageLike = { key: { remoteJid: 'x@s.whatsapp.net', id: 'ABC' }, message: conversation };
  await t.rejects(forwarder.forward(text), { name: 'ForwardError', code: 'NOT_AUDIO', attempts: 0, status: undefined });
  await t.rejects(forwarder.forward({ key: { id: 'ABC' }, message: voiceNote().message ?? null }), { code: 'INVALID_MESSAGE' });
  t.equal(server.received.length, 0);
  t.equal(downloads, 0);
  t.same(reactions, []);
});

t.test('a dropped connection is retried with backoff; a path prefix in the endpoint is kept', { timeout: 20_000 }, async (t) => {
  const server = await daemon(t, (attempt, req, res) => {
    if (attempt === 1) req.socket.destroy();
    else json(res, 200, stored);
  });
  let downloads = 0;
  const forwarder = createBaileysForwarder({
    endpoint: `${server.url}/ingest`,
    apiKey: 'key-123',
    instance: 'sales',
    retryBaseDelayMs: 10,
    downloadMediaMessage: async () => {
      downloads++;
      return cdn();
    },
  });
  t.same(await forwarder.forward(voiceNote()), { ...stored, created: false }, '200 (a repeat) resolves with the same body, not created');
  t.equal(server.received.length, 2);
  t.equal(downloads, 2);
  t.equal(server.received[1]?.url, '/ingest/v1/whatsapp/audio');
});

t.test('503 until retries run out: ForwardError with the last answer; Retry-After capped by maxRetryWaitSec', { timeout: 20_000 }, async (t) => {
  const server = await daemon(t, (_attempt, _req, res) =>
    json(res, 503, { error: { code: 'DRAINING', message: 'shutting down' } }, { 'retry-after': '3600' }),
  );
  const forwarder = createBaileysForwarder({
    endpoint: server.url,
    apiKey: 'key-123',
    instance: 'sales',
    maxRetries: 2,
    maxRetryWaitSec: 0,
    downloadMediaMessage: async () => cdn(),
  });
  const err = (await forwarder.forward(voiceNote()).catch((e: unknown) => e)) as ForwardError;
  t.ok(err instanceof ForwardError);
  t.match(err, { status: 503, code: 'DRAINING', attempts: 3 });
  t.equal(server.received.length, 3, 'first attempt + 2 retries, none waiting an hour');
});

t.test('an error answer without JSON still yields a typed error', { timeout: 20_000 }, async (t) => {
  const server = await daemon(t, (_attempt, _req, res) => {
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end('<h1>bad gateway</h1>');
  });
  const forwarder = createBaileysForwarder({ endpoint: server.url, apiKey: 'k', instance: 'i', downloadMediaMessage: async () => cdn() });
  await t.rejects(forwarder.forward(voiceNote()), { name: 'ForwardError', status: 502, code: 'HTTP_502' });
  t.equal(server.received.length, 1);
});

t.test('parseRetryAfter: delta-seconds or HTTP date', async (t) => {
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
  t.equal(parseRetryAfter('1', now), 1000);
  t.equal(parseRetryAfter(' 120 ', now), 120_000);
  t.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:05 GMT', now), 5000);
  t.equal(parseRetryAfter('Wed, 21 Oct 2015 07:27:00 GMT', now), 0, 'a past date means now');
  t.equal(parseRetryAfter('soon', now), undefined);
  t.equal(parseRetryAfter(null, now), undefined);
});

t.test('options are checked up front', async (t) => {
  const base = { endpoint: 'http://127.0.0.1:1', apiKey: 'k', instance: 'i', downloadMediaMessage: async () => cdn() };
  t.throws(() => createBaileysForwarder({ ...base, instance: 'vendas-ção' }), TypeError);
  t.throws(() => createBaileysForwarder({ ...base, instance: '' }), TypeError);
  t.throws(() => createBaileysForwarder({ ...base, maxRetries: -1 }), TypeError);
});

t.test('no daemon at all: NETWORK_ERROR after the retries, every download closed, reaction errors ignored', { timeout: 20_000 }, async (t) => {
  const port = await closedPort();
  const streams: Readable[] = [];
  const reactions: string[] = [];
  const forwarder = createBaileysForwarder({
    endpoint: `http://127.0.0.1:${port}`,
    apiKey: 'k',
    instance: 'i',
    maxRetries: 1,
    retryBaseDelayMs: 1,
    downloadMediaMessage: async () => {
      const s = cdn();
      streams.push(s);
      return s;
    },
    react: async (_jid, _key, emoji) => {
      reactions.push(emoji);
      throw new Error('whatsapp socket closed');
    },
  });
  const err = (await forwarder.forward(voiceNote()).catch((e: unknown) => e)) as ForwardError;
  t.ok(err instanceof ForwardError);
  t.match(err, { code: 'NETWORK_ERROR', status: undefined, attempts: 2 });
  t.equal(streams.length, 2);
  t.ok(streams.every((s) => s.destroyed), 'no CDN download left open');
  t.same(reactions, ['⏳', '❌']);
});

t.test('a message that went through JSON (Long as {low, high}, numbers as strings) still sends its facts; view-once wrappers are opened', async (t) => {
  const server = await daemon(t, (_attempt, _req, res) => json(res, 201, stored));
  const forwarder = createBaileysForwarder({ endpoint: server.url, apiKey: 'k', instance: 'i', downloadMediaMessage: async () => cdn() });
  const viaJson = JSON.parse(
    JSON.stringify({
      key: { remoteJid: '5511999999999@s.whatsapp.net', id: 'JSON1' },
      message: { viewOnceMessageV2: { message: { audioMessage: { mimetype: 'audio/ogg; codecs=opus', seconds: 12, fileLength: { low: payload.length, high: 0, unsigned: true } } } } },
      messageTimestamp: '1718000000',
    }),
  ) as WAMessageLike;
  t.same(await forwarder.forward(viaJson), { ...stored, created: true });
  const h = server.received[0]!.headers;
  t.same([h['x-audio-seconds'], h['x-file-length'], h['x-message-timestamp'], h['x-audio-ptt'], h['x-file-sha256']], ['12', String(payload.length), '1718000000', undefined, undefined]);
});

t.test('download deadlines and ctx are checked up front', async (t) => {
  const base = { endpoint: 'http://127.0.0.1:1', apiKey: 'k', instance: 'i', downloadMediaMessage: async () => cdn() };
  t.throws(() => createBaileysForwarder({ ...base, downloadIdleTimeoutMs: 0 }), /downloadIdleTimeoutMs must be/);
  t.throws(() => createBaileysForwarder({ ...base, downloadTimeoutMs: Number.NaN }), /downloadTimeoutMs must be/);
  t.throws(() => createBaileysForwarder({ ...base, ctx: {} as never }), /ctx.reuploadRequest must be a function/);
});
