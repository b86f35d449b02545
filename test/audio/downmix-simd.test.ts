import t from 'tap';
import { readFileSync } from 'node:fs';
import initWabt from 'wabt';
import { DOWNMIX_WASM, simdDownmix } from '../../src/audio/downmix-simd.js';
import { remixInto } from '../../src/audio/downmix.js';
import { LivePcmPipeline } from '../../src/audio/live-pipeline.js';

t.test('the embedded module is downmix-stereo.wat compiled with wabt', async (t) => {
  const wabt = await initWabt();
  const wat = readFileSync(new URL('../../src/audio/downmix-stereo.wat', import.meta.url), 'utf8');
  const compiled = Buffer.from(wabt.parseWat('downmix-stereo.wat', wat, { simd: true }).toBinary({}).buffer);
  t.ok(compiled.equals(DOWNMIX_WASM), `embedded bytes match the .wat (compiled: ${compiled.toString('base64')})`);
});

/** Stereo s16le with the extremes and random values, in a buffer with `lead` bytes before it. */
function stereo(frames: number, lead: number, seed: number): { buf: ArrayBuffer; samples: Int16Array } {
  const samples = new Int16Array(frames * 2);
  let x = seed;
  const edge = [-32768, 32767, -1, 0, 1, -32767, 32766];
  for (let i = 0; i < samples.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    samples[i] = i < edge.length * 2 ? edge[(i >> 1) % edge.length]! * (i & 1 ? -1 : 1) : ((x >>> 8) & 0xffff) - 32768;
  }
  const buf = new ArrayBuffer(lead + samples.byteLength);
  new Uint8Array(buf, lead).set(new Uint8Array(samples.buffer));
  return { buf, samples };
}

t.test('the SIMD downmix equals the scalar (L + R + 1) >> 1 for any length, source alignment and destination offset', async (t) => {
  t.not(simdDownmix, null, 'WebAssembly SIMD runs in this Node');
  const down = simdDownmix!;
  for (const frames of [0, 1, 7, 8, 9, 15, 16, 17, 480, 481, 8191, 8192, 8193, 20_000]) {
    for (const lead of [0, 1, 2, 3]) {
      const { buf, samples } = stereo(frames, lead, frames * 7 + lead);
      const want = new Int16Array(frames);
      remixInto(samples, frames, 2, 1, want);
      const dstLead = lead * 3 + 1;
      const dst = new Uint8Array(dstLead + frames * 2 + 5).fill(0xaa);
      down(buf, lead, frames, dst, dstLead);
      const got = Buffer.from(dst.buffer, dstLead, frames * 2);
      t.ok(got.equals(Buffer.from(want.buffer)), `${frames} frames, source offset ${lead}`);
      t.ok(dst.subarray(0, dstLead).every((b) => b === 0xaa) && dst.subarray(dstLead + frames * 2).every((b) => b === 0xaa), 'nothing written outside');
    }
  }
});

t.test('the live pipeline takes its stereo → mono path through it and emits what the scalar path does', async (t) => {
  const { buf, samples } = stereo(48_000, 0, 42);
  const want = new Int16Array(48_000);
  remixInto(samples, 48_000, 2, 1, want);
  const chunks: Buffer[] = [];
  const p = new LivePcmPipeline({ input: { sampleRate: 48000, channels: 2 }, output: { sampleRate: 48000, channels: 1 }, chunkFrames: 9_600, onChunk: (c) => chunks.push(Buffer.from(c)) });
  // 10 ms WebSocket messages, each its own ArrayBuffer, then odd views
  for (let off = 0; off < 24_000 * 4; off += 1920) p.push(buf.slice(off, off + 1920));
  const rest = new Uint8Array(buf, 24_000 * 4);
  for (let off = 0; off < rest.length; off += 1001) p.push(rest.subarray(off, Math.min(rest.length, off + 1001)));
  p.flush();
  t.ok(Buffer.concat(chunks).equals(Buffer.from(want.buffer)), 'the same mono samples');
});
