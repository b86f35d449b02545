import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { startDaemon } from '../helpers/daemon.js';
import { RawClient, requestHead } from '../helpers/raw-http.js';
import { E2E_API_KEY, ndjsonEvents } from '../helpers/reliability.js';

const uploadHead = (messageId: string, length: number): string =>
  requestHead('POST', '/v1/whatsapp/audio', {
    apikey: E2E_API_KEY,
    'content-type': 'audio/ogg; codecs=opus',
    'x-instance': 'drain',
    'x-chat-id': 'chat@s.whatsapp.net',
    'x-message-id': messageId,
    'content-length': length,
  });

t.test('SIGTERM waits for an upload already accepted: it gets its real answer, then the daemon stops', async (t) => {
  const d = await startDaemon({ DRAIN_SECONDS: '20' });
  t.teardown(() => void d.child.kill('SIGKILL'));
  const note = readFixture(await opusVoiceNote());
  const inflight = await RawClient.connect(d.port);
  await inflight.write(uploadHead('DRAIN1', note.length));
  await inflight.write(note.subarray(0, 3000));
  await sleep(200);

  d.child.kill('SIGTERM');
  await sleep(500);
  // a new upload is refused while the accepted one is still arriving
  const late = await RawClient.connect(d.port);
  await late.write(uploadHead('DRAIN2', note.length));
  await late.write(note);
  const [refused] = await late.answers(1);
  t.equal(refused?.status, 503, 'a request after SIGTERM is refused');
  t.match(JSON.parse(refused?.body.toString() ?? 'null'), { error: { code: 'DRAINING' } });
  t.ok(refused?.headers['retry-after'], 'with Retry-After');
  late.destroy();

  await inflight.write(note.subarray(3000));
  const [answer] = await inflight.answers(1);
  t.equal(answer?.status, 201, `the upload accepted before SIGTERM is stored: ${answer?.body.toString()}`);
  const body = JSON.parse(answer?.body.toString() ?? '{}') as { key: string };
  t.equal(await d.exited, 0, 'then the daemon exits 0');
  const stored = readFileSync(join(d.dataDir, 'store', 'objects', body.key));
  t.equal(stored.toString('ascii', 0, 4), 'RIFF', 'its WAV is in the store');
  t.equal(ndjsonEvents(d.dataDir).filter((e) => e.type === 'voicenote.stored' && e.message_id === 'DRAIN1').length, 1, 'and its event was written');
  t.equal(ndjsonEvents(d.dataDir).filter((e) => e.message_id === 'DRAIN2').length, 0, 'nothing of the refused one');
  t.match(d.output(), /"outcome":"drained"[^\n]*"drain window over"/, 'the drain ended when the request did, not at the window');
});

t.test('past the drain window a request still arriving is given up with 503 DRAINING, and the daemon stops', async (t) => {
  const d = await startDaemon({ DRAIN_SECONDS: '1' });
  t.teardown(() => void d.child.kill('SIGKILL'));
  const note = readFixture(await opusVoiceNote());
  const inflight = await RawClient.connect(d.port);
  await inflight.write(uploadHead('DRAIN3', note.length));
  await inflight.write(note.subarray(0, 3000));
  await sleep(200);
  d.child.kill('SIGTERM');
  const [answer] = await inflight.answers(1);
  t.equal(answer?.status, 503);
  t.match(JSON.parse(answer?.body.toString() ?? 'null'), { error: { code: 'DRAINING' } });
  t.equal(await d.exited, 0);
  t.equal(ndjsonEvents(d.dataDir).filter((e) => e.message_id === 'DRAIN3').length, 0, 'nothing stored or announced');
});
