import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { LivePcmPipeline } from '../../src/audio/live-pipeline.js';
import type { PcmFormat } from '../../src/audio/pcm-format.js';
import { Resampler } from '../../src/audio/resample.js';
import { ENCODER_FFMPEG, speechWav } from '../helpers/audio-fixtures.js';
import { concatInt16, noise, prng, randomSizes } from '../helpers/audio-signal.js';

const run = promisify(execFile);
const EGRESS: PcmFormat = { sampleRate: 48000, channels: 2 };

interface Emitted {
  chunks: Buffer[];
  firsts: number[];
}

function collect(input: PcmFormat, output: PcmFormat, chunkFrames: number): { p: LivePcmPipeline; got: Emitted } {
  const got: Emitted = { chunks: [], firsts: [] };
  const p = new LivePcmPipeline({
    input,
    output,
    chunkFrames,
    onChunk: (pcm, first) => {
      got.chunks.push(pcm);
      got.firsts.push(first);
    },
  });
  return { p, got };
}

function bytesOf(a: Int16Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Pushes `data` split at the given sizes, each piece copied to a fresh buffer at an odd offset. */
function pushSplit(p: LivePcmPipeline, data: Buffer, sizes: number[]): void {
  let off = 0;
  for (const n of sizes) {
    const holder = Buffer.alloc(n + 1);
    data.copy(holder, 1, off, off + n);
    p.push(holder.subarray(1));
    off += n;
  }
}

const CASES: [PcmFormat, PcmFormat][] = [
  [EGRESS, { sampleRate: 16000, channels: 1 }],
  [EGRESS, { sampleRate: 48000, channels: 1 }],
  [EGRESS, { sampleRate: 24000, channels: 2 }],
  [EGRESS, { sampleRate: 44100, channels: 1 }],
  [{ sampleRate: 16000, channels: 1 }, { sampleRate: 48000, channels: 2 }],
];

t.test('random push sizes give byte-identical output to one big push', async (t) => {
  for (const [input, output] of CASES) {
    const frames = input.sampleRate; // 1 s
    const data = bytesOf(noise(frames * input.channels, 0.7, input.sampleRate + output.sampleRate));
    const chunkFrames = Math.round(output.sampleRate * 0.25);
    const one = collect(input, output, chunkFrames);
    one.p.push(data);
    one.p.flush();
    const many = collect(input, output, chunkFrames);
    pushSplit(many.p, data, randomSizes(data.length, output.sampleRate, 4000));
    many.p.flush();
    const name = `${input.sampleRate}×${input.channels} → ${output.sampleRate}×${output.channels}`;
    t.same(Buffer.concat(many.got.chunks), Buffer.concat(one.got.chunks), `${name}: same bytes`);
    t.same(many.got.firsts, one.got.firsts, `${name}: same chunk offsets`);
    const expected = Math.ceil((frames * output.sampleRate) / input.sampleRate);
    t.equal(many.p.outputFrames, expected, `${name}: ${expected} output frames`);
    t.equal(Buffer.concat(many.got.chunks).length, expected * output.channels * 2);
  }
});

t.test('stereo with L == R to mono at the same rate equals L exactly', async (t) => {
  const mono = noise(48000, 1, 11);
  const stereo = new Int16Array(mono.length * 2);
  for (let i = 0; i < mono.length; i++) stereo[2 * i] = stereo[2 * i + 1] = mono[i]!;
  const { p, got } = collect(EGRESS, { sampleRate: 48000, channels: 1 }, 480);
  pushSplit(p, bytesOf(stereo), randomSizes(stereo.length * 2, 5, 1920));
  p.flush();
  t.same(Buffer.concat(got.chunks), bytesOf(mono));
  t.equal(got.chunks.length, 100);
});

t.test('output equals downmix followed by the Resampler', async (t) => {
  const stereo = noise(48000 * 2, 0.8, 21);
  const { p, got } = collect(EGRESS, { sampleRate: 16000, channels: 1 }, 320);
  pushSplit(p, bytesOf(stereo), new Array(stereo.length / 960).fill(1920));
  p.flush();
  const mono = new Int16Array(stereo.length / 2);
  for (let i = 0; i < mono.length; i++) mono[i] = (stereo[2 * i]! + stereo[2 * i + 1]! + 1) >> 1;
  const r = new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1 });
  t.same(Buffer.concat(got.chunks), bytesOf(concatInt16([r.process(mono), r.flush()])));
});

t.test('chunks: fixed size, consecutive offsets, only the last one partial', async (t) => {
  const { p, got } = collect(EGRESS, { sampleRate: 16000, channels: 1 }, 16000);
  const data = bytesOf(noise(48000 * 2 * 2.5, 0.3, 2)); // 2.5 s
  pushSplit(p, data, new Array(data.length / 1920).fill(1920));
  t.equal(got.chunks.length, 2, 'two full chunks before flush');
  const half = new Resampler({ inputRate: 48000, outputRate: 16000, channels: 1 }).lookaheadFrames;
  t.ok(half > 10, `lookahead of ${half} input frames`);
  t.equal(p.outputFrames, Math.ceil((120000 - half) / 3), 'the filter lookahead (half the filter) is still pending');
  p.flush();
  t.same(got.firsts, [0, 16000, 32000]);
  t.same(got.chunks.map((c) => c.length), [32000, 32000, 16000]);
  t.throws(() => p.push(Buffer.alloc(4)), /after flush/);
});

t.test('partial sample-frames are carried, never dropped', async (t) => {
  const { p, got } = collect(EGRESS, { sampleRate: 48000, channels: 2 }, 2);
  const frame = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]); // two stereo frames
  p.push(frame.subarray(0, 1));
  t.equal(p.carryBytes, 1);
  p.push(frame.subarray(1, 3));
  t.equal(p.carryBytes, 3);
  p.push(frame.subarray(3, 7));
  t.equal(p.carryBytes, 3);
  t.equal(p.outputFrames, 1);
  p.push(frame.subarray(7));
  t.equal(p.carryBytes, 0);
  t.equal(got.chunks.length, 1);
  t.same(got.chunks[0], frame);
});

t.test('each chunk is a buffer of its own that the receiver may keep', async (t) => {
  const { p, got } = collect({ sampleRate: 16000, channels: 1 }, { sampleRate: 16000, channels: 1 }, 100);
  const data = bytesOf(noise(1000, 0.5, 3));
  p.push(data);
  p.flush();
  const buffers = new Set(got.chunks.map((c) => c.buffer));
  t.equal(buffers.size, got.chunks.length, 'no two chunks share memory');
  t.same(Buffer.concat(got.chunks), data);
  got.chunks[0]!.fill(0);
  t.same(got.chunks[1], data.subarray(200, 400), 'mutating one chunk leaves the others intact');
  data.fill(0);
  t.not(got.chunks[1]![0], 0, 'chunks do not alias the pushed buffer');
});

t.test('pushSilence inserts zeros at the right offset and completes a carried frame', async (t) => {
  const same = { sampleRate: 48000, channels: 1 };
  const { p, got } = collect(EGRESS, same, 1000);
  p.push(Buffer.from([0x10, 0x00, 0x10, 0x00, 0x20])); // one frame (16,16) and one byte of the next
  p.pushSilence(3);
  p.push(Buffer.from([0x08, 0x00, 0x08, 0x00]));
  p.flush();
  const out = Array.from(new Int16Array(new Uint8Array(Buffer.concat(got.chunks)).buffer));
  t.same(out, [16, 16, 0, 0, 0, 8], 'frame, completed partial frame (32+0)/2, 3 silent frames, frame');
  const r = collect(EGRESS, { sampleRate: 16000, channels: 1 }, 160);
  r.p.pushSilence(48000 * 2);
  r.p.flush();
  t.equal(r.p.outputFrames, 32000);
  t.ok(r.got.chunks.every((c) => c.every((b) => b === 0)), 'silence resampled is silence');
});

t.test('real speech at egress format: chunked 10 ms frames match one push and track ffmpeg', async (t) => {
  const wav = await speechWav();
  const { stdout } = await run(ENCODER_FFMPEG, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-i', wav, '-ac', '2', '-ar', '48000', '-af', 'aresample=resampler=soxr', '-f', 's16le', '-'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  const egress = stdout as Buffer;
  t.ok(egress.length > 48000 * 4, 'several seconds of speech');
  const r = prng(99);
  const frames: number[] = [];
  for (let left = egress.length; left > 0; ) {
    const n = Math.min(left, r() < 0.9 ? 1920 : 4 * (1 + Math.floor(r() * 1000)));
    frames.push(n);
    left -= n;
  }
  const a = collect(EGRESS, { sampleRate: 16000, channels: 1 }, 32000);
  pushSplit(a.p, egress, frames);
  a.p.flush();
  const b = collect(EGRESS, { sampleRate: 16000, channels: 1 }, 32000);
  b.p.push(egress);
  b.p.flush();
  const ours = Buffer.concat(a.got.chunks);
  t.same(ours, Buffer.concat(b.got.chunks));
  t.equal(ours.length / 2, Math.ceil(egress.length / 4 / 3));
  // Independent check of filter and alignment: correlation with ffmpeg's own 48k→16k at lag 0.
  const refPcm = await ffmpegTo16kMono(egress);
  const x = new Int16Array(new Uint8Array(ours).buffer);
  const n = Math.min(x.length, refPcm.length);
  let xy = 0;
  let xx = 0;
  let yy = 0;
  for (let i = 0; i < n; i++) {
    xy += x[i]! * refPcm[i]!;
    xx += x[i]! * x[i]!;
    yy += refPcm[i]! * refPcm[i]!;
  }
  const corr = xy / Math.sqrt(xx * yy);
  t.ok(corr > 0.99, `correlation with ffmpeg/soxr ${corr.toFixed(5)}`);
});

async function ffmpegTo16kMono(pcm: Buffer): Promise<Int16Array> {
  const child = spawn(ENCODER_FFMPEG, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 's16le', '-ar', '48000', '-ac', '2', '-i', 'pipe:0', '-ac', '1', '-ar', '16000', '-af', 'aresample=resampler=soxr', '-f', 's16le', 'pipe:1']);
  const out: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stdin.end(pcm);
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}`))));
  });
  const b = Buffer.concat(out);
  return new Int16Array(new Uint8Array(b).buffer, 0, b.length >> 1);
}

t.test('bad options are refused', async (t) => {
  const onChunk = (): void => {};
  t.throws(() => new LivePcmPipeline({ input: EGRESS, output: { sampleRate: 16000, channels: 1 }, chunkFrames: 0, onChunk }), /chunkFrames/);
  t.throws(() => new LivePcmPipeline({ input: { sampleRate: 48000, channels: 0 }, output: EGRESS, chunkFrames: 10, onChunk }), /channels/);
});

t.test('direct path (no resampling): ArrayBuffers, aligned and unaligned views, partial frames and odd chunk sizes all give the exact downmix', async (t) => {
  const frames = 48000;
  const stereo = noise(frames * 2, 0.9, 77);
  const mono = new Int16Array(frames);
  for (let i = 0; i < frames; i++) mono[i] = (stereo[2 * i]! + stereo[2 * i + 1]! + 1) >> 1;
  const data = bytesOf(stereo);
  const rnd = prng(5);
  // sizes from whole 10 ms frames to odd byte counts that leave a carried partial frame
  const sizes: number[] = [];
  for (let left = data.length; left > 0;) {
    const pick = [1920, 1920, 1920, 4, 6, 1001, 3, 7680, 2][Math.floor(rnd() * 9)]!;
    const n = Math.min(left, pick);
    sizes.push(n);
    left -= n;
  }
  for (const chunkFrames of [96000, 4801, 333, 1]) {
    const { p, got } = collect(EGRESS, { sampleRate: 48000, channels: 1 }, chunkFrames);
    let off = 0;
    for (const [k, n] of sizes.entries()) {
      const piece = data.subarray(off, off + n);
      off += n;
      if (k % 3 === 0) {
        const ab = new ArrayBuffer(n); // what a WebSocket message is
        new Uint8Array(ab).set(piece);
        p.push(ab);
      } else {
        const shift = k % 3 === 1 ? 4 : 2; // 4-byte aligned view, or only 2-byte aligned
        const holder = new Uint8Array(n + shift);
        holder.set(piece, shift);
        p.push(holder.subarray(shift));
      }
    }
    p.flush();
    t.same(Buffer.concat(got.chunks), bytesOf(mono), `chunk of ${chunkFrames} frames: exact downmix`);
    t.equal(got.chunks.length, Math.ceil(frames / chunkFrames));
  }
  for (const fmt of [EGRESS, { sampleRate: 16000, channels: 1 }]) {
    const same = bytesOf(noise(fmt.sampleRate * fmt.channels, 0.5, 3));
    const { p, got } = collect(fmt, fmt, 777);
    for (let o = 0; o < same.length; o += 1920) {
      const ab = new ArrayBuffer(Math.min(1920, same.length - o));
      new Uint8Array(ab).set(same.subarray(o, o + ab.byteLength));
      p.push(ab);
    }
    p.flush();
    t.same(Buffer.concat(got.chunks), same, `${fmt.sampleRate}×${fmt.channels} unchanged`);
  }
});
