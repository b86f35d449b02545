import { close, open, read } from 'node:fs';
import { OutgoingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { AppError } from '../errors.js';

/** Bytes per read of a file sent as a request body. */
export const FILE_BODY_CHUNK_BYTES = 128 * 1024;

/** Reads of one body in flight at most: one being written by the socket, one being read ahead. */
export const FILE_BODY_DEPTH = 2;

/**
 * Read buffers shared by every {@link FileBody}. A buffer is given back only once the socket
 * has written it (its write callback ran), never when the write call returned: until then the
 * socket, or the request that queues writes before it has a socket, still holds it.
 */
export class ReadBufferPool {
  private readonly free: Buffer[] = [];
  /** Buffers allocated since the pool was made (each reused as often as it comes back). */
  allocated = 0;

  /** `keep`: buffers kept for reuse at most (more come back only while uploads overlap). */
  constructor(
    readonly chunkBytes: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    const b = this.free.pop();
    if (b !== undefined) return b;
    this.allocated++;
    return Buffer.allocUnsafeSlow(this.chunkBytes);
  }

  give(b: Buffer): void {
    if (this.free.length < this.keep) this.free.push(b);
  }

  /** Buffers waiting for reuse. */
  get idle(): number {
    return this.free.length;
  }
}

/** The pool of the process: 16 finalizations and 4 live part uploads at FILE_BODY_DEPTH each, at most. */
export const fileBodyBuffers = new ReadBufferPool(FILE_BODY_CHUNK_BYTES, 40);

/**
 * The first `size` bytes of a file as a request body. A meeting's end sends hundreds of 5 MiB
 * parts at once; read the usual way (fs.ReadStream) every 64 KiB read allocates a new buffer,
 * gigabytes of them for one end, and that external memory churn kept V8 collecting a large heap
 * for seconds. How the body is consumed decides what can be reused: the SDK's node:http handler
 * calls `body.pipe(request)` (an http `OutgoingMessage`), whose `write(chunk, callback)` calls
 * back once its socket wrote the chunk (or it was dropped with the socket). So piped into an
 * OutgoingMessage, this body writes buffers of {@link fileBodyBuffers} itself, at most
 * {@link FILE_BODY_DEPTH} in flight, and each goes back to the pool in its write callback —
 * which is also its backpressure. Consumed any other way (`on('data')`, async iteration, a pipe
 * into a stream that may keep the chunk after its callback, such as the SDK's aws-chunked
 * encoder) it is an ordinary Readable of freshly allocated chunks.
 *
 * A file shorter than `size` fails the request (STORAGE_ERROR) instead of leaving it waiting for
 * bytes that never come; the file is read from offset 0 and closed at the end in every case.
 */
export class FileBody extends Readable {
  private started = false;
  private fd: number | undefined;
  private pos = 0;

  constructor(
    readonly path: string,
    readonly size: number,
    private readonly pool: ReadBufferPool = fileBodyBuffers,
  ) {
    super({ highWaterMark: pool.chunkBytes });
  }

  override pipe<T extends NodeJS.WritableStream>(dest: T, options?: { end?: boolean }): T {
    if (this.started || !(dest instanceof OutgoingMessage) || options?.end === false) return super.pipe(dest, options);
    this.started = true;
    void this.send(dest);
    return dest;
  }

  override _read(): void {
    this.started = true;
    void this.readFresh();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) callback(err);
    else close(fd, () => callback(err));
  }

  /** The Readable path: one new buffer per read (whoever reads may keep it). */
  private async readFresh(): Promise<void> {
    try {
      this.fd ??= await openFile(this.path);
      const want = Math.min(this.pool.chunkBytes, this.size - this.pos);
      if (want === 0) {
        this.push(null);
        return;
      }
      const buf = Buffer.allocUnsafe(want);
      const bytesRead = await readAt(this.fd, buf, want, this.pos);
      if (bytesRead === 0) throw this.shortFile();
      this.pos += bytesRead;
      this.push(bytesRead === want ? buf : buf.subarray(0, bytesRead));
    } catch (err) {
      this.destroy(this.readError(err));
    }
  }

  /** The pooled path: reads into pool buffers and writes each with a callback that returns it. */
  private async send(dest: OutgoingMessage): Promise<void> {
    let inFlight = 0;
    let wake: (() => void) | undefined;
    let gone = false;
    const onGone = (): void => {
      gone = true;
      wake?.();
    };
    // a request destroyed (timeout, error, response read) calls back nothing it still queued
    dest.once('close', onGone);
    let fd: number | undefined;
    try {
      fd = await openFile(this.path);
      let pos = 0;
      while (pos < this.size && !gone && !dest.destroyed) {
        while (inFlight >= FILE_BODY_DEPTH && !gone) await new Promise<void>((r) => (wake = r));
        if (gone) break;
        const buf = this.pool.take();
        let n: number;
        try {
          n = await readAt(fd, buf, Math.min(buf.length, this.size - pos), pos);
        } catch (err) {
          this.pool.give(buf);
          throw err;
        }
        if (n === 0) {
          this.pool.give(buf);
          throw this.shortFile();
        }
        if (gone || dest.destroyed) {
          this.pool.give(buf); // never handed to the request
          break;
        }
        pos += n;
        inFlight++;
        dest.write(buf.subarray(0, n), () => {
          inFlight--;
          this.pool.give(buf);
          const w = wake;
          wake = undefined;
          w?.();
        });
      }
      if (!gone && !dest.destroyed) dest.end();
    } catch (err) {
      dest.destroy(this.readError(err));
    } finally {
      dest.off('close', onGone);
      const opened = fd;
      if (opened !== undefined) await new Promise<void>((r) => close(opened, () => r()));
      this.destroy();
    }
  }

  private shortFile(): AppError {
    return new AppError('STORAGE_ERROR', `file ${this.path} ended before its ${this.size} bytes were sent`);
  }

  private readError(err: unknown): AppError {
    return err instanceof AppError ? err : new AppError('STORAGE_ERROR', `file ${this.path} cannot be read`, { cause: err });
  }
}

/** fs.open and fs.read with plain callbacks: one read of a part costs the event loop less than through a FileHandle. */
function openFile(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}
