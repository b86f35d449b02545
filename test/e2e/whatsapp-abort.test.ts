import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import { mp3, opusVoiceNote, readFixture } from '../helpers/audio-fixtures.js';
import { metricValue, startTestApp } from '../helpers/app.js';
import { audioHeaders, eventsOfType, ffmpegChildren, openUpload, readEvents, storedKeys } from '../helpers/whatsapp-app.js';
import { waitFor } from '../helpers/wait-for.js';

const run = promisify(execFile);

t.test('a client that aborts mid-upload leaves no object, no event and no ffmpeg', async (t) => {
  const ta = await startTestApp();
  t.teardown(() => ta.close());
  const media = readFixture(await mp3());
  const before = readEvents(ta.dataDir).length;
  const upload = openUpload(ta.baseUrl, audioHeaders({ 'content-type': 'audio/mpeg', 'x-instance': 'abort' }), media.subarray(0, Math.floor(media.length / 2)));
  await waitFor(async () => (await ffmpegChildren()) > 0);
  t.equal(await metricValue(ta.baseUrl, 'audio_ingestd_ffmpeg_processes'), 1, 'the decode is running');
  upload.abort();
  await waitFor(() => ta.logs.some((l) => l['msg'] === 'voice note aborted by the client'));
  await waitFor(async () => (await ffmpegChildren()) === 0);
  t.equal(await metricValue(ta.baseUrl, 'audio_ingestd_ffmpeg_processes'), 0, 'the pool slot was released');
  t.same(await storedKeys(ta.app), [], 'no object');
  t.equal(readEvents(ta.dataDir).length, before, 'no event');
  t.equal(await metricValue(ta.baseUrl, 'audio_ingestd_voicenotes_total', 'outcome="aborted",format="unknown"'), 1);

  // the daemon is unaffected: a complete streamed upload of the same note is stored
  const note = readFixture(await opusVoiceNote());
  const again = openUpload(ta.baseUrl, audioHeaders({ 'x-instance': 'abort' }), note.subarray(0, 1000));
  again.end(note.subarray(1000));
  const res = await again.response;
  t.equal(res.status, 201);
  t.equal(eventsOfType(ta.dataDir, 'voicenote.stored').length, 1);
});

t.test('whatsapp.decoderCpuSec and decoderMemoryMiB are the limits of every ffmpeg child', async (t) => {
  const ta = await startTestApp({ whatsapp: { decoderCpuSec: 7, decoderMemoryMiB: 700 } });
  t.teardown(() => ta.close());
  const media = readFixture(await mp3());
  const upload = openUpload(ta.baseUrl, audioHeaders({ 'content-type': 'audio/mpeg', 'x-instance': 'limits' }), media.subarray(0, Math.floor(media.length / 2)));
  let pid: string | undefined;
  // /bin/sh sets the limits, then execs ffmpeg in the same process
  await waitFor(async () => {
    const { stdout } = await run('pgrep', ['-P', String(process.pid), 'ffmpeg']).catch(() => ({ stdout: '' }));
    pid = stdout.split('\n').find((l) => l.trim() !== '');
    return pid !== undefined;
  });
  const limits = readFileSync(`/proc/${pid!.trim()}/limits`, 'utf8');
  t.match(limits, /Max cpu time\s+7\s+7\s+seconds/);
  t.match(limits, new RegExp(`Max address space\\s+${700 * 1024 * 1024}\\s+${700 * 1024 * 1024}\\s+bytes`));
  upload.abort();
  await waitFor(async () => (await ffmpegChildren()) === 0);
});
