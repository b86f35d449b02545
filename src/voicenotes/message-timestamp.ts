/**
 * A WhatsApp message timestamp as the various senders spell it: Unix seconds (number, numeric
 * string or protobuf Long `{low, high}`), Unix milliseconds, or ISO 8601. Undefined when absent
 * or unreadable, so the caller falls back to the arrival time.
 */
export function parseMessageTimestamp(v: unknown): Date | undefined {
  let n: number | undefined;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^\d+$/.test(v)) n = Number(v);
  else if (typeof v === 'string' && v.length > 0) {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : new Date(t);
  } else n = longToNumber(v);
  if (n === undefined || !Number.isFinite(n) || n <= 0) return undefined;
  // seconds until the year 33658; anything larger is already milliseconds
  return new Date(n > 1e12 ? n : n * 1000);
}

/** A protobuf Long (`{low, high}`, as protobufjs serializes 64-bit fields) as a number. */
export function longToNumber(v: unknown): number | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as { low?: unknown; high?: unknown };
  if (typeof o.low !== 'number') return undefined;
  return (o.low >>> 0) + (typeof o.high === 'number' ? o.high * 2 ** 32 : 0);
}
