import t from 'tap';
import createFvad from '@echogarden/fvad-wasm';
import { roundMean2, roundMean3 } from '../../src/audio/round-mean.js';
import { createLogger } from '../../src/observability/logger.js';
import { fvadHangoverMs, SpeechSegmenter, type SpeechInterval } from '../../src/recording/speech.js';
import { VadPool } from '../../src/recording/vad-pool.js';
import type { VadSettings } from '../../src/recording/vad-protocol.js';
import { noise, prng } from '../helpers/audio-signal.js';
import { speechEgressPcm } from '../helpers/egress.js';
import { waitFor } from '../helpers/wait-for.js';

/**
 * The worker feeds fvad 8 kHz that it halves from 16 kHz itself (libfvad's own half-band filter,
 * vad_sp.c) instead of feeding fvad 16 kHz; fvad's 16 kHz path is that filter and then its 8 kHz
 * path, so the decisions must be the same frame for frame. The reference here is the path the
 * worker took before: 16 kHz (mean of 3 / 2 samples) into fvad at 16 kHz, through the segmenter.
 */
const fvad = createFvad();

async function reference(mono: Int16Array, rate: number, s: VadSettings): Promise<SpeechInterval[]> {
  const m = await fvad;
  const factor = rate / 16000;
  const wide = new Int16Array(Math.floor(mono.length / factor));
  for (let i = 0; i < wide.length; i++) {
    let acc = 0;
    for (let k = 0; k < factor; k++) acc += mono[i * factor + k]!;
    wide[i] = Math.round(acc / factor);
  }
  const inst = m._fvad_new();
  t.equal(m._fvad_set_sample_rate(inst, 16000) + m._fvad_set_mode(inst, s.mode), 0);
  const len = (16000 * s.frameMs) / 1000;
  const ptr = m._malloc(len * 2);
  const ms = (x: number): number => (x * 16000) / 1000;
  const seg = new SpeechSegmenter(ms(s.minSpeechMs), ms(s.minSilenceMs), undefined, ms(fvadHangoverMs(s.mode, s.frameMs)));
  for (let at = 0; at + len <= wide.length; at += len) {
    m.HEAP16.set(wide.subarray(at, at + len), ptr >> 1);
    seg.frame(at, len, m._fvad_process(inst, ptr, len) === 1);
  }
  m._free(ptr);
  m._fvad_free(inst);
  return seg.finish().map((x) => ({ start: x.start * factor, end: x.end * factor }));
}

/**
 * Through the pool, in chunks of uneven sizes (so partial means and half-band pairs cross chunk
 * edges). A stream of loud noise goes first and ends, so its larger buffer has come back (the ack
 * precedes the answer) and the first chunk is copied into it: only its first `bytes` count.
 */
async function viaPool(pcm: Int16Array, rate: number, channels: number, s: VadSettings): Promise<SpeechInterval[] | null> {
  const pool = new VadPool({ settings: s, workers: 1, logger: createLogger({ level: 'silent' }) });
  try {
    const before = pool.open(rate, channels);
    before.push(new Uint8Array(noise(200_000 * channels, 0.5, 3).buffer));
    await before.finish();
    const v = pool.open(rate, channels);
    const sizes = [96_000, 12_347, 1, 5, 70_001, 2_222];
    for (let at = 0, k = 0; at < pcm.length; k++) {
      const n = Math.min(sizes[k % sizes.length]! * channels, pcm.length - at);
      v.push(new Uint8Array(pcm.buffer, pcm.byteOffset + at * 2, n * 2));
      at += n;
    }
    return await v.finish();
  } finally {
    await pool.stop();
  }
}

/**
 * Speech (three times over) gated on in random runs of 50–400 ms and off for 250–700 ms, over noise whose level changes with every
 * run (−60 … −26 dBFS), so fvad's noise model keeps moving and many frames are close calls: a
 * change in the samples fvad sees shows in the intervals.
 */
async function signal(): Promise<Int16Array> {
  const stereo = await speechEgressPcm('The quick brown fox jumps over the lazy dog, every meeting has a beginning and an end');
  const frames = stereo.length / 4;
  const out = noise(3 * frames, 1, 5);
  const r = prng(9);
  const levels = [0.001, 0.05, 0.004, 0.02, 0.002, 0.035, 0.01];
  for (let i = 0, run = 0; i < out.length; run++) {
    const on = run % 2 === 1;
    const end = Math.min(out.length, i + Math.round((on ? 0.05 + 0.35 * r() : 0.25 + 0.45 * r()) * 48000));
    const level = levels[run % levels.length]!;
    for (; i < end; i++) {
      const k = (i % frames) * 4;
      const speech = on ? (stereo.readInt16LE(k) + stereo.readInt16LE(k + 2) + 1) >> 1 : 0;
      out[i] = Math.max(-32768, Math.min(32767, Math.round(out[i]! * level) + speech));
    }
  }
  return out;
}

t.test('integer rounded means equal Math.round over every sum of int16 samples', async (t) => {
  let bad3 = 0;
  for (let s = -3 * 32768; s <= 3 * 32767; s++) if (roundMean3(s) !== Math.round(s / 3)) bad3++;
  let bad2 = 0;
  for (let s = -2 * 32768; s <= 2 * 32767; s++) if (roundMean2(s) !== Math.round(s / 2)) bad2++;
  t.equal(bad3, 0, 'mean of 3');
  t.equal(bad2, 0, 'mean of 2');
});

t.test('the worker decides as fvad at 16 kHz did, for every frame length and at 48, 32 and 16 kHz', async (t) => {
  const x48 = await signal();
  const frameByFrame = { minSpeechMs: 0, minSilenceMs: 10, live: false } as const;
  for (const [frameMs, mode] of [[10, 0], [10, 3], [20, 2], [30, 3]] as const) {
    {
      const s: VadSettings = { mode, frameMs, ...frameByFrame };
      const want = await reference(x48, 48000, s);
      t.ok(want.length >= 5, `${frameMs} ms, mode ${mode}: the signal has several speech runs (${want.length})`);
      t.same(await viaPool(x48, 48000, 1, s), want, `48 kHz mono, ${frameMs} ms frames, mode ${mode}: the same intervals`);
    }
  }
  const defaults: VadSettings = { mode: 2, frameMs: 10, minSpeechMs: 200, minSilenceMs: 300, live: false };
  t.same(await viaPool(x48, 48000, 1, defaults), await reference(x48, 48000, defaults), '48 kHz, the default settings');
  for (const rate of [32000, 16000]) {
    const f = 48000 / rate;
    const x = new Int16Array(Math.floor(x48.length / f));
    for (let i = 0; i < x.length; i++) x[i] = x48[i * f]!;
    const s: VadSettings = { mode: 2, frameMs: 10, ...frameByFrame };
    t.same(await viaPool(x, rate, 1, s), await reference(x, rate, s), `${rate / 1000} kHz mono`);
  }
  const stereo = new Int16Array(x48.length * 2);
  for (let i = 0; i < x48.length; i++) stereo[2 * i] = stereo[2 * i + 1] = x48[i]!;
  const s: VadSettings = { mode: 2, frameMs: 10, ...frameByFrame };
  t.same(await viaPool(stereo, 48000, 2, s), await reference(x48, 48000, s), '48 kHz stereo (equal channels)');
});

t.test('an end queued behind more work than the finish timeout is answered: the timeout counts from the worker\'s last answer, not from the end', async (t) => {
  // a meeting's end: every stream's last chunks and its end reach the one worker together, and
  // the last ends wait behind the others' audio; the worker acknowledges chunk after chunk
  const finishTimeoutMs = 600;
  const pool = new VadPool({ settings: { mode: 2, frameMs: 10, minSpeechMs: 200, minSilenceMs: 300, live: false }, workers: 1, logger: createLogger({ level: 'silent' }), finishTimeoutMs, maxQueueBytes: 512 * 1024 * 1024 });
  try {
    const x = noise(8000 * 120, 0.3, 11); // 120 s at 8 kHz, fvad's own rate: its cost per byte is highest
    // the worker started and its module compiled (the daemon starts it before any recording;
    // a first answer later than the timeout fails that stream, and the next one is answered)
    await waitFor(async () => {
      const warm = pool.open(8000, 1);
      warm.push(new Uint8Array(x.buffer, x.byteOffset, 16_000));
      return Array.isArray(await warm.finish()) ? true : undefined;
    }, 60_000, 'the worker answering');
    const streams = Array.from({ length: 48 }, () => pool.open(8000, 1));
    for (const v of streams) for (let at = 0; at < x.length; at += 8000) v.push(new Uint8Array(x.buffer, x.byteOffset + at * 2, 16_000));
    const t0 = performance.now();
    const results = await Promise.all(streams.map((v) => v.finish()));
    t.comment(`the ends took ${Math.round(performance.now() - t0)} ms behind ${streams.length * 120} s of queued audio (finish timeout ${finishTimeoutMs} ms)`);
    t.equal(results.filter((r) => r === null).length, 0, 'no stream lost its speech intervals');
    t.ok(results.every((r) => Array.isArray(r)));
  } finally {
    await pool.stop();
  }
});
