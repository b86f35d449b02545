import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { connectEgress, EgressRefusedError, simulateEgress } from '../../src/clients/egress-simulator.js';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import { startDaemon } from '../helpers/daemon.js';
import { downmix, randomStereo, readWav } from '../helpers/egress.js';
import { configFile, EventCollector, isolatedBroker, metric, openEgress, reportFigure } from '../helpers/reliability.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { waitFor } from '../helpers/wait-for.js';

/** Every secret the daemon reads, each a value that cannot appear in a log line by chance. */
const mark = (name: string): string => `SeCrEt-${name}-${randomUUID().replaceAll('-', '')}`;
const SECRETS = {
  API_KEY: mark('apikey'),
  EGRESS_TOKEN_SECRET: mark('egress'),
  LIVEKIT_API_SECRET: mark('livekit'),
  WEBHOOK_SECRET: mark('webhook'),
  CHUNK_DISPATCH_API_KEY: mark('dispatch'),
  AWS_SECRET_ACCESS_KEY: mark('aws'),
  REDIS_PASSWORD: mark('redis'),
};
const ACME_KEY = mark('acme');

/** A raw HTTP exchange: writes `head`, then `body` in pieces every `everyMs`; resolves what came back when the server closes or after `maxMs`. */
function rawHttp(port: number, head: string, body: string[] = [], everyMs = 0, maxMs = 15_000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, maxMs);
    s.on('data', (c: Buffer) => {
      out += c.toString();
      // one JSON answer is all these exchanges wait for
      if (/\r\n\r\n\{[^]*\}$/.test(out)) done();
    });
    s.on('close', done);
    s.on('error', done);
    s.write(head);
    void (async () => {
      for (const piece of body) {
        if (everyMs) await sleep(everyMs);
        if (s.destroyed) return;
        s.write(piece);
      }
    })();
  });
}

/** Status and parsed error body of a refused egress handshake. */
async function refusal(url: string): Promise<{ status: number; body: { error?: { code?: string; message?: string } } }> {
  try {
    const ws = await connectEgress(url);
    ws.terminate();
    return { status: 101, body: {} };
  } catch (err) {
    if (!(err instanceof EgressRefusedError)) throw err;
    return { status: err.status, body: JSON.parse(err.body) as { error?: { code?: string } } };
  }
}

t.test('bad input is refused with a coded error or a counted drop; no secret reaches a log line; limits hold', async (t) => {
  const hook = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}`;
  const broker = await isolatedBroker('secrets');
  const collector = await EventCollector.open(broker.url, 'audio.events');
  const tenantsFile = configFile({ tenants: [{ id: 'acme', keySha256: [createHash('sha256').update(ACME_KEY).digest('hex')], maxStreams: 2 }] });
  const d = await startDaemon({
    API_KEY: SECRETS.API_KEY,
    EGRESS_TOKEN_SECRET: SECRETS.EGRESS_TOKEN_SECRET,
    LIVEKIT_API_KEY: 'APIreliability',
    LIVEKIT_API_SECRET: SECRETS.LIVEKIT_API_SECRET,
    WEBHOOK_URL: `${hookUrl}/main`,
    MONITORING_WEBHOOK_URL: `${hookUrl}/monitoring`,
    WEBHOOK_SECRET: SECRETS.WEBHOOK_SECRET,
    WEBHOOK_SIGNATURE: 'legacy',
    CHUNK_DISPATCH_URL: `${hookUrl}/chunks`,
    CHUNK_DISPATCH_API_KEY: SECRETS.CHUNK_DISPATCH_API_KEY,
    AWS_ACCESS_KEY_ID: 'AKIAreliability',
    AWS_SECRET_ACCESS_KEY: SECRETS.AWS_SECRET_ACCESS_KEY,
    REDIS_URL: `redis://default:${SECRETS.REDIS_PASSWORD}@127.0.0.1:6379`,
    AMQP_URL: broker.url,
    TENANTS_FILE: tenantsFile,
    LOG_LEVEL: 'debug',
    AUDIO_INGEST_CONFIG: configFile({ server: { requestTimeoutSec: 3 }, livekit: { maxStreams: 4 }, whatsapp: { maxBytes: 65536 } }),
  });
  t.teardown(async () => {
    if (!t.passing()) t.comment(d.output().split('\n').slice(-15).join('\n'));
    d.child.kill('SIGKILL');
    hook.close();
    await collector.close();
    await broker.remove();
  });
  const ws = (query: string): string => `ws://127.0.0.1:${d.port}/egress-audio?${query}`;
  const token = async (claims: { tenant: string; roomName: string; trackId?: string }, ttl = 600, secret = SECRETS.EGRESS_TOKEN_SECRET, now = Date.now()): Promise<string> =>
    encodeURIComponent((await mintEgressToken(secret, claims, ttl, now)).token);
  const bodies: string[] = [];
  const figures: { input: string; outcome: string; ok: boolean }[] = [];
  const expectRefusal = async (name: string, url: string, status: number, code: string): Promise<void> => {
    const r = await refusal(url);
    bodies.push(JSON.stringify(r.body));
    t.equal(r.status, status, `${name}: ${status}`);
    t.equal(r.body.error?.code, code, `${name}: ${code}`);
    figures.push({ input: `WS ${name}`, outcome: `${r.status} ${r.body.error?.code ?? ''}`, ok: r.status === status && r.body.error?.code === code });
  };

  // WebSocket handshake: refused before the upgrade
  await expectRefusal('missing token', ws('roomName=r'), 401, 'UNAUTHORIZED');
  await expectRefusal('expired token', ws(`token=${await token({ tenant: 'default', roomName: 'r' }, 60, SECRETS.EGRESS_TOKEN_SECRET, Date.now() - 3_600_000)}`), 401, 'TOKEN_EXPIRED');
  await expectRefusal('forged token (other secret)', ws(`token=${await token({ tenant: 'default', roomName: 'r' }, 600, 'not-the-secret-0123456789abcdef0123456789')}`), 401, 'INVALID_TOKEN');
  await expectRefusal('garbage token', ws('token=abc.def.ghi'), 401, 'INVALID_TOKEN');
  await expectRefusal('token of an unknown tenant', ws(`token=${await token({ tenant: 'mallory', roomName: 'r' })}`), 403, 'UNKNOWN_TENANT');
  await expectRefusal('unknown query key', ws(`token=${await token({ tenant: 'default', roomName: 'r' })}&debug=1`), 400, 'INVALID_PARAMETER');
  const twice = await token({ tenant: 'default', roomName: 'r' });
  await expectRefusal('a query key given twice', ws(`token=${twice}&token=${twice}`), 400, 'INVALID_PARAMETER');
  await expectRefusal('hostile room id in query', ws(`token=${await token({ tenant: 'default', roomName: '../../etc' })}`), 400, 'INVALID_PARAMETER');
  const once = await token({ tenant: 'default', roomName: 'replay', trackId: 'TR_replay' });
  const first = await openEgress(ws(`token=${once}`));
  first.ws.close();
  await first.closed;
  await expectRefusal('replayed token', ws(`token=${once}`), 401, 'TOKEN_REPLAYED');
  // a query tenant never overrides the signed one
  const signed = await openEgress(ws(`token=${await token({ tenant: 'acme', roomName: 'claims', trackId: 'TR_claims' })}&tenant=default`));
  signed.ws.close();
  await signed.closed;
  const claimsEvent = await waitFor(() => ndjsonOrAmqp().find((e) => e.type === 'recording.started' && e.track_id === 'TR_claims'), 10_000, 'claims stream');
  t.equal(claimsEvent.tenant, 'acme', 'the token tenant wins over the query');

  // limits: tenant acme 2 streams, host 4 streams
  const held = [];
  for (let i = 0; i < 2; i++) held.push(await openEgress(ws(`token=${await token({ tenant: 'acme', roomName: 'lim', trackId: `TR_a${i}` })}`)));
  await expectRefusal('third stream of a tenant limited to 2', ws(`token=${await token({ tenant: 'acme', roomName: 'lim' })}`), 429, 'TOO_MANY_STREAMS');
  for (let i = 0; i < 2; i++) held.push(await openEgress(ws(`token=${await token({ tenant: 'default', roomName: 'lim', trackId: `TR_d${i}` })}`)));
  await expectRefusal('fifth stream on a host limited to 4', ws(`token=${await token({ tenant: 'default', roomName: 'lim' })}`), 429, 'TOO_MANY_CONNECTIONS');
  for (const h of held) h.ws.close();
  await Promise.all(held.map((h) => h.closed));

  // WebSocket messages: bad frames are dropped and counted, the stream and its audio survive
  const pcm = randomStereo(48000, 51);
  const garbage = ['hello', '{"muted":"yes"}', '\u0000\u0001\u0002', '['.repeat(30_000) + ']'.repeat(30_000), JSON.stringify({ muted: true, pad: 'x'.repeat(100) })];
  const r = await simulateEgress({ url: ws(`token=${await token({ tenant: 'default', roomName: 'garbage', trackId: 'TR_garbage' })}`), pcm, realtime: false, frameBytes: 1921, extraText: garbage });
  const gEvent = await waitFor(() => ndjsonOrAmqp().find((e) => e.type === 'recording.completed' && e.track_id === 'TR_garbage'), 10_000, 'garbage stream completed');
  t.equal(gEvent.end_reason, 'normal');
  t.equal(r.bytesSent, pcm.length, 'odd-length frames (1 921 B) all sent');
  t.equal(gEvent.size_bytes, MASTER_HEADER_BYTES + downmix(pcm).length, 'odd-length frames re-assembled: every sample stored');
  const metrics = await (await fetch(`${d.baseUrl}/metrics`)).text();
  t.equal(metric(metrics, 'audio_ingestd_text_frames_total', 'kind="invalid"'), garbage.length, 'every garbage text counted as invalid');
  const invalidCounted = metric(metrics, 'audio_ingestd_text_frames_total', 'kind="invalid"');
  figures.push({ input: `WS text garbage, control bytes, 60 kB JSON bomb, oversized mute JSON (${garbage.length} frames)`, outcome: `counted text_frames_total{kind="invalid"} = ${invalidCounted}; stream recorded (${String(gEvent.end_reason)})`, ok: invalidCounted === garbage.length && gEvent.end_reason === 'normal' });
  figures.push({ input: 'WS odd-length PCM frames (1 921 B)', outcome: `carried across frames: ${gEvent.size_bytes === MASTER_HEADER_BYTES + downmix(pcm).length ? 'every whole sample stored' : `${String(gEvent.size_bytes)} B stored`}`, ok: r.bytesSent === pcm.length && gEvent.size_bytes === MASTER_HEADER_BYTES + downmix(pcm).length });

  const big = await openEgress(ws(`token=${await token({ tenant: 'default', roomName: 'big', trackId: 'TR_big' })}`));
  big.ws.send(pcm.subarray(0, 19_200), { binary: true });
  big.ws.send(Buffer.alloc(70_000), { binary: true });
  const bigCode = await big.closed;
  t.ok(bigCode === 1009 || bigCode === 1006, `oversized frame (> maxPayloadBytes) closes the stream (${bigCode})`);
  const bigEvent = await waitFor(() => ndjsonOrAmqp().find((e) => e.type === 'recording.completed' && e.track_id === 'TR_big'), 10_000, 'oversized stream finalized');
  t.equal(bigEvent.size_bytes, MASTER_HEADER_BYTES + 9_600, 'audio before the oversized frame is kept');
  figures.push({ input: 'WS frame of 70 000 B (> livekit.maxPayloadBytes 65 536)', outcome: `closed ${bigCode}; recording finalized (${String(bigEvent.end_reason)}) with ${(bigEvent.size_bytes as number) - MASTER_HEADER_BYTES} B of audio before it`, ok: (bigCode === 1009 || bigCode === 1006) && bigEvent.size_bytes === MASTER_HEADER_BYTES + 9_600 });

  // HTTP
  const api = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${d.baseUrl}${path}`, init);
  const expectHttp = async (name: string, res: Response, status: number, code: string): Promise<void> => {
    const text = await res.text();
    bodies.push(text);
    t.equal(res.status, status, `${name}: ${status}`);
    t.equal((JSON.parse(text) as { error?: { code?: string } }).error?.code, code, `${name}: ${code}`);
    const got = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
    figures.push({ input: `HTTP ${name}`, outcome: `${res.status} ${got ?? ''}`, ok: res.status === status && got === code });
  };
  const json = (key: string | undefined, body: unknown): RequestInit => ({ method: 'POST', headers: { ...(key ? { apikey: key } : {}), 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await expectHttp('missing API key', await api('/v1/egress/urls', json(undefined, { roomName: 'r' })), 401, 'UNAUTHORIZED');
  await expectHttp('wrong API key', await api('/v1/egress/urls', json('wrong-key', { roomName: 'r' })), 401, 'INVALID_API_KEY');
  await expectHttp('path traversal id', await api('/v1/egress/urls', json(SECRETS.API_KEY, { roomName: '../../etc/passwd' })), 400, 'INVALID_PARAMETER');
  await expectHttp('unicode control id', await api('/v1/egress/urls', json(SECRETS.API_KEY, { roomName: 'a\u202eb\u0000' })), 400, 'INVALID_PARAMETER');
  await expectHttp('huge id (100 000 chars)', await api('/v1/egress/urls', json(SECRETS.API_KEY, { roomName: 'x'.repeat(100_000) })), 400, 'INVALID_PARAMETER');
  await expectHttp('recording id with traversal', await api('/v1/recordings/..%2F..%2Fetc%2Fpasswd', { headers: { apikey: SECRETS.API_KEY } }), 404, 'NOT_FOUND');
  // Oversized bodies are refused on their Content-Length, before the body is read (so over raw TCP).
  const head = (path: string, len: number, type = 'application/json'): string => `POST ${path} HTTP/1.1\r\nHost: x\r\napikey: ${SECRETS.API_KEY}\r\nx-instance: inst\r\nx-chat-id: chat\r\nx-message-id: big\r\ncontent-type: ${type}\r\ncontent-length: ${len}\r\n\r\n`;
  const bigJson = await rawHttp(d.port, head('/v1/egress/urls', 2 * 1024 * 1024), ['x'.repeat(65536)]);
  t.match(bigJson, /^HTTP\/1\.1 413[^]*"code":"PAYLOAD_TOO_LARGE"/, 'JSON body over server.maxJsonBytes: 413');
  bodies.push(bigJson.slice(bigJson.indexOf('\r\n\r\n')));
  figures.push({ input: 'HTTP JSON body of 2 MiB (> server.maxJsonBytes)', outcome: statusAndCode(bigJson), ok: /^HTTP\/1\.1 413[^]*"code":"PAYLOAD_TOO_LARGE"/.test(bigJson) });
  const bigNote = await rawHttp(d.port, head('/v1/whatsapp/audio', 200_000, 'audio/ogg'), ['OggS'.repeat(1000)]);
  t.match(bigNote, /^HTTP\/1\.1 413[^]*"code":"PAYLOAD_TOO_LARGE"/, 'voice note over whatsapp.maxBytes: 413');
  bodies.push(bigNote.slice(bigNote.indexOf('\r\n\r\n')));
  figures.push({ input: 'HTTP voice note of 200 000 B (> whatsapp.maxBytes 65 536)', outcome: statusAndCode(bigNote), ok: /^HTTP\/1\.1 413[^]*"code":"PAYLOAD_TOO_LARGE"/.test(bigNote) });
  await expectHttp('invalid JSON', await api('/v1/egress/urls', { method: 'POST', headers: { apikey: SECRETS.API_KEY }, body: '{"roomName":' }), 400, 'INVALID_JSON');
  const wa = (headers: Record<string, string>, body: string | Buffer): Promise<Response> =>
    api('/v1/whatsapp/audio', { method: 'POST', headers: { apikey: SECRETS.API_KEY, 'x-instance': 'inst', 'x-chat-id': 'chat@s.whatsapp.net', 'x-message-id': `m${randomUUID().slice(0, 8)}`, ...headers }, body });
  await expectHttp('voice note with Content-Type text/plain', await wa({ 'content-type': 'text/plain' }, 'hello'), 415, 'UNSUPPORTED_MEDIA_TYPE');

  // Lying Content-Length (declares more than is sent) and a slowloris body: answered 408 at server.requestTimeoutSec.
  const lying = await rawHttp(d.port, head('/v1/egress/urls', 1000), ['{"roomName":"r"}']);
  t.match(lying, /^HTTP\/1\.1 408/, 'lying Content-Length: 408 after the request timeout');
  t.match(lying, /"code":"REQUEST_TIMEOUT"/);
  const slow = await rawHttp(d.port, head('/v1/egress/urls', 16), '{"roomName":"r"}'.split(''), 1000);
  t.match(slow, /^HTTP\/1\.1 408/, 'slowloris body (1 B/s): 408 after the request timeout');
  figures.push({ input: 'HTTP lying Content-Length (1 000 declared, 16 sent)', outcome: `${statusAndCode(lying)} after server.requestTimeoutSec`, ok: /^HTTP\/1\.1 408[^]*"code":"REQUEST_TIMEOUT"/.test(lying) });
  figures.push({ input: 'HTTP slowloris body (1 byte/s)', outcome: `${statusAndCode(slow)} after server.requestTimeoutSec`, ok: /^HTTP\/1\.1 408[^]*"code":"REQUEST_TIMEOUT"/.test(slow) });

  // Every error body: the coded shape, no stack, no file path
  for (const b of bodies) {
    t.notMatch(b, /\n\s+at |\/work\/|node:internal|\.ts:\d+|\.js:\d+/, 'no stack trace or path in an error body');
  }
  // The daemon stayed healthy and records normally
  t.equal((await api('/health')).status, 200);
  const after = await simulateEgress({ url: ws(`token=${await token({ tenant: 'default', roomName: 'after', trackId: 'TR_after' })}`), pcm, realtime: false });
  t.equal(after.closeCode, 1005);
  const afterEvent = await waitFor(() => ndjsonOrAmqp().find((e) => e.type === 'recording.completed' && e.track_id === 'TR_after'), 10_000, 'healthy afterwards');
  const stored = readWav(readFileSync(join(d.dataDir, 'store', 'objects', afterEvent.s3_key_master as string)));
  t.ok(stored.data.equals(downmix(pcm)), 'a normal stream afterwards is exact');

  // Secrets: none in any log line (with errors, retries and debug logging on)
  d.child.kill('SIGTERM');
  t.equal(await d.exited, 0);
  const output = d.output();
  const leaked = [...Object.entries(SECRETS), ['ACME_KEY', ACME_KEY] as const].filter(([, v]) => output.includes(v)).map(([k]) => k);
  if (output.includes(`:guest@`)) leaked.push('AMQP_URL password');
  t.same(leaked, [], 'no secret appears in the log output');
  t.ok(output.split('\n').length > 20, `a real amount of logging was checked (${output.split('\n').length} lines)`);
  reportFigure({ fault: 'secrets in logs', checked: `${Object.keys(SECRETS).length + 2} secrets set via env (API key, tenant key, egress, LiveKit, webhook, chunk dispatch, AWS, Redis and AMQP passwords); none in ${output.split('\n').length} debug log lines after errors and traffic`, ok: leaked.length === 0 });
  for (const f of figures) reportFigure({ fault: `bad input: ${f.input}`, checked: f.outcome, ok: f.ok });

  function ndjsonOrAmqp(): Record<string, unknown>[] {
    return [...collector.byId.values()];
  }
});

/** "413 PAYLOAD_TOO_LARGE" out of a raw HTTP answer. */
function statusAndCode(raw: string): string {
  return `${/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 'no answer'} ${/"code":"([A-Z_]+)"/.exec(raw)?.[1] ?? ''}`.trim();
}
