import t from 'tap';
import fc from 'fast-check';
import { SNIFF_BYTES, sniffFormat, type SniffedFormat } from '../../src/audio/sniff.js';
import * as fx from '../helpers/audio-fixtures.js';

const ALL: SniffedFormat[] = ['ogg-opus', 'ogg', 'mp4', 'mp3', 'amr', 'aac-adts', 'wav', 'webm', 'flac', 'unknown'];

t.test('recognises every fixture from its first SNIFF_BYTES bytes', async (t) => {
  const cases: [() => Promise<string>, SniffedFormat][] = [
    [fx.opusVoiceNote, 'ogg-opus'],
    [fx.opusStereo48k, 'ogg-opus'],
    [fx.oggVorbis, 'ogg'],
    [() => fx.aacM4a(), 'mp4'],
    [() => fx.aacM4a({ faststart: true }), 'mp4'],
    [fx.mp3, 'mp3'],
    [fx.amrNb, 'amr'],
    [fx.aacAdts, 'aac-adts'],
    [fx.speechWav, 'wav'],
    [fx.webmOpus, 'webm'],
    [fx.flac, 'flac'],
  ];
  for (const [make, want] of cases) {
    const path = await make();
    t.equal(sniffFormat(fx.readFixture(path).subarray(0, SNIFF_BYTES)), want, path);
  }
});

t.test('MP3 without an ID3 tag is found by its frame sync', async (t) => {
  const buf = fx.readFixture(await fx.mp3());
  const size = ((buf[6]! & 0x7f) << 21) | ((buf[7]! & 0x7f) << 14) | ((buf[8]! & 0x7f) << 7) | (buf[9]! & 0x7f);
  t.equal(sniffFormat(buf.subarray(10 + size, 10 + size + SNIFF_BYTES)), 'mp3');
});

t.test('not audio is unknown', async (t) => {
  t.equal(sniffFormat(Buffer.from('{"hello":"world"}')), 'unknown');
  t.equal(sniffFormat(Buffer.from('%PDF-1.7 ...')), 'unknown');
  t.equal(sniffFormat(Buffer.alloc(0)), 'unknown');
  t.equal(sniffFormat(Buffer.from([0xff])), 'unknown');
  t.equal(sniffFormat(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10])), 'unknown', 'JPEG');
});

t.test('never throws and always answers a known label on random input', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => ALL.includes(sniffFormat(bytes))),
    { numRuns: 5000 },
  );
  // random bytes behind real magic numbers (half-formed headers)
  const prefixes = ['OggS', 'ID3', 'RIFF', '#!AMR', 'fLaC'].map((s) => Buffer.from(s));
  prefixes.push(Buffer.from([0xff, 0xf1]), Buffer.from([0xff, 0xfb]), Buffer.from([0x1a, 0x45, 0xdf, 0xa3]));
  fc.assert(
    fc.property(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 100 }), (p, rest) =>
      ALL.includes(sniffFormat(Buffer.concat([p, rest])))),
    { numRuns: 5000 },
  );
});
