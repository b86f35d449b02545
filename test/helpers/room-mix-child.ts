/**
 * Child process that mixes a synthesized room and measures its memory: writes N masters of a
 * given length straight into an fs store (streamed to files, moved into place), takes the RSS
 * after a full collection as the baseline, then mixes the room (each track 1 s later than the
 * one before) while sampling the RSS every 20 ms (a collection before each sample, so the
 * growth is what the mixer holds, not garbage not yet collected). Prints one JSON line.
 * argv: root, tracks, seconds, sampleRate. Run with --expose-gc.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { masterHeader } from '../../src/audio/wav.js';
import { mixSampleFn } from '../../src/rooms/mix-law.js';
import { mixToStore } from '../../src/rooms/mixer.js';
import { FsObjectStore } from '../../src/storage/fs-store.js';

const [root, tracksArg, secondsArg, rateArg] = process.argv.slice(2) as [string, string, string, string];
const tracks = Number(tracksArg);
const rate = Number(rateArg);
const samples = Number(secondsArg) * rate;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const store = new FsObjectStore({ root, presign: { baseUrl: 'http://x', secret: 's' } });
await store.start();

// one second of a seeded signal per track, written over and over
for (let i = 0; i < tracks; i++) {
  const second = Buffer.alloc(rate * 2);
  let x = i + 1;
  for (let s = 0; s < rate; s++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    second.writeInt16LE(((x >>> 16) & 0x3fff) - 8192, s * 2);
  }
  const file = join(root, `src-${i}.wav`);
  const out = createWriteStream(file);
  out.write(masterHeader({ sampleRate: rate, channels: 1 }, samples * 2));
  for (let s = 0; s < samples; s += rate) if (!out.write(second.subarray(0, Math.min(rate, samples - s) * 2))) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
  await store.putFile(`masters/${i}.wav`, file, { contentType: 'audio/wav' });
}

gc();
const baseline = process.memoryUsage().rss;
let peak = baseline;
const gcEveryMs = Number(process.env.GC_EVERY_MS ?? 250);
const sampler = setInterval(() => {
  if (gcEveryMs > 0) gc();
  peak = Math.max(peak, process.memoryUsage().rss);
}, gcEveryMs > 0 ? gcEveryMs : 20);
const cpu0 = process.cpuUsage();
const roomSamples = samples + (tracks - 1) * rate;
const result = await mixToStore({
  store,
  inputs: Array.from({ length: tracks }, (_, i) => ({ key: `masters/${i}.wav`, out: 0, runs: [{ start: 0, samples, roomOffset: i * rate }] })),
  samples: roomSamples,
  sampleRate: rate,
  outChannels: 1,
  combine: mixSampleFn({ headroomDb: 6, knee: 0.5 }),
  key: 'rooms/mix.wav',
  partBytes: 5 * 1024 * 1024,
});
const cpu = process.cpuUsage(cpu0);
clearInterval(sampler);
gc();
peak = Math.max(peak, process.memoryUsage().rss);
const head = await store.head('rooms/mix.wav');
process.stdout.write(
  `${JSON.stringify({ baseline, peak, growth: peak - baseline, masterBytes: tracks * samples * 2, roomSamples, mixBytes: head?.size ?? 0, reads: result.reads, maxSliceMs: result.maxSliceMs, cpuSec: (cpu.user + cpu.system) / 1e6 })}\n`,
);
await store.stop();
