import { performance } from 'node:perf_hooks';
import { AppError } from '../errors.js';
import type { ObjectMetadata, ObjectStore, PartRef } from '../storage/object-store.js';
import { masterHeader } from '../audio/wav.js';

/**
 * The streaming room mixer. It walks the room timeline in windows (default 2 s); for each
 * window it range-reads from every master only the samples that fall in it (reads of the next
 * window run while the current one is mixed), sums them into the output channel of their
 * track, maps each sum through the channel's law, and appends the bytes to a multipart upload
 * of `partBytes` parts. Memory is two windows of input, one window of sums and one part, whatever
 * the length of the room or its masters: no master is ever loaded whole.
 *
 * It runs on the event loop, chunked: a window is summed track by track, yielding to the loop
 * (setImmediate) whenever a slice has run 5 ms, and every window awaits its reads and its part
 * upload, so the loop serves streams and requests between slices (the bench reports the longest).
 */

export type MixStore = Pick<ObjectStore, 'getRange' | 'createMultipart' | 'uploadPart' | 'completeMultipart' | 'abortMultipart'>;

/** One source of the mix: a master and the runs of it to place. */
export interface MixInput {
  key: string;
  /** Output channel this track goes to (0 for mono). */
  out: number;
  runs: { start: number; samples: number; roomOffset: number }[];
}

export interface MixOptions {
  store: MixStore;
  inputs: MixInput[];
  /** Room timeline length in samples. */
  samples: number;
  sampleRate: number;
  outChannels: 1 | 2;
  /** Maps the exact sum of one output sample to the stored 16-bit sample. */
  combine: (sum: number) => number;
  key: string;
  contentType?: string;
  metadata?: ObjectMetadata;
  /** Multipart part size (every part but the last; header included). */
  partBytes: number;
  /** Samples per window (default 2 s). */
  windowSamples?: number;
  /** Range reads in flight at once (default 8). */
  readConcurrency?: number;
  /** Called between windows; throws to abandon the mix (e.g. the room's lease was lost). */
  check?: () => void;
}

export interface MixResult {
  key: string;
  size: number;
  samples: number;
  reads: number;
  readBytes: number;
  /** Longest synchronous slice of mixing, ms (usually the first window, run before the JIT has compiled the loops). */
  maxSliceMs: number;
  /** Longest slice after the first window, ms. */
  maxWarmSliceMs: number;
}

interface Piece {
  out: number;
  channels: number;
  /** First sample of the piece within the window. */
  at: number;
  data: Buffer;
}

interface SourceFormat {
  dataOffset: number;
  channels: number;
  dataBytes: number;
}

/** Finds the PCM of a WAV master: channels, where its data begins and how long it is. */
export async function readWavLayout(store: Pick<ObjectStore, 'getRange'>, key: string): Promise<SourceFormat> {
  const head = await store.getRange(key, 0, 4095);
  if (head.length < 12 || (head.toString('ascii', 0, 4) !== 'RIFF' && head.toString('ascii', 0, 4) !== 'RF64') || head.toString('ascii', 8, 12) !== 'WAVE') {
    throw new AppError('STORAGE_ERROR', 'room track is not a WAV master', { details: { key } });
  }
  let off = 12;
  let channels = 0;
  let ds64: number | undefined;
  while (off + 8 <= head.length) {
    const id = head.toString('ascii', off, off + 4);
    const size = head.readUInt32LE(off + 4);
    if (id === 'ds64' && off + 36 <= head.length) ds64 = Number(head.readBigUInt64LE(off + 16));
    if (id === 'fmt ' && off + 12 <= head.length) {
      if (head.readUInt16LE(off + 8) !== 1 || head.readUInt16LE(off + 22) !== 16) throw new AppError('STORAGE_ERROR', 'room track is not 16-bit PCM', { details: { key } });
      channels = head.readUInt16LE(off + 10);
    }
    if (id === 'data') {
      if (channels === 0) break;
      return { dataOffset: off + 8, channels, dataBytes: size === 0xffffffff && ds64 !== undefined ? ds64 : size };
    }
    off += 8 + size + (size & 1);
  }
  throw new AppError('STORAGE_ERROR', 'room track has no fmt/data chunk in its first 4 KiB', { details: { key } });
}

/** Mixes `inputs` into one WAV object at `key`; see the module comment. */
export async function mixToStore(o: MixOptions): Promise<MixResult> {
  const window = Math.max(1, Math.floor(o.windowSamples ?? o.sampleRate * 2));
  const concurrency = Math.max(1, o.readConcurrency ?? 8);
  const formats = await mapLimited(o.inputs, concurrency, (i) => readWavLayout(o.store, i.key));
  const stats = { reads: 0, readBytes: 0, maxSliceMs: 0, maxWarmSliceMs: 0 };

  const fetchWindow = async (w0: number): Promise<Piece[]> => {
    const n = Math.min(window, o.samples - w0);
    const jobs: { key: string; first: number; last: number; piece: Omit<Piece, 'data'> }[] = [];
    o.inputs.forEach((input, idx) => {
      const f = formats[idx]!;
      const frameBytes = f.channels * 2;
      const frames = Math.floor(f.dataBytes / frameBytes);
      for (const r of input.runs) {
        const a = Math.max(w0, r.roomOffset);
        const b = Math.min(w0 + n, r.roomOffset + r.samples);
        if (b <= a) continue;
        const s0 = r.start + (a - r.roomOffset);
        const s1 = Math.min(frames, s0 + (b - a));
        if (s1 <= s0) continue;
        jobs.push({ key: input.key, first: f.dataOffset + s0 * frameBytes, last: f.dataOffset + s1 * frameBytes - 1, piece: { out: input.out, channels: f.channels, at: a - w0 } });
      }
    });
    return mapLimited(jobs, concurrency, async (j) => {
      const data = await o.store.getRange(j.key, j.first, j.last);
      stats.reads++;
      stats.readBytes += data.length;
      return { ...j.piece, data };
    });
  };

  const writer = new PartWriter(o.store, o.key, o.partBytes, { contentType: o.contentType ?? 'audio/wav', metadata: o.metadata ?? {} });
  await writer.open();
  try {
    await writer.write(masterHeader({ sampleRate: o.sampleRate, channels: o.outChannels }, o.samples * o.outChannels * 2));
    const sums = new Float64Array(window * o.outChannels);
    let next = o.samples > 0 ? fetchWindow(0) : undefined;
    for (let w0 = 0; w0 < o.samples; w0 += window) {
      const pieces = await next!;
      next = w0 + window < o.samples ? fetchWindow(w0 + window) : undefined;
      // keep a rejected prefetch from being reported unhandled while this window is mixed
      next?.catch(() => undefined);
      o.check?.();
      const n = Math.min(window, o.samples - w0);
      const slices = { maxSliceMs: 0 };
      const out = await mixWindow(sums, n, o.outChannels, pieces, o.combine, slices);
      stats.maxSliceMs = Math.max(stats.maxSliceMs, slices.maxSliceMs);
      if (w0 > 0) stats.maxWarmSliceMs = Math.max(stats.maxWarmSliceMs, slices.maxSliceMs);
      await writer.write(out);
    }
    const stored = await writer.finish();
    return { key: o.key, size: stored.size, samples: o.samples, ...stats };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** Longest synchronous stretch of mixing before it yields to the event loop. */
const SLICE_MS = 5;

/**
 * One window: exact sums per output sample, then the channel's law. Yields to the event loop
 * between pieces once a slice has run {@link SLICE_MS}; records the longest slice.
 */
async function mixWindow(sums: Float64Array, n: number, outCh: number, pieces: Piece[], combine: (s: number) => number, stats: { maxSliceMs: number }): Promise<Buffer> {
  let t0 = performance.now();
  const slice = async (): Promise<void> => {
    const ms = performance.now() - t0;
    if (ms < SLICE_MS) return;
    if (ms > stats.maxSliceMs) stats.maxSliceMs = ms;
    await new Promise<void>((resolve) => setImmediate(resolve));
    t0 = performance.now();
  };
  sums.fill(0, 0, n * outCh);
  for (const p of pieces) {
    await slice();
    const frames = p.data.length / (p.channels * 2);
    // an Int16Array view needs an even offset: a buffer that starts at an odd one is copied first
    const pcm = int16View(p.data);
    let j = p.at * outCh + p.out;
    if (p.channels === 1) {
      for (let i = 0; i < frames; i++, j += outCh) sums[j]! += pcm[i]!;
    } else {
      const c = p.channels;
      for (let i = 0; i < frames; i++, j += outCh) {
        let s = 0;
        for (let k = 0; k < c; k++) s += pcm[i * c + k]!;
        sums[j]! += s / c;
      }
    }
  }
  await slice();
  const out = Buffer.allocUnsafe(n * outCh * 2);
  const o16 = new Int16Array(out.buffer, out.byteOffset, n * outCh);
  for (let i = 0; i < n * outCh; i++) o16[i] = combine(sums[i]!);
  const ms = performance.now() - t0;
  if (ms > stats.maxSliceMs) stats.maxSliceMs = ms;
  return out;
}

function int16View(b: Buffer): Int16Array {
  if (b.byteOffset % 2 === 0) return new Int16Array(b.buffer, b.byteOffset, b.length >> 1);
  const copy = Buffer.allocUnsafeSlow(b.length);
  b.copy(copy);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length >> 1);
}

/** Appends bytes to a multipart upload in parts of exactly `partBytes` (the last shorter). */
class PartWriter {
  private uploadId = '';
  private buf: Buffer;
  private fill = 0;
  private readonly parts: PartRef[] = [];

  constructor(
    private readonly store: MixStore,
    private readonly key: string,
    private readonly partBytes: number,
    private readonly options: { contentType: string; metadata: ObjectMetadata },
  ) {
    this.buf = Buffer.allocUnsafe(partBytes);
  }

  async open(): Promise<void> {
    this.uploadId = await this.store.createMultipart(this.key, this.options);
  }

  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, this.partBytes - this.fill);
      chunk.copy(this.buf, this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === this.partBytes) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    if (this.fill === 0) return;
    const body = this.buf.subarray(0, this.fill);
    this.parts.push(await this.store.uploadPart(this.key, this.uploadId, this.parts.length + 1, body));
    this.fill = 0;
  }

  async finish(): Promise<{ key: string; size: number }> {
    await this.flush();
    return this.store.completeMultipart(this.key, this.uploadId, this.parts);
  }

  async abort(): Promise<void> {
    if (this.uploadId) await this.store.abortMultipart(this.key, this.uploadId).catch(() => undefined);
  }
}

/** `fn` over `items` with at most `limit` running at once; results in order. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
