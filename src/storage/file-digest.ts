import { Worker } from 'node:worker_threads';
import { WorkerCalls } from './worker-calls.js';

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
  path: string;
  algorithm: DigestAlgorithm;
}

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

/**
 * Checksums of whole files, computed on one worker thread. A meeting's end asks for hundreds of
 * 5 MiB parts at once: read and hashed on the event loop, they held it for seconds (MD5 runs
 * at ~600 MB/s, and every 64 KiB read came back to the loop), and the live streams' frames and
 * close handshakes waited behind them. On the worker they queue in arrival order and the loop
 * only posts a path and takes back a digest. The worker starts with the first request and is
 * replaced if it dies.
 */
export class FileDigester {
  private readonly calls = new WorkerCalls<DigestRequest, FileDigest>({
    spawn: () => new Worker(WORKER_SOURCE, { eval: true, execArgv: [] }),
    failure: (message, code) => new FileDigestError(message, code),
    death: (detail) => new FileDigestError(`file digest worker ${detail}`),
  });
  private closed = false;

  /** Resolves with the file's checksum; rejects with a {@link FileDigestError} when it cannot be read. */
  async digest(path: string, algorithm: DigestAlgorithm): Promise<FileDigest> {
    if (this.closed) throw new FileDigestError('file digester is closed');
    const { digest, size } = await this.calls.call({ path, algorithm });
    return { digest, size };
  }

  /** Starts the worker now, so the first part of the first recording does not wait for it. */
  warm(): void {
    if (!this.closed) this.calls.warm();
  }

  /** Requests waiting for an answer. */
  get queued(): number {
    return this.calls.outstanding;
  }

  /** Stops the worker; requests still waiting are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    await this.calls.terminate(new FileDigestError('file digester is closed'));
  }
}
