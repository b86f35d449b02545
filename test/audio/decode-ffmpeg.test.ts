import t from 'tap';
import { createReadStream, readFileSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import type { ChildProcess } from 'node:child_process';
import { decodeWithFfmpeg, ffmpegPath } from '../../src/audio/decode-ffmpeg.js';
import { FfmpegPool } from '../../src/audio/ffmpeg-pool.js';
import { moovAfterMdat, moovFirst } from '../../src/audio/mp4-faststart.js';
import * as fx from '../helpers/audio-fixtures.js';

const mono16k = { sampleRate: 16000, channels: 1 };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** An input that sends some bytes and then stalls forever, as a dead client would. */
function stalled(head: Buffer): PassThrough {
  const p = new PassThrough();
  p.write(head);
  return p;
}

t.test('binary comes from FFMPEG_PATH, else the ffmpeg on PATH, else the static ffmpeg', async (t) => {
  const saved = process.env.FFMPEG_PATH;
  t.teardown(() => {
    if (saved === undefined) delete process.env.FFMPEG_PATH;
    else process.env.FFMPEG_PATH = saved;
  });
  process.env.FFMPEG_PATH = '/usr/bin/ffmpeg';
  t.equal(ffmpegPath(), '/usr/bin/ffmpeg');
  delete process.env.FFMPEG_PATH;
  t.equal(ffmpegPath(), fx.PATH_FFMPEG ?? fx.STATIC_FFMPEG);
  process.env.FFMPEG_PATH = '/nonexistent/ffmpeg';
  await t.rejects(decodeWithFfmpeg(createReadStream(await fx.mp3()), { output: mono16k }), { code: 'INTERNAL' });
});

t.test('decodes AMR-NB, MP3 and AAC streamed through the pipe', async (t) => {
  const src = fx.wavDurationSec(await fx.speechWav());
  for (const make of [fx.amrNb, fx.mp3, fx.aacAdts]) {
    const r = await decodeWithFfmpeg(createReadStream(await make()), { output: mono16k });
    t.equal(r.pcm.length, r.frames * 2);
    t.ok(Math.abs(r.frames / 16000 - src) < 0.1, `${make.name}: ${r.frames / 16000}s vs ${src}s`);
  }
});

t.test('MP4 with moov at the end: fails from a pipe, decodes once moov is moved first in memory', async (t) => {
  const path = await fx.longAacM4a(120);
  const buf = fx.readFixture(path);
  t.ok(moovAfterMdat(buf), 'ffmpeg writes moov last by default');
  await t.rejects(decodeWithFfmpeg(Readable.from([buf]), { output: mono16k }), { code: 'CORRUPT_AUDIO' },
    'a non-seekable pipe cannot reach the samples');
  const fixed = moovFirst(buf);
  t.equal(fixed.length, buf.length);
  t.notOk(moovAfterMdat(fixed));
  t.equal(moovFirst(fixed), fixed, 'already first: returned as is');
  const r = await decodeWithFfmpeg(Readable.from([buf]), { output: mono16k, bufferWhole: true });
  t.ok(Math.abs(r.frames / 16000 - 120) < 0.05, `${r.frames / 16000}s`);
});

t.test('remuxed moov-at-end decodes to exactly the PCM of the faststart file', async (t) => {
  const end = await decodeWithFfmpeg(createReadStream(await fx.aacM4a()), { output: mono16k, bufferWhole: true });
  const fast = await decodeWithFfmpeg(createReadStream(await fx.aacM4a({ faststart: true })), { output: mono16k });
  t.ok(end.pcm.equals(fast.pcm));
});

t.test('not decodable is CORRUPT_AUDIO with ffmpeg\'s reason', async (t) => {
  const junk = Buffer.alloc(5000);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) & 0xff;
  const err = await decodeWithFfmpeg(Readable.from([junk]), { output: mono16k }).catch((e: unknown) => e);
  t.match(err, { code: 'CORRUPT_AUDIO', message: /audio could not be decoded: .+/ });
});

t.test('abort kills the child: no process left behind', async (t) => {
  const head = fx.readFixture(await fx.mp3()).subarray(0, 3000);
  let child: ChildProcess | undefined;
  const ac = new AbortController();
  const p = decodeWithFfmpeg(stalled(head), { output: mono16k, signal: ac.signal, onSpawn: (c) => (child = c) });
  await new Promise((r) => setTimeout(r, 200));
  const pid = child?.pid;
  t.ok(pid !== undefined && alive(pid), 'ffmpeg is running and waiting for input');
  ac.abort();
  await t.rejects(p, { code: 'CLIENT_ABORTED' });
  t.notOk(alive(pid!), 'child is gone when the promise settles');
});

t.test('wall-clock timeout is DECODE_TIMEOUT and kills the child', async (t) => {
  const head = fx.readFixture(await fx.mp3()).subarray(0, 3000);
  let pid: number | undefined;
  const p = decodeWithFfmpeg(stalled(head), { output: mono16k, timeoutMs: 300, onSpawn: (c) => (pid = c.pid) });
  await t.rejects(p, { code: 'DECODE_TIMEOUT' });
  t.ok(pid !== undefined);
  t.notOk(alive(pid!));
});

t.test('output limit is DURATION_TOO_LONG and kills the child', async (t) => {
  let pid: number | undefined;
  await t.rejects(
    decodeWithFfmpeg(createReadStream(await fx.longAacM4a(120)), { output: mono16k, bufferWhole: true, maxOutputBytes: 64000, onSpawn: (c) => (pid = c.pid) }),
    { code: 'DURATION_TOO_LONG' },
  );
  t.notOk(alive(pid!));
});

t.test('input limit while buffering MP4 is PAYLOAD_TOO_LARGE', async (t) => {
  await t.rejects(decodeWithFfmpeg(createReadStream(await fx.aacM4a()), { output: mono16k, bufferWhole: true, maxInputBytes: 10000 }),
    { code: 'PAYLOAD_TOO_LARGE' });
});

t.test('pool: bounded concurrency, bounded queue, abort while queued', async (t) => {
  const pool = new FfmpegPool({ maxConcurrent: 1, maxQueue: 1 });
  const head = fx.readFixture(await fx.mp3()).subarray(0, 3000);
  const first = new AbortController();
  const running = decodeWithFfmpeg(stalled(head), { output: mono16k, pool, signal: first.signal });
  const queuedAbort = new AbortController();
  const queued = decodeWithFfmpeg(Readable.from([fx.readFixture(await fx.mp3())]), { output: mono16k, pool, signal: queuedAbort.signal });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(pool.running, 1);
  t.equal(pool.waiting, 1);
  await t.rejects(decodeWithFfmpeg(Readable.from([head]), { output: mono16k, pool }), { code: 'OVERLOADED' }, 'queue full');
  queuedAbort.abort();
  await t.rejects(queued, { code: 'CLIENT_ABORTED' });
  t.equal(pool.waiting, 0);
  const next = decodeWithFfmpeg(createReadStream(await fx.mp3()), { output: mono16k, pool });
  first.abort();
  await t.rejects(running, { code: 'CLIENT_ABORTED' });
  const r = await next;
  t.ok(r.frames > 16000, 'the waiting decode ran once the slot was free');
  t.equal(pool.running, 0);
});

t.test('the child runs with CPU, address-space, file and core limits, an empty environment, only the pipe protocol', async (t) => {
  const head = fx.readFixture(await fx.mp3()).subarray(0, 3000);
  let pid: number | undefined;
  const ac = new AbortController();
  const p = decodeWithFfmpeg(stalled(head), { output: mono16k, signal: ac.signal, timeoutMs: 20_000, addressSpaceBytes: 768 * 1024 * 1024, demuxer: 'mp3', onSpawn: (c) => (pid = c.pid) });
  const caught = p.catch((e: unknown) => e);
  // the shell sets the limits, then execs ffmpeg in the same process
  for (let i = 0; i < 200 && (pid === undefined || readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'ffmpeg'); i++) await new Promise((r) => setTimeout(r, 10));
  const limits = readFileSync(`/proc/${pid!}/limits`, 'utf8');
  t.match(limits, /Max cpu time\s+21\s+21\s+seconds/);
  t.match(limits, /Max address space\s+805306368\s+805306368\s+bytes/);
  t.match(limits, /Max file size\s+0\s+0\s+bytes/);
  t.match(limits, /Max core file size\s+0\s+0\s+bytes/);
  // the shell adds PWD (the working directory is /); tap's process tracking adds its own to every child
  const env = readFileSync(`/proc/${pid!}/environ`, 'utf8').split('\0').filter((v) => v !== '' && !/^(NODE_OPTIONS|_TAPJS_[A-Z_]+)=/.test(v));
  t.same(env.sort(), ['LC_ALL=C', 'PWD=/'], 'nothing of the daemon\'s environment');
  const cmdline = readFileSync(`/proc/${pid!}/cmdline`, 'utf8').split('\0');
  t.same(cmdline.slice(cmdline.indexOf('-protocol_whitelist'), cmdline.indexOf('-protocol_whitelist') + 2), ['-protocol_whitelist', 'pipe']);
  t.same(cmdline.slice(cmdline.indexOf('-f'), cmdline.indexOf('-f') + 3), ['-f', 'mp3', '-i']);
  ac.abort();
  t.match(await caught, { code: 'CLIENT_ABORTED' });
});

t.test('a child past its CPU time is DECODE_TIMEOUT', async (t) => {
  // a limit of 0 s: the kernel's first CPU-time check kills the child
  const err = await decodeWithFfmpeg(createReadStream(await fx.longAacM4a(120)), { output: { sampleRate: 48000, channels: 2 }, bufferWhole: true, cpuSeconds: 0 }).catch((e: unknown) => e);
  t.match(err, { code: 'DECODE_TIMEOUT', message: /CPU time/ });
});

t.test('a child that cannot map its memory fails the decode, and nothing is left running', async (t) => {
  let pid: number | undefined;
  const err = await decodeWithFfmpeg(createReadStream(await fx.mp3()), { output: mono16k, addressSpaceBytes: 16 * 1024 * 1024, onSpawn: (c) => (pid = c.pid) }).catch((e: unknown) => e);
  t.match(err, { code: /^(CORRUPT_AUDIO|INTERNAL)$/ });
  t.notOk(alive(pid!));
});
