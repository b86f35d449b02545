import t from 'tap';
import { AmqpRoomSignals, LocalRoomSignals, type RoomFinished } from '../../src/events/room-signals.js';
import { AMQP_URL, closeConnectionsNamed, deleteTopology, uniqueNames } from '../helpers/events-amqp.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('a room signal from one publisher reaches two subscribing hosts, also after a reconnect', async (t) => {
  const { prefix, connectionName } = uniqueNames('signals');
  const exchange = `${prefix}.audio.signals`;
  const hostA = new AmqpRoomSignals({ url: AMQP_URL, exchange, connectionName: `${connectionName}-a`, reconnect: { baseMs: 20, maxMs: 100 } });
  const hostB = new AmqpRoomSignals({ url: AMQP_URL, exchange, connectionName: `${connectionName}-b`, reconnect: { baseMs: 20, maxMs: 100 } });
  const publisher = new AmqpRoomSignals({ url: AMQP_URL, exchange, connectionName: `${connectionName}-p` });
  t.teardown(async () => {
    await Promise.all([hostA.stop(), hostB.stop(), publisher.stop()]);
    await deleteTopology([exchange], []);
  });
  const gotA: RoomFinished[] = [];
  const gotB: RoomFinished[] = [];
  hostA.onRoomFinished((s) => gotA.push(s));
  hostB.onRoomFinished((s) => gotB.push(s));
  await Promise.all([hostA.start(), hostB.start(), publisher.start()]);
  t.ok(hostA.ready() && hostB.ready() && publisher.ready());

  await publisher.publishRoomFinished({ tenant: 't1', roomName: 'room-1' });
  await waitFor(() => gotA.length >= 1 && gotB.length >= 1);
  t.same(gotA, [{ tenant: 't1', roomName: 'room-1' }]);
  t.same(gotB, [{ tenant: 't1', roomName: 'room-1' }]);

  // host B's connection is cut by the broker: it re-declares its queue and hears the next signal
  t.equal(await closeConnectionsNamed(`${connectionName}-b`), 1);
  await waitFor(() => !hostB.ready());
  await waitFor(() => hostB.ready());
  await publisher.publishRoomFinished({ tenant: 't1', roomName: 'room-2' });
  await waitFor(() => gotA.length >= 2 && gotB.length >= 2);
  t.same(gotB.map((s) => s.roomName), ['room-1', 'room-2']);
});

t.test('without a broker the in-process bus has the same interface', async (t) => {
  const bus = new LocalRoomSignals();
  bus.start();
  const got: RoomFinished[] = [];
  const off = bus.onRoomFinished((s) => got.push(s));
  bus.onRoomFinished((s) => got.push({ ...s, roomName: `${s.roomName}!` }));
  await bus.publishRoomFinished({ tenant: 't', roomName: 'r' });
  off();
  await bus.publishRoomFinished({ tenant: 't', roomName: 's' });
  t.same(got.map((s) => s.roomName), ['r', 'r!', 's!']);
  await bus.stop();
});
