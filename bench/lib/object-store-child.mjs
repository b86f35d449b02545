// One object-store run in a process of its own (so its peak RSS is the run's alone).
// argv: <mode: multipart|put> <endpoint> <bucket> <recordings> <bytesPerRecording> <stateDir>
// stdout: { secs, bytes, cpuSec, peakRssBytes, baseRssBytes, parts }
import { randomUUID } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { MasterUpload } from '../../dist/storage/master-upload.js';
import { S3ObjectStore } from '../../dist/storage/s3-store.js';
import { Spool } from '../../dist/storage/spool.js';
import { cpuSeconds, rssBytes, rssSampler } from './proc.mjs';

const [mode, endpoint, bucket, recordingsArg, bytesArg, stateDir] = process.argv.slice(2);
const recordings = Number(recordingsArg);
const bytesPerRecording = Number(bytesArg);
const CHUNK = 2 * 48000 * 2; // a 2 s chunk of 48 kHz mono s16le, as the live path hands to the master
const chunk = Buffer.alloc(CHUNK, 7);
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const baseRss = rssBytes(process.pid);
const rss = rssSampler(process.pid, 100);
const cpu0 = cpuSeconds(process.pid);
const t0 = performance.now();
let parts = 0;

if (mode === 'multipart') {
  const store = new S3ObjectStore({ endpoint, region: 'us-east-1', bucket, forcePathStyle: true, credentials });
  await store.start();
  const spool = new Spool({ maxBytes: 64 * 1024 ** 3 });
  await Promise.all(
    Array.from({ length: recordings }, async (_, r) => {
      const recordingId = randomUUID();
      const m = await MasterUpload.create({
        store, stateDir, recordingId, key: `bench/multipart/${r}-${recordingId}.wav`, format: { sampleRate: 48000, channels: 1 },
        metadata: { tenant: 'default', source: 'livekit' }, partSize: 5 * 1024 * 1024, spool,
      });
      for (let written = 0; written < bytesPerRecording; written += CHUNK) {
        // The master copies nothing: each chunk is its own buffer (the live pipeline hands over a fresh one).
        m.write(Buffer.from(chunk));
        // Faster than real time: keep under the in-memory queue bound instead of dropping.
        if (m.stats.queuedBytes > 512 * 1024) await m.flush();
      }
      const res = await m.finish();
      if (res.droppedBytes) throw new Error(`dropped ${res.droppedBytes} bytes`);
      parts += res.parts;
    }),
  );
  await store.stop();
} else {
  // Baseline: the whole recording in memory, one PutObject each.
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials, requestChecksumCalculation: 'WHEN_REQUIRED' });
  await Promise.all(
    Array.from({ length: recordings }, async (_, r) => {
      const body = Buffer.alloc(bytesPerRecording + 44, 7);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `bench/put/${r}.wav`, Body: body, ContentType: 'audio/wav' }));
      parts += 1;
    }),
  );
}

const secs = (performance.now() - t0) / 1000;
process.stdout.write(`${JSON.stringify({ secs, bytes: recordings * bytesPerRecording, cpuSec: cpuSeconds(process.pid) - cpu0, peakRssBytes: rss.stop(), baseRssBytes: baseRss, parts })}\n`);
