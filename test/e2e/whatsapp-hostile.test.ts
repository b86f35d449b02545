import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { oggCrc } from '../../src/audio/ogg-reader.js';
import { readBoxes } from '../../src/audio/mp4-faststart.js';
import { encodeWav } from '../../src/audio/wav.js';
import { startTestApp } from '../helpers/app.js';
import * as fx from '../helpers/audio-fixtures.js';
import { audioHeaders, ffmpegChildren, postAudio, storedKeys, type Answer } from '../helpers/whatsapp-app.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Attacker-made media, built here: scripts for demuxers that open other inputs (HLS, ffconcat)
 * hidden behind an ID3 tag, headers that declare absurd formats or lengths, valid notes with
 * megabytes of garbage after them. Each is refused with its coded 4xx (or, for a valid note,
 * stored with exactly the note's length), nothing of the refused ones is stored, no reference
 * is opened, and the daemon stays healthy — also with 20 of them at once.
 */

/** Counts TCP connections to a listener on 127.0.0.1 (an `http://` reference in a script). */
async function listener(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return { server, port: addr.port, connections: () => n };
}

/**
 * A FIFO (a `file:` reference) and a watcher that notices any reader: opening a FIFO for
 * writing without blocking succeeds only while someone has it open for reading.
 */
function fifoWatch(path: string): { opens: () => number; stop: () => void } {
  execFileSync('mkfifo', [path]);
  let n = 0;
  const timer = setInterval(() => {
    try {
      const fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
      n++;
      try {
        writeSync(fd, 'not audio\n');
      } catch {
        // the reader may be gone already
      }
      closeSync(fd);
    } catch {
      // ENXIO: nobody is reading
    }
  }, 5);
  return { opens: () => n, stop: () => clearInterval(timer) };
}

function id3(body: Buffer | string): Buffer {
  const b = Buffer.from(body);
  // an ID3v2.4 header with an empty tag: what follows is sniffed as MPEG audio
  return Buffer.concat([Buffer.from([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 0]), b]);
}

function oggPage(body: Buffer, flags: number, granule: bigint, seq: number): Buffer {
  const segs: number[] = [];
  for (let left = body.length; ; left -= 255) {
    segs.push(Math.min(255, left));
    if (left < 255) break;
  }
  const h = Buffer.alloc(27 + segs.length);
  h.write('OggS', 0, 'latin1');
  h[5] = flags;
  h.writeBigInt64LE(granule, 6);
  h.writeUInt32LE(0x1234, 14);
  h.writeUInt32LE(seq, 18);
  h[26] = segs.length;
  segs.forEach((s, i) => (h[27 + i] = s));
  const page = Buffer.concat([h, body]);
  page.writeUInt32LE(oggCrc(page), 22);
  return page;
}

/** OpusHead with 255 channels (mapping family 255), OpusTags, and a page of junk packets. */
function opus255(): Buffer {
  const head = Buffer.alloc(21 + 255);
  head.write('OpusHead', 0, 'latin1');
  head[8] = 1;
  head[9] = 255;
  head.writeUInt16LE(312, 10);
  head.writeUInt32LE(48000, 12);
  head[18] = 255; // mapping family
  head[19] = 255; // streams
  head[20] = 0; // coupled
  for (let i = 0; i < 255; i++) head[21 + i] = i;
  const tags = Buffer.concat([Buffer.from('OpusTags', 'latin1'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])]);
  return Buffer.concat([oggPage(head, 2, 0n, 0), oggPage(tags, 0, 0n, 1), oggPage(Buffer.alloc(400, 0xf8), 4, 48000n * 3600n, 2)]);
}

/**
 * A moov-last M4A without samples whose sample table claims 2³¹ AAC frames; with `everywhere`
 * the movie, media and edit durations claim as much (about 24 days), else they keep the note's.
 */
function mp4HugeNoData(real: Buffer, everywhere: boolean): Buffer {
  const top = readBoxes(real, 0, real.length)!;
  const ftyp = top.find((b) => b.type === 'ftyp')!;
  const moov = top.find((b) => b.type === 'moov')!;
  const m = Buffer.from(real.subarray(moov.start, moov.end));
  const stts = m.indexOf('stts', 0, 'latin1');
  m.writeUInt32BE(1, stts + 8); // one entry
  m.writeUInt32BE(0x7fffffff, stts + 12);
  m.writeUInt32BE(1024, stts + 16);
  if (everywhere) {
    for (const type of ['mvhd', 'mdhd']) m.writeUInt32BE(0x7fffffff, m.indexOf(type, 0, 'latin1') + 20);
    m.writeUInt32BE(0x7fffffff, m.indexOf('elst', 0, 'latin1') + 12);
  }
  const emptyMdat = Buffer.from([0, 0, 0, 8, 0x6d, 0x64, 0x61, 0x74]);
  return Buffer.concat([real.subarray(ftyp.start, ftyp.end), emptyMdat, m]);
}

/** A WAV header declaring `dataBytes` of 16 kHz mono samples, followed by 1 KiB of them. */
function wavDeclaring(dataBytes: number): Buffer {
  const wav = encodeWav(Buffer.alloc(1024, 1), { sampleRate: 16000, channels: 1 });
  wav.writeUInt32LE(Math.min(0xffffffff, dataBytes + 36), 4);
  wav.writeUInt32LE(dataBytes, 40);
  return wav;
}

function garbage(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  let x = seed >>> 0;
  for (let i = 0; i < bytes; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

interface Hostile {
  name: string;
  body: Buffer;
  /** Refused with this status and code. */
  refuse?: { status: number; code: string };
  /** A valid note with garbage after it: refused with a coded 4xx, or stored with exactly its own length. */
  validSec?: number;
}

t.test('hostile media: refused with its code, nothing opened or stored, the daemon healthy', async (t) => {
  const dir = await tempDir(t, 'aid-hostile-');
  const net = await listener();
  t.teardown(() => net.server.close());
  // a .ts name: ffmpeg's HLS demuxer refuses a playlist whose segments have other extensions
  const fifo = join(dir, 'segment.ts');
  const watch = fifoWatch(fifo);
  t.teardown(() => watch.stop());
  const url = `http://127.0.0.1:${net.port}`;

  const hls = id3(`#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n${url}/seg0.ts\n#EXTINF:10,\nfile:${fifo}\n#EXT-X-ENDLIST\n`);
  const hlsFileFirst = id3(`#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:${fifo}\n#EXTINF:10,\n${url}/seg1.ts\n#EXT-X-ENDLIST\n`);
  const concat = id3(`ffconcat version 1.0\nfile '${url}/part0.mp3'\nfile '${fifo}'\n`);
  const concatFileFirst = id3(`ffconcat version 1.0\nfile 'file:${fifo}'\nfile '${url}/part1.mp3'\n`);

  // Control: the same scripts do reach HLS and concat when ffmpeg probes and may open files and
  // http (as a decoder started with `-i pipe:0` and a wide whitelist would), so the detectors work.
  const control = async (body: Buffer, extra: string[]): Promise<void> => {
    const child = spawn(fx.ENCODER_FFMPEG, ['-nostdin', '-v', 'quiet', ...extra, '-protocol_whitelist', 'file,http,tcp,pipe', '-i', 'pipe:0', '-f', 'null', '-'], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.on('error', () => undefined);
    child.stdin.end(body);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await new Promise((r) => child.on('close', r));
    clearTimeout(timer);
  };
  // (the accept or the FIFO poll may be seen after the child's exit: wait for them, bounded)
  const settle = async (cond: () => boolean): Promise<boolean> => {
    for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
    return cond();
  };
  await control(hls, []);
  t.ok(await settle(() => net.connections() === 1), `control: the HLS demuxer behind ID3 connects to its http:// segment (${net.connections()})`);
  await control(concat, ['-safe', '0']);
  t.ok(await settle(() => net.connections() === 2), `control: the concat demuxer behind ID3 connects to its http:// part (${net.connections()})`);
  await control(concatFileFirst, ['-safe', '0']);
  t.ok(await settle(() => watch.opens() >= 1), `control: the concat demuxer opens its file: part (${watch.opens()})`);
  await control(hlsFileFirst, []);
  t.ok(await settle(() => watch.opens() >= 2), `control: the HLS demuxer opens its file: segment (${watch.opens()})`);
  await new Promise((r) => setTimeout(r, 200));
  const controlConnections = net.connections();
  const controlOpens = watch.opens();

  const note = fx.readFixture(await fx.opusVoiceNote());
  const mp3 = fx.readFixture(await fx.mp3());
  const m4a = fx.readFixture(await fx.aacM4a({ faststart: true }));
  const wav = fx.readFixture(await fx.speechWavAt(16000));
  const h = await startTestApp();
  t.teardown(() => h.close());
  const validSec = async (body: Buffer, id: string): Promise<number> => {
    const r = await postAudio(h.baseUrl, body, audioHeaders({ 'content-type': 'application/octet-stream', 'x-message-id': id }));
    t.equal(r.status, 201, `${id}: the clean note is stored`);
    return r.body.durationSec as number;
  };
  const clean = {
    note: await validSec(note, 'CLEAN-OPUS'),
    mp3: await validSec(mp3, 'CLEAN-MP3'),
    m4a: await validSec(m4a, 'CLEAN-M4A'),
    wav: await validSec(wav, 'CLEAN-WAV'),
  };
  const before = new Set(await storedKeys(h.app));

  const junk = garbage(3 * 1024 * 1024, 7);
  const corpus: Hostile[] = [
    { name: 'HLS playlist behind ID3', body: hls, refuse: { status: 415, code: 'CORRUPT_AUDIO' } },
    { name: 'HLS playlist behind ID3, file: first', body: hlsFileFirst, refuse: { status: 415, code: 'CORRUPT_AUDIO' } },
    { name: 'ffconcat script behind ID3', body: concat, refuse: { status: 415, code: 'CORRUPT_AUDIO' } },
    { name: 'ffconcat script behind ID3, file: first', body: concatFileFirst, refuse: { status: 415, code: 'CORRUPT_AUDIO' } },
    { name: 'Ogg/Opus header with 255 channels', body: opus255(), refuse: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' } },
    { name: 'moov-last MP4, huge declared duration, no data', body: mp4HugeNoData(fx.readFixture(await fx.aacM4a()), true), refuse: { status: 422, code: 'DURATION_TOO_LONG' } },
    { name: 'moov-last MP4, huge sample table, no data', body: mp4HugeNoData(fx.readFixture(await fx.aacM4a()), false), refuse: { status: 415, code: 'CORRUPT_AUDIO' } },
    { name: 'WAV declaring 3.75 GiB, 1 KiB present', body: wavDeclaring(0xf0000000), refuse: { status: 422, code: 'DURATION_TOO_LONG' } },
    { name: 'WAV declaring 1 MiB, 1 KiB present', body: wavDeclaring(1 << 20), refuse: { status: 415, code: 'TRUNCATED_AUDIO' } },
    { name: 'WAV with the streaming size 0xffffffff, 1 KiB present', body: wavDeclaring(0xffffffff), refuse: { status: 422, code: 'DURATION_TOO_SHORT' } },
    { name: 'Ogg/Opus note + 3 MiB of garbage', body: Buffer.concat([note, junk]), refuse: { status: 415, code: 'CORRUPT_AUDIO' } },
    { name: 'MP3 note + 3 MiB of garbage', body: Buffer.concat([mp3, junk]), validSec: clean.mp3 },
    { name: 'M4A note + 3 MiB of garbage', body: Buffer.concat([m4a, junk]), validSec: clean.m4a },
    { name: 'WAV note + 3 MiB of garbage', body: Buffer.concat([wav, junk]), validSec: clean.wav },
  ];

  const send = (c: Hostile, id: string): Promise<Answer> =>
    postAudio(h.baseUrl, c.body, audioHeaders({ 'content-type': 'application/octet-stream', 'x-message-id': id }));
  const check = (c: Hostile, r: Answer, label: string): void => {
    if (c.refuse !== undefined) {
      t.equal(r.status, c.refuse.status, `${label}: ${r.status} ${JSON.stringify(r.body)}`);
      t.match(r.body, { error: { code: c.refuse.code } }, `${label}: ${c.refuse.code}`);
    } else if (r.status === 201) {
      t.equal(r.body.durationSec, c.validSec, `${label}: stored with the note's own length, nothing of the garbage`);
    } else {
      t.ok(r.status >= 400 && r.status < 500, `${label}: refused with a 4xx (${r.status} ${JSON.stringify(r.body)})`);
      t.match(r.body, { error: { code: /^[A-Z_]+$/ } }, `${label}: with its code`);
    }
  };

  const storedIds: string[] = [];
  for (const [i, c] of corpus.entries()) {
    const id = `HOSTILE-${i}`;
    const r = await send(c, id);
    check(c, r, c.name);
    if (r.status === 201) storedIds.push(id);
  }
  // 20 at once, the corpus cycled
  const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => send(corpus[i % corpus.length]!, `BURST-${i}`).then((r) => ({ i, r }))));
  for (const { i, r } of burst) {
    const c = corpus[i % corpus.length]!;
    check(c, r, `burst ${i}: ${c.name}`);
    if (r.status === 201) storedIds.push(`BURST-${i}`);
  }

  await new Promise((r) => setTimeout(r, 200)); // let a late accept or FIFO open show
  const added = (await storedKeys(h.app)).filter((k) => !before.has(k));
  t.same(added.map((k) => /\/([^/]+)\.wav$/.exec(k)?.[1]).filter((x) => x !== undefined).sort(), storedIds.sort(), 'only the valid notes were stored');
  t.ok(added.every((k) => storedIds.some((id) => k.includes(id))), 'nothing else was stored (no originals of refused notes)');
  t.equal(net.connections(), controlConnections, 'no connection reached the listener from the daemon');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(watch.opens(), controlOpens, 'no file: reference was opened by the daemon');
  t.equal(await ffmpegChildren(), 0, 'no ffmpeg left running');
  t.equal((await fetch(`${h.baseUrl}/health`)).status, 200);
  t.equal((await fetch(`${h.baseUrl}/ready`)).status, 200);
  const after = await postAudio(h.baseUrl, note, audioHeaders({ 'x-message-id': 'AFTER' }));
  t.equal(after.status, 201, 'a good note is still stored afterwards');
  t.equal(after.body.durationSec, clean.note);
});

t.test('the control decoder is not the daemon: the daemon forces the demuxer and allows only pipe', async (t) => {
  // Guard against the corpus passing for the wrong reason: the daemon's own argument list.
  const { ffmpegArgs } = await import('../../src/audio/decode-ffmpeg.js');
  const args = ffmpegArgs({ sampleRate: 16000, channels: 1 }, 'mp3');
  t.same(args.slice(args.indexOf('-protocol_whitelist'), args.indexOf('-protocol_whitelist') + 2), ['-protocol_whitelist', 'pipe']);
  t.ok(args.indexOf('-f') < args.indexOf('-i') && args[args.indexOf('-f') + 1] === 'mp3', '-f mp3 before -i');
});
