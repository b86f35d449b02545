/**
 * Voice-activity detection on a worker thread: WebRTC's VAD (libfvad compiled to WebAssembly,
 * @echogarden/fvad-wasm), one fvad instance per recording, fed each chunk of the master as it
 * is made. The master's samples are downmixed and brought to 16 kHz (32/48 kHz by the mean of
 * 2/3 samples; other rates but 8 kHz by linear interpolation), then halved to 8 kHz here with
 * libfvad's own half-band filter (`WebRtcVad_Downsampling`, vad_sp.c: fvad's 16 kHz path is that
 * filter and then its 8 kHz path, so fvad fed the filtered 8 kHz decides exactly as fvad fed 16
 * kHz). The samples are written straight into the wasm heap, `frameMs` frames go through fvad,
 * the decisions through {@link SpeechSegmenter}. Offsets go back in the master's samples.
 */
import { parentPort } from 'node:worker_threads';
import createFvad, { type FvadModule } from '@echogarden/fvad-wasm';
import { roundMean2, roundMean3 } from '../audio/round-mean.js';
import { fvadHangoverMs, SpeechSegmenter } from './speech.js';
import type { VadReply, VadRequest, VadSettings } from './vad-protocol.js';

/** fvad's rate: every input rate ends here (libfvad computes its features at 8 kHz for every rate). */
const VAD_RATE = 8000;
/** kAllPassCoefsQ13 of vad_sp.c: the upper and lower all-pass branches of the half-band filter. */
const UPPER_Q13 = 5243;
const LOWER_Q13 = 1392;

interface Stream {
  inst: number;
  /** One frame of 8 kHz samples in the wasm heap, `fill` of `frameLen` written. */
  ptr: number;
  frameLen: number;
  fill: number;
  channels: number;
  outRate: number;
  /** To 16 kHz: integer decimation factor (1 none), 0 linear interpolation; -1 the input is 8 kHz already. */
  factor: number;
  /** Linear interpolation: input samples per 16 kHz sample, the position of the next one, the last input sample. */
  step: number;
  pos: number;
  prev: number;
  /** Input samples seen (linear interpolation's clock). */
  seen: number;
  /** Partial mean of the integer decimation. */
  acc: number;
  accN: number;
  /** Half-band filter 16 → 8 kHz: the branches' states, and the upper branch's output while its pair's second sample is awaited. */
  upper: number;
  lower: number;
  half: number;
  odd: boolean;
  /** 8 kHz samples decided so far. */
  vadPos: number;
  seg: SpeechSegmenter;
}

const port = parentPort!;
let mod: FvadModule | undefined;
let loading: Promise<FvadModule> | undefined;
const streams = new Map<number, Stream>();
/** Requests that arrived while the module was loading, in order. */
const backlog: VadRequest[] = [];

function send(reply: VadReply): void {
  port.postMessage(reply);
}

function open(id: number, rate: number, channels: number, s: VadSettings, m: FvadModule): void {
  const factor = rate === 8000 ? -1 : rate === 16000 || rate === 32000 || rate === 48000 ? rate / 16000 : 0;
  const inst = m._fvad_new();
  if (inst === 0) throw new Error('fvad_new failed');
  if (m._fvad_set_sample_rate(inst, VAD_RATE) !== 0 || m._fvad_set_mode(inst, s.mode) !== 0) throw new Error(`fvad refused mode ${s.mode}`);
  const frameLen = (VAD_RATE * s.frameMs) / 1000;
  const toOut = (v: number): number => Math.round((v * rate) / VAD_RATE);
  const ms = (x: number): number => Math.round((x * VAD_RATE) / 1000);
  const seg = new SpeechSegmenter(
    ms(s.minSpeechMs),
    ms(s.minSilenceMs),
    s.live ? (e) => send({ type: 'edge', id, on: e.on, offset: toOut(e.offset) }) : undefined,
    ms(fvadHangoverMs(s.mode, s.frameMs)),
  );
  streams.set(id, {
    inst,
    ptr: m._malloc(frameLen * 2),
    frameLen,
    fill: 0,
    channels,
    outRate: rate,
    factor,
    step: rate / 16000,
    pos: 0,
    prev: 0,
    seen: 0,
    acc: 0,
    accN: 0,
    upper: 0,
    lower: 0,
    half: 0,
    odd: false,
    vadPos: 0,
    seg,
  });
}

/** The frame in the heap is full: fvad decides it. */
function decide(st: Stream, m: FvadModule): void {
  const r = m._fvad_process(st.inst, st.ptr, st.frameLen);
  if (r < 0) throw new Error('fvad_process refused the frame');
  st.seg.frame(st.vadPos, st.frameLen, r === 1);
  st.vadPos += st.frameLen;
  st.fill = 0;
}

/** One 8 kHz sample into the frame. */
function narrow(st: Stream, m: FvadModule, v: number): void {
  m.HEAP16[(st.ptr >> 1) + st.fill++] = v; // HEAP16 looked up each time: it is replaced when memory grows
  if (st.fill === st.frameLen) decide(st, m);
}

/** One 16 kHz sample through the half-band filter (WebRtcVad_Downsampling, in the same integer arithmetic). */
function wide(st: Stream, m: FvadModule, v: number): void {
  if (!st.odd) {
    const t = (((st.upper >> 1) + ((UPPER_Q13 * v) >> 14)) << 16) >> 16;
    st.upper = v - ((UPPER_Q13 * t) >> 12);
    st.half = t;
    st.odd = true;
    return;
  }
  const t = (((st.lower >> 1) + ((LOWER_Q13 * v) >> 14)) << 16) >> 16;
  st.lower = v - ((LOWER_Q13 * t) >> 12);
  st.odd = false;
  narrow(st, m, ((st.half + t) << 16) >> 16);
}

function pcm(st: Stream, m: FvadModule, buf: ArrayBuffer, bytes: number): void {
  const src = new Int16Array(buf, 0, bytes >> 1);
  if (st.channels === 1 && st.factor > 0) {
    // per sample up to the start of a pair of 16 kHz samples, whole pairs in one loop, the rest per sample
    let i = 0;
    while (i < src.length && (st.accN !== 0 || st.odd)) one(st, m, src[i++]!);
    i = pairs(st, m, src, i);
    while (i < src.length) one(st, m, src[i++]!);
    return;
  }
  const ch = st.channels;
  const n = Math.floor(src.length / ch);
  for (let i = 0; i < n; i++) {
    if (ch === 1) one(st, m, src[i]!);
    else {
      let sum = 0;
      for (let c = 0; c < ch; c++) sum += src[i * ch + c]!;
      one(st, m, Math.round(sum / ch));
    }
  }
}

/** One (downmixed) input sample. */
function one(st: Stream, m: FvadModule, v: number): void {
  if (st.factor === -1) narrow(st, m, v);
  else if (st.factor === 1) wide(st, m, v);
  else if (st.factor > 1) {
    st.acc += v;
    if (++st.accN === st.factor) {
      wide(st, m, Math.round(st.acc / st.factor));
      st.acc = st.accN = 0;
    }
  } else {
    // 16 kHz samples at input positions pos, pos + step, …: between the previous sample and this one
    const at = st.seen;
    while (st.pos <= at) {
      const frac = st.pos - (at - 1);
      wide(st, m, Math.round(frac >= 0 ? st.prev + (v - st.prev) * frac : v));
      st.pos += st.step;
    }
    st.prev = v;
    st.seen++;
  }
}

/**
 * Mono at 16/32/48 kHz from a pair boundary, in one loop over locals: each step takes the 2 × factor
 * input samples of one 8 kHz sample, with the arithmetic of {@link one} → {@link wide} → {@link narrow}.
 * The means are rounded in integers exactly as `Math.round` rounds them ({@link roundMean3}).
 * Returns where it stopped.
 */
function pairs(st: Stream, m: FvadModule, src: Int16Array, from: number): number {
  const f = st.factor;
  const w = 2 * f;
  const len = st.frameLen;
  const end = from + Math.floor((src.length - from) / w) * w;
  let heap = m.HEAP16;
  let base = st.ptr >> 1;
  let upper = st.upper;
  let lower = st.lower;
  let fill = st.fill;
  for (let i = from; i < end; i += w) {
    let a: number, b: number;
    if (f === 3) {
      a = roundMean3(src[i]! + src[i + 1]! + src[i + 2]!);
      b = roundMean3(src[i + 3]! + src[i + 4]! + src[i + 5]!);
    } else if (f === 2) {
      a = roundMean2(src[i]! + src[i + 1]!);
      b = roundMean2(src[i + 2]! + src[i + 3]!);
    } else {
      a = src[i]!;
      b = src[i + 1]!;
    }
    const hi = (((upper >> 1) + ((UPPER_Q13 * a) >> 14)) << 16) >> 16;
    upper = a - ((UPPER_Q13 * hi) >> 12);
    const lo = (((lower >> 1) + ((LOWER_Q13 * b) >> 14)) << 16) >> 16;
    lower = b - ((LOWER_Q13 * lo) >> 12);
    heap[base + fill++] = ((hi + lo) << 16) >> 16;
    if (fill === len) {
      st.fill = fill;
      decide(st, m);
      fill = 0;
      heap = m.HEAP16;
      base = st.ptr >> 1;
    }
  }
  st.upper = upper;
  st.lower = lower;
  st.fill = fill;
  return end;
}

function end(id: number, st: Stream, m: FvadModule): void {
  streams.delete(id);
  m._free(st.ptr);
  m._fvad_free(st.inst);
  const toOut = (v: number): number => Math.min(Math.round((v * st.outRate) / VAD_RATE), Number.MAX_SAFE_INTEGER);
  send({ type: 'done', id, intervals: st.seg.finish().map((x) => ({ start: toOut(x.start), end: toOut(x.end) })) });
}

function handle(msg: VadRequest, m: FvadModule): void {
  if (msg.type === 'stop') {
    port.close();
    return;
  }
  try {
    if (msg.type === 'pcm' && msg.open !== undefined) open(msg.id, msg.open.rate, msg.open.channels, msg.open.settings, m);
    const st = streams.get(msg.id);
    if (st === undefined) return; // failed at open (already reported) or ended
    if (msg.type === 'pcm') {
      pcm(st, m, msg.pcm, msg.bytes);
      port.postMessage({ type: 'ack', id: msg.id, bytes: msg.bytes, pcm: msg.pcm } satisfies VadReply, [msg.pcm]);
    } else end(msg.id, st, m);
  } catch (err) {
    const st = streams.get(msg.id);
    if (st !== undefined) {
      streams.delete(msg.id);
      m._free(st.ptr);
      m._fvad_free(st.inst);
    }
    send({ type: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) });
  }
}

port.on('message', (msg: VadRequest) => {
  if (mod !== undefined) return handle(msg, mod);
  backlog.push(msg);
  loading ??= createFvad().then((m) => {
    mod = m;
    for (const b of backlog.splice(0)) handle(b, m);
    return m;
  });
});
