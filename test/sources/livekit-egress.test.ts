import { createHash } from 'node:crypto';
import { AccessToken } from 'livekit-server-sdk';
import t from 'tap';
import { WebSocket } from 'ws';
import { connectEgress, EgressRefusedError, simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { metricValue, startTestApp, TEST_API_KEY, type TestApp } from '../helpers/app.js';
import { downmix, egressUrl, outboxEvents, randomStereo, rawToken, readWav, speechEgressPcm } from '../helpers/egress.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { MAX_MUTE_INTERVALS } from '../../src/recording/recording.js';
import { waitFor } from '../helpers/wait-for.js';

type Ev = Record<string, unknown>;

function completed(h: TestApp, recordingId?: string): Ev[] {
  return outboxEvents(h).filter((e) => e.type === 'recording.completed' && (recordingId === undefined || e.recording_id === recordingId));
}

async function masterOf(h: TestApp, e: Ev): Promise<ReturnType<typeof readWav>> {
  return readWav(await h.app.store.get(e.s3_key_master as string));
}

t.test('concurrent streams: every master equals the downmixed input, sample for sample', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const speech = await speechEgressPcm();
  const inputs = [
    { track: 'TR_speech', pcm: speech, frameBytes: 1920 },
    { track: 'TR_random', pcm: randomStereo(48000 * 3 + 123, 7), frameBytes: 1920 },
    { track: 'TR_odd', pcm: randomStereo(48000 * 2, 11), frameBytes: 1001 },
    { track: 'TR_tiny', pcm: tonePcm(1.5, 300), frameBytes: 6 },
    { track: 'TR_big', pcm: randomStereo(48000 * 2 + 1, 3), frameBytes: 16384 },
  ];
  const urls = await Promise.all(inputs.map((i) => egressUrl(h, { roomName: 'room-a', trackId: i.track, participant: 'p-' + i.track })));
  const results = await Promise.all(inputs.map((i, n) => simulateEgress({ url: urls[n]!, pcm: i.pcm, frameBytes: i.frameBytes, realtime: false })));
  for (const r of results) t.equal(r.closeCode, 1005, 'normal end is an empty close');
  await waitFor(() => completed(h).length === inputs.length || undefined, 15_000, 'all recordings completed');

  for (const i of inputs) {
    const ev = completed(h).find((e) => e.track_id === i.track)!;
    t.ok(ev, `completed event for ${i.track}`);
    t.equal(ev.end_reason, 'normal');
    t.equal(ev.status, 'completed');
    const wav = await masterOf(h, ev);
    t.equal(wav.sampleRate, 48000, 'source rate kept');
    t.equal(wav.channels, 1, 'mono');
    t.equal(wav.riffSize, MASTER_HEADER_BYTES - 8 + wav.dataSize, 'RIFF size matches');
    t.equal(wav.data.length, wav.dataSize, 'data size matches the bytes');
    const expected = downmix(i.pcm.subarray(0, i.pcm.length - (i.pcm.length % 4)));
    t.equal(wav.data.length, expected.length, `${i.track}: same number of samples`);
    t.ok(wav.data.equals(expected), `${i.track}: samples identical`);
    t.equal(ev.duration_sec, Math.round((expected.length / 2 / 48000) * 1000) / 1000);
    t.equal(ev.size_bytes, MASTER_HEADER_BYTES + expected.length);
    t.match(ev.s3_key_master, new RegExp(`^recordings/default/room-a/p-${i.track}/${i.track}/[0-9a-f-]{36}\\.wav$`));
  }
  const started = outboxEvents(h).filter((e) => e.type === 'recording.started');
  t.equal(started.length, inputs.length, 'one recording.started per stream');
});

t.test('a real-time paced stream with mutes records the mute intervals and writes nothing while muted', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-m', trackId: 'TR_m', participant: 'bob' });
  const pcm = tonePcm(2, 440);
  const r = await simulateEgress({ url, pcm, mutes: [{ atSec: 0.5, durationSec: 0.5 }], legacyMuteText: false });
  t.equal(r.textSent, 2, 'one mute and one unmute');
  const ev = await waitFor(() => completed(h)[0], 10_000);
  const intervals = ev.mute_intervals as { start_sample: number; end_sample: number; start_sec: number; end_sec: number; started_at: string; ended_at: string }[];
  t.equal(intervals.length, 1);
  t.equal(intervals[0]!.start_sample, 24000, 'mute starts after 0.5 s of audio');
  t.equal(intervals[0]!.end_sample, 24000, 'nothing written while muted');
  t.equal(intervals[0]!.start_sec, 0.5);
  const wallMs = Date.parse(intervals[0]!.ended_at) - Date.parse(intervals[0]!.started_at);
  t.ok(wallMs >= 300 && wallMs < 2000, `wall-clock span recorded (${wallMs} ms)`);
  const wav = await masterOf(h, ev);
  t.equal(wav.data.length, 1.5 * 48000 * 2, '1.5 s stored');
  const expected = downmix(Buffer.concat([pcm.subarray(0, 0.5 * 192000), pcm.subarray(1.0 * 192000)]));
  t.ok(wav.data.equals(expected), 'audio around the mute is intact');
});

t.test('legacy bare true/false mute texts and silence fill', async (t) => {
  const h = await startTestApp({ livekit: { muteFill: 'silence' } });
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-s', trackId: 'TR_s' });
  await simulateEgress({ url, pcm: tonePcm(1.5, 440), mutes: [{ atSec: 0.5, durationSec: 0.5 }], legacyMuteText: true });
  const ev = await waitFor(() => completed(h)[0], 10_000);
  const [iv] = ev.mute_intervals as { start_sample: number; end_sample: number; started_at: string; ended_at: string }[];
  t.equal(iv!.start_sample, 24000);
  const wallFrames = Math.round(((Date.parse(iv!.ended_at) - Date.parse(iv!.started_at)) / 1000) * 48000);
  t.ok(Math.abs(iv!.end_sample - iv!.start_sample - wallFrames) <= 48, 'filled span equals the wall-clock mute (±1 ms)');
  const wav = await masterOf(h, ev);
  const silent = wav.data.subarray(iv!.start_sample * 2, iv!.end_sample * 2);
  t.ok(silent.length > 0 && silent.every((b) => b === 0), 'the filled span is silence');
  t.equal(wav.data.length / 2, 48000 + (iv!.end_sample - iv!.start_sample), 'audio plus filled silence');
});

t.test('a stream that toggles mute without end is ended with 1008 MUTE_LIMIT at the interval bound; its audio is stored, the event stays small', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const ws = await connectEgress(await egressUrl(h, { roomName: 'room-mb', trackId: 'TR_mb' }));
  const pcm = randomStereo(4800, 31);
  for (let off = 0; off < pcm.length; off += 1920) ws.send(pcm.subarray(off, off + 1920), { binary: true });
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
  // twice the bound of mute pairs, as a client would flood them, then audio the daemon must not lose
  for (let i = 0; i < 2 * MAX_MUTE_INTERVALS; i++) {
    ws.send('{"muted":true}');
    ws.send('{"muted":false}');
    if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
  }
  const { code, reason } = await closed;
  t.equal(code, 1008, 'closed with 1008 (policy)');
  t.match(reason, /^MUTE_LIMIT/);
  const ev = await waitFor(() => completed(h)[0], 20_000);
  t.equal(ev.end_reason, 'aborted');
  t.equal((ev.mute_intervals as unknown[]).length, MAX_MUTE_INTERVALS, 'the intervals stop at the bound');
  t.ok(JSON.stringify(ev).length < 4 * 1024 * 1024, 'the completed event stays a few MiB at most');
  t.ok((await masterOf(h, ev)).data.equals(downmix(pcm)), 'the audio before the flood is stored');
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_errors_total', 'code="MUTE_LIMIT"'), 1, 'counted once');
});

t.test('an abrupt drop still yields a valid WAV of everything received', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-d', trackId: 'TR_d' });
  const pcm = randomStereo(48000, 5);
  const r = await simulateEgress({ url, pcm, realtime: false, end: 'drop' });
  t.equal(r.closeCode, 1006, 'no close frame');
  const ev = await waitFor(() => completed(h)[0], 10_000);
  t.equal(ev.end_reason, 'aborted');
  const wav = await masterOf(h, ev);
  t.equal(wav.riffSize, MASTER_HEADER_BYTES - 8 + wav.dataSize);
  t.ok(wav.data.equals(downmix(pcm)), 'every byte received is stored');
});

t.test('garbage text frames are ignored and counted; audio is intact', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-g', trackId: 'TR_g' });
  const pcm = randomStereo(24000, 9);
  const bomb = '['.repeat(5000) + ']'.repeat(5000);
  await simulateEgress({ url, pcm, realtime: false, extraText: ['hello', '{"muted":"yes"}', bomb, '{"muted":true,"x":1}'] });
  const ev = await waitFor(() => completed(h)[0], 10_000);
  t.same(ev.mute_intervals, [], 'no mute from garbage');
  t.ok((await masterOf(h, ev)).data.equals(downmix(pcm)));
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_text_frames_total', 'kind="invalid"'), 4);
});

t.test('refusals happen before the upgrade, with a coded JSON error', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const base = `${h.wsUrl}/egress-audio`;
  const refused = async (url: string): Promise<EgressRefusedError> => {
    try {
      const ws = await connectEgress(url);
      ws.terminate();
    } catch (err) {
      if (err instanceof EgressRefusedError) return err;
      throw err;
    }
    throw new Error(`not refused: ${url}`);
  };
  const cases: [string, Promise<string>, number, string][] = [
    ['no token', Promise.resolve(`${base}?roomName=r`), 401, 'UNAUTHORIZED'],
    ['forged token', rawToken({ tenant: 'default', roomName: 'r' }, 60, 'another-secret-another-secret-another-secret').then((tk) => `${base}?token=${tk}`), 401, 'INVALID_TOKEN'],
    ['garbage token', Promise.resolve(`${base}?token=abc.def.ghi`), 401, 'INVALID_TOKEN'],
    ['expired token', rawToken({ tenant: 'default', roomName: 'r' }, 60, undefined, Date.now() - 3600_000).then((tk) => `${base}?token=${tk}`), 401, 'TOKEN_EXPIRED'],
    ['other tenant', rawToken({ tenant: 'nobody', roomName: 'r' }).then((tk) => `${base}?token=${tk}`), 403, 'UNKNOWN_TENANT'],
    ['unknown query key', rawToken({ tenant: 'default', roomName: 'r' }).then((tk) => `${base}?token=${tk}&debug=1`), 400, 'INVALID_PARAMETER'],
    ['bad sample rate', rawToken({ tenant: 'default', roomName: 'r' }).then((tk) => `${base}?token=${tk}&sampleRate=12345`), 400, 'INVALID_PARAMETER'],
    ['bad channels', rawToken({ tenant: 'default', roomName: 'r' }).then((tk) => `${base}?token=${tk}&channels=6`), 400, 'INVALID_PARAMETER'],
    ['hostile track id', rawToken({ tenant: 'default', roomName: 'r', trackId: '../../etc' }).then((tk) => `${base}?token=${tk}`), 400, 'INVALID_PARAMETER'],
  ];
  for (const [name, urlP, status, code] of cases) {
    const err = await refused(await urlP);
    t.equal(err.status, status, `${name}: status`);
    t.equal((JSON.parse(err.body) as { error: { code: string } }).error.code, code, `${name}: code`);
  }
  // A token refused for another reason is not burnt; a used one is refused the second time.
  const url = await egressUrl(h, { roomName: 'r2' });
  const first = await simulateEgress({ url, pcm: tonePcm(0.1), realtime: false });
  t.equal(first.closeCode, 1005);
  const replay = await refused(url);
  t.equal(replay.status, 401);
  t.match(replay.body, /TOKEN_REPLAYED/);
  t.equal(h.app.livekit.openStreams, 0, 'no stream left open by refusals');
});

t.test('an upgrade refusal is answered like every HTTP error: request id, shared metrics', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const errorsBefore = await metricValue(h.baseUrl, 'audio_ingestd_errors_total', 'code="UNAUTHORIZED"');
  const requestsBefore = await metricValue(h.baseUrl, 'audio_ingestd_http_requests_total', 'route="egress-audio",status="401"');
  const answer = await new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const ws = new WebSocket(`${h.wsUrl}/egress-audio?roomName=r`, { headers: { 'x-request-id': 'egress-refusal-1' } });
    ws.on('open', () => reject(new Error('upgraded without a token')));
    ws.on('error', () => undefined); // the refusal below is the answer; ws reports it as an error too
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
  });
  t.equal(answer.status, 401);
  t.equal(answer.headers['x-request-id'], 'egress-refusal-1', 'the request id is echoed');
  t.equal(answer.headers['content-type'], 'application/json');
  t.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_errors_total', 'code="UNAUTHORIZED"'), errorsBefore + 1, 'counted once in errors_total');
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_http_requests_total', 'route="egress-audio",status="401"'), requestsBefore + 1, 'and once in http_requests_total');
});

t.test('POST /v1/egress/urls validates its body', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const post = (body: string): Promise<Response> => fetch(`${h.baseUrl}/v1/egress/urls`, { method: 'POST', headers: { apikey: TEST_API_KEY }, body });
  const bad = await post(JSON.stringify({ roomName: 'a/b' }));
  t.equal(bad.status, 400);
  t.match(await bad.json(), { error: { code: 'INVALID_PARAMETER', message: /roomName/ } });
  const notJson = await post('{');
  t.equal(notJson.status, 400);
  t.match(await notJson.json(), { error: { code: 'INVALID_JSON' } });
  const extra = await post(JSON.stringify({ roomName: 'a', evil: true }));
  t.equal(extra.status, 400);
  const ok = await post(JSON.stringify({ roomName: 'a', ttlSeconds: 60 }));
  t.equal(ok.status, 201);
  const body = (await ok.json()) as { websocketUrl: string; expiresAt: string };
  t.match(body.websocketUrl, /^ws:\/\/127\.0\.0\.1:\d+\/egress-audio\?token=[\w-]+\.[\w-]+\.[\w-]+$/);
  const ttl = Date.parse(body.expiresAt) - Date.now();
  t.ok(ttl > 50_000 && ttl <= 61_000, 'expiresAt honours ttlSeconds');
});

t.test('room_finished from a signed LiveKit webhook ends every stream of that room only', async (t) => {
  const apiKey = 'APIkey123';
  const apiSecret = 'livekit-api-secret-0123456789abcdef';
  const h = await startTestApp({ livekit: { apiKey, apiSecret } });
  t.teardown(() => h.close());
  const urls = await Promise.all(['A1', 'A2', 'B1'].map((tr) => egressUrl(h, { roomName: tr.startsWith('A') ? 'room-A' : 'room-B', trackId: tr })));
  const sims = urls.map((url) => simulateEgress({ url, pcm: tonePcm(0.3), realtime: false, end: 'none' }));
  const opened = await Promise.all(sims);
  await waitFor(() => h.app.livekit.openStreams === 3 || undefined, 5000, 'three streams open');
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_streams_active', 'source="livekit"'), 3);

  const send = async (body: object, secret = apiSecret): Promise<Response> => {
    const raw = JSON.stringify(body);
    const at = new AccessToken(apiKey, secret);
    at.sha256 = createHash('sha256').update(raw).digest('base64');
    return fetch(`${h.baseUrl}/livekit/webhook`, { method: 'POST', headers: { Authorization: await at.toJwt(), 'Content-Type': 'application/webhook+json' }, body: raw });
  };
  const forged = await send({ event: 'room_finished', id: 'EV_x', room: { name: 'room-B' } }, 'wrong-secret-wrong-secret-wrong');
  t.equal(forged.status, 401);
  t.match(await forged.json(), { error: { code: 'INVALID_SIGNATURE' } });
  const unsigned = await fetch(`${h.baseUrl}/livekit/webhook`, { method: 'POST', body: '{}' });
  t.equal(unsigned.status, 401);

  const ok = await send({ event: 'room_finished', id: 'EV_1', room: { name: 'room-A' } });
  t.equal(ok.status, 200);
  await waitFor(() => completed(h).length === 2 || undefined, 5000, 'room-A finalized');
  for (const e of completed(h)) {
    t.equal(e.room_name, 'room-A');
    t.equal(e.end_reason, 'room_finished');
  }
  t.equal(h.app.livekit.openStreams, 1, 'room-B still live');
  const dup = await send({ event: 'room_finished', id: 'EV_1', room: { name: 'room-A' } });
  t.match(await dup.json(), { duplicate: true });
  for (const o of opened) o.socket?.close();
  await waitFor(() => completed(h).length === 3 || undefined, 5000);
  t.equal(completed(h).find((e) => e.room_name === 'room-B')!.end_reason, 'normal');
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_streams_active', 'source="livekit"'), 0);
});

t.test('idle streams end with timeout, still finalized', async (t) => {
  const h = await startTestApp({ livekit: { idleTimeoutSec: 1 } });
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-i' });
  const r = await simulateEgress({ url, pcm: tonePcm(0.2), realtime: false, end: 'none' });
  const ev = await waitFor(() => completed(h)[0], 8000, 'timeout');
  t.equal(ev.end_reason, 'timeout');
  t.equal((await masterOf(h, ev)).data.length, 0.2 * 48000 * 2);
  r.socket?.terminate();
});

t.test('SIGTERM-style stop: not ready, new streams refused, live ones kept through the drain window then finalized', async (t) => {
  const h = await startTestApp();
  const url = await egressUrl(h, { roomName: 'room-x' });
  const url2 = await egressUrl(h, { roomName: 'room-x', trackId: 'late' });
  const live = await simulateEgress({ url, pcm: tonePcm(0.2), realtime: false, end: 'none' });
  await waitFor(() => h.app.livekit.openStreams === 1 || undefined);
  const stopping = h.app.stop({ drainSeconds: 1 });
  const ready = await fetch(`${h.baseUrl}/ready`);
  t.equal(ready.status, 503);
  t.match(await ready.json(), { ready: false, draining: true });
  const refusal = await connectEgress(url2).then(
    (ws) => {
      ws.terminate();
      return undefined;
    },
    (err: unknown) => err,
  );
  t.ok(refusal instanceof EgressRefusedError && refusal.status === 503 && /DRAINING/.test(refusal.body), 'new stream refused while draining');
  t.equal(h.app.livekit.openStreams, 1, 'live stream kept during the drain window');
  await stopping;
  const ev = completed(h)[0]!;
  t.equal(ev.end_reason, 'shutdown');
  t.equal(live.socket?.readyState === 1, false, 'socket closed by the daemon');
  await h.close();
});

t.test('metrics follow the streams', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const url = await egressUrl(h, { roomName: 'room-metrics' });
  await simulateEgress({ url, pcm: tonePcm(0.5), realtime: false });
  await waitFor(() => completed(h)[0], 5000);
  await new Promise((r) => setTimeout(r, 1100)); // frame counters are folded in once a second
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_frames_received_total', 'source="livekit"'), 50);
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_audio_bytes_received_total', 'source="livekit"'), 96000);
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_audio_seconds_total', 'source="livekit"'), 0.5);
  t.equal(await metricValue(h.baseUrl, 'audio_ingestd_streams_total', 'source="livekit",end_reason="normal"'), 1);
});
