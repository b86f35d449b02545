import t from 'tap';
import { aacM4a, amrNb, mp3, opusVoiceNote, readFixture, speechWav, wavDurationSec } from '../helpers/audio-fixtures.js';
import { startTestApp } from '../helpers/app.js';
import { audioHeaders, eventsOfType, postAudio, sha256Base64, storedKeys, storedWav } from '../helpers/whatsapp-app.js';

const formats = [
  { name: 'ogg-opus', file: opusVoiceNote, type: 'audio/ogg; codecs=opus' },
  { name: 'mp4', file: () => aacM4a(), type: 'audio/mp4' },
  { name: 'mp3', file: mp3, type: 'audio/mpeg' },
  { name: 'amr', file: amrNb, type: 'audio/amr' },
];

t.test('every WhatsApp format is stored as a 16 kHz mono WAV as long as its source', async (t) => {
  const ta = await startTestApp({ whatsapp: { keepOriginal: true } });
  t.teardown(() => ta.close());
  const sourceSec = wavDurationSec(await speechWav());
  for (const f of formats) {
    const media = readFixture(await f.file());
    const headers = audioHeaders({ 'content-type': f.type, 'x-file-length': String(media.length), 'x-file-sha256': sha256Base64(media), 'x-audio-seconds': String(Math.round(sourceSec)), 'x-audio-ptt': 'true', 'x-message-timestamp': '1700000000' });
    const res = await postAudio(ta.baseUrl, media, headers);
    t.equal(res.status, 201, `${f.name}: stored`);
    const body = res.body;
    t.equal(body['status'], 'stored');
    t.equal(body['sampleRate'], 16000);
    t.equal(body['channels'], 1);
    t.match(body['key'], new RegExp(`^whatsapp/default/inst-1/2023/11/14/${headers['x-message-id']}\\.wav$`), `${f.name}: key follows the contract`);
    t.type(body['url'], 'string');
    const wav = await storedWav(ta.app, body['key'] as string);
    t.equal(wav.sampleRate, 16000);
    t.equal(wav.channels, 1);
    t.ok(Math.abs(wav.durationSec - sourceSec) < 0.05, `${f.name}: ${wav.durationSec.toFixed(3)} s within 50 ms of ${sourceSec.toFixed(3)} s`);
    t.ok(Math.abs((body['durationSec'] as number) - wav.durationSec) < 0.001, 'answered duration is the stored one');
    const head = await ta.app.store.head(body['key'] as string);
    t.match(head?.metadata, { tenant: 'default', source: 'whatsapp', 'sample-rate': '16000', channels: '1', format: f.name });
    const event = eventsOfType(ta.dataDir, 'voicenote.stored').find((e) => e['voicenote_id'] === body['id']);
    t.match(event, { tenant: 'default', instance: 'inst-1', message_id: headers['x-message-id'], key: body['key'], format: f.name, ptt: true, sample_rate: 16000 }, `${f.name}: event in the outbox`);
    const original = await ta.app.store.get(event?.['original_key'] as string);
    t.ok(original.equals(media), `${f.name}: original kept byte for byte`);
  }
});

t.test('idempotency, declared facts and policy', async (t) => {
  const ta = await startTestApp({ whatsapp: { filter: { maxSec: 5 } } });
  t.teardown(() => ta.close());
  const note = readFixture(await opusVoiceNote());

  t.test('a repeated Idempotency-Key answers 200 with the same body and stores nothing new', async (t) => {
    const headers = audioHeaders({ 'x-instance': 'idem', 'x-audio-seconds': '4', 'idempotency-key': 'k-1' });
    const small = await ta.app.durationFilter.setInstanceFilter('idem', { maxSec: 60 });
    t.equal(small.maxSec, 60);
    const first = await postAudio(ta.baseUrl, note, headers);
    t.equal(first.status, 201);
    const again = await postAudio(ta.baseUrl, note, { ...headers, 'x-message-id': 'OTHER' });
    t.equal(again.status, 200);
    t.same(again.body, first.body);
    const [a, b] = await Promise.all([
      postAudio(ta.baseUrl, note, { ...headers, 'idempotency-key': 'k-2' }),
      postAudio(ta.baseUrl, note, { ...headers, 'idempotency-key': 'k-2' }),
    ]);
    t.same([a.status, b.status].sort(), [200, 201], 'two concurrent requests: one stores, the other is the repeat');
    t.same(a.body, b.body);
    t.equal((await storedKeys(ta.app)).filter((k) => k.includes('/idem/')).length, 1, 'one object for both keys (same message id)');
    const stored = eventsOfType(ta.dataDir, 'voicenote.stored').filter((e) => e['instance'] === 'idem');
    t.equal(stored.length, 2, 'one event per stored key');
  });

  t.test('declared too short: 422 before the body is read, with a rejection and a filter event', async (t) => {
    const headers = audioHeaders({ 'x-instance': 'short', 'x-audio-seconds': '1' });
    const res = await postAudio(ta.baseUrl, Buffer.from('this is not even audio, and it is never read'), headers);
    t.equal(res.status, 422);
    t.match(res.body, { error: { code: 'DURATION_TOO_SHORT', details: { minSec: 3, seconds: 1 } } });
    t.match(eventsOfType(ta.dataDir, 'voicenote.rejected').find((e) => e['instance'] === 'short'), { code: 'DURATION_TOO_SHORT', message_id: headers['x-message-id'], duration_sec: 1 });
    t.match(eventsOfType(ta.dataDir, 'filter.applied').find((e) => e['instance'] === 'short'), { filter: 'duration', action: 'rejected', reason: 'DURATION_TOO_SHORT', min_sec: 3, max_sec: 5 });
    t.same((await storedKeys(ta.app)).filter((k) => k.includes('/short/')), []);
  });

  t.test('decoded too long: 422 after decoding, nothing stored', async (t) => {
    const res = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'long' }));
    t.equal(res.status, 422);
    t.match(res.body, { error: { code: 'DURATION_TOO_LONG', details: { maxSec: 5 } } });
    t.match(eventsOfType(ta.dataDir, 'voicenote.rejected').find((e) => e['instance'] === 'long'), { code: 'DURATION_TOO_LONG' });
    t.same((await storedKeys(ta.app)).filter((k) => k.includes('/long/')), []);
  });

  t.test('sha256 and length are verified', async (t) => {
    await ta.app.durationFilter.setInstanceFilter('verify', { maxSec: 60 });
    const wrongHash = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'verify', 'x-file-sha256': sha256Base64(Buffer.from('other')) }));
    t.equal(wrongHash.status, 400);
    t.match(wrongHash.body, { error: { code: 'HASH_MISMATCH' } });
    const short = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'verify', 'x-file-length': String(note.length + 1) }));
    t.match(short, { status: 400, body: { error: { code: 'LENGTH_MISMATCH', details: { declared: note.length + 1, received: note.length } } } });
    const long = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'verify', 'x-file-length': String(note.length - 1) }));
    t.match(long, { status: 400, body: { error: { code: 'LENGTH_MISMATCH' } } });
    const badDigest = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'verify', 'x-file-sha256': 'not-a-digest' }));
    t.match(badDigest, { status: 400, body: { error: { code: 'INVALID_PARAMETER' } } });
    t.same((await storedKeys(ta.app)).filter((k) => k.includes('/verify/')), []);
    const ok = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-instance': 'verify', 'x-file-length': String(note.length), 'x-file-sha256': sha256Base64(note) }));
    t.equal(ok.status, 201, 'the matching declaration is stored');
  });

  t.test('bodies that are not decodable audio answer 415 with precise codes', async (t) => {
    await ta.app.durationFilter.setInstanceFilter('bad', { maxSec: 60 });
    const corrupt = Buffer.concat([note.subarray(0, 200), Buffer.alloc(4000, 0x5a)]);
    const cases: [string, Buffer, string][] = [
      ['corrupt', corrupt, 'CORRUPT_AUDIO'],
      ['truncated', note.subarray(0, Math.floor(note.length / 2)), 'TRUNCATED_AUDIO'],
      ['zero-length', Buffer.alloc(0), 'EMPTY_BODY'],
      ['not audio', Buffer.from('<html><body>a web page, not a voice note</body></html>'), 'UNKNOWN_FORMAT'],
    ];
    for (const [name, body, code] of cases) {
      const res = await postAudio(ta.baseUrl, body, audioHeaders({ 'x-instance': 'bad' }));
      t.equal(res.status, 415, name);
      t.equal((res.body['error'] as { code: string }).code, code, name);
    }
    const rejected = eventsOfType(ta.dataDir, 'voicenote.rejected').filter((e) => e['instance'] === 'bad').map((e) => e['code']);
    t.same(rejected.sort(), ['CORRUPT_AUDIO', 'EMPTY_BODY', 'TRUNCATED_AUDIO', 'UNKNOWN_FORMAT']);
    t.same((await storedKeys(ta.app)).filter((k) => k.includes('/bad/')), []);
  });
});

t.test('with whatsapp.opusWorkers 0 notes are decoded on the event loop, to the same WAV', async (t) => {
  const note = readFixture(await opusVoiceNote());
  const stored: Buffer[] = [];
  for (const opusWorkers of [0, 2] as const) {
    const ta = await startTestApp({ whatsapp: { opusWorkers } });
    t.teardown(() => ta.close());
    const res = await postAudio(ta.baseUrl, note, audioHeaders({ 'x-message-id': `W${opusWorkers}` }));
    t.equal(res.status, 201, `opusWorkers ${opusWorkers}: stored`);
    stored.push((await storedWav(ta.app, res.body['key'] as string)).bytes);
  }
  t.ok(stored[0]!.equals(stored[1]!), 'byte-identical WAVs');
});
