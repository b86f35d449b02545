import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { downmix, randomStereo, readWav } from '../helpers/egress.js';
import { configFile, daemonEgressUrl, type FaultDecision, ndjsonEvents, openEgress, reportFigure, sendPaced, startFaultProxy } from '../helpers/reliability.js';
import { S3RVER_BUCKET, s3rverStore, startS3rver } from '../helpers/storage-s3rver.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Environment of a daemon on the s3 driver (s3rver's fixed credentials), 5 MiB parts. */
function s3Env(endpoint: string): Record<string, string> {
  return {
    STORAGE_DRIVER: 's3',
    S3_ENDPOINT: endpoint,
    S3_BUCKET: S3RVER_BUCKET,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AUDIO_INGEST_CONFIG: configFile({ storage: { partSizeMiB: 5 } }),
  };
}

/** Streams `pcm` at `speed`× real time, runs `during` meanwhile, ends normally; returns the bytes sent. */
async function stream(d: Daemon, roomName: string, pcm: Buffer, speed: number, during: () => Promise<void> = async () => undefined): Promise<number> {
  const { ws, closed } = await openEgress(await daemonEgressUrl(d.port, { roomName, trackId: `TR_${roomName}` }));
  const [sent] = await Promise.all([sendPaced(ws, pcm, { speed }), during()]);
  ws.close();
  await closed;
  return sent;
}

/** Waits for the recording.completed of a room and checks its master against the downmixed input. */
async function checkMaster(t: Test, d: Daemon, endpoint: string, roomName: string, pcm: Buffer, sent: number, waitMs: number): Promise<{ stored: number; lostSamples: number; completed: Record<string, unknown>; ok: boolean }> {
  const completed = await waitFor(() => ndjsonEvents(d.dataDir).find((e) => e.type === 'recording.completed' && e.room_name === roomName), waitMs, `recording.completed of ${roomName}`);
  t.equal(completed.status, 'completed');
  t.equal(completed.dropped_bytes, 0, 'nothing dropped');
  const store = s3rverStore(endpoint);
  const wav = readWav(await store.get(completed.s3_key_master as string));
  const expected = downmix(pcm.subarray(0, sent));
  t.equal(wav.sampleRate, 48000);
  t.equal(wav.channels, 1);
  t.equal(wav.riffSize, MASTER_HEADER_BYTES - 8 + wav.dataSize, 'RIFF size matches');
  t.equal(wav.dataSize, expected.length, 'data size = every byte sent, downmixed');
  const exact = wav.data.equals(expected);
  t.ok(exact, 'master equals the downmixed input');
  t.equal(completed.size_bytes, MASTER_HEADER_BYTES + expected.length);
  const ok = completed.status === 'completed' && completed.dropped_bytes === 0 && wav.riffSize === MASTER_HEADER_BYTES - 8 + wav.dataSize && exact && completed.size_bytes === MASTER_HEADER_BYTES + expected.length;
  return { stored: wav.data.length, lostSamples: (expected.length - wav.data.length) / 2, completed, ok };
}

t.test('object store down for 30 s mid-stream and back: the master is complete and exact', async (t) => {
  const dir = await tempDir(t, 'aid-rel-s3-');
  let s3 = await startS3rver(dir);
  const { port, endpoint } = s3;
  const d = await startDaemon(s3Env(endpoint));
  t.teardown(async () => {
    d.child.kill('SIGKILL');
    await s3.close();
  });
  // 120 s of audio at 5× real time: part 2 (bytes 5–10 MiB of the mono master) fills during the outage.
  const pcm = randomStereo(48000 * 120, 11);
  const outageSec = 30;
  const sent = await stream(d, 'store-down', pcm, 5, async () => {
    await sleep(3000);
    await s3.close();
    await sleep(outageSec * 1000);
    s3 = await startS3rver(dir, port);
  });
  const r = await checkMaster(t, d, endpoint, 'store-down', pcm, sent, 90_000);
  const retried = d.output().split('\n').filter((l) => l.includes('store call failed; retrying')).length;
  t.ok(retried > 0, `the outage was seen and retried (${retried} retry log lines)`);
  await waitFor(() => !existsSync(join(d.dataDir, 'uploads')) || readdirSync(join(d.dataDir, 'uploads')).length === 0 || undefined, 5000, 'spool emptied');
  const events = ndjsonEvents(d.dataDir).filter((e) => e.room_name === 'store-down');
  const types = events.map((e) => e.type).sort().join(',');
  t.equal(types, 'recording.completed,recording.started');
  d.child.kill('SIGTERM');
  const code = await d.exited;
  t.equal(code, 0);
  reportFigure({
    fault: `object store down ${outageSec} s mid-stream (s3rver closed, then restarted)`,
    checked: 'master WAV byte-equal to the downmixed input, header sizes right, spool emptied, started+completed events',
    bytesSent: sent, bytesStored: r.stored, samplesLost: r.lostSamples, eventsExpected: 2, eventsDelivered: events.length,
    notes: `120 s of audio at 5× real time, 3 parts; ${retried} retry log lines`,
    ok: r.ok && retried > 0 && types === 'recording.completed,recording.started' && code === 0,
  });
});

t.test('object store answering 500/503 and slowly: masters complete and exact', async (t) => {
  const dir = await tempDir(t, 'aid-rel-s3-');
  const s3 = await startS3rver(dir);
  // Deterministic mix: every 3rd request 503 SlowDown, every 5th 500 InternalError, every 4th delayed 1.5 s,
  // and the first UploadPart of part 2 and the first CompleteMultipartUpload forwarded with their answers
  // replaced by a 500 (the store did the work, the answer was lost).
  const lost = new Set<string>();
  const proxy = await startFaultProxy(s3.endpoint, (method, url, n): FaultDecision => {
    const op = url.searchParams.get('partNumber') === '2' ? 'part2' : method === 'POST' && url.searchParams.has('uploadId') ? 'complete' : undefined;
    if (op && !lost.has(op)) {
      lost.add(op);
      return { dropAfterForward: 500 };
    }
    if (n % 3 === 1) return { status: 503, code: 'SlowDown' };
    if (n % 5 === 2) return { status: 500, code: 'InternalError' };
    if (n % 4 === 3) return { delayMs: 1500 };
    return 'pass';
  });
  const d = await startDaemon(s3Env(proxy.endpoint));
  t.teardown(async () => {
    if (!t.passing()) t.comment(d.output().split('\n').filter((l) => /"level":"(warn|error)"/.test(l)).slice(-30).join('\n'));
    d.child.kill('SIGKILL');
    await proxy.close();
    await s3.close();
  });
  const long = randomStereo(48000 * 115, 12); // multipart: 3 parts
  const short = randomStereo(48000 * 3, 13); // single PUT
  const [sentLong, sentShort] = await Promise.all([stream(d, 'store-flaky-long', long, 10), stream(d, 'store-flaky-short', short, 1)]);
  const a = await checkMaster(t, d, s3.endpoint, 'store-flaky-long', long, sentLong, 120_000);
  const b = await checkMaster(t, d, s3.endpoint, 'store-flaky-short', short, sentShort, 120_000);
  const injected = proxy.counts.injected > 0 && proxy.counts.delayed > 0;
  t.ok(injected, `faults injected: ${JSON.stringify(proxy.counts)}`);
  d.child.kill('SIGTERM');
  const code = await d.exited;
  t.equal(code, 0);
  reportFigure({
    fault: 'object store answering 503/500, slow (1.5 s), and losing the answers of UploadPart and CompleteMultipartUpload',
    checked: 'both masters (multipart and single PUT) byte-equal to the downmixed input; completed events',
    bytesSent: sentLong + sentShort, bytesStored: a.stored + b.stored, samplesLost: a.lostSamples + b.lostSamples,
    eventsExpected: 2, eventsDelivered: 2,
    notes: `proxy: ${proxy.counts.requests} requests, ${proxy.counts.injected} errors injected, ${proxy.counts.delayed} delayed, ${proxy.counts.lostAnswers} answers lost`,
    ok: a.ok && b.ok && injected && code === 0,
  });
});
