import WebSocket from 'ws';
import { type FilterDesign, Resampler } from '../../src/audio/resample.js';
import { LIVE_FILTERS } from '../../src/live/live-hub.js';
import { TEST_API_KEY, type TestApp } from './app.js';
import { outboxEvents, readWav } from './egress.js';
import { waitFor } from './wait-for.js';

export interface LiveTrackMsg {
  type: 'track';
  index: number;
  recordingId: string;
  roomName: string;
  participant: string | null;
  trackId: string | null;
  rate: number;
  startedAt: string;
}

/** What a `GET /v1/live` consumer saw, checked as it arrives (offsets contiguous per track). */
export class LiveConsumer {
  readonly ws: WebSocket;
  readonly tracks: LiveTrackMsg[] = [];
  /** Audio per track index, concatenated in arrival order. */
  readonly audio = new Map<number, Buffer[]>();
  /** Next expected offset per track (first message's offset on). */
  readonly next = new Map<number, number>();
  readonly firstOffset = new Map<number, number>();
  readonly texts: Record<string, unknown>[] = [];
  readonly problems: string[] = [];
  /** Every message in order, with the audio ones summarised. */
  readonly order: string[] = [];
  binaryMessages = 0;
  closeCode = 0;
  closeReason = '';
  /** The client's own errors (an invalid frame makes `ws` cut the connection: 1006 on both sides). */
  readonly errors: string[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;
  /** Set when the handshake is refused: status, headers and body. */
  refused: { status: number; headers: Record<string, string | string[] | undefined>; body: string } | undefined;
  private onBinary: ((index: number, offset: number, pcm: Buffer) => void) | undefined;

  constructor(url: string, options: { headers?: Record<string, string>; followRedirects?: boolean; onBinary?: (index: number, offset: number, pcm: Buffer) => void } = {}) {
    this.onBinary = options.onBinary;
    this.ws = new WebSocket(url, { headers: options.headers ?? { apikey: TEST_API_KEY }, perMessageDeflate: false, followRedirects: options.followRedirects ?? false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          this.refused = { status: res.statusCode ?? 0, headers: res.headers, body };
          req.destroy();
          reject(new Error(`refused ${res.statusCode}: ${body}`));
        });
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => undefined);
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      });
    });
    this.ws.on('error', (err: Error) => this.errors.push(err.message));
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        const msg = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
        this.texts.push(msg);
        this.order.push(`${String(msg.type)}:${String(msg.index ?? '')}`);
        if (msg.type === 'track') this.tracks.push(msg as unknown as LiveTrackMsg);
        return;
      }
      this.binaryMessages++;
      const index = data.readUInt32LE(0);
      const offset = Number(data.readBigUInt64LE(4));
      const pcm = Buffer.from(data.subarray(12));
      if (!this.tracks.some((t) => t.index === index)) this.problems.push(`audio of track ${index} before its track message`);
      const expected = this.next.get(index);
      if (expected === undefined) this.firstOffset.set(index, offset);
      else if (expected !== offset) this.problems.push(`track ${index}: offset ${offset}, expected ${expected}`);
      this.next.set(index, offset + pcm.length / 2);
      let list = this.audio.get(index);
      if (!list) this.audio.set(index, (list = []));
      list.push(pcm);
      if (this.order[this.order.length - 1] !== `audio:${index}`) this.order.push(`audio:${index}`);
      this.onBinary?.(index, offset, pcm);
    });
  }

  pcm(index = 0): Buffer {
    return Buffer.concat(this.audio.get(index) ?? []);
  }

  textsOf(type: string): Record<string, unknown>[] {
    return this.texts.filter((m) => m.type === type);
  }
}

/**
 * The master's mono PCM at `rate`: the daemon's resampler with the live filter (default
 * `live.filter`, speech) over the whole master, tail included.
 */
export function resampleMaster(pcm: Buffer, masterRate: number, rate: number, filter: FilterDesign = LIVE_FILTERS.speech): Buffer {
  if (rate === masterRate) return pcm;
  const r = new Resampler({ inputRate: masterRate, outputRate: rate, channels: 1, ...filter });
  const samples = new Int16Array(pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + pcm.length));
  const a = r.process(samples);
  const b = r.flush();
  return Buffer.concat([Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)]);
}

/** Sends `pcm` to an open egress socket in `frameBytes` frames, yielding to the loop every `burst` frames. */
export async function sendFrames(ws: WebSocket, pcm: Buffer, frameBytes = 1920, burst = 10, pauseMs = 0): Promise<void> {
  let n = 0;
  for (let off = 0; off < pcm.length; off += frameBytes) {
    ws.send(pcm.subarray(off, Math.min(pcm.length, off + frameBytes)), { binary: true });
    if (++n % burst === 0) await new Promise((r) => (pauseMs > 0 ? setTimeout(r, pauseMs) : setImmediate(r)));
  }
}

/** Ends an egress socket as egress does (an empty Close frame) and waits for the close. */
export async function endEgress(ws: WebSocket): Promise<void> {
  const closed = new Promise((r) => ws.once('close', r));
  ws.close();
  await closed;
}

/** The id of the live recording of `trackId` once the daemon has opened it. */
export async function liveRecordingId(h: TestApp, trackId: string): Promise<string> {
  return waitFor(() => h.app.recordings.all().find((r) => r.identity.trackId === trackId)?.identity.recordingId, 10_000, `recording of ${trackId}`);
}

/** A recording's stored master PCM and its recording.completed event, once announced. */
export async function masterOf(h: TestApp, recordingId: string, timeoutMs = 30_000): Promise<{ pcm: Buffer; event: Record<string, unknown> }> {
  const event = await waitFor(() => outboxEvents(h).find((e) => e.type === 'recording.completed' && e.recording_id === recordingId), timeoutMs, 'recording.completed');
  return { pcm: readWav(await h.app.store.get(event.s3_key_master as string)).data, event };
}
