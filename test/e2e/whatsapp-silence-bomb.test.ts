import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startTestApp } from '../helpers/app.js';
import { ENCODER_FFMPEG } from '../helpers/audio-fixtures.js';
import { outboxEvents } from '../helpers/egress.js';
import { audioHeaders, postAudio } from '../helpers/whatsapp-app.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('a small note of long silence declared short is refused without decoding it all', async (t) => {
  const dir = await tempDir(t, 'aid-bomb-');
  const file = join(dir, 'silence.ogg');
  // 10 minutes of silence: a few kilobytes of Opus, 19 MB of PCM once decoded.
  execFileSync(ENCODER_FFMPEG, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '600', '-c:a', 'libopus', '-b:a', '6k', '-application', 'voip', file]);
  const body = readFileSync(file);
  t.ok(body.length < 400_000, `compressed: ${body.length} bytes`);
  const h = await startTestApp();
  t.teardown(() => h.close());

  const lying = await postAudio(h.baseUrl, body, audioHeaders({ 'x-audio-seconds': '5', 'x-message-id': 'BOMB1' }));
  t.equal(lying.status, 422);
  t.match(lying.body, { error: { code: 'POLICY_REJECTED', message: /declared/ } });
  const rejected = outboxEvents(h).find((e) => e.type === 'voicenote.rejected' && e.message_id === 'BOMB1');
  t.match(rejected, { code: 'POLICY_REJECTED' }, 'voicenote.rejected announces it');
  t.notOk(outboxEvents(h).some((e) => e.type === 'voicenote.stored'), 'nothing stored');

  const honest = await postAudio(h.baseUrl, body, audioHeaders({ 'x-audio-seconds': '600', 'x-message-id': 'BOMB2' }));
  t.equal(honest.status, 201, 'the same note with its true length is stored');
  t.ok(Math.abs((honest.body.durationSec as number) - 600) < 0.05);
});
