import { connect } from 'amqplib';
import t from 'tap';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { startTestApp } from '../helpers/app.js';
import { AMQP_URL, uniqueNames } from '../helpers/events-amqp.js';
import { storedKeys } from '../helpers/whatsapp-app.js';
import { upsertEnvelope } from '../helpers/whatsapp-envelope.js';
import { waitFor } from '../helpers/wait-for.js';

t.test('Evolution exchange consumer: stores, acks, dead-letters poison', async (t) => {
  const { prefix } = uniqueNames('whatsapp-amqp');
  const exchange = `${prefix}.evolution_exchange`;
  const queue = `${prefix}.upserts`;
  const ta = await startTestApp({ events: { amqpUrl: AMQP_URL }, whatsapp: { amqpConsumer: { enabled: true, exchange, queue, prefetch: 2 } } });
  const model = await connect(AMQP_URL);
  const ch = await model.createChannel();
  t.teardown(async () => {
    await ta.close();
    await ch.deleteQueue(queue).catch(() => undefined);
    await ch.deleteQueue(`${queue}.dead-letter`).catch(() => undefined);
    await ch.deleteExchange(exchange).catch(() => undefined);
    await model.close();
  });
  const consumer = ta.app.whatsappAmqp!;
  await waitFor(() => consumer.isOpen());

  const note = readFixture(await opusVoiceNote());
  const publish = (body: Buffer): boolean => ch.publish(exchange, 'messages.upsert', body, { persistent: true });
  publish(Buffer.from(JSON.stringify(upsertEnvelope(note, { instance: 'amqp-1', id: '3EB0BBB1' }))));
  publish(Buffer.from(JSON.stringify(upsertEnvelope(note, { instance: 'amqp-1', id: '3EB0BBB1' }))));
  publish(Buffer.from('{ this is not json'));
  publish(Buffer.from(JSON.stringify(upsertEnvelope(Buffer.from('no audio in here, only text'), { instance: 'amqp-1', id: '3EB0BAD1' }))));
  publish(Buffer.from(JSON.stringify(upsertEnvelope(note, { instance: 'amqp-1', message: { conversation: 'text' } }))));

  const dead = `${queue}.dead-letter`;
  await waitFor(async () => (await ch.checkQueue(dead)).messageCount === 2);
  await waitFor(async () => (await ch.checkQueue(queue)).messageCount === 0 && (await storedKeys(ta.app)).length === 1);
  t.same(await storedKeys(ta.app), ['whatsapp/default/amqp-1/2023/11/14/3EB0BBB1.wav'], 'the redelivered note is stored once');
  const settled = ta.logs.filter((l) => l['msg'] === 'amqp message not stored').map((l) => [l['code'], l['verdict']]);
  t.same(settled.sort(), [['INVALID_JSON', 'dead-letter'], ['UNKNOWN_FORMAT', 'dead-letter']]);
  const first = await ch.get(dead, { noAck: true });
  t.ok(first, 'poison messages wait in the dead-letter queue');
});
