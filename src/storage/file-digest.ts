import { Worker } from 'node:worker_threads';

/** What the digest worker hashes a file with. */
export type DigestAlgorithm = 'md5' | 'crc32';

/** A file's checksum as a request header wants it, and the bytes it covers. */
export interface FileDigest {
  /** base64: the MD5 (Content-MD5), or the CRC32 big-endian (x-amz-checksum-crc32). */
  digest: string;
  /** Bytes read: the file's length when it was hashed. */
  size: number;
}

/** Why a file could not be hashed (`code`: the errno code, e.g. ENOENT). */
export class FileDigestError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.name = 'FileDigestError';
    this.code = code;
  }
}

interface DigestRequest {
  id: number;
  path: string;
  algorithm: DigestAlgorithm;
}

type DigestReply = { id: number; ok: true; size: number; digest: string } | { id: number; ok: false; message: string; code?: string };

/**
 * The worker: reads each file named 1 MiB at a time into one buffer, hashes it, answers. Plain
 * JavaScript run with `eval` and no loader flags, so it starts in milliseconds whether the
 * daemon runs from dist/ or its sources run through a TypeScript loader (tests), and it has no
 * module of its own to resolve.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const buf = Buffer.allocUnsafe(1024 * 1024);
function digest(req) {
  const md5 = req.algorithm === 'md5' ? createHash('md5') : null;
  let crc = 0;
  let size = 0;
  const fd = openSync(req.path, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, size);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      if (md5 !== null) md5.update(chunk);
      else crc = crc32(chunk, crc);
      size += n;
    }
  } finally {
    closeSync(fd);
  }
  if (md5 !== null) return { id: req.id, ok: true, size, digest: md5.digest('base64') };
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(crc >>> 0, 0);
  return { id: req.id, ok: true, size, digest: b.toString('base64') };
}
parentPort.on('message', (req) => {
  let reply;
  try {
    reply = digest(req);
  } catch (err) {
    reply = { id: req.id, ok: false, message: String(err && err.message || err), code: err && err.code };
  }
  parentPort.postMessage(reply);
});
`;

interface Waiter {
  resolve: (d: FileDigest) => void;
  reject: (err: Error) => void;
}

/**
 * Checksums of whole files, computed on one worker thread. A meeting's end asks for hundreds of
 * 5 MiB parts at once: read and hashed on the event loop, they held it for seconds (MD5 runs
 * at ~600 MB/s, and every 64 KiB read came back to the loop), and the live streams' frames and
 * close handshakes waited behind them. On the worker they queue in arrival order and the loop
 * only posts a path and takes back a digest. The worker starts with the first request, does
 * not keep the process alive, and is replaced if it dies.
 */
export class FileDigester {
  private worker: Worker | null = null;
  private ids = 0;
  private readonly pending = new Map<number, Waiter>();
  private closed = false;

  /** Resolves with the file's checksum; rejects with a {@link FileDigestError} when it cannot be read. */
  digest(path: string, algorithm: DigestAlgorithm): Promise<FileDigest> {
    if (this.closed) return Promise.reject(new FileDigestError('file digester is closed'));
    const worker = this.worker ?? (this.worker = this.spawn());
    const id = ++this.ids;
    return new Promise<FileDigest>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, path, algorithm } satisfies DigestRequest);
    });
  }

  /** Starts the worker now, so the first part of the first recording does not wait for it. */
  warm(): void {
    if (!this.closed) this.worker ??= this.spawn();
  }

  /** Requests waiting for an answer. */
  get queued(): number {
    return this.pending.size;
  }

  /** Stops the worker; requests still waiting are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    this.failAll(new FileDigestError('file digester is closed'));
    if (w !== null) await w.terminate();
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    worker.unref();
    worker.on('message', (msg: DigestReply) => {
      const w = this.pending.get(msg.id);
      if (w === undefined) return;
      this.pending.delete(msg.id);
      if (msg.ok) w.resolve({ digest: msg.digest, size: msg.size });
      else w.reject(new FileDigestError(msg.message, msg.code));
    });
    const die = (err?: unknown): void => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.failAll(new FileDigestError(`file digest worker stopped${err instanceof Error ? `: ${err.message}` : ''}`));
    };
    worker.on('error', die);
    worker.on('exit', () => die());
    return worker;
  }

  private failAll(err: Error): void {
    const waiters = [...this.pending.values()];
    this.pending.clear();
    for (const w of waiters) w.reject(err);
  }
}
