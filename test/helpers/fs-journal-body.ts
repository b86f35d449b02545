import { createHash } from 'node:crypto';

/** The bytes of object `i` of the group-commit tests: 1–40 KiB, different for every `i`. */
export function journalBody(i: number): Buffer {
  const size = 1024 + ((i * 7919) % (39 * 1024));
  const out = Buffer.allocUnsafe(size);
  let block = createHash('sha256').update(String(i)).digest();
  for (let off = 0; off < size; off += 32) {
    block.copy(out, off, 0, Math.min(32, size - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}
