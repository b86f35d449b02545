import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import { TEST_API_KEY, TEST_EGRESS_SECRET } from '../helpers/app.js';
import { longOpusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { randomStereo } from '../helpers/egress.js';
import { RawClient, requestHead } from '../helpers/raw-http.js';
import { logLines, ndjsonEvents } from '../helpers/reliability.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('an uncaught exception is logged with its route and request id, and the fatal stop finalizes live recordings without aborting', async (t) => {
  const dataDir = await tempDir(t, 'aid-fatal-');
  const child = spawn(process.execPath, [...process.execArgv, 'test/helpers/fatal-child.ts', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const port = await new Promise<number>((resolve, reject) => {
    const check = (): void => {
      const m = /\{"ready":(\d+)\}/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    child.stdout.on('data', check);
    void exited.then((code) => reject(new Error(`child exited ${code} before ready:\n${out}`)));
  });

  // a live stream, and a long voice note decoding on a worker thread
  const { token } = await mintEgressToken(TEST_EGRESS_SECRET, { tenant: 'default', roomName: 'fatal', trackId: 'TR_fatal' }, 600);
  const ws = await connectEgress(`ws://127.0.0.1:${port}/egress-audio?token=${encodeURIComponent(token)}`);
  ws.on('error', () => undefined);
  const pcm = randomStereo(48000, 5);
  for (let o = 0; o < pcm.length; o += 1920) ws.send(pcm.subarray(o, o + 1920), { binary: true });
  const note = readFixture(await longOpusVoiceNote(60));
  const upload = await RawClient.connect(port);
  await upload.write(requestHead('POST', '/v1/whatsapp/audio', { apikey: TEST_API_KEY, 'content-type': 'audio/ogg', 'x-instance': 'fatal', 'x-chat-id': 'c', 'x-message-id': 'FATAL1', 'content-length': note.length }));
  await upload.write(note.subarray(0, Math.floor(note.length / 2)));
  await sleep(500);

  const boom = await fetch(`http://127.0.0.1:${port}/test/boom`, { method: 'POST', headers: { 'x-request-id': 'boom-1' } });
  t.equal(boom.status, 202);
  t.equal(await exited, 70, 'the process exits 70, by its own hand');
  t.notMatch(out, /FATAL ERROR|napi_throw/, 'no abort from native code');
  const fatal = logLines(out).find((l) => l.msg === 'uncaught exception: stopping');
  t.match(fatal, { level: 'fatal', route: 'boom', requestId: 'boom-1', err: { message: 'a bug in request handling' } }, 'logged with the route and the request id');
  const completed = ndjsonEvents(dataDir).find((e) => e.type === 'recording.completed' && e.track_id === 'TR_fatal');
  t.match(completed, { status: 'completed', end_reason: 'shutdown', size_bytes: MASTER_HEADER_BYTES + pcm.length / 2 }, 'the live recording was finalized with every frame');
  t.equal(ndjsonEvents(dataDir).filter((e) => e.message_id === 'FATAL1').length, 0, 'the note being decoded was given up, not stored');
  const [answer] = await upload.answers(1, 5000);
  t.equal(answer?.status, 503, 'and answered 503 DRAINING');
});
