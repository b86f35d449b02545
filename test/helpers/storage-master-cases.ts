import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Metrics } from '../../src/observability/metrics.js';
import { MasterUpload } from '../../src/storage/master-upload.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { Spool } from '../../src/storage/spool.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import type { Tap } from './storage-conformance.js';
import { parseWav, patternBytes } from './storage-wav.js';
import { tempDir } from './temp-dir.js';

/** What a driver's test file gives the shared master-upload cases. */
export interface MasterTarget {
  store: ObjectStore;
  partSize: number;
  /** argv of storage-crash-child.ts after the script: driver and store location. */
  childStoreArgs: [string, string];
}

const FRAME = 3840; // 20 ms of 48 kHz stereo s16le

/** Writes `total` patterned bytes in 20 ms frames, flushing every `burst` bytes like a paced stream. */
export async function writeRecording(upload: MasterUpload, total: number, offset = 0, burst = 512 * 1024): Promise<void> {
  let done = 0;
  while (done < total) {
    const n = Math.min(FRAME, total - done);
    upload.write(patternBytes(offset + done, n));
    done += n;
    if (done % burst < FRAME) await upload.flush();
  }
}

/** Checks a stored master: valid WAV, 48 kHz stereo, data = pattern of `dataBytes`. */
export async function assertMaster(t: Tap, store: ObjectStore, key: string, dataBytes: number): Promise<void> {
  const file = await store.get(key);
  const wav = parseWav(file);
  t.equal(wav.sampleRate, 48000);
  t.equal(wav.channels, 2);
  t.equal(wav.data.length, dataBytes, 'WAV data size = bytes written');
  t.ok(wav.data.equals(patternBytes(0, dataBytes)), 'bytes compare equal');
}

export function runMasterCases(t: Tap, target: () => Promise<MasterTarget>): void {
  t.test('long recording: valid WAV, every byte, metadata added at finish', async (t) => {
    const { store, partSize } = await target();
    const stateDir = await tempDir(t, 'storage-state-');
    const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
    const total = Math.ceil((partSize * 3.5) / FRAME) * FRAME;
    const upload = await MasterUpload.create({
      store, stateDir, recordingId: 'rec-long', key: 'rec/long.wav', format: { sampleRate: 48000, channels: 2 },
      metadata: { tenant: 'acme', source: 'livekit' }, partSize, spool,
    });
    await writeRecording(upload, total);
    const res = await upload.finish({ 'duration-sec': (total / 192000).toFixed(3) });
    t.equal(res.dataBytes, total);
    t.equal(res.size, total + MASTER_HEADER_BYTES);
    t.equal(res.droppedBytes, 0);
    // a store that moves files takes the master as one file; otherwise parts of partSize
    if (store.putFileMoves) t.equal(res.parts, 1, 'one file moved into place');
    else t.equal(res.parts, Math.ceil((total + MASTER_HEADER_BYTES) / partSize), `${res.parts} parts of ${partSize} bytes`);
    await assertMaster(t, store, 'rec/long.wav', total);
    const info = await store.head('rec/long.wav');
    t.same(info?.metadata, { tenant: 'acme', source: 'livekit', 'duration-sec': (total / 192000).toFixed(3) });
    t.equal(info?.contentType, 'audio/wav');
    t.equal(spool.usedBytes, 0, 'spool budget given back');
    t.same(await readdir(join(stateDir, 'uploads')), [], 'spool folder removed');
  });

  t.test('short recording: one object, valid WAV', async (t) => {
    const { store, partSize } = await target();
    const stateDir = await tempDir(t, 'storage-state-');
    const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
    const upload = await MasterUpload.create({
      store, stateDir, recordingId: 'rec-short', key: 'rec/short.wav', format: { sampleRate: 48000, channels: 2 },
      metadata: { tenant: 'acme' }, partSize, spool,
    });
    await writeRecording(upload, 192_000);
    const res = await upload.finish();
    t.same(res, { key: 'rec/short.wav', size: 192_000 + MASTER_HEADER_BYTES, dataBytes: 192_000, parts: 1, droppedBytes: 0 });
    await assertMaster(t, store, 'rec/short.wav', 192_000);

    const empty = await MasterUpload.create({
      store, stateDir, recordingId: 'rec-empty', key: 'rec/empty.wav', format: { sampleRate: 48000, channels: 2 }, metadata: {}, partSize, spool,
    });
    const r2 = await empty.finish();
    t.equal(r2.size, MASTER_HEADER_BYTES, 'an empty recording is a header-only WAV');
    await assertMaster(t, store, 'rec/empty.wav', 0);
  });

  t.test('spool budget: bytes beyond it are dropped and counted, never queued', async (t) => {
    const { store, partSize } = await target();
    const stateDir = await tempDir(t, 'storage-state-');
    const metrics = new Metrics({ defaultMetrics: false });
    const spool = new Spool({ maxBytes: 64 * FRAME, metrics });
    const upload = await MasterUpload.create({
      store, stateDir, recordingId: 'rec-full', key: 'rec/full.wav', format: { sampleRate: 48000, channels: 2 },
      metadata: {}, partSize, spool, metrics,
    });
    for (let i = 0; i < 100; i++) upload.write(patternBytes(i * FRAME, FRAME));
    upload.write(Buffer.alloc(3)); // not whole frames
    t.equal(spool.usedBytes, 64 * FRAME, 'budget used up');
    t.equal((await metrics.spoolBytes.get()).values[0]?.value, 64 * FRAME, 'spool gauge');
    const res = await upload.finish();
    t.equal(res.dataBytes, 64 * FRAME);
    t.equal(res.droppedBytes, 36 * FRAME + 3);
    const dropped = (await metrics.framesDropped.get()).values;
    t.equal(dropped.find((v) => v.labels.reason === 'spool_full')?.value, 36);
    t.equal(dropped.find((v) => v.labels.reason === 'invalid')?.value, 1);
    await assertMaster(t, store, 'rec/full.wav', 64 * FRAME);
    t.equal(spool.usedBytes, 0);
  });

  t.test('abort removes the spool and leaves no object', async (t) => {
    const { store, partSize } = await target();
    const stateDir = await tempDir(t, 'storage-state-');
    const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
    const upload = await MasterUpload.create({
      store, stateDir, recordingId: 'rec-abort', key: 'rec/abort.wav', format: { sampleRate: 48000, channels: 2 }, metadata: {}, partSize, spool,
    });
    await writeRecording(upload, partSize * 2 + FRAME * 10);
    await upload.abort();
    t.equal(await store.head('rec/abort.wav'), null);
    t.equal(spool.usedBytes, 0);
    t.same(await readdir(join(stateDir, 'uploads')), []);
    upload.write(patternBytes(0, FRAME));
    t.pass('write after abort is ignored');
  });

  t.test('crash: recover completes what a killed process spooled', async (t) => {
    const { store, partSize, childStoreArgs } = await target();
    const stateDir = await tempDir(t, 'storage-state-');
    const child = spawn(process.execPath, [...process.execArgv, 'test/helpers/storage-crash-child.ts', ...childStoreArgs, stateDir, 'rec-crash', 'rec/crash.wav', String(partSize)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    t.teardown(() => { child.kill('SIGKILL'); });
    let reported = 0;
    for await (const line of createInterface({ input: child.stdout })) {
      const s = JSON.parse(line) as { spooled: number; uploadedParts: number; dropped: number };
      reported = s.spooled;
      t.equal(s.dropped, 0);
      // kill once some parts are uploaded (a store that moves files uploads none before the end)
      // and part 1 plus a pending part are in the spool
      if ((s.uploadedParts >= 1 || store.putFileMoves) && s.spooled > partSize * 2.5) break;
    }
    child.kill('SIGKILL');
    t.equal(await exited, 'SIGKILL');
    t.ok(reported > partSize * 2, `child spooled ${reported} bytes`);
    t.equal(await store.head('rec/crash.wav'), null, 'nothing complete before recovery');

    const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
    const recovered = await MasterUpload.recover({ store, stateDir, spool, retry: { baseMs: 20, maxMs: 200 } });
    t.equal(recovered.length, 1);
    const r = recovered[0]!;
    if (r.status !== 'completed') throw new Error(`recovery failed: ${r.error}`);
    t.equal(r.recordingId, 'rec-crash');
    t.equal(r.key, 'rec/crash.wav');
    t.same(r.metadata, { tenant: 'crash' });
    t.ok(r.dataBytes >= reported, `recovered ${r.dataBytes} ≥ reported ${reported}`);
    t.equal(r.dataBytes % 4, 0, 'whole frames');
    t.equal(r.size, r.dataBytes + MASTER_HEADER_BYTES);
    await assertMaster(t, store, 'rec/crash.wav', r.dataBytes);
    t.equal(spool.usedBytes, 0);
    t.same(await readdir(join(stateDir, 'uploads')), [], 'state folder cleaned');
    t.same(await MasterUpload.recover({ store, stateDir, spool }), [], 'a second recover finds nothing');
  });
}
