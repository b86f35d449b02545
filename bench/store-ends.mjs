// CPU of the fs store's part of a recording's start and end, in one process, builds alternating:
// N recordings open together (catalog record and index entry, the rooms' track record, the
// master's spool folder, manifest and first 2 s chunk), their audio is written, then all end in
// the same moment (master moved into the store with its sidecar, catalog and track records
// rewritten, spool removed). Process CPU (every thread: event loop, placer, mover, libuv) of the
// start and of the end, per recording. Each round runs in a fresh store folder under bench/.out
// (the filesystem the daemon benches use), kept until the script exits (see bench/README.md: the
// inodes freed by one round slow the file creations of the next one, whoever deletes them).
//
//   node bench/store-ends.mjs [--n 200] [--seconds 15] [--rounds 2] [--dist dist,<other build>/dist] [--windows]
// (--windows: each row gives its phases on CLOCK_MONOTONIC, for `perf record -k CLOCK_MONOTONIC -p <pid>`)
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { removeAtExit, tempDir } from './lib/daemon.mjs';
import { sleep } from './lib/proc.mjs';
import { parseArgs, printTable } from './lib/table.mjs';

const args = parseArgs();
const N = Number(args.n ?? 200);
const SECONDS = Number(args.seconds ?? 15);
const ROUNDS = Number(args.rounds ?? 2);
const DISTS = String(args.dist ?? new URL('../dist', import.meta.url).pathname).split(',').map((d) => resolve(d));
const RATE = 48_000;
const CHUNK = Buffer.alloc(2 * RATE * 2, 1); // 2 s of 48 kHz mono

/** Process CPU in ms, and the time on CLOCK_MONOTONIC (the clock of `perf record -k CLOCK_MONOTONIC`) in s. */
const cpuMs = () => {
  const u = process.cpuUsage();
  return { total: (u.user + u.system) / 1000, system: u.system / 1000, mono: Number(process.hrtime.bigint() / 1000n) / 1e6 };
};
const load1 = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

async function build(dist) {
  const m = async (p) => import(pathToFileURL(join(dist, p)).href);
  return {
    ...(await m('storage/fs-store.js')),
    ...(await m('storage/keys.js')),
    ...(await m('storage/spool.js')),
    ...(await m('storage/master-upload.js')),
    ...(await m('storage/group-commit.js')),
    ...(await m('recording/recording-catalog.js')),
    ...(await m('observability/metrics.js')),
  };
}

async function round(b, label) {
  const dir = tempDir('store-ends');
  removeAtExit(dir);
  const store = new b.FsObjectStore({ root: join(dir, 'store') });
  await store.start();
  const keys = new b.ObjectKeys();
  const metrics = new b.Metrics({ defaultMetrics: false });
  const logger = pino({ level: 'silent' });
  const catalog = new b.RecordingCatalog({ store, keys, logger, metrics });
  const tracks = new b.GroupCommit(store);
  const spool = new b.Spool({ maxBytes: 64 * 1024 ** 3 });
  const ids = Array.from({ length: N }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  const track = (i, state) => ({
    key: `rooms-state/default/bench-room/tracks/${ids[i]}.json`,
    body: Buffer.from(JSON.stringify({ recordingId: ids[i], participant: `p${i}`, trackId: `t${i}`, state, at: new Date().toISOString() })),
    options: { contentType: 'application/json', metadata: { tenant: 'default' } },
  });
  // warm-up: the worker threads started, modules compiled (not measured)
  await store.putBatch([{ key: 'warm/x.json', body: Buffer.from('{}'), options: { contentType: 'application/json', metadata: { a: 'b' } } }]);
  await sleep(200);

  const c0 = cpuMs();
  const masters = await Promise.all(ids.map(async (id, i) => {
    const identity = { recordingId: id, tenant: 'default', roomName: 'bench-room', participant: `p${i}`, trackId: `t${i}`, source: 'livekit' };
    const parts = { tenant: 'default', roomName: 'bench-room', participant: `p${i}`, trackId: `t${i}`, recordingId: id };
    const key = keys.master(parts);
    const master = await b.MasterUpload.create({
      store, stateDir: dir, recordingId: id, key, format: { sampleRate: RATE, channels: 1 },
      metadata: { tenant: 'default', source: 'livekit', 'recording-id': id, 'sample-rate': String(RATE), channels: '1', 'room-name': 'bench-room', participant: `p${i}`, 'track-id': `t${i}` },
      partSize: 5 * 1024 * 1024, spool,
    });
    catalog.opened({ identity, key, chunkPrefix: `${keys.recordingFolder(parts)}chunks/`, sampleRate: RATE, channels: 1, startedAt: new Date() });
    const trackPut = tracks.put(track(i, 'live'));
    master.write(Buffer.from(CHUNK));
    await master.flush();
    await trackPut;
    return { identity, master };
  }));
  await catalog.whenIdle();
  const c1 = cpuMs();
  for (let s = 2; s < SECONDS; s += 2) for (const { master } of masters) master.write(Buffer.from(CHUNK));
  await Promise.all(masters.map(({ master }) => master.flush()));
  await sleep(500);

  const c2 = cpuMs();
  const t2 = Date.now();
  await Promise.all(masters.map(async ({ identity, master }, i) => {
    const stored = await master.finish({ 'duration-sec': String(SECONDS), 'end-reason': 'completed' });
    await Promise.all([
      catalog.finished(identity, { status: 'completed', endReason: 'completed', key: stored.key, sizeBytes: stored.size, durationSec: SECONDS, frames: SECONDS * RATE, droppedBytes: 0, muteIntervals: [], error: null }),
      tracks.put(track(i, 'ended')),
    ]);
  }));
  const c3 = cpuMs();
  const wall = (Date.now() - t2) / 1000;
  await store.stop();
  return {
    build: label,
    N,
    'start ms CPU/rec': (c1.total - c0.total) / N,
    'start kernel %': (100 * (c1.system - c0.system)) / (c1.total - c0.total),
    'end ms CPU/rec': (c3.total - c2.total) / N,
    'end kernel %': (100 * (c3.system - c2.system)) / (c3.total - c2.total),
    'end wall s': wall,
    load1: load1(),
    ...(args.windows ? { windows: `start ${c0.mono.toFixed(6)},${c1.mono.toFixed(6)} end ${c2.mono.toFixed(6)},${c3.mono.toFixed(6)}` } : {}),
  };
}

const builds = await Promise.all(DISTS.map(build));
const rows = [];
for (let r = 0; r < ROUNDS; r++) {
  // the order alternates too: each round sees the inodes the round before it freed
  const order = r % 2 === 0 ? DISTS.map((_, i) => i) : DISTS.map((_, i) => DISTS.length - 1 - i);
  for (const i of order) {
    const row = await round(builds[i], DISTS.length > 1 ? `${i}: ${DISTS[i]}` : DISTS[i]);
    rows.push(row);
    process.stdout.write(`  ${JSON.stringify(row)}\n`);
    await sleep(1000);
  }
}
printTable(`fs store: a recording's start and end (N = ${N}, ${SECONDS} s masters)`, rows);
