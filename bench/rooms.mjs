// Rooms — mix throughput: audio-seconds of room mixed per CPU-second by the streaming room
// mixer (range reads from every master, sum, headroom + soft limiter, multipart upload to the
// fs store), against two baselines measured in the same run on the same masters: reading the
// same windows only (the I/O floor), and reading them plus a plain sum loop (no law, no upload).
// Masters are synthesized 48 kHz mono WAVs put directly into the store; track i starts i s late.
//
//   node bench/rooms.mjs [--quick] [--tracks 50] [--minutes 10] [--rate 48000]
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { masterHeader } from '../dist/audio/wav.js';
import { mixSampleFn } from '../dist/rooms/mix-law.js';
import { mixToStore } from '../dist/rooms/mixer.js';
import { FsObjectStore } from '../dist/storage/fs-store.js';
import { removeAtExit, saveResults, tempDir } from './lib/daemon.mjs';
import { MiB } from './lib/proc.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const TRACKS = Number(args.tracks ?? (args.quick ? 20 : 50));
const MINUTES = Number(args.minutes ?? (args.quick ? 2 : 10));
const RATE = Number(args.rate ?? 48000);
const WINDOW = 2 * RATE;
const samples = MINUTES * 60 * RATE;
const roomSamples = samples + (TRACKS - 1) * RATE;
const roomSec = roomSamples / RATE;

const dir = tempDir('rooms');
removeAtExit(dir);
const store = new FsObjectStore({ root: join(dir, 'store'), presign: { baseUrl: 'http://x', secret: 's' } });
await store.start();
for (let i = 0; i < TRACKS; i++) {
  const second = Buffer.alloc(RATE * 2);
  let x = i + 1;
  for (let s = 0; s < RATE; s++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    second.writeInt16LE(((x >>> 16) & 0x7fff) - 16384, s * 2);
  }
  const file = join(dir, `src-${i}.wav`);
  const out = createWriteStream(file);
  out.write(masterHeader({ sampleRate: RATE, channels: 1 }, samples * 2));
  for (let s = 0; s < samples; s += RATE) if (!out.write(second.subarray(0, Math.min(RATE, samples - s) * 2))) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
  await store.putFile(`masters/${i}.wav`, file, { contentType: 'audio/wav' });
}
const inputs = Array.from({ length: TRACKS }, (_, i) => ({ key: `masters/${i}.wav`, out: 0, runs: [{ start: 0, samples, roomOffset: i * RATE }] }));

/** Runs `fn`, returning CPU seconds, wall seconds, peak RSS growth and what fn returned. */
async function measure(fn) {
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  clearInterval(sampler);
  return { cpu: (c.user + c.system) / 1e6, wall, growth: Math.max(0, peak - base), value };
}

/** The mixer's reads, window by window, 8 in flight; `sum` adds each window's pieces into a plain array. */
async function readWindows(sum) {
  const acc = new Float64Array(WINDOW);
  let bytes = 0;
  for (let w0 = 0; w0 < roomSamples; w0 += WINDOW) {
    const n = Math.min(WINDOW, roomSamples - w0);
    const jobs = [];
    for (const input of inputs) {
      const r = input.runs[0];
      const a = Math.max(w0, r.roomOffset);
      const b = Math.min(w0 + n, r.roomOffset + r.samples);
      if (b > a) jobs.push({ key: input.key, first: 80 + (a - r.roomOffset) * 2, last: 80 + (b - r.roomOffset) * 2 - 1, at: a - w0 });
    }
    let next = 0;
    const got = [];
    await Promise.all(Array.from({ length: Math.min(8, jobs.length) }, async () => {
      while (next < jobs.length) {
        const j = jobs[next++];
        got.push({ at: j.at, data: await store.getRange(j.key, j.first, j.last) });
      }
    }));
    if (sum) {
      acc.fill(0, 0, n);
      for (const p of got) {
        const copy = Buffer.from(p.data);
        const pcm = new Int16Array(copy.buffer, copy.byteOffset, copy.length >> 1);
        for (let i = 0; i < pcm.length; i++) acc[p.at + i] += pcm[i];
      }
    }
    for (const p of got) bytes += p.data.length;
  }
  return bytes;
}

const rows = [];
const read = await measure(() => readWindows(false));
rows.push({ path: 'read the windows only (baseline)', 'room s': roomSec, 'cpu s': read.cpu, 'wall s': read.wall, 'room s / cpu s': roomSec / read.cpu, 'RSS growth MiB': read.growth / MiB });
const summed = await measure(() => readWindows(true));
rows.push({ path: 'read + plain sum loop (baseline)', 'room s': roomSec, 'cpu s': summed.cpu, 'wall s': summed.wall, 'room s / cpu s': roomSec / summed.cpu, 'RSS growth MiB': summed.growth / MiB });
const mixed = await measure(() =>
  mixToStore({ store, inputs, samples: roomSamples, sampleRate: RATE, outChannels: 1, combine: mixSampleFn({ headroomDb: 6, knee: 0.5 }), key: 'rooms/mix.wav', partBytes: 5 * MiB }),
);
rows.push({
  path: 'room mixer: reads + sum + limiter + multipart upload',
  'room s': roomSec,
  'cpu s': mixed.cpu,
  'wall s': mixed.wall,
  'room s / cpu s': roomSec / mixed.cpu,
  'RSS growth MiB': mixed.growth / MiB,
  'longest slice ms (first window)': mixed.value.maxSliceMs,
  'longest slice ms (after)': mixed.value.maxWarmSliceMs,
  'vs read only': read.cpu / mixed.cpu,
  'vs read + sum': summed.cpu / mixed.cpu,
});
await store.stop();
const title = `Rooms: mixing ${TRACKS} tracks × ${MINUTES} min at ${RATE / 1000} kHz (${(TRACKS * samples * 2 / MiB).toFixed(0)} MiB of masters, fs store)`;
const md = printTable(title, rows);
saveResults('rooms', { tracks: TRACKS, minutes: MINUTES, rate: RATE, rows }, `${title}\n\n${md}`);
