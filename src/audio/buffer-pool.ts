/**
 * Free lists of whole buffers by size, so the live path reuses its chunk buffers instead of
 * allocating one per chunk per stream (the allocation and the garbage collection it drives were
 * the largest cost above the socket itself). Only whole `allocUnsafeSlow` buffers come back in;
 * the pool is bounded and a buffer that is never released is simply collected.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private heldBytes = 0;

  /** @param maxBytes bytes the free lists may hold in total (default 64 MiB). */
  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  /** A buffer of exactly `size` bytes, offset 0, contents undefined. */
  acquire(size: number): Buffer {
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf !== undefined) {
      this.heldBytes -= size;
      return buf;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Gives a buffer back; the caller must hold no reference to it (or to views of it) any more. */
  release(buf: Buffer): void {
    const size = buf.length;
    // Only whole buffers: a view of a larger one would hand out memory still in use elsewhere.
    if (size === 0 || buf.byteOffset !== 0 || buf.buffer.byteLength !== size) return;
    if (this.heldBytes + size > this.maxBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.heldBytes += size;
  }

  /** Bytes waiting in the free lists. */
  get pooledBytes(): number {
    return this.heldBytes;
  }
}
