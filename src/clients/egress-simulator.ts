import { readFile } from 'node:fs/promises';
import WebSocket from 'ws';

/**
 * A faithful stand-in for LiveKit Track Egress's WebSocket writer: 48 kHz stereo s16le in
 * 1 920-byte frames paced every 10 ms (catching up in a burst after a stall, as egress does),
 * `{"muted":…}` text frames, `ping` every 30 s, and either an empty Close frame (normal end)
 * or a dropped TCP connection. Used by the CLI, the tests and the benchmarks.
 */
export interface SimulateEgressOptions {
  /** The egress WebSocket URL (from POST /v1/egress/urls). */
  url: string;
  /** Interleaved s16le PCM to send, 48 kHz stereo unless `channels`/`sampleRate` say otherwise. */
  pcm: Buffer;
  sampleRate?: number;
  channels?: number;
  /** Bytes per binary frame (default 10 ms: 1 920 at 48 kHz stereo). Odd sizes allowed for tests. */
  frameBytes?: number;
  /** Pace in real time (default true); false sends as fast as the socket takes it. */
  realtime?: boolean;
  /** Mute spans in seconds of the stream's own timeline; audio inside them is not sent. */
  mutes?: { atSec: number; durationSec: number }[];
  /** Send the bare `true`/`false` texts of older egress releases. */
  legacyMuteText?: boolean;
  /**
   * Stop sending for a while, then catch up in a burst (default), or with `catchUp: false`
   * resume at the pace the stall left off, every later sample shifted by the stall.
   */
  stall?: { atSec: number; durationSec: number; catchUp?: boolean };
  /** The sender's sample clock runs this many ppm fast (negative: slow) against the host clock. */
  clockPpm?: number;
  /** How the stream ends: an empty Close frame, a TCP drop, or not at all (caller closes). */
  end?: 'normal' | 'drop' | 'none';
  /** Ping period (default 30 000 ms, as egress). */
  pingIntervalMs?: number;
  /** Extra text frames to send at the start (garbage for tests). */
  extraText?: string[];
  /** Abort the stream early. */
  signal?: AbortSignal;
  /** Told once the WebSocket is open, before the first frame. */
  onOpen?: () => void;
}

export interface SimulateEgressResult {
  bytesSent: number;
  framesSent: number;
  textSent: number;
  /** Epoch ms at which pacing began: the first frame's send time, whose first sample is sample 0. */
  startedAtMs: number;
  /** Close code the server sent or that the drop produced. */
  closeCode: number;
  closeReason: string;
  /** The socket, when `end` is `none` (still open). */
  socket?: WebSocket;
}

/** The HTTP answer of a refused handshake. */
export class EgressRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`egress handshake refused with ${status}: ${body}`);
    this.name = 'EgressRefusedError';
  }
}

interface Stream {
  due(nowMs: number): void;
}

/** One shared 10 ms ticker for every simulated stream of the process (hundreds of timers would cost more than the streams). */
const ticker = {
  streams: new Set<Stream>(),
  timer: undefined as NodeJS.Timeout | undefined,
  add(s: Stream): void {
    this.streams.add(s);
    if (!this.timer) this.timer = setInterval(() => this.tick(), 5);
  },
  remove(s: Stream): void {
    this.streams.delete(s);
    if (this.streams.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  },
  tick(): void {
    const now = performance.now();
    for (const s of this.streams) s.due(now);
  },
};

/** Opens the WebSocket as egress does (Content-Type audio/x-raw, no other custom header). */
export function connectEgress(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { 'Content-Type': 'audio/x-raw' }, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        // A refused handshake leaves the HTTP socket open unless the request is destroyed.
        req.destroy();
        reject(new EgressRefusedError(res.statusCode ?? 0, body));
      });
    });
    ws.once('error', reject);
  });
}

export async function simulateEgress(options: SimulateEgressOptions): Promise<SimulateEgressResult> {
  const sampleRate = options.sampleRate ?? 48000;
  const channels = options.channels ?? 2;
  const bytesPerSec = sampleRate * channels * 2;
  const frameBytes = options.frameBytes ?? (bytesPerSec / 100) | 0;
  const realtime = options.realtime ?? true;
  const ws = await connectEgress(options.url);
  options.onOpen?.();
  const result: SimulateEgressResult = { startedAtMs: 0, bytesSent: 0, framesSent: 0, textSent: 0, closeCode: 0, closeReason: '' };
  const closed = new Promise<void>((resolve) => {
    ws.once('close', (code, reason) => {
      result.closeCode = code;
      result.closeReason = reason.toString();
      resolve();
    });
  });
  ws.on('error', () => undefined);
  for (const t of options.extraText ?? []) {
    ws.send(t);
    result.textSent++;
  }

  const muteText = (muted: boolean): string => (options.legacyMuteText ? String(muted) : JSON.stringify({ muted }));
  const mutes = (options.mutes ?? []).map((m) => ({ start: Math.floor(m.atSec * bytesPerSec), end: Math.floor((m.atSec + m.durationSec) * bytesPerSec) }));
  const stall = options.stall ? { start: options.stall.atSec * 1000, end: (options.stall.atSec + options.stall.durationSec) * 1000 } : undefined;
  let offset = 0;
  let muted = false;
  const started = performance.now();
  result.startedAtMs = Date.now();
  let lastPing = started;
  const pingEvery = options.pingIntervalMs ?? 30_000;
  const clockRatio = 1 + (options.clockPpm ?? 0) / 1e6;

  const sendUpTo = (limitBytes: number): void => {
    while (offset < limitBytes && offset < options.pcm.length && ws.readyState === WebSocket.OPEN) {
      const inMute = mutes.some((m) => offset >= m.start && offset < m.end);
      if (inMute !== muted) {
        muted = inMute;
        ws.send(muteText(muted));
        result.textSent++;
      }
      const n = Math.min(frameBytes, options.pcm.length - offset);
      if (!muted) {
        ws.send(options.pcm.subarray(offset, offset + n), { binary: true });
        result.bytesSent += n;
        result.framesSent++;
      }
      offset += n;
    }
  };

  await new Promise<void>((resolve) => {
    const finish = (): void => {
      ticker.remove(stream);
      resolve();
    };
    const stream: Stream = {
      due(now) {
        if (ws.readyState !== WebSocket.OPEN || options.signal?.aborted) return finish();
        let elapsed = now - started;
        if (now - lastPing >= pingEvery) {
          ws.ping('ping');
          lastPing = now;
        }
        if (stall && elapsed >= stall.start && elapsed < stall.end) return;
        if (stall && options.stall?.catchUp === false && elapsed >= stall.end) elapsed -= stall.end - stall.start;
        elapsed *= clockRatio;
        // Whole 10 ms frames that are due; after a stall this is a burst.
        const dueBytes = realtime ? Math.floor((elapsed * bytesPerSec) / 1000 / frameBytes) * frameBytes + frameBytes : options.pcm.length;
        sendUpTo(dueBytes);
        if (offset >= options.pcm.length) finish();
      },
    };
    if (realtime) ticker.add(stream);
    else {
      stream.due(performance.now());
    }
  });
  if (muted && ws.readyState === WebSocket.OPEN) {
    ws.send(muteText(false));
    result.textSent++;
  }

  const end = options.end ?? 'normal';
  if (end === 'none') {
    result.socket = ws;
    return result;
  }
  if (ws.readyState === WebSocket.OPEN) {
    // Let queued frames reach the kernel before the end, as egress's blocking writer would.
    while (ws.bufferedAmount > 0 && ws.readyState === WebSocket.OPEN) await new Promise((r) => setTimeout(r, 5));
    if (end === 'drop') ws.terminate();
    else ws.close();
  }
  await closed;
  return result;
}

/** A sine tone as 48 kHz (or given) interleaved s16le, the same in every channel. */
export function tonePcm(seconds: number, hz = 440, sampleRate = 48000, channels = 2, amplitude = 0.3): Buffer {
  const frames = Math.round(seconds * sampleRate);
  const buf = Buffer.alloc(frames * channels * 2);
  for (let i = 0; i < frames; i++) {
    const v = Math.round(Math.sin((2 * Math.PI * hz * i) / sampleRate) * amplitude * 32767);
    for (let c = 0; c < channels; c++) buf.writeInt16LE(v, (i * channels + c) * 2);
  }
  return buf;
}

/** Reads a PCM WAV (16-bit) and returns it as interleaved stereo s16le at its own rate (mono is duplicated). */
export async function wavFileToEgressPcm(path: string): Promise<{ pcm: Buffer; sampleRate: number }> {
  const buf = await readFile(path);
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${path} is not a WAV file`);
  let pos = 12;
  let fmt: { channels: number; sampleRate: number; bits: number } | undefined;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('ascii', pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    if (id === 'fmt ') fmt = { channels: buf.readUInt16LE(pos + 10), sampleRate: buf.readUInt32LE(pos + 12), bits: buf.readUInt16LE(pos + 22) };
    if (id === 'data') {
      if (!fmt || fmt.bits !== 16 || fmt.channels > 2) throw new Error(`${path}: need 16-bit mono or stereo PCM (convert with ffmpeg -ac 2 -ar 48000 -c:a pcm_s16le)`);
      const data = buf.subarray(pos + 8, Math.min(buf.length, pos + 8 + size));
      if (fmt.channels === 2) return { pcm: Buffer.from(data), sampleRate: fmt.sampleRate };
      const out = Buffer.alloc(data.length * 2);
      for (let i = 0; i + 1 < data.length; i += 2) {
        const v = data.readInt16LE(i);
        out.writeInt16LE(v, i * 2);
        out.writeInt16LE(v, i * 2 + 2);
      }
      return { pcm: out, sampleRate: fmt.sampleRate };
    }
    pos += 8 + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}
