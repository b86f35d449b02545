// CPU of the per-chunk path alone, in one process: chunk objects on the fs store (journal,
// placer), their `recording.chunk` events through the outbox to the NDJSON sink, and dispatch
// to a receiver in a child process, fed `--rate` chunks per second of `--chunk-seconds` of
// 48 kHz mono for `--seconds`. Prints the process CPU (every thread) per chunk and that of the
// event loop's thread (from `--cpu-prof` when given). CPU time, not wall time, so a loaded
// machine moves it less than the daemon benches; same-run comparisons still say the most.
//
//   node bench/chunk-cost.mjs [--rate 250] [--seconds 10] [--chunk-seconds 2] [--dist dist]
//        [--no-dispatch] [--no-objects] [--urls]
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { parseArgs } from './lib/table.mjs';

const args = parseArgs();
if (args.receiver) {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => { res.writeHead(200, { 'content-length': '0' }); res.end(); });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1', () => process.send(server.address().port));
} else {
  const RATE = Number(args.rate ?? 250);
  const SECONDS = Number(args.seconds ?? 10);
  const CHUNK_SECONDS = Number(args['chunk-seconds'] ?? 2);
  const DIST = resolve(String(args.dist ?? new URL('../dist', import.meta.url).pathname));
  const objects = !args['no-objects'];
  const dispatch = !args['no-dispatch'];
  const m = async (p) => import(pathToFileURL(join(DIST, p)).href);
  const { FsObjectStore } = await m('storage/fs-store.js');
  const { MeteredObjectStore } = await m('storage/metered-store.js');
  const { ObjectKeys } = await m('storage/keys.js');
  const { Outbox } = await m('events/outbox.js');
  const { NdjsonSink } = await m('events/ndjson-sink.js');
  const { Metrics } = await m('observability/metrics.js');
  const { ChunkObjects } = await m('recording/chunk-objects.js');
  const { ChunkDispatcher } = await m('dispatch/chunk-dispatch.js');
  const { ChunkDispatchSink } = await m('recording/chunk-dispatch-sink.js');
  const { encodeWav } = await m('audio/wav.js');

  const dir = mkdtempSync(join(tmpdir(), 'chunk-cost-'));
  const logger = pino({ level: 'warn' });
  const metrics = new Metrics({ defaultMetrics: false });
  const store = new MeteredObjectStore(new FsObjectStore({ root: join(dir, 'store'), presign: { baseUrl: 'http://127.0.0.1:1', secret: 'bench-secret' } }), metrics);
  await store.start?.();
  const outbox = new Outbox({ dir: join(dir, 'outbox'), sinks: [new NdjsonSink({ path: join(dir, 'events.ndjson') })], logger, metrics });
  await outbox.start();
  const presign = async (key) => ({ url: await store.presign(key, 3600), expiresAt: new Date(Date.now() + 3600_000) });
  const sinks = [];
  if (objects) sinks.push(new ChunkObjects({ store, keys: new ObjectKeys({}), events: outbox, presign, urls: Boolean(args.urls), logger, metrics }));
  let receiver = null;
  let dispatcher = null;
  if (dispatch) {
    receiver = fork(new URL(import.meta.url).pathname, ['--receiver'], { stdio: 'inherit' });
    const port = await new Promise((r) => receiver.once('message', r));
    dispatcher = new ChunkDispatcher({ url: `http://127.0.0.1:${port}/analyze`, logger, maxAttempts: 2 });
    sinks.push(new ChunkDispatchSink(dispatcher, 'wav', metrics));
  }
  const format = { sampleRate: 48000, channels: 1, bitsPerSample: 16 };
  const frames = 48000 * CHUNK_SECONDS;
  const pcm = Buffer.alloc(frames * 2);
  for (let i = 0; i < frames; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin(i / 7)), i * 2);
  const streams = 500;
  const ids = Array.from({ length: streams }, (_, i) => ({ recordingId: `rec-${i}`, tenant: 'default', roomName: `room-${i % 50}`, participant: `p${i}`, trackId: `TR_${i}`, source: 'livekit' }));
  const seqs = new Array(streams).fill(0);

  const total = RATE * SECONDS;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let n = 0;
  // as a recording cuts them: the WAV built per chunk, handed to every sink
  await new Promise((done) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.round((Number(process.hrtime.bigint() - t0) / 1e9) * RATE));
      for (; n < due; n++) {
        const s = n % streams;
        const wav = encodeWav(pcm, format, { shared: true }); // as the recording builds it (builds without the option copy it plainly)
        for (const sink of sinks) sink.chunk(ids[s], seqs[s], wav, format, seqs[s] * frames, frames);
        seqs[s]++;
      }
      if (n >= total) { clearInterval(tick); done(); }
    }, 10);
  });
  for (const id of ids) await sinks[0]?.whenIdle?.(id.recordingId);
  await dispatcher?.idle();
  await outbox.stop(Date.now() + 10_000);
  const c1 = process.cpuUsage(c0);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuMs = (c1.user + c1.system) / 1000;
  const s = outbox.stats();
  // last frame → stored, upper bucket bounds (the daemon's histogram)
  const stored = (await metrics.registry.getSingleMetric('audio_ingestd_chunk_store_latency_seconds').get()).values.filter((v) => v.metricName?.endsWith('_bucket'));
  const storedQ = (p) => {
    const count = stored.at(-1)?.value ?? 0;
    const b = stored.find((v) => v.value >= p * count);
    return count === 0 ? '—' : b.labels.le === '+Inf' ? '>max' : `≤${Math.round(Number(b.labels.le) * 1000)}`;
  };
  const dropped = [...(await metrics.registry.getSingleMetric('audio_ingestd_frames_dropped_total').get()).values].filter((v) => v.value > 0).map((v) => `${v.labels.reason}:${v.value}`).join(' ') || 0;
  console.log(JSON.stringify({
    dist: DIST, rate: RATE, seconds: SECONDS, chunks: total, objects, dispatch, urls: Boolean(args.urls),
    'cpu ms/chunk': +(cpuMs / total).toFixed(3), 'user ms/chunk': +(c1.user / 1000 / total).toFixed(3), 'sys ms/chunk': +(c1.system / 1000 / total).toFixed(3),
    'cpu cores': +(cpuMs / 1000 / wall).toFixed(3), wall: +wall.toFixed(1),
    'stored p50 ms': storedQ(0.5), 'stored p99 ms': storedQ(0.99), events: s.appended, flushes: s.flushes, segmentReads: s.segmentReads ?? 'n/a', sent: dispatcher?.stats().sent, dropped,
  }));
  await store.stop?.();
  receiver?.kill();
  rmSync(dir, { recursive: true, force: true });
}
