import t from 'tap';
import { existsSync } from 'node:fs';
import { open, readdir, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { MasterUpload } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import { MASTER_HEADER_BYTES, RIFF_MAX_DATA_BYTES } from '../../src/audio/wav.js';
import { assertMaster, runMasterCases, writeRecording } from '../helpers/storage-master-cases.js';
import { tempDir } from '../helpers/temp-dir.js';
import { parseMasterHeader, patternBytes } from '../helpers/storage-wav.js';

const PART = 1024 * 1024;

async function freshStore(): Promise<{ store: FsObjectStore; root: string }> {
  const root = await tempDir(t, 'storage-fsmaster-');
  const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' } });
  await store.start();
  return { store, root };
}

async function stateDir(): Promise<string> {
  return tempDir(t, 'storage-state-');
}

runMasterCases(t, async () => {
  const { store, root } = await freshStore();
  // the fs store takes any part size; a small one keeps the test quick with the same shape
  return { store, partSize: PART, childStoreArgs: ['fs', root] };
});

t.test('fs: the master is assembled in its spool file and moved into the store (same inode, no copy)', async (t) => {
  const { store, root } = await freshStore();
  const state = await stateDir();
  const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
  const upload = await MasterUpload.create({
    store, stateDir: state, recordingId: 'rec-inplace', key: 'rec/inplace.wav', format: { sampleRate: 48000, channels: 2 }, metadata: { tenant: 'acme' }, partSize: PART, spool,
  });
  const total = Math.ceil((PART * 3.5) / 3840) * 3840;
  await writeRecording(upload, total);
  await upload.flush();
  const spoolDir = join(state, 'uploads', 'rec-inplace');
  t.same((await readdir(spoolDir)).sort(), ['manifest.json', 'part-000001.pcm'], 'one spool file for the whole master');
  const file = join(spoolDir, 'part-000001.pcm');
  t.equal((await stat(file)).size, MASTER_HEADER_BYTES + total, 'PCM at offset 80 + n');
  const fh = await open(file, 'r');
  const probe = Buffer.alloc(3840);
  await fh.read(probe, 0, probe.length, MASTER_HEADER_BYTES + 2 * PART);
  await fh.close();
  t.ok(probe.equals(patternBytes(2 * PART, 3840)), 'any PCM byte is at its known offset in the spool');
  const windows = Math.floor((MASTER_HEADER_BYTES + total) / PART);
  t.equal(spool.usedBytes, total - (windows - 1) * PART, 'full windows after the first count as stored, as uploaded parts do');
  const ino = (await stat(file)).ino;
  const res = await upload.finish({ 'duration-sec': '1' });
  t.equal(res.parts, 1);
  t.equal((await stat(join(root, 'objects', 'rec', 'inplace.wav'))).ino, ino, 'the spool file became the object');
  await assertMaster(t, store, 'rec/inplace.wav', total);
  t.same((await store.head('rec/inplace.wav'))?.metadata, { tenant: 'acme', 'duration-sec': '1' });
  t.notOk(existsSync(spoolDir), 'spool folder gone');
  t.same(await readdir(join(root, '.tmp')), [], 'no temp file');
  t.equal(spool.usedBytes, 0);
});

t.test('setup touches no disk: the spool folder and manifest come with the first audio', async (t) => {
  const { store } = await freshStore();
  const state = await stateDir();
  const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
  const open1 = await MasterUpload.create({
    store, stateDir: state, recordingId: 'rec-lazy', key: 'rec/lazy.wav', format: { sampleRate: 48000, channels: 1 }, metadata: {}, partSize: PART, spool,
  });
  t.notOk(existsSync(join(state, 'uploads', 'rec-lazy')), 'no folder after create');
  open1.write(patternBytes(0, 1920));
  await open1.flush();
  t.ok(existsSync(join(state, 'uploads', 'rec-lazy', 'manifest.json')), 'manifest with the first audio');
  await open1.finish();
  const silent = await MasterUpload.create({
    store, stateDir: state, recordingId: 'rec-silent', key: 'rec/silent.wav', format: { sampleRate: 48000, channels: 1 }, metadata: {}, partSize: PART, spool,
  });
  const r = await silent.finish();
  t.equal(r.size, MASTER_HEADER_BYTES, 'a recording without audio is a header-only master');
  t.same(await readdir(join(state, 'uploads')), [], 'and never had a spool folder');
});

t.test('crash after the master was moved into the store: recovery finds it complete and only cleans up', async (t) => {
  const { store } = await freshStore();
  const state = await stateDir();
  const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
  const upload = await MasterUpload.create({
    store, stateDir: state, recordingId: 'rec-moved', key: 'rec/moved.wav', format: { sampleRate: 48000, channels: 2 }, metadata: { tenant: 'x' }, partSize: PART, spool,
  });
  await writeRecording(upload, 38_400);
  await upload.stop();
  // what finish() does before it removes the spool folder: header in place, file moved
  const file = join(state, 'uploads', 'rec-moved', 'part-000001.pcm');
  const { masterHeader } = await import('../../src/audio/wav.js');
  const fh = await open(file, 'r+');
  await fh.write(masterHeader({ sampleRate: 48000, channels: 2 }, 38_400), 0, MASTER_HEADER_BYTES, 0);
  await fh.close();
  await store.putFile('rec/moved.wav', file, { contentType: 'audio/wav' });
  const outcomes = await MasterUpload.recover({ store, stateDir: state, spool });
  t.match(outcomes, [{ status: 'completed', recordingId: 'rec-moved', size: MASTER_HEADER_BYTES + 38_400, dataBytes: 38_400 }]);
  await assertMaster(t, store, 'rec/moved.wav', 38_400);
  t.same(await readdir(join(state, 'uploads')), []);
});

/**
 * A spool the size of a day-long recording without writing it: the real upload writes its
 * first audio, then its file is extended sparse and marked with patterns at known places.
 */
async function sparseSpool(store: FsObjectStore, state: string, recordingId: string, dataBytes: number, marks: number[]): Promise<string> {
  const spool = new Spool({ maxBytes: 64 * 1024 * 1024 });
  const upload = await MasterUpload.create({
    store, stateDir: state, recordingId, key: `rec/${recordingId}.wav`, format: { sampleRate: 48000, channels: 1 }, metadata: { tenant: 'long' }, partSize: 5 * PART, spool,
  });
  upload.write(patternBytes(0, 1920));
  await upload.stop();
  const file = join(state, 'uploads', recordingId, 'part-000001.pcm');
  // one byte more than whole frames: the torn write of a crash
  await truncate(file, MASTER_HEADER_BYTES + dataBytes + 1);
  const fh = await open(file, 'r+');
  for (const at of marks) await fh.write(patternBytes(at, 4096), 0, 4096, MASTER_HEADER_BYTES + at);
  await fh.close();
  return file;
}

t.test('past 4 GiB: a sparse 4.5 GiB spool is recovered into an RF64 master (ds64 sizes, PCM where it was)', async (t) => {
  const { store, root } = await freshStore();
  const state = await stateDir();
  const dataBytes = 4.5 * 1024 ** 3; // 13.0 h of 48 kHz mono
  const marks = [1_000_000, RIFF_MAX_DATA_BYTES - 2048, dataBytes - 4096];
  const file = await sparseSpool(store, state, 'rec-rf64', dataBytes, marks);
  const ino = (await stat(file)).ino;
  const outcomes = await MasterUpload.recover({ store, stateDir: state, spool: new Spool({ maxBytes: 1024 * 1024 }) });
  t.match(outcomes, [{ status: 'completed', recordingId: 'rec-rf64', dataBytes, size: MASTER_HEADER_BYTES + dataBytes }]);
  const objectPath = join(root, 'objects', 'rec', 'rec-rf64.wav');
  const st = await stat(objectPath);
  t.equal(st.size, MASTER_HEADER_BYTES + dataBytes, 'the torn byte was cut');
  t.equal(st.ino, ino, 'moved into place, not copied');
  const h = parseMasterHeader(await store.getRange('rec/rec-rf64.wav', 0, MASTER_HEADER_BYTES - 1));
  t.same(h, { container: 'RF64', sampleRate: 48000, channels: 1, bitsPerSample: 16, fileBytes: MASTER_HEADER_BYTES + dataBytes, dataBytes });
  t.ok((await store.getRange('rec/rec-rf64.wav', MASTER_HEADER_BYTES, MASTER_HEADER_BYTES + 1919)).equals(patternBytes(0, 1920)), 'the first audio');
  for (const at of marks) {
    t.ok((await store.getRange('rec/rec-rf64.wav', MASTER_HEADER_BYTES + at, MASTER_HEADER_BYTES + at + 4095)).equals(patternBytes(at, 4096)), `PCM at data offset ${at}`);
  }
  t.same((await store.head('rec/rec-rf64.wav'))?.metadata, { tenant: 'long', 'duration-sec': String(Math.round((dataBytes / 96000) * 1000) / 1000), 'end-reason': 'aborted' });
});

t.test('the largest RIFF master is still RIFF; one frame more is RF64', async (t) => {
  const { store } = await freshStore();
  const state = await stateDir();
  const riffMax = RIFF_MAX_DATA_BYTES - (RIFF_MAX_DATA_BYTES % 2);
  await sparseSpool(store, state, 'rec-riffmax', riffMax, []);
  await sparseSpool(store, state, 'rec-rf64min', riffMax + 2, []);
  const outcomes = await MasterUpload.recover({ store, stateDir: state, spool: new Spool({ maxBytes: 1024 * 1024 }) });
  t.equal(outcomes.length, 2);
  const riff = parseMasterHeader(await store.getRange('rec/rec-riffmax.wav', 0, MASTER_HEADER_BYTES - 1));
  t.equal(riff.container, 'RIFF');
  t.equal(riff.dataBytes, riffMax);
  const rf64 = parseMasterHeader(await store.getRange('rec/rec-rf64min.wav', 0, MASTER_HEADER_BYTES - 1));
  t.equal(rf64.container, 'RF64');
  t.equal(rf64.dataBytes, riffMax + 2);
});
