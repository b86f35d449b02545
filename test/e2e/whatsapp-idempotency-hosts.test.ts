import t from 'tap';
import { startTestApp } from '../helpers/app.js';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { outboxEvents } from '../helpers/egress.js';
import { S3RVER_BUCKET, startS3rver } from '../helpers/storage-s3rver.js';
import { tempDir } from '../helpers/temp-dir.js';
import { audioHeaders, postAudio } from '../helpers/whatsapp-app.js';

t.test('a retry that lands on another host is answered from the shared record: one object, one event', async (t) => {
  const dir = await tempDir(t, 'aid-idem-hosts-');
  const s3 = await startS3rver(dir);
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  const storage = { driver: 's3' as const, s3: { endpoint: s3.endpoint, bucket: S3RVER_BUCKET, forcePathStyle: true } };
  const a = await startTestApp({ storage });
  const b = await startTestApp({ storage });
  t.teardown(async () => {
    await a.close();
    await b.close();
    await s3.close();
  });
  const note = readFixture(await opusVoiceNote());
  const headers = audioHeaders({ 'x-instance': 'hosts', 'x-message-id': 'MSG-HOSTS-1' });
  const first = await postAudio(a.baseUrl, note, headers);
  t.equal(first.status, 201, 'host A stores');
  const retry = await postAudio(b.baseUrl, note, headers);
  t.equal(retry.status, 200, 'host B recognises the repeat');
  t.same(retry.body, first.body, 'with the same answer');
  const stored = [...outboxEvents(a), ...outboxEvents(b)].filter((e) => e.type === 'voicenote.stored');
  t.equal(stored.length, 1, 'one voicenote.stored for both requests');
  const wavs: string[] = [];
  for await (const o of a.app.store.list('whatsapp/')) if (o.key.endsWith('.wav')) wavs.push(o.key);
  t.same(wavs, [first.body.key], 'one object');
});
