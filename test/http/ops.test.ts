import t from 'tap';
import { uwsRuntime } from '../../src/http/uws.js';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { startTestApp } from '../helpers/app.js';
import { egressUrl } from '../helpers/egress.js';

t.test('the native uWebSockets.js binary is the one serving', async (t) => {
  t.equal(uwsRuntime.native, true, 'uWS native addon loaded (not the JS fallback)');
  t.match(uwsRuntime.binary ?? '', /uws_linux_x64_\d+\.node$/);
  const h = await startTestApp();
  t.teardown(() => h.close());
  const metrics = await (await fetch(`${h.baseUrl}/metrics`)).text();
  t.match(metrics, /audio_ingestd_build_info\{version="[^"]+",node="v\d+[^"]*",uws_native="true",ffmpeg="[^"]+",ffmpeg_source="(env|system|bundled)"\} 1/);
  const started = h.logs.find((l) => l.msg === 'uWebSockets.js native binary loaded');
  t.ok(started, 'logged at start');
});

t.test('health, ready and metrics answer', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const health = await fetch(`${h.baseUrl}/health`);
  t.equal(health.status, 200);
  t.match(await health.json(), { status: 'ok', version: /\d+\.\d+\.\d+/ });
  t.ok(health.headers.get('x-request-id'), 'request id on every answer');

  const ready = await fetch(`${h.baseUrl}/ready`);
  t.equal(ready.status, 200);
  const body = (await ready.json()) as { ready: boolean; checks: Record<string, { ok: boolean }> };
  t.equal(body.ready, true);
  t.same(body.checks.store, { ok: true }, 'store reported');

  const metrics = await fetch(`${h.baseUrl}/metrics`);
  t.equal(metrics.status, 200);
  t.match(metrics.headers.get('content-type'), /text\/plain/);
  const text = await metrics.text();
  t.match(text, /audio_ingestd_nodejs_eventloop_lag_p99_seconds/, 'event-loop lag exported');
  t.match(text, /audio_ingestd_process_cpu_seconds_total/, 'default process metrics');
  t.match(text, /audio_ingestd_http_requests_total\{route="ready",status="200"\} 1/, 'requests counted by bounded route label');
});

t.test('unknown routes and bad keys get coded JSON errors without stacks', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  const nf = await fetch(`${h.baseUrl}/nope/../x`);
  t.equal(nf.status, 404);
  t.same(await nf.json(), { error: { code: 'NOT_FOUND', message: 'no route for GET /x' } });

  const noKey = await fetch(`${h.baseUrl}/v1/egress/urls`, { method: 'POST', body: '{}' });
  t.equal(noKey.status, 401);
  t.match(await noKey.json(), { error: { code: 'UNAUTHORIZED' } });
  const badKey = await fetch(`${h.baseUrl}/v1/egress/urls`, { method: 'POST', body: '{}', headers: { apikey: 'wrong-key-wrong-key' } });
  t.equal(badKey.status, 401);
  const b = (await badKey.json()) as { error: { code: string; message: string } };
  t.equal(b.error.code, 'INVALID_API_KEY');
  t.notMatch(JSON.stringify(b), /at .*\.ts/, 'no stack trace');
  const text = await (await fetch(`${h.baseUrl}/metrics`)).text();
  t.match(text, /audio_ingestd_errors_total\{code="INVALID_API_KEY"\} 1/);
});

t.test('ready is 503 while draining and names the reason', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  // A live stream keeps the drain window open, so /ready is asked while the daemon drains.
  const ws = await connectEgress(await egressUrl(h, { roomName: 'ops-drain', trackId: 'TR_ops' }));
  const closed = new Promise((resolve) => ws.once('close', resolve));
  const stopping = h.app.stop({ drainSeconds: 30 });
  const ready = await fetch(`${h.baseUrl}/ready`);
  t.equal(ready.status, 503);
  t.match(await ready.json(), { ready: false, draining: true });
  t.equal(h.app.state, 'draining');
  ws.close();
  await closed;
  await stopping;
  t.equal(h.app.state, 'stopped');
});
