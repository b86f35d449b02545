/**
 * Child process that measures finalization: spools N masters of a given length, waits until
 * every full part is uploaded (the live phase), then finishes them all at once through a
 * FinalizeQueue and reports the RSS growth over the pre-finalize baseline and the CPU time
 * spent. Run with --expose-gc: the baseline is taken after a full collection, and with
 * `gcEveryMs` > 0 a collection runs before each sample, so the growth is what finalization
 * holds, not garbage V8 has not collected yet (it lets up to 64 MiB of buffers linger).
 * argv: driver (fs|s3), store location (root | endpoint), stateDir, streams, dataBytes, queue size, gcEveryMs[, S3 checksum]
 */
import { FinalizeQueue } from '../../src/recording/finalize-queue.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';
import { MasterUpload } from '../../src/storage/master-upload.js';
import { Spool } from '../../src/storage/spool.js';
import { MASTER_HEADER_BYTES } from '../../src/audio/wav.js';
import type { S3ChecksumMode } from '../../src/storage/s3-store.js';
import { s3rverStore } from './storage-s3rver.js';

const [driver, where, stateDir, streamsArg, bytesArg, queueArg, gcArg, checksumArg] = process.argv.slice(2) as [string, string, string, string, string, string, string, string | undefined];
const gcEveryMs = Number(gcArg);
const streams = Number(streamsArg);
const dataBytes = Number(bytesArg);
const queue = new FinalizeQueue(Number(queueArg));
const partSize = 5 * 1024 * 1024;
const store = driver === 'fs' ? new FsObjectStore({ root: where, presign: { baseUrl: 'http://x', secret: 's' } }) : s3rverStore(where, { requestTimeoutMs: 120_000, checksum: (checksumArg ?? 'md5') as S3ChecksumMode });
await store.start();
const spool = new Spool({ maxBytes: 64 * 1024 ** 3 });
const gc = (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

// 20 ms of 48 kHz mono, reused (the pool of the daemon does the same); write() takes a view
const frame = Buffer.alloc(1920 * 50, 7);
// One short recording finished before anything is measured: the store's first end starts its
// worker threads (the fs place worker, the S3 digester), a one-time cost of the process that
// is not what many finalizations at once hold.
{
  const warm = await MasterUpload.create({
    store, stateDir, recordingId: 'fin-warm', key: 'fin/warm.wav', format: { sampleRate: 48000, channels: 1 },
    metadata: { tenant: 'bench' }, partSize, spool,
  });
  warm.write(frame.subarray(0, 1920));
  await warm.flush();
  await warm.finish({ 'duration-sec': '0' });
}
const uploads: MasterUpload[] = [];
for (let i = 0; i < streams; i++) {
  const upload = await MasterUpload.create({
    store, stateDir, recordingId: `fin-${i}`, key: `fin/${i}.wav`, format: { sampleRate: 48000, channels: 1 },
    metadata: { tenant: 'bench' }, partSize, spool,
  });
  for (let done = 0; done < dataBytes; done += frame.length) {
    upload.write(frame.subarray(0, Math.min(frame.length, dataBytes - done)));
    if (upload.stats.queuedBytes > 512 * 1024) await upload.flush();
  }
  await upload.flush();
  uploads.push(upload);
}
// the live phase is over once every full part but part 1 is in the store
const fullParts = Math.floor((MASTER_HEADER_BYTES + dataBytes) / partSize);
const uploaded = driver === 'fs' ? 0 : Math.max(0, fullParts - 1);
while (uploads.some((u) => u.stats.uploadedParts < uploaded)) await new Promise((r) => setTimeout(r, 20));

gc();
await new Promise((r) => setTimeout(r, 100));
gc();
const base = process.memoryUsage();
let peakRss = base.rss;
let peakExternal = base.external + base.arrayBuffers;
const sampler = setInterval(() => {
  // a scavenge frees the young buffers streams drop (cheap); what it cannot free is held
  if (gcEveryMs > 0) gc({ type: 'minor' });
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakExternal = Math.max(peakExternal, m.external + m.arrayBuffers);
}, gcEveryMs > 0 ? gcEveryMs : 5);
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
const results = await Promise.all(uploads.map((u) => queue.run(() => u.finish({ 'duration-sec': '1' }))));
const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
const cpu = process.cpuUsage(cpu0);
clearInterval(sampler);
const end = process.memoryUsage();
peakRss = Math.max(peakRss, end.rss);
await store.stop();
process.stdout.write(`${JSON.stringify({
  driver, streams, dataBytes, queue: queue.concurrency,
  parts: results[0]!.parts,
  stored: results.reduce((s, r) => s + r.dataBytes, 0),
  baseRss: base.rss,
  baseHeap: base.heapUsed,
  rssGrowth: peakRss - base.rss,
  externalGrowth: peakExternal - (base.external + base.arrayBuffers),
  cpuMsPerStream: (cpu.user + cpu.system) / 1000 / streams,
  wallMs,
})}\n`);
