import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startDaemon } from '../helpers/daemon.js';
import { downmix, randomStereo, readWav } from '../helpers/egress.js';
import { configFile, daemonEgressUrl, EventCollector, isolatedBroker, openEgress, reportFigure, sendPaced, spooledBytes } from '../helpers/reliability.js';
import { S3RVER_BUCKET, s3rverStore, startS3rver } from '../helpers/storage-s3rver.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Bytes of one chunk of the mono 48 kHz master at the default groupSeconds (2 s). */
const CHUNK_BYTES = 2 * 48000 * 2;
/** MasterUpload's in-memory queue in front of the spool files (queueMaxBytes default). */
const QUEUE_BYTES = 1024 * 1024;

t.test('SIGKILL mid-recording, restart on the same DATA_DIR: recovery completes the master and every event is delivered', async (t) => {
  const s3dir = await tempDir(t, 'aid-rel-s3-');
  const dataDir = await tempDir(t, 'aid-rel-crash-');
  const s3 = await startS3rver(s3dir);
  const broker = await isolatedBroker('crash');
  const collector = await EventCollector.open(broker.url, 'audio.events');
  const env = {
    DATA_DIR: dataDir,
    AMQP_URL: broker.url,
    STORAGE_DRIVER: 's3',
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: S3RVER_BUCKET,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AUDIO_INGEST_CONFIG: configFile({ storage: { partSizeMiB: 5 } }),
  };
  const first = await startDaemon(env);
  const restarted: { daemon?: Awaited<ReturnType<typeof startDaemon>> } = {};
  t.teardown(async () => {
    first.child.kill('SIGKILL');
    restarted.daemon?.child.kill('SIGKILL');
    await collector.close();
    await broker.remove();
    await s3.close();
  });

  // The broker is away while the recording runs: its events wait in the outbox when the process dies.
  await broker.down();
  const pcm = randomStereo(48000 * 130, 21);
  const { ws } = await openEgress(await daemonEgressUrl(first.port, { roomName: 'crash', trackId: 'TR_crash' }));
  // 115 s of audio at 8× real time: part 2 of the master is full (uploaded or spooled), part 3 partial.
  const sent = await sendPaced(ws, pcm, { speed: 8, stopAtBytes: 115 * 192_000 });
  await sleep(500); // every frame written to the socket has been read by the daemon
  // part 2 is uploaded and its file kept (the default resume window of live audio out)
  const uploadsDir = join(dataDir, 'uploads');
  const keptPart2 = (): boolean => readdirSync(uploadsDir).some((name) => {
    const dir = join(uploadsDir, name);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { parts: { partNumber: number }[] };
    return manifest.parts.some((p) => p.partNumber === 2) && existsSync(join(dir, 'part-000002.pcm'));
  });
  await waitFor(() => (keptPart2() ? true : undefined), 20_000, 'part 2 uploaded and kept');
  first.child.kill('SIGKILL');
  t.equal(await first.exited, 'SIGKILL');
  const spooled = spooledBytes(dataDir);
  t.equal(spooled.length, 1, 'one master left in the spool');
  const spooledAtKill = spooled[0]!.bytes;

  await broker.up();
  const second = (restarted.daemon = await startDaemon(env));
  const recordingId = spooled[0]!.recordingId;
  await waitFor(() => collector.ofType('recording.completed').find((e) => e.recording_id === recordingId), 30_000, 'recording.completed after restart');
  await waitFor(() => collector.ofType('recording.started').find((e) => e.recording_id === recordingId), 10_000, 'recording.started from before the kill');
  const completed = collector.ofType('recording.completed').find((e) => e.recording_id === recordingId)!;
  t.equal(completed.end_reason, 'aborted');
  t.equal(completed.status, 'completed');

  const wav = readWav(await s3rverStore(s3.endpoint).get(completed.s3_key_master as string));
  const expected = downmix(pcm.subarray(0, sent));
  t.equal(wav.riffSize, MASTER_HEADER_BYTES - 8 + wav.dataSize, 'valid WAV: RIFF size matches');
  t.equal(wav.dataSize, wav.data.length, 'valid WAV: data size matches the bytes');
  t.equal(completed.size_bytes, MASTER_HEADER_BYTES + wav.dataSize);
  t.ok(wav.data.equals(expected.subarray(0, wav.data.length)), 'the master is an exact prefix of the downmixed input');
  t.equal(wav.dataSize, spooledAtKill, 'every byte spooled at the kill is in the master (the kept part counted once)');
  t.notOk(existsSync(join(uploadsDir, spooled[0]!.recordingId)), 'recovered: no spool folder (kept part files included) is left');
  const lostBytes = expected.length - wav.dataSize;
  const prefix = wav.data.equals(expected.subarray(0, wav.data.length));
  t.ok(lostBytes >= 0 && lostBytes <= CHUNK_BYTES + QUEUE_BYTES, `lost ${lostBytes} bytes ≤ one chunk (${CHUNK_BYTES}) + the write queue (${QUEUE_BYTES})`);
  t.ok(lostBytes < CHUNK_BYTES, `with the queue drained (idle socket before the kill) only the chunk being filled is lost: ${lostBytes} < ${CHUNK_BYTES}`);
  t.match(second.output(), /recording recovered after an unclean stop/);
  const view = await fetch(`${second.baseUrl}/v1/recordings/${recordingId}`, { headers: { apikey: 'e2e-api-key-0123456789' } });
  t.match(await view.json(), { state: 'completed', endReason: 'aborted', sizeBytes: MASTER_HEADER_BYTES + wav.dataSize }, 'the catalog shows the recovered recording completed');
  second.child.kill('SIGTERM');
  const code = await second.exited;
  t.equal(code, 0);
  const delivered = [...collector.byId.values()].filter((e) => e.recording_id === recordingId).length;
  reportFigure({
    fault: 'SIGKILL mid-recording (broker away, events pending), restart on the same DATA_DIR',
    checked: 'recovery completed the multipart master (valid WAV, exact prefix of the input, = every spooled byte); recording.started (pending at the kill) and recording.completed (aborted) delivered',
    bytesSent: sent, bytesStored: wav.dataSize, samplesLost: lostBytes / 2, eventsExpected: 2,
    eventsDelivered: delivered,
    notes: `spooled at the kill: ${spooledAtKill} B; lost = the chunk being filled in memory (${(lostBytes / 96000).toFixed(3)} s of ≤ 2 s); bound asserted: one chunk + 1 MiB write queue`,
    ok:
      completed.end_reason === 'aborted' &&
      wav.riffSize === MASTER_HEADER_BYTES - 8 + wav.dataSize &&
      prefix &&
      wav.dataSize === spooledAtKill &&
      lostBytes >= 0 &&
      lostBytes < CHUNK_BYTES &&
      delivered === 2 &&
      code === 0,
  });
});
