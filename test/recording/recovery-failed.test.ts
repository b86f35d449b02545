import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestApp } from '../helpers/app.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Every recording.failed line in the NDJSON event log, duplicates included. */
function failedLines(dataDir: string): Record<string, unknown>[] {
  const log = join(dataDir, 'events.ndjson');
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.type === 'recording.failed');
}

t.test('a spooled master recovery cannot complete for good ends in one recording.failed, and later starts leave it alone', async (t) => {
  const dataDir = await tempDir(t, 'aid-recovery-failed-');
  // what an older layout left after a crash: a manifest this version does not read, and audio
  const dir = join(dataDir, 'uploads', 'rec-old');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({
    version: 1, recordingId: 'rec-old', key: 'recordings/acme/room-1/alice/TR_1/rec-old.wav', contentType: 'audio/wav',
    format: { sampleRate: 48000, channels: 1 }, metadata: { tenant: 'acme', source: 'livekit', 'room-name': 'room-1', participant: 'alice', 'track-id': 'TR_1' },
    finalMetadata: null, partSize: 5242880, uploadId: null, parts: [], createdAt: new Date().toISOString(), completed: null,
  }));
  writeFileSync(join(dir, 'part-000001.pcm'), Buffer.alloc(96_000, 1));

  const first = await startTestApp({ dataDir });
  await first.app.stop({ drainSeconds: 0 });
  const events = failedLines(dataDir);
  t.equal(events.length, 1, 'one recording.failed');
  t.match(events[0], {
    type: 'recording.failed', tenant: 'acme', recording_id: 'rec-old', status: 'failed', end_reason: 'aborted', s3_key_master: null,
    room_name: 'room-1', user_id: 'alice', track_id: 'TR_1', duration_sec: 1, error: /layout/,
  });
  t.same(readdirSync(join(dataDir, 'uploads')), [], 'nothing left to recover');
  t.ok(existsSync(join(dataDir, 'uploads-failed', 'rec-old', 'part-000001.pcm')), 'the audio is kept aside');

  const second = await startTestApp({ dataDir });
  await second.app.stop({ drainSeconds: 0 });
  t.equal(failedLines(dataDir).length, 1, 'the next start announces nothing again');
  t.match(second.logs.filter((l) => String(l.msg).includes('master upload')), [], 'and does not try it');
});
