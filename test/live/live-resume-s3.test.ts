import t, { type Test } from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectEgress } from '../../src/clients/egress-simulator.js';
import { sanitizeSegment } from '../../src/storage/keys.js';
import { startTestApp } from '../helpers/app.js';
import { egressUrl, outboxEvents, randomStereo, readWav } from '../helpers/egress.js';
import { endEgress, LiveConsumer, resampleMaster, sendFrames } from '../helpers/live.js';
import { startRecordingProxy } from '../helpers/storage-s3-proxy.js';
import { s3rverStorage } from '../helpers/storage-s3rver.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * A daemon on s3rver with the given resume window, one egress track sent `sentSec` of a
 * `totalSec` random stereo signal (fast, but not faster than the spool writes: the master's
 * write queue would drop), and where its spool is.
 */
async function liveOnS3(t: Test, o: { dirPrefix: string; resumeWindowSec: number; roomName: string; trackId: string; totalFrames: number; sentSec: number; seed: number; delayCompleteMs?: number }) {
  const { storage } = await s3rverStorage(t, o.dirPrefix);
  if (o.delayCompleteMs !== undefined) {
    const proxy = await startRecordingProxy(storage.s3.endpoint, { delayCompleteMultipartMs: o.delayCompleteMs, hashBodies: false });
    t.teardown(() => proxy.close());
    storage.s3.endpoint = proxy.endpoint;
  }
  const h = await startTestApp({ storage, live: { resumeWindowSec: o.resumeWindowSec } });
  t.teardown(() => h.close());
  const egress = await connectEgress(await egressUrl(h, { roomName: o.roomName, trackId: o.trackId }));
  const pcm = randomStereo(o.totalFrames, o.seed);
  const cut = 48000 * o.sentSec * 4;
  await sendFrames(egress, pcm.subarray(0, cut), 1920, 20, 4);
  const id = await waitFor(() => h.app.recordings.all().find((r) => r.identity.trackId === o.trackId)?.identity.recordingId, 10_000, `recording of ${o.trackId}`);
  return { h, egress, pcm, cut, id, spoolDir: join(h.dataDir, 'uploads', sanitizeSegment(id)) };
}

/**
 * A subscription closed other than 1000: what the consumer got (its texts, how many audio
 * messages, its own errors) and what the daemon logged about live audio, to tell an abrupt
 * close from a refusal.
 */
function explainClose(t: Test, h: Awaited<ReturnType<typeof startTestApp>>, c: LiveConsumer): void {
  if (c.closeCode === 1000) return;
  t.comment(`closed ${c.closeCode}; texts ${JSON.stringify(c.texts)}; ${c.binaryMessages} binary messages; client errors ${JSON.stringify(c.errors)}`);
  for (const l of h.logs) if (/live|subscri|history/i.test(String(l.msg))) t.comment(JSON.stringify(l).slice(0, 600));
}

/** Frames of the 48 kHz mono master before part `k` (5 MiB parts, the 80-byte header in part 1). */
function partStartFrame(k: number): number {
  return ((k - 1) * 5 * 1024 * 1024 - 80) / 2;
}

/**
 * Subscribes at 16 kHz from `from`, sends the rest of the track and ends it, and waits for the
 * stored master: the consumer and the master resampled the documented way, to compare.
 */
async function resumeToTheEnd(t: Test, live: Awaited<ReturnType<typeof liveOnS3>>, q: string, from: number): Promise<{ resumed: LiveConsumer; at16: Buffer }> {
  const { h, egress, pcm, cut, id } = live;
  const resumed = new LiveConsumer(`${q}&from=${from}`);
  await resumed.opened;
  await sendFrames(egress, pcm.subarray(cut), 1920, 5, 2);
  await endEgress(egress);
  await resumed.closed;
  const ev = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id === id), 30_000, 'recording.completed');
  const master = readWav(await h.app.store.get(ev.s3_key_master as string)).data;
  explainClose(t, h, resumed);
  return { resumed, at16: resampleMaster(master, 48000, 16000) };
}

t.test('S3, live, no resume window: a from= inside parts already uploaded is refused before the upgrade with the offset resume can start at, which then works; stored, everything replays', async (t) => {
  // 5 MiB parts of 48 kHz mono: 54.6 s each; 124 s reaches part 3, so part 2 is uploaded and gone from the spool
  const live = await liveOnS3(t, { dirPrefix: 'aid-live-s3-', resumeWindowSec: 0, roomName: 'room-s3', trackId: 'TR_s3', totalFrames: 48000 * 125 + 7, sentSec: 124, seed: 31 });
  const { h, cut, id, spoolDir } = live;
  await waitFor(() => (h.app.recordings.get(id)!.frames >= cut / 4 && existsSync(join(spoolDir, 'part-000003.pcm')) && !existsSync(join(spoolDir, 'part-000002.pcm')) ? true : undefined), 30_000, 'part 2 uploaded');

  t.equal(h.app.recordings.get(id)!.masterStats!.droppedBytes, 0, 'nothing dropped');
  const q = `${h.wsUrl}/v1/live?recordingId=${id}&rate=16000`;
  const refusals: Record<string, unknown>[] = [];
  for (const from of [0, 16000 * 60]) {
    const c = new LiveConsumer(`${q}&from=${from}`);
    await c.opened.catch(() => undefined);
    t.equal(c.refused?.status, 410, `from=${from}: refused before the upgrade`);
    const body = JSON.parse(c.refused?.body ?? '{}') as { error: Record<string, unknown> };
    t.equal(body.error?.code, 'RESUME_UNAVAILABLE');
    refusals.push(body.error?.details as Record<string, unknown>);
  }
  const availableFrom = refusals[0]!.availableFrom as number;
  t.same(refusals[1], { availableFrom }, 'both name the same first offset');
  // part 3 starts at byte 2·5 MiB of the object: its first frame at 16 kHz, plus half a filter of input
  const part3Frame = Math.ceil(partStartFrame(3));
  t.ok(availableFrom >= part3Frame / 3 && availableFrom < part3Frame / 3 + 100, `availableFrom ${availableFrom} is where part 3 begins (${part3Frame / 3})`);

  const { resumed, at16 } = await resumeToTheEnd(t, live, q, availableFrom);
  t.same(resumed.problems, []);
  t.equal(resumed.closeCode, 1000, 'the resumed subscription ran to the end');
  t.equal(resumed.firstOffset.get(0), availableFrom);
  t.ok(resumed.pcm().equals(at16.subarray(availableFrom * 2)), 'from availableFrom on: the master resampled, no gap, no overlap');

  // stored: the uploaded parts are readable again
  const replay = new LiveConsumer(`${q}&from=${16000 * 60}`);
  await replay.opened;
  await replay.closed;
  explainClose(t, h, replay);
  t.equal(replay.closeCode, 1000);
  t.ok(replay.pcm().equals(at16.subarray(16000 * 60 * 2)), 'the stored master replays from inside part 2');
});

t.test('S3, live, resume window: a from= two parts back resumes from the kept part files with no gap or overlap into the live edge; older offsets get 410 with the start of the window; stored, the spool holds no part file', async (t) => {
  // 120 s of window, 5 MiB parts (54.6 s): at 235 s parts 3 and 4 are uploaded and kept, part 2
  // (ends at 109.2 s, more than 120 s behind) is uploaded and deleted, part 5 is being filled
  const live = await liveOnS3(t, { dirPrefix: 'aid-live-s3w-', resumeWindowSec: 120, roomName: 'room-s3w', trackId: 'TR_s3w', totalFrames: 48000 * 240 + 11, sentSec: 235, seed: 37 });
  const { h, cut, id, spoolDir } = live;
  const part = (k: number): string => join(spoolDir, `part-00000${k}.pcm`);
  const manifestParts = (): number[] => (JSON.parse(readFileSync(join(spoolDir, 'manifest.json'), 'utf8')) as { parts: { partNumber: number }[] }).parts.map((p) => p.partNumber);
  await waitFor(
    () => (h.app.recordings.get(id)!.frames >= cut / 4 && existsSync(part(5)) && manifestParts().includes(4) && !existsSync(part(2)) ? true : undefined),
    30_000,
    'part 4 uploaded, part 2 out of the window',
  );
  t.same(manifestParts(), [2, 3, 4], 'parts 2, 3 and 4 are uploaded');
  t.ok(existsSync(part(1)) && existsSync(part(3)) && existsSync(part(4)), 'part 1 and the uploaded parts 3 and 4 (within the window) are kept');
  t.equal(h.app.recordings.get(id)!.masterStats!.droppedBytes, 0, 'nothing dropped');
  t.ok(h.app.spool.usedBytes >= 2 * 5 * 1024 * 1024, `the kept parts stay in the spool budget (${h.app.spool.usedBytes} B in use)`);

  const q = `${h.wsUrl}/v1/live?recordingId=${id}&rate=16000`;
  const old = new LiveConsumer(`${q}&from=${16000 * 80}`);
  await old.opened.catch(() => undefined);
  t.equal(old.refused?.status, 410, 'from= in part 2, before the window: refused before the upgrade');
  const body = JSON.parse(old.refused?.body ?? '{}') as { error: { code: string; details: { availableFrom: number } } };
  t.equal(body.error?.code, 'RESUME_UNAVAILABLE');
  const availableFrom = body.error.details.availableFrom;
  t.ok(availableFrom >= partStartFrame(3) / 3 && availableFrom < partStartFrame(3) / 3 + 100, `availableFrom ${availableFrom} is where the oldest kept part begins (${partStartFrame(3) / 3})`);

  // two parts back from the one being filled: inside part 3, uploaded
  const from = Math.ceil(partStartFrame(3) / 3) + 16000 * 10 + 123;
  const { resumed, at16 } = await resumeToTheEnd(t, live, q, from);
  t.same(resumed.problems, []);
  t.equal(resumed.closeCode, 1000, `the resumed subscription ran to the end (closed: "${resumed.closeReason}")`);
  t.equal(resumed.firstOffset.get(0), from);
  t.equal(resumed.pcm().length, at16.length - from * 2, 'exactly the samples from the offset to the end');
  t.ok(resumed.pcm().equals(at16.subarray(from * 2)), 'from the kept parts through the live edge: the master resampled, no gap, no overlap');

  t.notOk(existsSync(spoolDir) && readdirSync(spoolDir).some((f) => f.endsWith('.pcm')), 'stored: the spool holds no part file of the recording');
  await waitFor(() => (h.app.spool.usedBytes === 0 ? true : undefined), 5_000, 'spool budget released');
});

t.test('S3, the recording ended and its upload completing: a from= inside uploaded parts is accepted, waits for the stored master and replays to the end', async (t) => {
  // a consumer that comes back as the meeting ends: the recording is no longer live, part 2 is
  // only in the store (readable once the upload completes) and the completion is held
  const live = await liveOnS3(t, { dirPrefix: 'aid-live-s3e-', resumeWindowSec: 0, roomName: 'room-s3e', trackId: 'TR_s3e', totalFrames: 48000 * 125 + 3, sentSec: 124, seed: 41, delayCompleteMs: 4_000 });
  const { h, egress, pcm, cut, id, spoolDir } = live;
  await waitFor(() => (h.app.recordings.get(id)!.frames >= cut / 4 && !existsSync(join(spoolDir, 'part-000002.pcm')) ? true : undefined), 60_000, 'part 2 uploaded');
  await sendFrames(egress, pcm.subarray(cut), 1920, 5, 2);
  await endEgress(egress);
  await waitFor(() => (h.app.recordings.get(id) === undefined ? true : undefined), 60_000, 'the recording ended');
  const from = 16000 * 60; // inside part 2
  const replay = new LiveConsumer(`${h.wsUrl}/v1/live?recordingId=${id}&rate=16000&from=${from}`);
  await replay.opened;
  t.notOk(outboxEvents(h).some((e) => e.type === 'recording.completed' && e.recording_id === id), 'accepted before the master is stored');
  await waitFor(() => (replay.closeCode !== 0 ? true : undefined), 60_000, 'the replay to end');
  t.equal(replay.closeCode, 1000, `closed with 1000 ("${replay.closeReason}")`);
  t.same(replay.problems, []);
  t.equal(replay.firstOffset.get(0), from);
  const ev = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id === id), 60_000, 'recording.completed');
  const at16 = resampleMaster(readWav(await h.app.store.get(ev.s3_key_master as string)).data, 48000, 16000);
  t.ok(replay.pcm().equals(at16.subarray(from * 2)), 'from the offset on: the stored master resampled, no gap, no overlap');
  t.same(replay.textsOf('end'), [{ type: 'end', index: 0, endReason: 'normal', samples: at16.length / 2 }]);
});
