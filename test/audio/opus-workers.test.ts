import t from 'tap';
import { PassThrough, Readable } from 'node:stream';
import { threadId } from 'node:worker_threads';
import { decodeAudio } from '../../src/audio/decode.js';
import { decodeOggOpus } from '../../src/audio/decode-opus.js';
import { OpusWorkerPool, autoWorkers } from '../../src/audio/opus-workers.js';
import * as fx from '../helpers/audio-fixtures.js';

/** `buf` in pieces of `size` bytes, each a slice of one shared buffer (as HTTP bodies come). */
function pieces(buf: Buffer, size = 1000): Readable {
  const parts: Buffer[] = [];
  for (let o = 0; o < buf.length; o += size) parts.push(buf.subarray(o, o + size));
  return Readable.from(parts);
}

const HEAD = 64;

t.test('workers decode exactly what the in-process decoder does, many notes at once', async (t) => {
  const mono = fx.readFixture(await fx.opusVoiceNote());
  const stereo = fx.readFixture(await fx.opusStereo48k());
  const pool = new OpusWorkerPool({ size: 2 });
  t.teardown(() => pool.stop());
  t.equal(pool.size, 2);
  for (const [name, buf, output] of [
    ['16 kHz mono note', mono, { sampleRate: 16000, channels: 1 }],
    ['48 kHz stereo → 16 kHz mono', stereo, { sampleRate: 16000, channels: 1 }],
    ['48 kHz stereo → 44.1 kHz stereo (resampled)', stereo, { sampleRate: 44100, channels: 2 }],
  ] as const) {
    const here = await decodeOggOpus(pieces(buf.subarray(HEAD)), { output, head: buf.subarray(0, HEAD) });
    const jobs = Array.from({ length: 6 }, (_, i) => pool.decode(pieces(buf.subarray(HEAD), 300 + 97 * i), { output, head: buf.subarray(0, HEAD) }));
    t.equal(pool.active, 6, `${name}: six jobs over two workers`);
    const results = await Promise.all(jobs);
    for (const r of results) {
      t.equal(r.frames, here.frames);
      t.ok(r.pcm.equals(here.pcm), `${name}: same PCM, byte for byte (${r.pcm.length} bytes)`);
      t.equal(r.preSkip, here.preSkip);
    }
    t.equal(pool.active, 0);
  }
});

t.test('a worker failure is the decoder error, and the body stops being read', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const pool = new OpusWorkerPool({ size: 1 });
  t.teardown(() => pool.stop());
  const output = { sampleRate: 16000, channels: 1 };

  await t.rejects(pool.decode(pieces(buf.subarray(HEAD, buf.length - 200)), { output, head: buf.subarray(0, HEAD) }), { code: 'TRUNCATED_AUDIO' });

  const bad = Buffer.from(buf);
  bad[bad.length - 300] ^= 0xff; // breaks a page CRC
  await t.rejects(pool.decode(pieces(bad.subarray(HEAD)), { output, head: bad.subarray(0, HEAD) }), { code: 'CORRUPT_AUDIO' });

  // too long: the worker stops at the limit while the body is still arriving
  const body = new PassThrough();
  let fed = 0;
  const feeder = setInterval(() => {
    if (fed >= buf.length - HEAD) return;
    body.write(buf.subarray(HEAD + fed, HEAD + fed + 500));
    fed += 500;
  }, 2);
  t.teardown(() => clearInterval(feeder));
  await t.rejects(pool.decode(body, { output, head: buf.subarray(0, HEAD), maxOutputBytes: 3200 }), { code: 'DURATION_TOO_LONG', details: { limitBytes: 3200 } });
  clearInterval(feeder);
  t.ok(body.destroyed, 'the body was released');
  t.ok(fed < buf.length - HEAD, `reading stopped early (${fed} of ${buf.length - HEAD} bytes)`);

  const ok = await pool.decode(pieces(buf.subarray(HEAD)), { output, head: buf.subarray(0, HEAD) });
  t.ok(ok.frames > 0, 'the worker goes on after failures');
});

t.test('abort, a dead worker and stop', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const output = { sampleRate: 16000, channels: 1 };
  const pool = new OpusWorkerPool({ size: 1 });
  t.teardown(() => pool.stop());

  const ac = new AbortController();
  const body = new PassThrough();
  body.write(buf.subarray(HEAD, HEAD + 1000));
  const p = pool.decode(body, { output, head: buf.subarray(0, HEAD), signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await t.rejects(p, { code: 'CLIENT_ABORTED' }, 'a signal without an AppError reason is CLIENT_ABORTED');
  t.ok(body.destroyed);
  t.equal(pool.active, 0);

  // a worker that exits fails its jobs and is replaced
  const slow = new PassThrough();
  slow.write(buf.subarray(HEAD, HEAD + 1000));
  const dying = pool.decode(slow, { output, head: buf.subarray(0, HEAD) });
  dying.catch(() => undefined); // asserted below
  await new Promise((r) => setTimeout(r, 50));
  const slots = (pool as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots;
  const first = slots[0]!.worker;
  await first.terminate();
  await t.rejects(dying, { code: 'INTERNAL' });
  t.not(slots[0]!.worker, first, 'replaced');
  const after = await pool.decode(pieces(buf.subarray(HEAD)), { output, head: buf.subarray(0, HEAD) });
  t.ok(after.frames > 0, 'the new worker decodes');

  const pending = new PassThrough();
  pending.write(buf.subarray(HEAD, HEAD + 1000));
  const cut = t.rejects(pool.decode(pending, { output, head: buf.subarray(0, HEAD) }), { code: 'DRAINING' });
  await new Promise((r) => setTimeout(r, 20));
  await pool.stop();
  await cut;
  await t.rejects(pool.decode(pieces(buf), { output }), { code: 'DRAINING' });
});

t.test('decodeAudio hands Ogg/Opus to the workers: the event loop stays free while a long note decodes', async (t) => {
  const buf = fx.readFixture(await fx.longOpusVoiceNote(120));
  const pool = new OpusWorkerPool({ size: 'auto' });
  t.teardown(() => pool.stop());
  t.equal(pool.size, autoWorkers());
  t.ok(threadId === 0, 'the test runs on the main thread');
  // ticks of a 1 ms interval while the note decodes: a decode on this thread would starve them
  let ticks = 0;
  let longest = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    ticks++;
  }, 1);
  const inWorkers = await decodeAudio(Readable.from([buf]), { output: { sampleRate: 16000, channels: 1 }, opusWorkers: pool });
  clearInterval(timer);
  const here = await decodeAudio(Readable.from([buf]), { output: { sampleRate: 16000, channels: 1 } });
  t.equal(inWorkers.decoder, 'opus');
  t.ok(inWorkers.pcm.equals(here.pcm), 'same PCM as on the main thread');
  t.ok(ticks > 0, `the event loop ran ${ticks} timer ticks during the decode (longest gap ${longest.toFixed(1)} ms)`);
});
