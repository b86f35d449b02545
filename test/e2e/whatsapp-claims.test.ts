import { connect } from 'amqplib';
import t from 'tap';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { metricValue, startTestApp, TEST_API_KEY } from '../helpers/app.js';
import { AMQP_URL, uniqueNames } from '../helpers/events-amqp.js';
import { RawClient, requestHead } from '../helpers/raw-http.js';
import { eventsOfType, postAudio, storedKeys } from '../helpers/whatsapp-app.js';
import { upsertEnvelope } from '../helpers/whatsapp-envelope.js';
import { waitFor } from '../helpers/wait-for.js';

/** Starts an upload of `note` for (instance, messageId) on a raw socket, sends `sent` bytes and stalls. */
async function stalledUpload(port: number, instance: string, messageId: string, note: Buffer, sent = 2000): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.write(
    requestHead('POST', '/v1/whatsapp/audio', {
      apikey: TEST_API_KEY,
      'content-type': 'audio/ogg; codecs=opus',
      'x-instance': instance,
      'x-chat-id': 'chat@s.whatsapp.net',
      'x-message-id': messageId,
      'content-length': note.length,
    }),
  );
  await c.write(note.subarray(0, sent));
  return c;
}

t.test('a stalled upload answered 408 releases its idempotency claim at once: the retry is stored', async (t) => {
  const ta = await startTestApp({ server: { bodyIdleTimeoutSec: 1 } });
  t.teardown(() => ta.close());
  const note = readFixture(await opusVoiceNote());
  const stalled = await stalledUpload(ta.app.listenPort, 'claims', 'STALL1', note);
  const [answer] = await stalled.answers(1);
  t.equal(answer?.status, 408, 'the stall is answered 408');
  t.match(JSON.parse(answer?.body.toString() ?? 'null'), { error: { code: 'REQUEST_TIMEOUT' } });
  await stalled.write(note.subarray(2000)); // the rest arrives late: never read
  const retry = await postAudio(ta.baseUrl, note, { apikey: TEST_API_KEY, 'content-type': 'audio/ogg', 'x-instance': 'claims', 'x-chat-id': 'chat@s.whatsapp.net', 'x-message-id': 'STALL1' });
  t.equal(retry.status, 201, 'the complete retry is stored, not held behind the dead request');
  await stalled.ended;
  t.same(await storedKeys(ta.app), [retry.body['key']], 'one object');
  t.equal(eventsOfType(ta.dataDir, 'voicenote.stored').length, 1, 'one event');
  t.equal(await metricValue(ta.baseUrl, 'audio_ingestd_voicenotes_total', 'outcome="timeout",format="unknown"'), 1, 'counted as a timeout, not a client abort');
});

t.test('a request waiting for the same key stops waiting when its own client goes away', async (t) => {
  const ta = await startTestApp({ server: { bodyIdleTimeoutSec: 4 } });
  t.teardown(() => ta.close());
  const note = readFixture(await opusVoiceNote());
  const holder = await stalledUpload(ta.app.listenPort, 'claims', 'WAIT1', note);
  const requests = (status: number): Promise<number> => metricValue(ta.baseUrl, 'audio_ingestd_http_requests_total', `route="whatsapp_audio",status="${status}"`);
  const waiter = await stalledUpload(ta.app.listenPort, 'claims', 'WAIT1', note, note.length);
  await new Promise((r) => setTimeout(r, 300));
  waiter.destroy();
  await waitFor(async () => (await requests(499)) === 1);
  t.equal(await requests(408), 0, 'the waiter was given up (499) while the holder still waited for its body');
  const [answer] = await holder.answers(1);
  t.equal(answer?.status, 408);
  t.same(await storedKeys(ta.app), []);
});

t.test('the Evolution AMQP consumer and the HTTP routes share the claims: one waits for the other, nothing is stored twice', async (t) => {
  const { prefix } = uniqueNames('whatsapp-claims');
  const exchange = `${prefix}.evolution_exchange`;
  const queue = `${prefix}.upserts`;
  const ta = await startTestApp({ server: { bodyIdleTimeoutSec: 2 }, events: { amqpUrl: AMQP_URL }, whatsapp: { amqpConsumer: { enabled: true, exchange, queue, prefetch: 2 } } });
  const model = await connect(AMQP_URL);
  const ch = await model.createChannel();
  t.teardown(async () => {
    await ta.close();
    await ch.deleteQueue(queue).catch(() => undefined);
    await ch.deleteQueue(`${queue}.dead-letter`).catch(() => undefined);
    await ch.deleteExchange(exchange).catch(() => undefined);
    await model.close();
  });
  await waitFor(() => ta.app.whatsappAmqp!.isOpen());
  const note = readFixture(await opusVoiceNote());

  // an HTTP upload holds the claim of evo-c:3EB0C1 and stalls; the same message comes over AMQP
  const stalled = await stalledUpload(ta.app.listenPort, 'evo-c', '3EB0C1', note);
  ch.publish(exchange, 'messages.upsert', Buffer.from(JSON.stringify(upsertEnvelope(note, { instance: 'evo-c', id: '3EB0C1' }))), { persistent: true });
  const [answer] = await stalled.answers(1);
  t.equal(answer?.status, 408, 'the stalled HTTP upload is answered 408');
  // the event is appended after the object is stored: wait for both, then count
  await waitFor(async () => (await storedKeys(ta.app)).length === 1 && (await ch.checkQueue(queue)).messageCount === 0 && eventsOfType(ta.dataDir, 'voicenote.stored').length > 0);
  t.equal(eventsOfType(ta.dataDir, 'voicenote.stored').length, 1, 'the AMQP message was stored once the claim was released');

  // the HTTP retry and the webhook route answer the repeat from the record
  const retry = await postAudio(ta.baseUrl, note, { apikey: TEST_API_KEY, 'content-type': 'audio/ogg', 'x-instance': 'evo-c', 'x-chat-id': 'chat@s.whatsapp.net', 'x-message-id': '3EB0C1' });
  t.equal(retry.status, 200, 'the HTTP retry is a repeat');
  const hook = await fetch(`${ta.baseUrl}/v1/whatsapp/messages`, { method: 'POST', headers: { apikey: TEST_API_KEY, 'content-type': 'application/json' }, body: JSON.stringify(upsertEnvelope(note, { instance: 'evo-c', id: '3EB0C1' })) });
  t.equal(hook.status, 200, 'the webhook repeat too');
  t.equal((await hook.json() as { id: string }).id, retry.body['id'], 'with the same answer');
  t.equal(eventsOfType(ta.dataDir, 'voicenote.stored').length, 1, 'still one event');
});
