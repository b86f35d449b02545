/**
 * Voice-activity detection on a worker thread: WebRTC's VAD (libfvad compiled to WebAssembly,
 * @echogarden/fvad-wasm), one fvad instance per recording, fed each chunk of the master as it
 * is made. The master's samples are downmixed and brought to a rate fvad takes (8/16 kHz as
 * they are; 32/48 kHz by the mean of 2/3 samples; other rates by linear interpolation to
 * 16 kHz), cut into `frameMs` frames, and the decisions go through {@link SpeechSegmenter}.
 * Offsets go back in the master's samples.
 */
import { parentPort } from 'node:worker_threads';
import createFvad, { type FvadModule } from '@echogarden/fvad-wasm';
import { fvadHangoverMs, SpeechSegmenter } from './speech.js';
import type { VadReply, VadRequest, VadSettings } from './vad-protocol.js';

interface Stream {
  inst: number;
  ptr: number;
  channels: number;
  outRate: number;
  vadRate: number;
  /** Integer decimation factor (1 none), or 0 for linear interpolation. */
  factor: number;
  /** Linear interpolation: input samples per VAD sample, the position of the next VAD sample, the last input sample. */
  step: number;
  pos: number;
  prev: number;
  /** Input samples seen (linear interpolation's clock). */
  seen: number;
  /** Partial mean of the integer decimation. */
  acc: number;
  accN: number;
  frame: Int16Array;
  fill: number;
  /** VAD samples decided so far. */
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
  const vadRate = rate === 8000 || rate === 16000 ? rate : 16000;
  const factor = rate === vadRate ? 1 : rate === 32000 || rate === 48000 ? rate / 16000 : 0;
  const inst = m._fvad_new();
  if (inst === 0) throw new Error('fvad_new failed');
  if (m._fvad_set_sample_rate(inst, vadRate) !== 0 || m._fvad_set_mode(inst, s.mode) !== 0) throw new Error(`fvad refused rate ${vadRate} or mode ${s.mode}`);
  const frameLen = (vadRate * s.frameMs) / 1000;
  const toOut = (v: number): number => Math.round((v * rate) / vadRate);
  const ms = (x: number): number => Math.round((x * vadRate) / 1000);
  const seg = new SpeechSegmenter(
    ms(s.minSpeechMs),
    ms(s.minSilenceMs),
    s.live ? (e) => send({ type: 'edge', id, on: e.on, offset: toOut(e.offset) }) : undefined,
    ms(fvadHangoverMs(s.mode, s.frameMs)),
  );
  streams.set(id, {
    inst,
    ptr: m._malloc(frameLen * 2),
    channels,
    outRate: rate,
    vadRate,
    factor,
    step: rate / vadRate,
    pos: 0,
    prev: 0,
    seen: 0,
    acc: 0,
    accN: 0,
    frame: new Int16Array(frameLen),
    fill: 0,
    vadPos: 0,
    seg,
  });
}

function vadSample(st: Stream, m: FvadModule, v: number): void {
  st.frame[st.fill++] = v;
  if (st.fill < st.frame.length) return;
  m.HEAP16.set(st.frame, st.ptr >> 1); // HEAP16 looked up each time: it is replaced when memory grows
  const r = m._fvad_process(st.inst, st.ptr, st.frame.length);
  if (r < 0) throw new Error('fvad_process refused the frame');
  st.seg.frame(st.vadPos, st.frame.length, r === 1);
  st.vadPos += st.frame.length;
  st.fill = 0;
}

function pcm(st: Stream, m: FvadModule, buf: ArrayBuffer): void {
  const src = new Int16Array(buf);
  const ch = st.channels;
  const n = Math.floor(src.length / ch);
  for (let i = 0; i < n; i++) {
    let v: number;
    if (ch === 1) v = src[i]!;
    else {
      let sum = 0;
      for (let c = 0; c < ch; c++) sum += src[i * ch + c]!;
      v = Math.round(sum / ch);
    }
    if (st.factor === 1) vadSample(st, m, v);
    else if (st.factor > 1) {
      st.acc += v;
      if (++st.accN === st.factor) {
        vadSample(st, m, Math.round(st.acc / st.factor));
        st.acc = st.accN = 0;
      }
    } else {
      // VAD samples at input positions pos, pos + step, …: between the previous sample and this one
      const at = st.seen;
      while (st.pos <= at) {
        const frac = st.pos - (at - 1);
        vadSample(st, m, Math.round(frac >= 0 ? st.prev + (v - st.prev) * frac : v));
        st.pos += st.step;
      }
      st.prev = v;
      st.seen++;
    }
  }
}

function end(id: number, st: Stream, m: FvadModule): void {
  streams.delete(id);
  m._free(st.ptr);
  m._fvad_free(st.inst);
  const toOut = (v: number): number => Math.min(Math.round((v * st.outRate) / st.vadRate), Number.MAX_SAFE_INTEGER);
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
      pcm(st, m, msg.pcm);
      send({ type: 'ack', id: msg.id, bytes: msg.pcm.byteLength });
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
