import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { randomStereo } from '../helpers/egress.js';
import { configFile, daemonEgressUrl, EventCollector, isolatedBroker, openEgress, reportFigure, sendPaced } from '../helpers/reliability.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('broker down mid-stream and back: every event arrives', async (t) => {
  const broker = await isolatedBroker('broker');
  const collector = await EventCollector.open(broker.url, 'audio.events');
  // Chunk objects on: every 2 s chunk is an event too, so many events fall inside the outage.
  const d = await startDaemon({ AMQP_URL: broker.url, AUDIO_INGEST_CONFIG: configFile({ storage: { chunkObjects: true } }) });
  t.teardown(async () => {
    if (!t.passing()) t.comment(d.output().split('\n').filter((l) => /"level":"(warn|error)"/.test(l)).slice(-30).join('\n'));
    d.child.kill('SIGKILL');
    await collector.close();
    await broker.remove();
  });
  await waitFor(async () => (await fetch(`${d.baseUrl}/ready`)).status === 200 || undefined, 10_000, 'ready with the broker');

  const run = async (room: string, seconds: number, speed: number, seed: number): Promise<number> => {
    const { ws, closed } = await openEgress(await daemonEgressUrl(d.port, { roomName: room, trackId: `TR_${room}` }));
    const sent = await sendPaced(ws, randomStereo(48000 * seconds, seed), { speed });
    ws.close();
    await closed;
    return sent;
  };
  // Two 8 s streams span the outage; two 3 s streams start and end inside it.
  const long = [run('broker-a', 8, 1, 1), run('broker-b', 8, 1, 2)];
  await sleep(2000);
  const closedConnections = await broker.down();
  await sleep(300);
  const readyWhileDown = (await fetch(`${d.baseUrl}/ready`)).status;
  const inside = await Promise.all([run('broker-c', 3, 2, 3), run('broker-d', 3, 2, 4)]);
  await sleep(3000);
  await broker.up();
  const sentBytes = (await Promise.all(long)).reduce((s, v) => s + v, 0) + inside.reduce((s, v) => s + v, 0);

  // per stream: started + one chunk per 2 s (the last one partial) + completed
  const expected = 2 * (1 + 4 + 1) + 2 * (1 + 2 + 1);
  await waitFor(() => collector.byId.size >= expected || undefined, 40_000, `${expected} events`);
  await sleep(500);
  t.ok(closedConnections >= 1, `the daemon's connections were closed by the broker (${closedConnections})`);
  t.equal(readyWhileDown, 503, '/ready is 503 while the broker is away');
  t.equal(collector.byId.size, expected, 'every event arrived exactly once after deduplication');
  t.equal(collector.ofType('recording.completed').length, 4);
  t.equal(collector.ofType('recording.started').length, 4);
  t.equal(collector.ofType('recording.chunk').length, 12);
  for (const c of collector.ofType('recording.completed')) t.equal(c.status, 'completed');
  t.match(d.output(), /amqp connection lost; reconnecting/);
  t.match(d.output(), /amqp reconnected/);
  d.child.kill('SIGTERM');
  const code = await d.exited;
  t.equal(code, 0);
  reportFigure({
    fault: 'broker down 5 s mid-stream (vhost permissions revoked, connections closed by the broker) and back',
    checked: 'every event (started, chunk, completed of 4 streams, 2 of them wholly inside the outage) delivered; /ready 503 meanwhile',
    bytesSent: sentBytes, eventsExpected: expected, eventsDelivered: collector.byId.size,
    notes: `${collector.deliveries} deliveries for ${collector.byId.size} ids (duplicates allowed: at-least-once)`,
    ok:
      closedConnections >= 1 &&
      readyWhileDown === 503 &&
      collector.byId.size === expected &&
      collector.ofType('recording.completed').every((c) => c.status === 'completed') &&
      collector.ofType('recording.completed').length === 4 &&
      collector.ofType('recording.chunk').length === 12 &&
      code === 0,
  });
});

t.test('broker refusing publishes (queue full, reject-publish): events are retried and delivered once it accepts again', async (t) => {
  const broker = await isolatedBroker('refuse');
  const collector = await EventCollector.open(broker.url, 'audio.events');
  const d = await startDaemon({ AMQP_URL: broker.url });
  const ctl = (...args: string[]): Promise<unknown> => new Promise((resolve, reject) => execFile('rabbitmqctl', ['-q', ...args], (err, out) => (err ? reject(err) : resolve(out))));
  t.teardown(async () => {
    d.child.kill('SIGKILL');
    await collector.close();
    await broker.remove();
  });
  await waitFor(async () => (await fetch(`${d.baseUrl}/ready`)).status === 200 || undefined, 10_000, 'ready');
  // Every queue of the vhost refuses new messages: the broker nacks each publish routed to one.
  await ctl('set_policy', '-p', broker.vhost, '--apply-to', 'queues', 'refuse-all', '.*', '{"max-length":0,"overflow":"reject-publish"}');
  await sleep(500);
  const { ws, closed } = await openEgress(await daemonEgressUrl(d.port, { roomName: 'refused', trackId: 'TR_r' }));
  const sent = await sendPaced(ws, randomStereo(48000, 9), { speed: 4 });
  ws.close();
  await closed;
  await sleep(3000);
  t.equal(collector.byId.size, 0, 'nothing got through while the broker refused');
  await ctl('clear_policy', '-p', broker.vhost, 'refuse-all');
  await waitFor(() => (collector.byId.size >= 2 ? true : undefined), 40_000, 'started + completed after the broker accepts again');
  t.equal(collector.ofType('recording.started').length, 1);
  t.equal(collector.ofType('recording.completed').length, 1);
  d.child.kill('SIGTERM');
  const code = await d.exited;
  t.equal(code, 0);
  reportFigure({
    fault: 'broker refusing publishes (every queue at max-length 0 with reject-publish) for ~4 s',
    checked: 'the publishes were nacked, kept in the outbox and retried; started + completed delivered once the broker accepted again',
    bytesSent: sent, eventsExpected: 2, eventsDelivered: collector.byId.size,
    ok: collector.ofType('recording.started').length === 1 && collector.ofType('recording.completed').length === 1 && code === 0,
  });
});
