/** The bytes of master `i` of the fs group-move tests: 1 MiB, its first and last bytes different for every `i`. */
export function masterBody(i: number): Buffer {
  const out = Buffer.alloc(1024 * 1024, i % 251);
  out.writeUInt32LE(i, 0);
  out.writeUInt32LE((i ^ 0xa5a5a5a5) >>> 0, out.length - 4);
  return out;
}
