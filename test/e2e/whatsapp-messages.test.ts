import t from 'tap';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { startTestApp } from '../helpers/app.js';
import { eventsOfType, postJson, storedKeys, storedWav } from '../helpers/whatsapp-app.js';
import { upsertEnvelope } from '../helpers/whatsapp-envelope.js';

t.test('Evolution messages.upsert webhook', async (t) => {
  const ta = await startTestApp();
  t.teardown(() => ta.close());
  const note = readFixture(await opusVoiceNote());

  const env = upsertEnvelope(note, { id: '3EB0AAA1' });
  const first = await postJson(ta.baseUrl, '/v1/whatsapp/messages', env);
  t.equal(first.status, 201);
  t.match(first.body, { status: 'stored', key: 'whatsapp/default/evo-1/2023/11/14/3EB0AAA1.wav', sampleRate: 16000, channels: 1 });
  const wav = await storedWav(ta.app, first.body['key'] as string);
  t.ok(Math.abs(wav.durationSec - (first.body['durationSec'] as number)) < 0.001);
  t.match(eventsOfType(ta.dataDir, 'voicenote.stored')[0], { instance: 'evo-1', chat_id: '5511988887777@s.whatsapp.net', message_id: '3EB0AAA1', ptt: true, message_timestamp: '2023-11-14T22:13:20.000Z' });

  const repeat = await postJson(ta.baseUrl, '/v1/whatsapp/messages/messages-upsert', env);
  t.equal(repeat.status, 200, 'a redelivered webhook is a repeat (by event-by-URL path too)');
  t.same(repeat.body, first.body);
  t.equal((await storedKeys(ta.app)).length, 1);

  const text = await postJson(ta.baseUrl, '/v1/whatsapp/messages', upsertEnvelope(note, { message: { conversation: 'hello' } }));
  t.match(text, { status: 200, body: { status: 'ignored', reason: 'not an audio message' } });
  const other = await postJson(ta.baseUrl, '/v1/whatsapp/messages', { event: 'connection.update', instance: 'evo-1', data: { state: 'open' } });
  t.match(other, { status: 200, body: { status: 'ignored' } });
  const noBytes = await postJson(ta.baseUrl, '/v1/whatsapp/messages', upsertEnvelope(note, { base64: false }));
  t.match(noBytes, { status: 400, body: { error: { code: 'MISSING_PARAMETER', details: { field: 'data.message.base64' } } } });
  const tampered = upsertEnvelope(note);
  ((tampered['data'] as { message: { base64: string } }).message).base64 = note.subarray(0, note.length - 10).toString('base64');
  t.match(await postJson(ta.baseUrl, '/v1/whatsapp/messages', tampered), { status: 400, body: { error: { code: 'LENGTH_MISMATCH' } } });
  const short = await postJson(ta.baseUrl, '/v1/whatsapp/messages', upsertEnvelope(note, { seconds: 2 }));
  t.match(short, { status: 422, body: { error: { code: 'DURATION_TOO_SHORT' } } });
  const garbage = await postJson(ta.baseUrl, '/v1/whatsapp/messages', upsertEnvelope(Buffer.from('definitely not audio bytes at all'), { seconds: 7 }));
  t.match(garbage, { status: 415, body: { error: { code: 'UNKNOWN_FORMAT' } } });
  const unauth = await postJson(ta.baseUrl, '/v1/whatsapp/messages', env, {});
  t.equal(unauth.status, 401);
  t.equal((await storedKeys(ta.app)).length, 1, 'nothing else stored');
});
