import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import wavefile from 'wavefile';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import type { TestApp } from './app.js';
import { TEST_API_KEY, TEST_EGRESS_SECRET } from './app.js';
import { ffmpegPcm, speechWav } from './audio-fixtures.js';

/** Mints an egress URL through the real HTTP endpoint. */
export async function egressUrl(h: TestApp, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${h.baseUrl}/v1/egress/urls`, { method: 'POST', headers: { apikey: TEST_API_KEY, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 201) throw new Error(`egress url: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { websocketUrl: string }).websocketUrl;
}

/** Mints a token directly (for tokens the endpoint would not make: expired, other secret). */
export async function rawToken(claims: { tenant: string; roomName: string; trackId?: string }, ttlSec = 60, secret = TEST_EGRESS_SECRET, now = Date.now()): Promise<string> {
  return (await mintEgressToken(secret, claims, ttlSec, now)).token;
}

/** Speech as 48 kHz stereo s16le, both channels equal (what egress sends for a mono mic). */
export async function speechEgressPcm(text?: string): Promise<Buffer> {
  return ffmpegPcm(await speechWav(text), { sampleRate: 48000, channels: 2 });
}

/** Stereo with different channels, from a seeded generator (so the downmix rule is exercised). */
export function randomStereo(frames: number, seed: number): Buffer {
  let x = seed >>> 0;
  const buf = Buffer.alloc(frames * 4);
  for (let i = 0; i < frames * 2; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    buf.writeInt16LE(((x >>> 16) & 0xffff) - 32768, i * 2);
  }
  return buf;
}

/** (L+R)/2 rounded half up: the documented downmix. */
export function downmix(stereo: Buffer): Buffer {
  const frames = stereo.length >> 2;
  const out = Buffer.alloc(frames * 2);
  for (let i = 0; i < frames; i++) out.writeInt16LE((stereo.readInt16LE(i * 4) + stereo.readInt16LE(i * 4 + 2) + 1) >> 1, i * 2);
  return out;
}

/**
 * Parses a WAV with wavefile (an independent reader) and finds its data chunk by walking the
 * chunks (a master has a JUNK chunk before fmt: 80-byte header; a chunk object 44 bytes).
 */
export function readWav(bytes: Buffer): { sampleRate: number; channels: number; data: Buffer; riffSize: number; dataSize: number; headerBytes: number } {
  const wav = new wavefile.WaveFile(bytes);
  const fmt = wav.fmt as { sampleRate: number; numChannels: number; bitsPerSample: number };
  let off = 12;
  let ds64Data: number | undefined;
  while (off + 8 <= bytes.length) {
    const id = bytes.toString('ascii', off, off + 4);
    const size = bytes.readUInt32LE(off + 4);
    if (id === 'ds64') ds64Data = Number(bytes.readBigUInt64LE(off + 16));
    if (id === 'data') {
      const dataSize = size === 0xffffffff && ds64Data !== undefined ? ds64Data : size;
      return {
        sampleRate: fmt.sampleRate,
        channels: fmt.numChannels,
        data: bytes.subarray(off + 8, off + 8 + dataSize),
        riffSize: bytes.readUInt32LE(4),
        dataSize,
        headerBytes: off + 8,
      };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error('no data chunk');
}

/** The completed-recording log lines of an app (key, duration, end reason, …). */
export function completedRecordings(h: TestApp): { recordingId: string; key: string; endReason: string; durationSec: number }[] {
  return h.logs.filter((l) => l.msg === 'recording completed') as never;
}

/**
 * Every event the app has made durable, in order: the NDJSON event log (the embedded sink) plus
 * whatever the outbox still holds, deduplicated by id.
 */
export function outboxEvents(h: TestApp): Record<string, unknown>[] {
  const seen = new Set<string>();
  const out: Record<string, unknown>[] = [];
  const take = (e: Record<string, unknown>): void => {
    if (seen.has(e.id as string)) return;
    seen.add(e.id as string);
    out.push(e);
  };
  const lines = (file: string): unknown[] => {
    const parsed: unknown[] = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        parsed.push(JSON.parse(line));
      } catch {
        // a torn last line
      }
    }
    return parsed;
  };
  const log = join(h.dataDir, 'events.ndjson');
  if (existsSync(log)) for (const e of lines(log)) take(e as Record<string, unknown>);
  const dir = join(h.dataDir, 'outbox');
  const pending: { seq: number; event: Record<string, unknown> }[] = [];
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ndjson')).sort()) pending.push(...(lines(join(dir, f)) as typeof pending));
  }
  for (const p of pending.sort((a, b) => a.seq - b.seq)) take(p.event);
  return out;
}
