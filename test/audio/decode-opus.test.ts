import t from 'tap';
import { execFile } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { decodeOggOpus } from '../../src/audio/decode-opus.js';
import { oggCrc, OggReader } from '../../src/audio/ogg-reader.js';
import { int16View } from '../../src/audio/pcm-format.js';
import * as fx from '../helpers/audio-fixtures.js';

const run = promisify(execFile);

/** A stream handing out `buf` in pieces of random sizes (seeded, so failures repeat). */
function randomChunks(buf: Buffer, seed: number, max = 700): Readable {
  const parts: Buffer[] = [];
  let s = seed;
  for (let off = 0; off < buf.length; ) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (s % max);
    parts.push(buf.subarray(off, off + n));
    off += n;
  }
  return Readable.from(parts);
}

/** Byte offsets where each Ogg page starts. */
function pageStarts(buf: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off + 27 <= buf.length; ) {
    out.push(off);
    const nseg = buf[off + 26]!;
    let body = 0;
    for (let i = 0; i < nseg; i++) body += buf[off + 27 + i]!;
    off += 27 + nseg + body;
  }
  return out;
}

t.test('sample count is exactly final granule − pre-skip, at 48 kHz and scaled', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const facts = fx.oggOpusFacts(buf);
  t.equal(facts.preSkip, 312);
  const exact48 = Number(facts.lastGranule) - facts.preSkip;
  const r48 = await decodeOggOpus(Readable.from([buf]), { output: { sampleRate: 48000, channels: 1 } });
  t.equal(r48.frames, exact48);
  t.equal(r48.pcm.length, exact48 * 2);
  t.equal(r48.preSkip, 312);
  t.equal(r48.inputRate, 16000);
  const r16 = await decodeOggOpus(Readable.from([buf]), { output: { sampleRate: 16000, channels: 1 } });
  t.equal(r16.frames, Math.round(exact48 / 3));
  const stereo = await decodeOggOpus(Readable.from([buf]), { output: { sampleRate: 24000, channels: 2 } });
  t.equal(stereo.frames, Math.round(exact48 / 2));
  t.equal(stereo.pcm.length, stereo.frames * 4);
  // the source WAV and the decode last the same (granule counts the input samples)
  t.ok(Math.abs(r16.frames / 16000 - fx.wavDurationSec(await fx.speechWav())) < 0.001);
});

t.test('rates Opus cannot produce are decoded at 48 kHz and resampled', async (t) => {
  const buf = fx.readFixture(await fx.opusStereo48k());
  const exact48 = Number(fx.oggOpusFacts(buf).lastGranule) - fx.oggOpusFacts(buf).preSkip;
  const r = await decodeOggOpus(Readable.from([buf]), { output: { sampleRate: 44100, channels: 1 } });
  t.equal(r.frames, Math.ceil((exact48 * 44100) / 48000));
  t.equal(r.streamChannels, 2);
});

t.test('matches ffmpeg decoding the same file (same samples, same alignment)', async (t) => {
  const path = await fx.opusVoiceNote();
  const ours = int16View((await decodeOggOpus(Readable.from([fx.readFixture(path)]), { output: { sampleRate: 48000, channels: 1 } })).pcm);
  const { stdout } = await run(fx.ENCODER_FFMPEG, ['-nostdin', '-loglevel', 'error', '-c:a', 'libopus', '-i', path, '-f', 's16le', '-ac', '1', '-ar', '48000', 'pipe:1'],
    { encoding: 'buffer', maxBuffer: 64 << 20 });
  const ref = int16View(stdout);
  t.equal(ours.length, ref.length, 'ffmpeg trims pre-skip and end the same way');
  let dot = 0, a2 = 0, b2 = 0;
  for (let i = 0; i < ours.length; i++) {
    dot += ours[i]! * ref[i]!;
    a2 += ours[i]! * ours[i]!;
    b2 += ref[i]! * ref[i]!;
  }
  t.ok(dot / Math.sqrt(a2 * b2) > 0.999, 'zero-lag correlation with ffmpeg > 0.999');
});

t.test('any chunking of the input gives identical PCM', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const whole = await decodeOggOpus(Readable.from([buf]), { output: { sampleRate: 16000, channels: 1 } });
  for (const seed of [1, 2, 3]) {
    const r = await decodeOggOpus(randomChunks(buf, seed, seed === 1 ? 3 : 900), { output: { sampleRate: 16000, channels: 1 } });
    t.ok(r.pcm.equals(whole.pcm), `seed ${seed}`);
  }
  // the sniffer's head handed back separately
  const r = await decodeOggOpus(Readable.from([buf.subarray(40)]), { output: { sampleRate: 16000, channels: 1 }, head: buf.subarray(0, 40) });
  t.ok(r.pcm.equals(whole.pcm), 'head + rest');
});

t.test('truncated input is TRUNCATED_AUDIO', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const pages = pageStarts(buf);
  const mid = pages[Math.floor(pages.length / 2)]!;
  await t.rejects(decodeOggOpus(Readable.from([buf.subarray(0, mid + 40)]), { output: { sampleRate: 16000, channels: 1 } }),
    { code: 'TRUNCATED_AUDIO' }, 'cut inside a page');
  await t.rejects(decodeOggOpus(Readable.from([buf.subarray(0, mid)]), { output: { sampleRate: 16000, channels: 1 } }),
    { code: 'TRUNCATED_AUDIO' }, 'cut at a page boundary (no EOS page)');
  await t.rejects(decodeOggOpus(Readable.from([buf.subarray(0, 20)]), { output: { sampleRate: 16000, channels: 1 } }),
    { code: 'TRUNCATED_AUDIO' }, 'less than one page header');
});

t.test('corrupt input is CORRUPT_AUDIO, never a crash', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const pages = pageStarts(buf);
  const flipped = Buffer.from(buf);
  flipped[pages[5]! + 60]! ^= 0x40;
  await t.rejects(decodeOggOpus(Readable.from([flipped]), { output: { sampleRate: 16000, channels: 1 } }), { code: 'CORRUPT_AUDIO' }, 'CRC');
  const garbage = Buffer.concat([buf.subarray(0, pages[3]!), Buffer.from('not an ogg page at all, just text'.repeat(4))]);
  await t.rejects(decodeOggOpus(Readable.from([garbage]), { output: { sampleRate: 16000, channels: 1 } }), { code: 'CORRUPT_AUDIO' }, 'garbage');
  const vorbis = fx.readFixture(await fx.oggVorbis());
  await t.rejects(decodeOggOpus(Readable.from([vorbis]), { output: { sampleRate: 16000, channels: 1 } }), { code: 'CORRUPT_AUDIO' }, 'no Opus stream');
});

t.test('abort ends a decode whose input never finishes', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const input = new PassThrough();
  input.write(buf.subarray(0, 4000));
  const ac = new AbortController();
  const p = decodeOggOpus(input, { output: { sampleRate: 16000, channels: 1 }, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await t.rejects(p, { code: 'CLIENT_ABORTED' });
  t.ok(input.destroyed, 'input released');
});

t.test('a last page that declares more than the packets hold: TRUNCATED_AUDIO, or DURATION_TOO_LONG past the output limit', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  const facts = fx.oggOpusFacts(buf);
  const last = pageStarts(buf).at(-1)!;
  /** The note with its last page's granule position set to `g` (and its CRC made again). */
  const declaring = (g: bigint): Buffer => {
    const b = Buffer.from(buf);
    b.writeBigInt64LE(g, last + 6);
    const nseg = b[last + 26]!;
    let size = 27 + nseg;
    for (let i = 0; i < nseg; i++) size += b[last + 27 + i]!;
    b.writeUInt32LE(oggCrc(b.subarray(last, last + size)), last + 22);
    return b;
  };
  const decode = (b: Buffer) => decodeOggOpus(Readable.from([b]), { output: { sampleRate: 16000, channels: 1 } });
  const honest = await decode(declaring(facts.lastGranule));
  t.equal(honest.frames, Math.round((Number(facts.lastGranule) - facts.preSkip) / 3), 'the same granule written again: decoded as it is');
  const within = await decode(declaring(facts.lastGranule + 48n * 50n));
  // the last packet decodes a little past the granule (its padding): what it holds is kept up to the declared end
  t.ok(within.frames >= honest.frames && within.frames <= honest.frames + 800, `50 ms more declared than held: within the tolerance, decoded (${within.frames} frames)`);
  const declaredSec = (Number(facts.lastGranule) + 48_000 - facts.preSkip) / 48_000;
  await t.rejects(decode(declaring(facts.lastGranule + 48_000n)), { code: 'TRUNCATED_AUDIO', details: { declaredSec } }, 'a second more declared than held');
  await t.rejects(decode(declaring(48_000n * 7000n)), { code: 'TRUNCATED_AUDIO' }, '7 000 s declared, within the 2 h limit');
  await t.rejects(decode(declaring(48_000n * 100_000n)), { code: 'DURATION_TOO_LONG' }, '100 000 s declared');
  await t.rejects(decode(declaring(0x7fff_ffff_ffff_ffffn)), { code: 'DURATION_TOO_LONG' }, 'the largest granule');
});

t.test('output limit is DURATION_TOO_LONG', async (t) => {
  const buf = fx.readFixture(await fx.opusVoiceNote());
  await t.rejects(decodeOggOpus(Readable.from([buf]), { output: { sampleRate: 16000, channels: 1 }, maxOutputBytes: 32000 }),
    { code: 'DURATION_TOO_LONG' });
});

t.test('OggReader joins a packet spanning pages', async (t) => {
  // one 600-byte packet split over two pages (lacing 255,255 | continued 90)
  const payload = Buffer.alloc(600, 7);
  const page = (flags: number, granule: bigint, lacing: number[], body: Buffer, seq: number): Buffer => {
    const h = Buffer.alloc(27 + lacing.length);
    h.write('OggS', 0, 'ascii');
    h[5] = flags;
    h.writeBigInt64LE(granule, 6);
    h.writeUInt32LE(99, 14);
    h.writeUInt32LE(seq, 18);
    h[26] = lacing.length;
    lacing.forEach((l, i) => (h[27 + i] = l));
    const p = Buffer.concat([h, body]);
    p.writeUInt32LE(oggCrc(p), 22);
    return p;
  };
  const a = page(0x02, -1n, [255, 255], payload.subarray(0, 510), 0);
  const b = page(0x05, 960n, [90], payload.subarray(510), 1);
  const r = new OggReader();
  r.push(Buffer.concat([a, b]));
  const pkt = r.next();
  t.ok(pkt !== undefined && pkt.data.equals(payload));
  t.equal(pkt?.granule, 960n);
  t.equal(pkt?.eos, true);
  t.equal(r.next(), undefined);
  t.doesNotThrow(() => r.end());
  const cut = new OggReader();
  cut.push(a);
  t.throws(() => cut.end(), { code: 'TRUNCATED_AUDIO' }, 'ends inside a packet');
});
