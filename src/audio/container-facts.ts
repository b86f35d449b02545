/**
 * What a container says about its audio before anything is decoded: channels and rate (checked
 * against sane limits, so a hostile header never reaches a decoder) and, where the container
 * declares it, the exact number of sample frames after encoder priming and end padding, so a
 * decode can be cut to it. Small bounded parsers over bytes already in memory; they never throw
 * on malformed input, they just learn less (the decoder then reports what is wrong).
 */
import { AppError } from '../errors.js';
import { readBoxes, type Mp4Box } from './mp4-faststart.js';
import type { SniffedFormat } from './sniff.js';

/** Facts read from a container's headers; every field is optional. */
export interface ContainerFacts {
  /** Channels the header declares. */
  channels?: number;
  /** Sample rate the header declares, Hz. */
  sampleRate?: number;
  /** Sample frames the container declares (priming and padding excluded), counted at `declaredRate`. */
  declaredFrames?: number;
  /** Rate `declaredFrames` is counted at (an MP4 track's timescale, 48 000 for Opus…). */
  declaredRate?: number;
}

/** Channel counts above this are refused before decoding (voice notes are mono or stereo). */
export const MAX_CHANNELS = 8;
/** Declared rates outside this range are refused before decoding. */
export const MIN_SAMPLE_RATE = 4000;
export const MAX_SAMPLE_RATE = 192_000;

/** The ffmpeg demuxer (`-f`) for each sniffed format: probing never picks another one. */
export const FFMPEG_DEMUXER: Record<Exclude<SniffedFormat, 'unknown'>, string> = {
  'ogg-opus': 'ogg',
  ogg: 'ogg',
  mp4: 'mov',
  mp3: 'mp3',
  amr: 'amr',
  'aac-adts': 'aac',
  wav: 'wav',
  webm: 'matroska',
  flac: 'flac',
};

/** Throws UNSUPPORTED_MEDIA_TYPE when the header declares a channel count or rate outside the limits. */
export function checkFacts(facts: ContainerFacts): void {
  const { channels, sampleRate } = facts;
  if (channels !== undefined && (!Number.isInteger(channels) || channels < 1 || channels > MAX_CHANNELS)) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `the audio header declares ${channels} channels (1–${MAX_CHANNELS} accepted)`, {
      details: { channels, maxChannels: MAX_CHANNELS },
    });
  }
  if (sampleRate !== undefined && (!Number.isFinite(sampleRate) || sampleRate < MIN_SAMPLE_RATE || sampleRate > MAX_SAMPLE_RATE)) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `the audio header declares a rate of ${sampleRate} Hz (${MIN_SAMPLE_RATE}–${MAX_SAMPLE_RATE} accepted)`, {
      details: { sampleRate },
    });
  }
  if (facts.declaredFrames !== undefined && (facts.declaredRate === undefined || !(facts.declaredRate > 0))) {
    throw new AppError('CORRUPT_AUDIO', 'the container declares a length without a timescale');
  }
}

/** Declared frames converted to `outputRate` (rounded), or undefined when the container declares none. */
export function declaredOutputFrames(facts: ContainerFacts, outputRate: number): number | undefined {
  if (facts.declaredFrames === undefined || facts.declaredRate === undefined) return undefined;
  return Math.round((facts.declaredFrames * outputRate) / facts.declaredRate);
}

/** Facts from the first bytes of a streamed format (everything but MP4, which is read whole). */
export function headFacts(format: SniffedFormat, head: Buffer): ContainerFacts {
  switch (format) {
    case 'wav':
      return wavFacts(head);
    case 'flac':
      return flacFacts(head);
    case 'mp3':
      return mp3Facts(head);
    case 'ogg':
    case 'ogg-opus':
      return oggHeadFacts(head);
    case 'amr':
      return amrFacts(head);
    case 'aac-adts':
      return adtsFacts(head);
    case 'webm':
      return matroskaFacts(head);
    case 'mp4':
      return mp4Facts(head);
    default:
      return {};
  }
}

// ---------------------------------------------------------------- WAV

/** Data sizes that streaming writers leave in a header they could not rewrite: no declared length. */
const WAV_STREAMING_SIZES = new Set([0, 0x7fffffff, 0xffffffff]);

function wavFacts(b: Buffer): ContainerFacts {
  const facts: ContainerFacts = {};
  if (b.length < 12 || b.toString('latin1', 0, 4) !== 'RIFF' || b.toString('latin1', 8, 12) !== 'WAVE') return facts;
  let off = 12;
  let blockAlign = 0;
  let formatTag = 0;
  let factFrames: number | undefined;
  while (off + 8 <= b.length) {
    const id = b.toString('latin1', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ' && body + 16 <= b.length) {
      formatTag = b.readUInt16LE(body);
      facts.channels = b.readUInt16LE(body + 2);
      facts.sampleRate = b.readUInt32LE(body + 4);
      blockAlign = b.readUInt16LE(body + 12);
    } else if (id === 'fact' && body + 4 <= b.length) {
      factFrames = b.readUInt32LE(body);
    } else if (id === 'data') {
      const pcm = formatTag === 1 || formatTag === 3 || formatTag === 0xfffe;
      if (pcm && blockAlign > 0 && !WAV_STREAMING_SIZES.has(size)) facts.declaredFrames = Math.floor(size / blockAlign);
      else if (!pcm && factFrames !== undefined && factFrames > 0) facts.declaredFrames = factFrames;
      if (facts.declaredFrames !== undefined) facts.declaredRate = facts.sampleRate;
      break;
    }
    off = body + size + (size & 1);
  }
  return facts;
}

// ---------------------------------------------------------------- FLAC

function flacFacts(b: Buffer): ContainerFacts {
  // fLaC, then STREAMINFO (type 0, 34 bytes) as the first metadata block
  if (b.length < 8 + 18 || (b[4]! & 0x7f) !== 0) return {};
  const s = 8;
  const sampleRate = (b[s + 10]! << 12) | (b[s + 11]! << 4) | (b[s + 12]! >> 4);
  const channels = ((b[s + 12]! >> 1) & 0x07) + 1;
  const total = (b[s + 13]! & 0x0f) * 2 ** 32 + b.readUInt32BE(s + 14);
  const facts: ContainerFacts = { sampleRate, channels };
  if (total > 0 && sampleRate > 0) {
    facts.declaredFrames = total;
    facts.declaredRate = sampleRate;
  }
  return facts;
}

// ---------------------------------------------------------------- MP3

const MPEG_RATES = [
  [11025, 12000, 8000], // MPEG 2.5
  [0, 0, 0],
  [22050, 24000, 16000], // MPEG 2
  [44100, 48000, 32000], // MPEG 1
];

/** End of an ID3v2 tag at the start of `b` (0 when there is none). */
export function id3v2End(b: Buffer): number {
  if (b.length < 10 || b.toString('latin1', 0, 3) !== 'ID3') return 0;
  const size = ((b[6]! & 0x7f) << 21) | ((b[7]! & 0x7f) << 14) | ((b[8]! & 0x7f) << 7) | (b[9]! & 0x7f);
  return 10 + size + ((b[5]! & 0x10) !== 0 ? 10 : 0);
}

/** The first MPEG audio frame's format, and the LAME/Xing gapless length when the frame carries one. */
function mp3Facts(b: Buffer): ContainerFacts {
  const at = id3v2End(b);
  if (at + 4 > b.length || b[at] !== 0xff || (b[at + 1]! & 0xe0) !== 0xe0) return {};
  const version = (b[at + 1]! >> 3) & 0x03;
  const layer = (b[at + 1]! >> 1) & 0x03;
  const rateIdx = (b[at + 2]! >> 2) & 0x03;
  const mono = b[at + 3]! >> 6 === 3;
  if (version === 1 || layer === 0 || rateIdx === 3) return {};
  const sampleRate = MPEG_RATES[version]![rateIdx]!;
  const facts: ContainerFacts = { sampleRate, channels: mono ? 1 : 2 };
  const mpeg1 = version === 3;
  const samplesPerFrame = layer === 3 ? 384 : layer === 2 || mpeg1 ? 1152 : 576;
  // Xing/Info sits after the side information of the first frame (layer III only)
  const xing = at + 4 + (mpeg1 ? (mono ? 17 : 32) : mono ? 9 : 17);
  if (layer !== 1 || xing + 8 > b.length) return facts;
  const tag = b.toString('latin1', xing, xing + 4);
  if (tag !== 'Xing' && tag !== 'Info') return facts;
  const flags = b.readUInt32BE(xing + 4);
  let p = xing + 8;
  if ((flags & 1) === 0 || p + 4 > b.length) return facts;
  const frames = b.readUInt32BE(p);
  p += 4;
  if ((flags & 2) !== 0) p += 4;
  if ((flags & 4) !== 0) p += 100;
  if ((flags & 8) !== 0) p += 4;
  // LAME extension: 9-byte encoder string, then 12 bits of encoder delay and 12 of padding at +21
  if (p + 24 > b.length || !/^(LAME|Lavc|Lavf|GOGO)/.test(b.toString('latin1', p, p + 4))) return facts;
  const delay = (b[p + 21]! << 4) | (b[p + 22]! >> 4);
  const padding = ((b[p + 22]! & 0x0f) << 8) | b[p + 23]!;
  const total = frames * samplesPerFrame - delay - padding;
  if (frames > 0 && total > 0) {
    facts.declaredFrames = total;
    facts.declaredRate = sampleRate;
  }
  return facts;
}

// ---------------------------------------------------------------- Ogg

/** The first packet of the first page: OpusHead or the Vorbis identification header. */
function oggHeadFacts(b: Buffer): ContainerFacts {
  if (b.length < 27) return {};
  const data = 27 + b[26]!;
  if (b.toString('latin1', data, data + 8) === 'OpusHead' && data + 19 <= b.length) {
    // decoded at 48 kHz whatever the informational input rate says
    return { channels: b[data + 9]!, sampleRate: 48000 };
  }
  if (b[data] === 1 && b.toString('latin1', data + 1, data + 7) === 'vorbis' && data + 16 <= b.length) {
    return { channels: b[data + 11]!, sampleRate: b.readUInt32LE(data + 12) };
  }
  return {};
}

// ---------------------------------------------------------------- AMR, ADTS

function amrFacts(b: Buffer): ContainerFacts {
  if (b.toString('latin1', 0, 9) === '#!AMR-WB\n') return { channels: 1, sampleRate: 16000 };
  if (b.toString('latin1', 0, 6) === '#!AMR\n') return { channels: 1, sampleRate: 8000 };
  // multichannel AMR: '#!AMR_MC1.0\n' or '#!AMR-WB_MC1.0\n' then 32 bits whose low 4 are channels
  const mc = b.toString('latin1', 0, 12) === '#!AMR_MC1.0\n' ? 12 : b.toString('latin1', 0, 15) === '#!AMR-WB_MC1.0\n' ? 15 : 0;
  if (mc > 0 && mc + 4 <= b.length) return { channels: b.readUInt32BE(mc) & 0x0f, sampleRate: mc === 12 ? 8000 : 16000 };
  return {};
}

const ADTS_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

function adtsFacts(b: Buffer): ContainerFacts {
  const at = id3v2End(b);
  if (at + 7 > b.length || b[at] !== 0xff || (b[at + 1]! & 0xf6) !== 0xf0) return {};
  const rate = ADTS_RATES[(b[at + 2]! >> 2) & 0x0f];
  const channelConfig = ((b[at + 2]! & 0x01) << 2) | (b[at + 3]! >> 6);
  const facts: ContainerFacts = {};
  if (rate !== undefined) facts.sampleRate = rate;
  if (channelConfig !== 0) facts.channels = channelConfig === 7 ? 8 : channelConfig;
  return facts;
}

// ---------------------------------------------------------------- Matroska / WebM

/** An EBML variable-length integer at `off`: its value (marker removed unless `keepMarker`) and length. */
function vint(b: Buffer, off: number, keepMarker: boolean): { value: number; len: number; unknown: boolean } | undefined {
  if (off >= b.length) return undefined;
  const first = b[off]!;
  let len = 1;
  while (len <= 8 && (first & (0x80 >> (len - 1))) === 0) len++;
  if (len > 8 || off + len > b.length) return undefined;
  let value = keepMarker ? first : first & (0xff >> len);
  let allOnes = value === (0xff >> len);
  for (let i = 1; i < len; i++) {
    value = value * 256 + b[off + i]!;
    if (b[off + i] !== 0xff) allOnes = false;
  }
  return { value, len, unknown: !keepMarker && allOnes };
}

const EBML_SEGMENT = 0x18538067;
const EBML_TRACKS = 0x1654ae6b;
const EBML_TRACK_ENTRY = 0xae;
const EBML_TRACK_TYPE = 0x83;
const EBML_AUDIO = 0xe1;
const EBML_SAMPLING_FREQUENCY = 0xb5;
const EBML_CHANNELS = 0x9f;
const EBML_CLUSTER = 0x1f43b675;

/**
 * Channels and rate of the first audio track in the head's Tracks element. CodecDelay and
 * DiscardPadding are applied by ffmpeg's Matroska demuxer itself (verified sample-exact).
 */
function matroskaFacts(b: Buffer): ContainerFacts {
  const facts: ContainerFacts = {};
  const walk = (from: number, to: number, depth: number, inAudioTrack: boolean): boolean => {
    let off = from;
    while (off < to) {
      const id = vint(b, off, true);
      if (id === undefined) return false;
      const size = vint(b, off + id.len, false);
      if (size === undefined) return false;
      const body = off + id.len + size.len;
      const end = size.unknown ? to : Math.min(to, body + size.value);
      if (id.value === EBML_CLUSTER) return false; // past the headers
      if (id.value === EBML_SEGMENT || id.value === EBML_TRACKS) {
        if (!walk(body, end, depth + 1, false)) return false;
      } else if (id.value === EBML_TRACK_ENTRY) {
        if (trackIsAudio(body, end)) {
          walk(body, end, depth + 1, true);
          return false; // first audio track found
        }
      } else if (id.value === EBML_AUDIO && inAudioTrack) {
        walk(body, end, depth + 1, true);
      } else if (id.value === EBML_SAMPLING_FREQUENCY && inAudioTrack) {
        if (size.value === 4 && body + 4 <= b.length) facts.sampleRate = b.readFloatBE(body);
        if (size.value === 8 && body + 8 <= b.length) facts.sampleRate = b.readDoubleBE(body);
      } else if (id.value === EBML_CHANNELS && inAudioTrack && size.value >= 1 && size.value <= 4 && body + size.value <= b.length) {
        facts.channels = b.readUIntBE(body, size.value);
      }
      if (size.unknown) return true;
      off = body + size.value;
    }
    return true;
  };
  const trackIsAudio = (from: number, to: number): boolean => {
    let off = from;
    while (off < to) {
      const id = vint(b, off, true);
      const size = id === undefined ? undefined : vint(b, off + id.len, false);
      if (id === undefined || size === undefined || size.unknown) return false;
      const body = off + id.len + size.len;
      if (id.value === EBML_TRACK_TYPE && size.value === 1 && body < b.length) return b[body] === 2;
      off = body + size.value;
    }
    return false;
  };
  walk(0, b.length, 0, false);
  return facts;
}

// ---------------------------------------------------------------- MP4

function child(buf: Buffer, box: Mp4Box, type: string, skip = 0): Mp4Box | undefined {
  return readBoxes(buf, box.start + box.header + skip, box.end)?.find((c) => c.type === type);
}

function fullBoxBody(box: Mp4Box): number {
  return box.start + box.header + 4; // version and flags
}

/**
 * The first sound track of an MP4 held whole in memory: its sample entry's channels and rate,
 * and its exact length — the track's media duration (Σ stts) from the edit list's start
 * (`media_time`, the encoder priming), cut to the edit's duration when that is shorter (the
 * end padding). Fragmented files (moof) declare no length here.
 */
export function mp4Facts(buf: Buffer): ContainerFacts {
  const top = readBoxes(buf, 0, buf.length, true);
  if (top === null) return {};
  const moov = top.find((b) => b.type === 'moov');
  if (moov === undefined) return {};
  const fragmented = top.some((b) => b.type === 'moof');
  const mvhd = child(buf, moov, 'mvhd');
  const movieScale = mvhd === undefined ? 0 : buf[mvhd.start + mvhd.header] === 1 ? buf.readUInt32BE(fullBoxBody(mvhd) + 16) : buf.readUInt32BE(fullBoxBody(mvhd) + 8);
  for (const trak of readBoxes(buf, moov.start + moov.header, moov.end) ?? []) {
    if (trak.type !== 'trak') continue;
    const mdia = child(buf, trak, 'mdia');
    if (mdia === undefined) continue;
    const hdlr = child(buf, mdia, 'hdlr');
    if (hdlr === undefined || buf.toString('latin1', fullBoxBody(hdlr) + 4, fullBoxBody(hdlr) + 8) !== 'soun') continue;
    const facts: ContainerFacts = {};
    const stbl = (() => {
      const minf = child(buf, mdia, 'minf');
      return minf === undefined ? undefined : child(buf, minf, 'stbl');
    })();
    const stsd = stbl === undefined ? undefined : child(buf, stbl, 'stsd');
    if (stsd !== undefined) {
      const entry = stsd.start + stsd.header + 8;
      if (entry + 36 <= stsd.end) {
        const version = buf.readUInt16BE(entry + 16);
        if (version === 2 && entry + 52 <= stsd.end) {
          facts.sampleRate = buf.readDoubleBE(entry + 40);
          facts.channels = buf.readUInt32BE(entry + 48);
        } else {
          facts.channels = buf.readUInt16BE(entry + 24);
          // 16.16 fixed point: 0 where the rate does not fit (then the codec config tells)
          const rate = buf.readUInt16BE(entry + 32);
          if (rate !== 0) facts.sampleRate = rate;
        }
      }
    }
    const mdhd = child(buf, mdia, 'mdhd');
    if (mdhd === undefined || fragmented) return facts;
    const v1 = buf[mdhd.start + mdhd.header] === 1;
    const mediaScale = v1 ? buf.readUInt32BE(fullBoxBody(mdhd) + 16) : buf.readUInt32BE(fullBoxBody(mdhd) + 8);
    const mdhdDuration = v1 ? Number(buf.readBigUInt64BE(fullBoxBody(mdhd) + 20)) : buf.readUInt32BE(fullBoxBody(mdhd) + 12);
    if (mediaScale === 0) return facts;
    let mediaDuration = mdhdDuration;
    const stts = stbl === undefined ? undefined : child(buf, stbl, 'stts');
    if (stts !== undefined) {
      const n = buf.readUInt32BE(fullBoxBody(stts));
      if (fullBoxBody(stts) + 4 + n * 8 <= stts.end) {
        let sum = 0;
        for (let i = 0, p = fullBoxBody(stts) + 4; i < n; i++, p += 8) sum += buf.readUInt32BE(p) * buf.readUInt32BE(p + 4);
        mediaDuration = sum;
      }
    }
    let frames = mediaDuration;
    const edts = child(buf, trak, 'edts');
    const elst = edts === undefined ? undefined : child(buf, edts, 'elst');
    if (elst !== undefined && movieScale > 0) {
      const ev1 = buf[elst.start + elst.header] === 1;
      const n = buf.readUInt32BE(fullBoxBody(elst));
      const width = ev1 ? 20 : 12;
      const edits: { duration: number; mediaTime: number }[] = [];
      for (let i = 0, p = fullBoxBody(elst) + 4; i < n && p + width <= elst.end; i++, p += width) {
        const duration = ev1 ? Number(buf.readBigUInt64BE(p)) : buf.readUInt32BE(p);
        const mediaTime = ev1 ? Number(buf.readBigInt64BE(p + 8)) : buf.readInt32BE(p + 4);
        if (mediaTime !== -1) edits.push({ duration, mediaTime }); // empty edits only delay the start
      }
      if (edits.length > 1) return facts; // several cuts: leave the length to the decoder
      if (edits.length === 1) {
        const e = edits[0]!;
        const available = mediaDuration - e.mediaTime;
        const edited = (e.duration * mediaScale) / movieScale;
        // the edit's duration counts movie ticks: it only cuts when shorter by more than a tick
        frames = e.duration > 0 && edited < available - mediaScale / movieScale ? Math.round(edited) : available;
      }
    }
    if (frames > 0) {
      facts.declaredFrames = frames;
      facts.declaredRate = mediaScale;
    }
    return facts;
  }
  return {};
}
