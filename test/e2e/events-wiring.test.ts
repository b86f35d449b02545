import { createHash } from 'node:crypto';
import { AccessToken } from 'livekit-server-sdk';
import t from 'tap';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { Webhook } from 'standardwebhooks';
import { startTestApp } from '../helpers/app.js';
import { egressUrl } from '../helpers/egress.js';
import { AMQP_URL, deleteTopology, TestConsumer, uniqueNames } from '../helpers/events-amqp.js';
import { startReceiver } from '../helpers/events-http.js';
import { loadSchema, validate } from '../helpers/events-schema.js';
import { waitFor } from '../helpers/wait-for.js';

const apiKey = 'APIwiring';
const apiSecret = 'livekit-wiring-secret-0123456789abcdef';
const WEBHOOK_SECRET = `whsec_${Buffer.from('webhook-secret-0123456789abcdef').toString('base64')}`;

t.test('two hosts on one broker: room_finished reaches both, events arrive on RabbitMQ and signed webhooks', async (t) => {
  const { prefix } = uniqueNames('wiring');
  const exchange = `${prefix}.events`;
  const signalsExchange = `${prefix}.signals`;
  const globalQueue = `${prefix}.global`;
  const consumer = await TestConsumer.open();
  await consumer.bind(exchange, 'topic', 'recording.#');
  const hook = await startReceiver(t, () => 200);
  const events = { amqpUrl: AMQP_URL, exchange, signalsExchange, globalQueue };
  const a = await startTestApp({ events: { ...events, webhookUrl: hook.url, webhookSecret: WEBHOOK_SECRET }, livekit: { apiKey, apiSecret } });
  const b = await startTestApp({ events });
  t.teardown(async () => {
    await a.close();
    await b.close();
    await consumer.close();
    await deleteTopology([exchange, signalsExchange], [globalQueue]);
  });

  const ready = await fetch(`${a.baseUrl}/ready`);
  t.match(await ready.json(), { ready: true, checks: { 'events:amqp': { ok: true }, 'events:webhook': { ok: true } } });

  // One stream of room R on each host, one of another room on host B.
  const onA = await simulateEgress({ url: await egressUrl(a, { roomName: 'R', trackId: 'TA' }), pcm: tonePcm(0.2), realtime: false, end: 'none' });
  const onB = await simulateEgress({ url: await egressUrl(b, { roomName: 'R', trackId: 'TB' }), pcm: tonePcm(0.2), realtime: false, end: 'none' });
  const other = await simulateEgress({ url: await egressUrl(b, { roomName: 'Q', trackId: 'TQ' }), pcm: tonePcm(0.2), realtime: false, end: 'none' });
  await waitFor(() => (a.app.livekit.openStreams === 1 && b.app.livekit.openStreams === 2) || undefined);

  const body = JSON.stringify({ event: 'room_finished', id: 'EV_wiring', room: { name: 'R' } });
  const at = new AccessToken(apiKey, apiSecret);
  at.sha256 = createHash('sha256').update(body).digest('base64');
  const res = await fetch(`${a.baseUrl}/livekit/webhook`, { method: 'POST', headers: { Authorization: await at.toJwt() }, body });
  t.equal(res.status, 200);

  const completed = (): { fields: { routingKey: string }; properties: { messageId?: string; persistent?: boolean; deliveryMode?: number }; body: Record<string, unknown> }[] =>
    consumer.messages
      .map((m) => ({ fields: m.fields, properties: m.properties, body: JSON.parse(m.content.toString()) as Record<string, unknown> }))
      .filter((m) => m.body.type === 'recording.completed');
  await waitFor(() => completed().length === 2 || undefined, 10_000, 'both hosts finalized room R');
  for (const m of completed()) {
    t.equal(m.body.room_name, 'R');
    t.equal(m.body.end_reason, 'room_finished');
    t.equal(m.fields.routingKey, 'recording.completed');
    t.equal(m.properties.messageId, m.body.id, 'messageId is the event id');
    t.equal(m.properties.deliveryMode, 2, 'persistent');
    t.same(validate(loadSchema('recording.completed'), m.body), [], 'matches its JSON Schema');
  }
  t.same(completed().map((m) => m.body.track_id).sort(), ['TA', 'TB']);
  t.equal(b.app.livekit.openStreams, 1, 'room Q untouched');
  const started = consumer.messages.filter((m) => m.fields.routingKey === 'recording.started');
  t.equal(started.length, 3);

  // Host A's webhook got its own events, signed with Standard Webhooks (the default scheme).
  await waitFor(() => hook.requests.some((r) => JSON.parse(r.body.toString()).type === 'recording.completed') || undefined, 10_000, 'webhook delivery');
  for (const r of hook.requests) {
    const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
    t.same(new Webhook(WEBHOOK_SECRET).verify(r.body, headers), JSON.parse(r.body.toString()), 'standardwebhooks verifies the delivery');
    t.equal(r.headers['webhook-id'], JSON.parse(r.body.toString()).id);
  }
  onA.socket?.terminate();
  onB.socket?.terminate();
  other.socket?.terminate();
});

t.test('webhook URLs without a secret are a configuration error', async (t) => {
  await t.rejects(startTestApp({ events: { webhookUrl: 'http://127.0.0.1:9/hook' } }), { message: /WEBHOOK_SECRET is required/ });
});

t.test('without a broker, events land in DATA_DIR/events.ndjson', async (t) => {
  const h = await startTestApp();
  t.teardown(() => h.close());
  await simulateEgress({ url: await egressUrl(h, { roomName: 'nd' }), pcm: tonePcm(0.1), realtime: false });
  const { readFileSync, existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const file = join(h.dataDir, 'events.ndjson');
  await waitFor(() => (existsSync(file) && readFileSync(file, 'utf8').includes('recording.completed')) || undefined, 10_000);
  const types = readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { type: string }).type);
  t.same(types, ['recording.started', 'recording.completed']);
});
