/**
 * Misbehaving clients against the real daemon process, on every route that takes a body and on
 * the egress WebSocket, while live egress streams run. Raw sockets (node:net) for precise
 * misbehaviour, fetch (undici) for the rest. Every choice of byte offset comes from one seed.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AccessToken } from 'livekit-server-sdk';
import t from 'tap';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { mp3, opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { startDaemon } from '../helpers/daemon.js';
import { downmix, randomStereo, readWav } from '../helpers/egress.js';
import { chunk, LAST_CHUNK, type ParsedAnswer, RawClient, type RawEnd, requestHead, seeded, wsFrame, wsUpgradeHead } from '../helpers/raw-http.js';
import { configFile, daemonEgressUrl, E2E_API_KEY, E2E_EGRESS_SECRET, logLines, metric, ndjsonEvents, openEgress, reportFigure, sendPaced } from '../helpers/reliability.js';
import { upsertEnvelope } from '../helpers/whatsapp-envelope.js';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import { waitFor } from '../helpers/wait-for.js';

const SEED = 1313;
const LK_KEY = 'chaos-livekit-key';
const LK_SECRET = 'chaos-livekit-secret-0123456789abcdef';
const MAX_BYTES = 4 * 1024 * 1024;
const LIVE_STREAMS = 4;
/** Connections of our own fetch calls close at once, so the daemon's descriptors settle. */
const agent = new Agent({ keepAliveTimeout: 10, keepAliveMaxTimeout: 10 });

/** Names one try's side effects, so the end can check that nothing of a dead one remains. */
interface Ids {
  messageId: string;
  instance: string;
  filterName: string;
}

/** One body-taking route: how to build a valid request for it, and what it leaves behind. */
interface Target {
  name: string;
  method: 'POST' | 'PUT';
  path(ids: Ids): string;
  chunked: boolean;
  headers(ids: Ids, body: Buffer): Record<string, string | number>;
  body(ids: Ids): Buffer;
  /** Status of a valid request. */
  ok: number;
}

/** What a try should have left behind. */
type Expect = 'nothing' | 'stored' | 'stored-or-nothing' | 'rejected';

interface Try {
  target: string;
  behaviour: string;
  ids: Ids;
  expect: Expect;
  answers: ParsedAnswer[];
  invalid?: string | undefined;
  end?: RawEnd;
  /** The client waited for the daemon to end the exchange (did not abort itself). */
  waited: boolean;
  status?: number;
}

t.test('misbehaving HTTP and WebSocket clients never bring the daemon down', async (t) => {
  const rand = seeded(SEED);
  const started = Date.now();
  const d = await startDaemon({
    LIVEKIT_API_KEY: LK_KEY,
    LIVEKIT_API_SECRET: LK_SECRET,
    AUDIO_INGEST_CONFIG: configFile({
      whatsapp: { maxBytes: MAX_BYTES, opusWorkers: 2 },
      rateLimit: { global: { capacity: 100_000, refillPerMinute: 100_000 }, tenant: { capacity: 100_000, refillPerMinute: 100_000 }, instance: { capacity: 100_000, refillPerMinute: 100_000 } },
      tenantDefaults: { requestsPerMinute: 100_000 },
    }),
  });
  const poller = spawn(process.execPath, ['test/helpers/health-poller.mjs', d.baseUrl], { stdio: ['ignore', 'pipe', 'ignore'] });
  let polled = '';
  poller.stdout.on('data', (c: Buffer) => (polled += c.toString()));
  t.teardown(async () => {
    poller.kill('SIGKILL');
    d.child.kill('SIGKILL');
    await agent.close();
    setTimeout(() => {
      const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
      process.stderr.write(`active: ${process.getActiveResourcesInfo().join(', ')}; handles: ${handles.map((h) => h.constructor.name + (h.constructor.name === 'Socket' ? ` fd=${String((h as { _handle?: { fd?: number } })._handle?.fd)} ${String((h as { remotePort?: number }).remotePort)}` : '')).join(', ')}\n`);
    }, 3000).unref();
  });
  const pid = d.child.pid!;
  const alive = (): boolean => d.child.exitCode === null && d.child.signalCode === null;
  const opus = readFixture(await opusVoiceNote());
  const mp3Note = readFixture(await mp3());
  const get = (path: string): Promise<Response> => undiciFetch(`${d.baseUrl}${path}`, { dispatcher: agent, headers: { apikey: E2E_API_KEY } }) as unknown as Promise<Response>;
  // Every scrape resets the daemon's event-loop delay histogram: keep the max of each one.
  const lagMaxes: number[] = [];
  const metricsText = async (): Promise<string> => {
    const text = await (await get('/metrics')).text();
    lagMaxes.push(metric(text, 'audio_ingestd_nodejs_eventloop_lag_max_seconds'));
    return text;
  };

  // ---- live streams: four recorded exactly, plus a decoy that only a (dead) webhook could end
  let stopStreams = false;
  const live = await Promise.all(
    Array.from({ length: LIVE_STREAMS + 1 }, async (_, i) => {
      const roomName = i === LIVE_STREAMS ? 'chaos-decoy' : `chaos-live-${i}`;
      const { ws, closed } = await openEgress(await daemonEgressUrl(d.port, { roomName, trackId: `TR_chaos_${i}` }));
      const pcm = randomStereo(48000 * 120, SEED + i);
      const sending = sendPaced(ws, pcm, { speed: 1, until: () => stopStreams });
      return { roomName, trackId: `TR_chaos_${i}`, ws, closed, pcm, sending };
    }),
  );

  // ---- the routes
  const webhookBody = (ids: Ids, event = 'egress_ended'): Buffer =>
    Buffer.from(JSON.stringify({ event, id: `EV_${ids.messageId}`, room: { name: event === 'room_finished' ? 'chaos-decoy' : `chaos-none-${ids.messageId}` }, egressInfo: { egressId: `EG_${ids.messageId}` } }));
  const webhookAuth = async (body: Buffer): Promise<string> => {
    const at = new AccessToken(LK_KEY, LK_SECRET);
    at.sha256 = createHash('sha256').update(body).digest('base64');
    return at.toJwt();
  };
  const authByBody = new Map<string, string>();
  const audioHeaders = (ids: Ids, body: Buffer): Record<string, string | number> => ({
    apikey: E2E_API_KEY,
    'content-type': 'audio/ogg; codecs=opus',
    'x-instance': ids.instance,
    'x-chat-id': '5511999990000@s.whatsapp.net',
    'x-message-id': ids.messageId,
    'x-file-length': body.length,
    'x-file-sha256': createHash('sha256').update(body).digest('base64'),
  });
  const json = { 'content-type': 'application/json', apikey: E2E_API_KEY };
  const targets: Target[] = [
    { name: 'whatsapp/audio (Content-Length)', method: 'POST', path: () => '/v1/whatsapp/audio', chunked: false, headers: audioHeaders, body: () => opus, ok: 201 },
    { name: 'whatsapp/audio (chunked)', method: 'POST', path: () => '/v1/whatsapp/audio', chunked: true, headers: audioHeaders, body: () => mp3Note, ok: 201 },
    { name: 'whatsapp/messages', method: 'POST', path: () => '/v1/whatsapp/messages', chunked: false, headers: () => json, body: (ids) => Buffer.from(JSON.stringify(upsertEnvelope(opus, { instance: ids.instance, id: ids.messageId }))), ok: 201 },
    { name: 'egress/urls', method: 'POST', path: () => '/v1/egress/urls', chunked: false, headers: () => json, body: (ids) => Buffer.from(JSON.stringify({ roomName: `chaos-url-${ids.messageId}` })), ok: 201 },
    { name: 'livekit/webhook', method: 'POST', path: () => '/livekit/webhook', chunked: false, headers: (_ids, body) => ({ 'content-type': 'application/webhook+json', authorization: authByBody.get(body.toString('latin1')) ?? '' }), body: (ids) => webhookBody(ids), ok: 200 },
    { name: 'filter PUT', method: 'PUT', path: (ids) => `/v1/whatsapp/instances/${ids.filterName}/filter`, chunked: false, headers: () => json, body: () => Buffer.from(JSON.stringify({ minSec: 5, maxSec: 100, enabled: true })), ok: 200 },
  ];
  let seq = 0;
  const newIds = (): Ids => {
    seq += 1;
    return { messageId: `CHAOS${String(seq).padStart(4, '0')}`, instance: `chaos-${seq % 5}`, filterName: `chaos-f-${seq}` };
  };
  /** The body of `target` for `ids`, and its wire form (signed first for the webhook). */
  const build = async (target: Target, ids: Ids, bodyOverride?: Buffer): Promise<{ body: Buffer; headers: Record<string, string | number> }> => {
    const body = bodyOverride ?? target.body(ids);
    if (target.name === 'livekit/webhook') authByBody.set(body.toString('latin1'), await webhookAuth(body));
    return { body, headers: target.headers(ids, body) };
  };
  const head = (target: Target, ids: Ids, headers: Record<string, string | number>, framing: { length?: number; chunked?: boolean }): string =>
    requestHead(target.method, target.path(ids), { ...headers, ...(framing.chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': framing.length ?? 0 }) });
  /** The first `k` bytes of the body as they go on the wire. */
  const wireBytes = (body: Buffer, chunked: boolean, k = body.length, terminate = k === body.length): Buffer => {
    if (!chunked) return body.subarray(0, k);
    const parts: Buffer[] = [];
    for (let o = 0; o < k; o += 4096) parts.push(chunk(body.subarray(o, Math.min(k, o + 4096))));
    if (terminate) parts.push(LAST_CHUNK);
    return Buffer.concat(parts);
  };

  // bodies of the refusal cases: their bytes do not matter, only their size
  const filler = new Map<number, Buffer>();
  const fill = (size: number): Buffer => {
    let b = filler.get(size);
    if (b === undefined) filler.set(size, (b = randomBytes(size)));
    return b;
  };
  const tries: Try[] = [];
  const record = (target: Target, behaviour: string, ids: Ids, expect: Expect, c: RawClient, end: RawEnd | undefined, waited: boolean): Try => {
    const p = c.parsed();
    const tr: Try = { target: target.name, behaviour, ids, expect, answers: p.answers, invalid: p.invalid, waited, ...(end ? { end } : {}) };
    if (p.answers[0]) tr.status = p.answers[0].status;
    tries.push(tr);
    return tr;
  };

  /** A whole, valid request on a raw connection. */
  const valid = async (target: Target): Promise<Try> => {
    const ids = newIds();
    const { body, headers } = await build(target, ids);
    const c = await RawClient.connect(d.port);
    await c.write(head(target, ids, headers, target.chunked ? { chunked: true } : { length: body.length }));
    await c.write(wireBytes(body, target.chunked));
    await c.answers(1);
    c.destroy();
    return record(target, 'valid', ids, 'stored', c, await c.ended, true);
  };

  /** Sends the head and `k` body bytes (all of them when k is the length), then drops the connection. */
  const abortAt = async (target: Target, k: number, how: 'destroy' | 'reset', behaviour: string): Promise<void> => {
    const ids = newIds();
    const { body, headers } = await build(target, ids);
    const c = await RawClient.connect(d.port);
    await c.write(head(target, ids, headers, target.chunked ? { chunked: true } : { length: body.length }));
    if (k > 0) await c.write(wireBytes(body, target.chunked, k));
    await sleep(10 + Math.floor(rand() * 40));
    if (how === 'reset') c.reset();
    else c.destroy();
    record(target, behaviour, ids, k === body.length ? 'stored-or-nothing' : 'nothing', c, await c.ended, false);
  };

  /** Content-Length longer than the body (or chunked without its last chunk), then FIN. */
  const longerThenFin = async (target: Target): Promise<void> => {
    const ids = newIds();
    const { body, headers } = await build(target, ids);
    const c = await RawClient.connect(d.port);
    await c.write(head(target, ids, headers, target.chunked ? { chunked: true } : { length: body.length + 100 }));
    await c.write(wireBytes(body, target.chunked, body.length, false));
    c.end();
    record(target, target.chunked ? 'chunked without its last chunk, then FIN' : 'Content-Length longer than the body, then FIN', ids, 'nothing', c, await c.ended, true);
  };

  /** Content-Length shorter than the body: the rest is garbage after the request. */
  const shorter = async (target: Target): Promise<void> => {
    const ids = newIds();
    const { body, headers } = await build(target, ids);
    const c = await RawClient.connect(d.port);
    await c.write(Buffer.concat([Buffer.from(head(target, ids, headers, { length: Math.floor(body.length * 0.8) })), body]));
    await c.answers(1, 15_000);
    c.destroy();
    // the voice-note routes refuse it (declared length / sha256, or truncated JSON); others may act on the short body
    record(target, 'Content-Length shorter than the body', ids, target.name.startsWith('whatsapp') ? 'nothing' : 'stored-or-nothing', c, await c.ended, true);
  };

  /**
   * An answer given before the body ended, while the client goes on sending all of it: the
   * answer must arrive whole; a keep-alive connection must then serve the next request.
   */
  const bodyAfterEarlyError = async (target: Target, variant: string, change: { headers?: Record<string, string | number | undefined>; size?: number; declared?: number }, expect: Expect = 'nothing'): Promise<void> => {
    const ids = newIds();
    const payload = fill(change.size ?? 600 * 1024);
    const { headers } = await build(target, ids, payload);
    const merged: Record<string, string | number> = {};
    for (const [k, v] of Object.entries({ ...headers, ...change.headers })) if (v !== undefined) merged[k] = v;
    const c = await RawClient.connect(d.port);
    await c.write(head(target, ids, merged, target.chunked ? { chunked: true } : { length: change.declared ?? payload.length }));
    const wire = wireBytes(payload, target.chunked);
    for (let o = 0; o < wire.length && !c.closed; o += 64 * 1024) if (!(await c.write(wire.subarray(o, o + 64 * 1024)))) break;
    const [answer] = await c.answers(1, 15_000);
    if (answer && answer.headers['connection'] !== 'close' && !c.closed) {
      await c.write(requestHead('GET', '/health', {}));
      await c.answers(2, 15_000);
      c.destroy();
    }
    const tr = record(target, `body continuing after an early ${variant}`, ids, expect, c, await c.ended, true);
    if (answer && answer.headers['connection'] !== 'close') {
      tr.behaviour += ' (keep-alive: next request on the connection)';
      if (tr.answers[1]?.status !== 200) tr.invalid ??= `the next request on the kept connection got ${tr.answers[1]?.status ?? 'nothing'}`;
    }
  };

  /** Head and a part of the body, a 15 s stall, then the rest: 408 first, the late bytes never used. */
  const stall = async (target: Target, retry: boolean, bodyOf?: (ids: Ids) => Buffer): Promise<void> => {
    const ids = newIds();
    const { body, headers } = await build(target, ids, bodyOf?.(ids));
    const c = await RawClient.connect(d.port);
    await c.write(head(target, ids, headers, { length: body.length }));
    await c.write(body.subarray(0, Math.floor(body.length / 3)));
    const stalledAt = Date.now();
    const [answer] = await c.answers(1, 20_000);
    const answeredAfter = Date.now() - stalledAt;
    if (retry && answer?.status === 408) {
      // the complete retry of the same message is stored at once: the dead request held nothing
      const again = await build(target, ids);
      const r = await RawClient.connect(d.port);
      await r.write(head(target, ids, again.headers, { length: again.body.length }));
      await r.write(again.body);
      await r.answers(1);
      r.destroy();
      record(target, 'retry after a 408', ids, 'stored', r, await r.ended, true);
    }
    await sleep(Math.max(0, 15_000 - (Date.now() - stalledAt)));
    await c.write(body.subarray(Math.floor(body.length / 3)));
    const tr = record(target, `15 s stall (answered after ${(answeredAfter / 1000).toFixed(1)} s)`, ids, retry ? 'stored' : 'nothing', c, await c.ended, true);
    if (answer?.status !== 408) tr.invalid ??= `the stall got ${answer?.status ?? 'no answer'}, not 408`;
    if (answer?.headers['connection'] !== 'close') tr.invalid ??= 'the 408 did not say Connection: close';
  };

  // ---- warm up every route and one live recording's end (the fs store starts the thread that
  // moves masters into place at the first end: part of the daemon from then on, not a leak),
  // then the baseline of descriptors and ffmpeg children
  for (const target of targets) await valid(target);
  {
    const warm = await openEgress(await daemonEgressUrl(d.port, { roomName: 'chaos-warm', trackId: 'TR_chaos_warm' }));
    await sendPaced(warm.ws, randomStereo(48000, SEED + 99), { speed: 4 });
    warm.ws.close();
    await warm.closed;
    await waitFor(() => ndjsonEvents(d.dataDir).some((x) => x.type === 'recording.completed' && x.track_id === 'TR_chaos_warm'), 60_000, 'the warm-up recording completed');
  }
  await sleep(1000);
  const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
  const ffmpegChildren = (): number => {
    let n = 0;
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[1]) === pid && stat.includes('(ffmpeg)')) n++;
      } catch {
        // gone meanwhile
      }
    }
    return n;
  };
  const stable = async (read: () => number): Promise<number> => {
    let last = read();
    for (let i = 0; i < 50; i++) {
      await sleep(200);
      const v = read();
      if (v === last) return v;
      last = v;
    }
    return last;
  };
  // each live master opens its spool file with its first chunk: count from then on
  await waitFor(() => {
    const open = [...readdirSync(`/proc/${pid}/fd`)].filter((fd) => {
      try {
        return /\/uploads\/[^/]+\/part-\d{6}\.pcm$/.test(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        return false;
      }
    });
    return open.length >= live.length || undefined;
  }, 20_000, 'the live masters spooling');
  const fdsBefore = await stable(fds);
  const fdTargets = (): Map<string, string> => {
    const out = new Map<string, string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        out.set(fd, readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
    return out;
  };
  const targetsBefore = fdTargets();
  const ffmpegBefore = await stable(ffmpegChildren);

  // ---- the chaos, in concurrent groups
  const byName = (name: string): Target => targets.find((x) => x.name === name)!;
  const audioLen = byName('whatsapp/audio (Content-Length)');
  const audioChunked = byName('whatsapp/audio (chunked)');
  // the herd's chunked half sends the Ogg/Opus note: 100 ffmpeg processes would only measure the CPU
  const audioChunkedOpus: Target = { ...audioChunked, body: () => opus };
  let chaosDone = false;

  const perRoute = async (target: Target): Promise<void> => {
    const len = target.body(newIds()).length;
    await abortAt(target, 0, 'destroy', 'abort after the headers');
    for (let i = 0; i < 4; i++) {
      const k = 1 + Math.floor(rand() * (len - 2));
      await abortAt(target, k, i % 2 === 0 ? 'destroy' : 'reset', `abort after ${k} of ${len} body bytes`);
    }
    await abortAt(target, len, 'destroy', 'abort right after the last byte');
    await longerThenFin(target);
    if (!target.chunked) await shorter(target);
    await bodyAfterEarlyError(target, '401 (wrong key)', { headers: { apikey: 'wrong-key-wrong-key-0000', authorization: target.name === 'livekit/webhook' ? undefined : 'Bearer wrong-key-wrong-key-0000' } });
    if (!target.chunked) await bodyAfterEarlyError(target, '413 (declared too large)', { size: 2 * 1024 * 1024, declared: 16 * 1024 * 1024 });
  };

  const audioSpecific = async (): Promise<void> => {
    await bodyAfterEarlyError(audioLen, '400 (missing X-Instance)', { headers: { 'x-instance': undefined } });
    await bodyAfterEarlyError(audioLen, '415 (Content-Type text/plain)', { headers: { 'content-type': 'text/plain' } });
    await bodyAfterEarlyError(audioLen, '415 (not audio, sniffed), 2 MiB left', { size: 2 * 1024 * 1024, headers: { 'x-file-length': undefined, 'x-file-sha256': undefined } });
    await bodyAfterEarlyError(audioChunked, '415 (not audio, sniffed)', { size: 2 * 1024 * 1024, headers: { 'x-file-length': undefined, 'x-file-sha256': undefined } });
    await bodyAfterEarlyError(audioLen, '422 (declared 1 s, below the filter)', { headers: { 'x-audio-seconds': 1, 'x-file-length': undefined, 'x-file-sha256': undefined } }, 'rejected');
  };

  const wireLevel = async (): Promise<void> => {
    // two uploads in one write: uWS refuses the second while the first is pending and closes
    {
      const a = newIds();
      const b = newIds();
      const one = await build(audioLen, a);
      const two = await build(audioLen, b);
      const c = await RawClient.connect(d.port);
      await c.write(Buffer.concat([Buffer.from(head(audioLen, a, one.headers, { length: one.body.length })), one.body, Buffer.from(head(audioLen, b, two.headers, { length: two.body.length })), two.body]));
      await c.answers(2, 15_000);
      c.destroy();
      const end = await c.ended;
      record(audioLen, 'two pipelined uploads in one write (first)', a, 'stored-or-nothing', c, end, true);
      record(audioLen, 'two pipelined uploads in one write (second)', b, 'stored-or-nothing', c, end, true);
    }
    // 64 KiB of headers on a valid upload
    {
      const ids = newIds();
      const { body, headers } = await build(audioLen, ids);
      const c = await RawClient.connect(d.port);
      await c.write(head(audioLen, ids, { ...headers, 'x-padding': 'p'.repeat(64 * 1024) }, { length: body.length }));
      await c.write(body);
      await c.answers(1, 15_000);
      c.destroy();
      record(audioLen, '64 KiB of headers', ids, 'stored-or-nothing', c, await c.ended, true);
    }
    // a garbage request line, and Content-Length: -1
    for (const [behaviour, bytes] of [
      ['garbage request line', Buffer.concat([Buffer.from('GARBAGE \u0000\u0001 nonsense\r\n\r\n'), randomBytes(2000)])],
      ['Content-Length: -1', Buffer.from(requestHead('POST', '/v1/whatsapp/audio', { apikey: E2E_API_KEY, 'x-instance': 'chaos-x', 'x-chat-id': 'c', 'x-message-id': 'CHAOSNEG', 'content-length': -1 }) + 'abcdef')],
    ] as const) {
      const c = await RawClient.connect(d.port);
      await c.write(bytes);
      await c.answers(1, 12_000);
      c.destroy();
      record(audioLen, behaviour, { messageId: 'CHAOSNEG', instance: 'chaos-x', filterName: 'none' }, 'nothing', c, await c.ended, true);
    }
  };

  const herd = async (): Promise<void> => {
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const target = i % 2 === 0 ? audioLen : audioChunkedOpus;
        const len = target.body(newIds()).length;
        await abortAt(target, Math.floor(rand() * len), i % 3 === 0 ? 'reset' : 'destroy', '200 concurrent uploads reset at random bytes');
      }),
    );
  };

  const withFetch = async (): Promise<void> => {
    // fetch (undici) with a streamed body aborted by its AbortController mid-body
    for (const target of [audioLen, byName('whatsapp/messages')]) {
      const ids = newIds();
      const { body, headers } = await build(target, ids);
      const controller = new AbortController();
      const stream = new ReadableStream<Uint8Array>({
        async pull(ctrl) {
          if (controller.signal.aborted) return; // not pulled again
          await sleep(20);
          ctrl.enqueue(body.subarray(0, 4096));
          controller.abort();
        },
      });
      const outcome = await undiciFetch(`${d.baseUrl}${target.path(ids)}`, { dispatcher: agent, method: target.method, headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, String(v)])), body: stream, duplex: 'half', signal: controller.signal }).then(
        (r) => `answered ${r.status}`,
        (err: Error) => err.name,
      );
      tries.push({ target: target.name, behaviour: `fetch AbortController abort mid-body (${outcome})`, ids, expect: 'nothing', answers: [], waited: false });
    }
    // a slow repeat of a stored note, streamed in 8 KiB pieces: 200 from its record, the rest dropped
    const first = await valid(audioLen);
    const again = await build(audioLen, first.ids);
    let offset = 0;
    const slow = new ReadableStream<Uint8Array>({
      async pull(ctrl) {
        await sleep(30);
        if (offset >= again.body.length) return ctrl.close();
        ctrl.enqueue(again.body.subarray(offset, offset + 8192));
        offset += 8192;
      },
    });
    const res = await undiciFetch(`${d.baseUrl}/v1/whatsapp/audio`, { dispatcher: agent, method: 'POST', headers: Object.fromEntries(Object.entries(again.headers).map(([k, v]) => [k, String(v)])), body: slow, duplex: 'half' });
    const answer: ParsedAnswer = { status: res.status, headers: Object.fromEntries(res.headers), body: Buffer.from(await res.arrayBuffer()) };
    tries.push({ target: audioLen.name, behaviour: 'slow repeat of a stored note (fetch, 8 KiB pieces)', ids: first.ids, expect: 'stored', answers: [answer], status: res.status, waited: true });
    // the same on a raw keep-alive connection: the answer comes early, the next request on it is served
    const c = await RawClient.connect(d.port);
    await c.write(head(audioLen, first.ids, again.headers, { length: again.body.length }));
    for (let o = 0; o < again.body.length; o += 8192) {
      await c.write(again.body.subarray(o, o + 8192));
      await sleep(20);
    }
    await c.write(requestHead('GET', '/health', {}));
    await c.answers(2);
    c.destroy();
    const tr = record(audioLen, 'slow repeat of a stored note on a kept connection', first.ids, 'stored', c, await c.ended, true);
    if (tr.answers[0]?.status !== 200 || tr.answers[1]?.status !== 200) tr.invalid ??= `answers ${tr.answers.map((a) => a.status).join(', ')}, wanted 200 then 200`;
  };

  const interleaved = async (): Promise<void> => {
    let i = 0;
    while (!chaosDone) {
      await valid(targets[i % targets.length]!);
      i += 1;
      await sleep(250);
    }
  };

  // a dead webhook must never finish the decoy room
  const deadWebhooks = async (): Promise<void> => {
    const target = byName('livekit/webhook');
    for (let i = 0; i < 4; i++) {
      const ids = newIds();
      const body = webhookBody(ids, 'room_finished');
      const { headers } = await build(target, ids, body);
      const c = await RawClient.connect(d.port);
      await c.write(head(target, ids, headers, { length: body.length }));
      await c.write(body.subarray(0, Math.floor(rand() * body.length)));
      c.destroy();
      record(target, 'room_finished webhook aborted mid-body', ids, 'nothing', c, await c.ended, false);
    }
  };

  // ---- WebSocket misbehaviour
  const wsFigures: string[] = [];
  const wsTries: { trackId: string; frames: number; exact: boolean }[] = [];
  const websockets = async (): Promise<void> => {
    const frame = randomStereo(480, SEED + 77);
    const upgrade = async (trackId: string): Promise<RawClient> => {
      const { token } = await mintEgressToken(E2E_EGRESS_SECRET, { tenant: 'default', roomName: 'chaos-ws', trackId }, 600);
      const c = await RawClient.connect(d.port);
      await c.write(wsUpgradeHead(`/egress-audio?token=${encodeURIComponent(token)}`));
      return c;
    };
    const until101 = async (c: RawClient): Promise<boolean> => {
      // up to 30 s: on a loaded machine the daemon may answer the upgrade late; a missing 101 is a problem
      for (let i = 0; i < 3000 && !c.closed; i++) {
        if (c.received().toString('latin1').includes('\r\n\r\n')) return c.received().toString('latin1').startsWith('HTTP/1.1 101');
        await sleep(10);
      }
      return false;
    };
    // dropped mid-frame: three whole frames, then half of one, then the TCP connection goes
    for (let i = 0; i < 5; i++) {
      const trackId = `TR_ws_midframe_${i}`;
      const c = await upgrade(trackId);
      if (!(await until101(c))) wsFigures.push(`${trackId}: no 101`);
      for (let f = 0; f < 3; f++) await c.write(wsFrame(2, frame));
      const partial = wsFrame(2, frame);
      await c.write(partial.subarray(0, 8 + Math.floor(rand() * (partial.length - 8))));
      await sleep(20);
      // a FIN comes after every byte sent; a reset may overtake frames the daemon had not read yet
      if (i % 2 === 0) c.reset();
      else c.destroy();
      wsTries.push({ trackId, frames: 3, exact: i % 2 === 1 });
    }
    // a client that never reads: it pings without taking the pongs, sends a second of audio, then vanishes
    {
      const trackId = 'TR_ws_noread';
      const c = await upgrade(trackId);
      if (!(await until101(c))) wsFigures.push(`${trackId}: no 101`);
      c.socket.pause();
      const ping = wsFrame(9, Buffer.alloc(125, 0x70));
      for (let f = 0; f < 100; f++) {
        await c.write(Buffer.concat([...Array.from({ length: 40 }, () => ping), wsFrame(2, frame)]));
        await sleep(10);
      }
      await sleep(500);
      c.destroy();
      wsTries.push({ trackId, frames: 100, exact: false });
    }
    // closed during the upgrade, before the 101
    for (let i = 0; i < 20; i++) {
      const c = await upgrade(`TR_ws_upgrade_${i}`);
      await sleep(Math.floor(rand() * 5));
      if (i % 2 === 0) c.reset();
      else c.destroy();
    }
  };

  // The stalls run through everything else; the herd comes first, then the rest in two lanes, so the
  // 2-core machine running the test, the daemon and its decoders is loaded but not starved.
  const stallGroup = Promise.all([stall(audioLen, false), stall(audioLen, true), stall(byName('whatsapp/messages'), false), stall(byName('filter PUT'), false),
    stall(byName('egress/urls'), false), stall(byName('livekit/webhook'), false, (ids) => webhookBody(ids, 'room_finished'))]);
  const background = interleaved();
  await herd();
  const lane = async (jobs: (() => Promise<void>)[]): Promise<void> => {
    for (const job of jobs) await job();
  };
  await Promise.all([
    stallGroup,
    lane([websockets, deadWebhooks, wireLevel, withFetch, audioSpecific]),
    lane(targets.slice(0, 3).map((x) => () => perRoute(x))),
    lane(targets.slice(3).map((x) => () => perRoute(x))),
  ]);
  chaosDone = true;
  await background;

  // ---- settle, then everything the daemon did
  t.ok(alive(), 'the daemon never exited');
  await waitFor(async () => metric(await metricsText(), 'audio_ingestd_streams_active', 'source="livekit"') === LIVE_STREAMS + 1 || undefined, 20_000, 'only the live streams remain');
  const fdsAfter = await (async () => {
    for (let i = 0; i < 75; i++) {
      const v = await stable(fds);
      if (v <= fdsBefore) return v;
      await sleep(200);
    }
    return fds();
  })();
  const ffmpegAfter = await stable(ffmpegChildren);
  if (fdsAfter > fdsBefore) {
    const tcp = readFileSync('/proc/net/tcp', 'utf8') + readFileSync('/proc/net/tcp6', 'utf8');
    const extra = [...fdTargets()].filter(([fd, target]) => targetsBefore.get(fd) !== target).map(([fd, target]) => {
      const inode = /socket:\[(\d+)\]/.exec(target)?.[1];
      const line = inode ? tcp.split('\n').find((l) => l.trim().split(/\s+/)[9] === inode) : undefined;
      return `${fd} → ${target}${line ? ` (${line.trim().split(/\s+/).slice(1, 4).join(' ')})` : ''}`;
    });
    t.comment(`descriptors not there before:\n${extra.join('\n')}`);
  }
  // fewer is no leak: a descriptor open before (an outbox or journal segment, say) may have been rotated away meanwhile
  t.ok(fdsAfter <= fdsBefore, `open file descriptors back to their level (${fdsBefore} before, ${fdsAfter} after)`);
  t.equal(ffmpegAfter, ffmpegBefore, `ffmpeg children back to their level (${ffmpegBefore})`);

  // what was stored and announced
  const objectsDir = join(d.dataDir, 'store', 'objects');
  const storedKeys: string[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir, { withFileTypes: true })) {
      if (name.isDirectory()) walk(join(dir, name.name));
      else storedKeys.push(relative(objectsDir, join(dir, name.name)));
    }
  };
  walk(join(objectsDir, 'whatsapp'));
  const events = ndjsonEvents(d.dataDir);
  const storedOf = (messageId: string): { objects: number; events: number; rejected: number } => ({
    objects: storedKeys.filter((k) => k.endsWith(`/${messageId}.wav`)).length,
    events: events.filter((e) => e.type === 'voicenote.stored' && e.message_id === messageId).length,
    rejected: events.filter((e) => e.type === 'voicenote.rejected' && e.message_id === messageId).length,
  });
  const filterOf = async (name: string): Promise<{ minSec: number }> => (await (await get(`/v1/whatsapp/instances/${name}/filter`)).json()) as { minSec: number };

  const problems: string[] = [];
  const attempts = new Map<string, number>();
  for (const tr of tries) {
    const where = `${tr.target} — ${tr.behaviour} (${tr.ids.messageId})`;
    attempts.set(tr.behaviour.replace(/\d+ of \d+/, 'k of n').replace(/\s*\((answered|AbortError|TypeError|first|second|keep-alive)[^)]*\)/g, ''), 0);
    if (tr.invalid) problems.push(`${where}: ${tr.invalid}`);
    for (const a of tr.answers) {
      if (a.status >= 400) {
        let body: unknown;
        try {
          body = JSON.parse(a.body.toString('utf8'));
        } catch {
          body = undefined;
        }
        const e = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
        if (typeof e?.code !== 'string' || typeof e.message !== 'string') problems.push(`${where}: ${a.status} without the JSON error body`);
      }
    }
    if (tr.end?.answersBeforeReset === 0 && tr.waited && tr.answers.length > 0) problems.push(`${where}: reset before its answer could be read`);
    const voiceNote = tr.target.startsWith('whatsapp');
    if ((tr.expect === 'stored' && tr.behaviour === 'valid') || tr.behaviour.startsWith('retry')) {
      const status = tr.answers[0]?.status;
      const wanted = targets.find((x) => x.name === tr.target)!.ok;
      if (status !== wanted) problems.push(`${where}: a valid request got ${status ?? 'no answer'} (${tr.answers[0]?.body.toString().slice(0, 200) ?? ''})`);
    }
    if (voiceNote) {
      const s = storedOf(tr.ids.messageId);
      if ((tr.expect === 'nothing' || tr.expect === 'rejected') && (s.objects > 0 || s.events > 0)) problems.push(`${where}: stored (${s.objects} objects, ${s.events} events) though aborted or refused`);
      if (tr.expect === 'stored' && (s.objects !== 1 || s.events !== 1)) problems.push(`${where}: ${s.objects} objects and ${s.events} stored events, wanted 1 and 1`);
      if (tr.expect === 'stored-or-nothing' && (s.objects !== s.events || s.objects > 1)) problems.push(`${where}: ${s.objects} objects but ${s.events} events`);
      if (tr.expect === 'rejected' && s.rejected !== 1) problems.push(`${where}: ${s.rejected} voicenote.rejected events, wanted 1`);
    }
    if (tr.target === 'filter PUT' && tr.expect !== 'stored-or-nothing') {
      const f = await filterOf(tr.ids.filterName);
      const applied = f.minSec === 5;
      if (tr.expect === 'stored' && !applied) problems.push(`${where}: a valid filter PUT was not applied`);
      if (tr.expect === 'nothing' && applied) problems.push(`${where}: applied though aborted or answered 408`);
    }
  }
  if (problems.length > 0) t.comment(`problems:\n${problems.join('\n')}`);
  t.same(problems, [], 'every answer valid HTTP with the JSON error body; nothing stored, applied or announced for an aborted or refused request; every valid one stored');
  const validTries = tries.filter((x) => x.behaviour === 'valid').length;
  t.ok(validTries >= targets.length * 2, `${validTries} valid requests interleaved with the chaos`);

  // the WebSocket misbehaviour: each recording finalized with the frames that arrived whole
  const wsProblems = [...wsFigures];
  for (const w of wsTries) {
    const e = await waitFor(() => events.find((x) => x.type === 'recording.completed' && x.track_id === w.trackId) ?? ndjsonEvents(d.dataDir).find((x) => x.type === 'recording.completed' && x.track_id === w.trackId), 60_000, `completed ${w.trackId}`);
    if (e.end_reason !== 'aborted') wsProblems.push(`${w.trackId}: end_reason ${String(e.end_reason)}`);
    const frames = ((e.size_bytes as number) - MASTER_HEADER_BYTES) / 960;
    if (w.exact ? frames !== w.frames : !(Number.isInteger(frames) && frames >= 0 && frames <= w.frames)) wsProblems.push(`${w.trackId}: ${frames} frames stored, wanted ${w.exact ? '' : 'at most '}${w.frames}`);
  }
  const upgradeStarted = ndjsonEvents(d.dataDir).filter((e) => e.type === 'recording.started' && String(e.track_id).startsWith('TR_ws_upgrade_'));
  for (const s of upgradeStarted) {
    if (!ndjsonEvents(d.dataDir).some((e) => e.type === 'recording.completed' && e.recording_id === s.recording_id)) wsProblems.push(`${String(s.track_id)}: started during a dropped upgrade and never completed`);
  }
  t.same(wsProblems, [], 'WebSocket clients that drop mid-frame, never read, or close during the upgrade: every recording finalized, nothing leaked');

  // the live streams: every sample, exactly
  stopStreams = true;
  const sent = await Promise.all(live.map((l) => l.sending));
  for (const l of live) l.ws.close();
  await Promise.all(live.map((l) => l.closed));
  let liveExact = 0;
  for (const [i, l] of live.entries()) {
    const e = await waitFor(() => ndjsonEvents(d.dataDir).find((x) => x.type === 'recording.completed' && x.track_id === l.trackId), 60_000, `completed ${l.trackId}`);
    const wav = readWav(readFileSync(join(objectsDir, e.s3_key_master as string)));
    const exact = e.end_reason === 'normal' && wav.data.equals(downmix(l.pcm.subarray(0, sent[i]!)));
    if (exact) liveExact += 1;
    t.ok(exact, `${l.roomName}: master sample-exact (${sent[i]! / 192_000} s), end_reason ${String(e.end_reason)}`);
  }

  // /health throughout, from its own process; and the daemon's own event-loop delay
  poller.kill('SIGKILL');
  await metricsText();
  const polls = polled.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { ms?: number; status?: number; error?: string; lagMax?: number });
  const healthPolls = polls.filter((p) => p.lagMax === undefined);
  const failedPolls = healthPolls.filter((p) => p.status !== 200);
  const worstMs = Math.max(...healthPolls.map((p) => p.ms ?? 0));
  const worstLagMs = 1000 * Math.max(...lagMaxes, ...polls.flatMap((p) => (p.lagMax === undefined ? [] : [p.lagMax])));
  t.ok(healthPolls.length > 50, `${healthPolls.length} /health polls`);
  t.same(failedPolls, [], 'every /health answered 200');
  // How long the daemon's event loop went without running is a figure, not an assertion: on a
  // machine whose cores are shared with other work it measures the machine as much as the daemon
  // (1-2 s seen at load 15+). What is asserted is that every /health poll was answered, above.
  t.comment(`worst event-loop delay of the daemon ${worstLagMs.toFixed(0)} ms; worst /health seen by the poller ${worstMs.toFixed(0)} ms`);

  const crashes = logLines(d.output()).filter((l) => /uncaught exception/.test(String(l.msg))).length + (alive() ? 0 : 1);
  t.equal(crashes, 0, 'no uncaught exception');
  d.child.kill('SIGTERM');
  const code = await d.exited;
  t.equal(code, 0, 'and a clean stop at the end');

  const behaviours = attempts.size;
  const routes = new Set(tries.map((x) => x.target)).size;
  reportFigure({
    fault: 'HTTP chaos: misbehaving clients on every body-taking route while 4 live streams run',
    checked: 'aborts after the headers / k bytes / the last byte, Content-Length longer and shorter, bodies going on after early 400/401/413/415/422 and a duplicate 200, slow repeats, a 15 s stall, pipelining, 64 KiB of headers, 200 concurrent resets, garbage and Content-Length -1, fetch aborts; valid uploads interleaved: all stored; nothing stored, applied or announced for the rest; every answer valid HTTP + JSON; live masters sample-exact',
    eventsExpected: validTries,
    eventsDelivered: tries.filter((x) => x.behaviour === 'valid' && x.answers[0]?.status === targets.find((y) => y.name === x.target)!.ok).length,
    chaos: { tries: tries.length, behaviours, routes, crashes, worstHealthMs: Math.round(worstMs), worstEventLoopMs: Math.round(worstLagMs), fdsBefore, fdsAfter, ffmpegBefore, ffmpegAfter, problems: problems.length },
    notes: `${tries.length} tries of ${behaviours} behaviours on ${routes} routes (seed ${SEED}); crashes ${crashes}; worst /health ${worstMs.toFixed(0)} ms over ${healthPolls.length} polls (worst event-loop delay of the daemon ${worstLagMs.toFixed(0)} ms); fds ${fdsBefore} before / ${fdsAfter} after; ffmpeg children ${ffmpegBefore} / ${ffmpegAfter}; ${problems.length} problems; live masters exact ${liveExact}/${live.length}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
    ok: crashes === 0 && code === 0 && problems.length === 0 && failedPolls.length === 0 && fdsAfter <= fdsBefore && ffmpegAfter === ffmpegBefore && liveExact === live.length,
  });
  reportFigure({
    fault: 'WebSocket chaos: egress clients dropping mid-frame, never reading, closing during the upgrade',
    checked: 'every recording finalized (aborted) with the frames that arrived whole; no stream or recording leaked; the live streams unaffected',
    eventsExpected: wsTries.length,
    eventsDelivered: wsTries.length - wsProblems.filter((p) => !p.includes('never completed')).length,
    notes: `5 dropped mid-frame, 1 never reading (4 000 pings unread), 20 closed during the upgrade (${upgradeStarted.length} had already started a recording); ${wsProblems.length} problems`,
    ok: wsProblems.length === 0,
  });
});
