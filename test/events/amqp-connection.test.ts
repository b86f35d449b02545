import { once } from 'node:events';
import { connect as tcpConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect, type Channel } from 'amqplib';
import t from 'tap';
import { AmqpConnection, closeConnection } from '../../src/events/amqp-connection.js';
import { AMQP_URL, uniqueNames } from '../helpers/events-amqp.js';
import { waitFor } from '../helpers/wait-for.js';

t.setTimeout(120_000);

const broker = new URL(AMQP_URL);

/** Connection.Close (class 10, method 50) in a method frame on channel 0. */
function holdsConnectionClose(chunk: Buffer): boolean {
  for (let i = 0; i + 11 <= chunk.length; i++) {
    if (chunk[i] === 1 && chunk[i + 1] === 0 && chunk[i + 2] === 0 && chunk.readUInt32BE(i + 7) === 0x000a0032) return true;
  }
  return false;
}

/**
 * A TCP proxy to the broker. With `freezeOnClose`, a connection whose client sends
 * Connection.Close goes silent from then on, both ways, its sockets left open: the broker
 * never sees the close and the client never gets CloseOk (a peer gone without a FIN).
 */
async function brokerProxy(t: { teardown(fn: () => unknown): void }, freezeOnClose: boolean): Promise<{ url: string; frozen: number }> {
  const sockets = new Set<Socket>();
  const state = { url: '', frozen: 0 };
  const server = createServer((client) => {
    const upstream = tcpConnect(Number(broker.port || 5672), broker.hostname);
    sockets.add(client).add(upstream);
    let frozen = false;
    client.on('data', (chunk: Buffer) => {
      if (frozen) return;
      if (freezeOnClose && holdsConnectionClose(chunk)) {
        frozen = true;
        state.frozen++;
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!frozen) client.write(chunk);
    });
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('error', () => undefined);
      a.on('close', () => {
        if (!frozen) b.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const u = new URL(AMQP_URL);
  u.hostname = '127.0.0.1';
  u.port = String((server.address() as AddressInfo).port);
  state.url = u.toString();
  return state;
}

t.test("amqplib's close() never settles when the socket dies before CloseOk; closeConnection returns", async (t) => {
  const model = await connect(AMQP_URL);
  model.on('error', () => undefined);
  let settled = false;
  const raw = model.close().then(
    () => (settled = true),
    () => (settled = true),
  );
  void raw;
  const stream = (model as unknown as { connection: { stream: Socket } }).connection.stream;
  stream.destroy(new Error('reset')); // the socket dies (a reset) before the broker's CloseOk
  await closeConnection(model); // returns: the socket's close ended the wait
  await new Promise((r) => setTimeout(r, 500));
  t.equal(settled, false, "amqplib's own close() is still pending: awaiting it alone would wait for ever");
  t.ok(stream.destroyed);
});

t.test('closeConnection returns when the broker never answers the close (a silent peer), and drops the socket', async (t) => {
  const proxy = await brokerProxy(t, true);
  const model = await connect(proxy.url);
  model.on('error', () => undefined);
  const stream = (model as unknown as { connection: { stream: Socket } }).connection.stream;
  await closeConnection(model, 300);
  t.equal(proxy.frozen, 1, 'the close went into the silent proxy');
  t.ok(stream.destroyed, 'the socket is destroyed, not left open');
});

t.test('a connection lost while its close cannot complete is reopened', async (t) => {
  const proxy = await brokerProxy(t, true);
  const { connectionName } = uniqueNames('close-hang');
  const conn = new AmqpConnection<Channel>({
    url: proxy.url,
    connectionName,
    openChannel: (m) => m.createChannel(),
    setup: async () => undefined,
    reconnect: { baseMs: 50, maxMs: 200 },
  });
  conn.start();
  const first = await conn.waitOpen(10_000);
  t.equal(conn.openCount, 1);
  // the broker closes the channel (404 on a missing exchange); the loop then closes the
  // connection, whose Connection.Close the proxy swallows: no CloseOk, no FIN
  first.on('error', () => undefined);
  await first.checkExchange(`${connectionName}.missing`).catch(() => undefined);
  await waitFor(() => conn.openCount >= 2 || undefined, 30_000, 'a second connection');
  t.equal(proxy.frozen, 1, 'the first connection went silent at its close');
  const second = await conn.waitOpen(5_000);
  t.not(second, first, 'a new channel on a new connection');
  t.ok(await second.checkExchange('amq.topic'), 'and it works');
  await conn.stop(); // its close goes into the silent proxy too: stop still returns
});
