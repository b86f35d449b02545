// Process measurements read from /proc (Linux): CPU time of one process, its RSS, percentiles.
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86_64/arm64

/** utime + stime of `pid` in seconds (the process's own CPU, children excluded). */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** { user, system } CPU seconds of `pid`. */
export function cpuSplit(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(rest[11]) / CLK_TCK, system: Number(rest[12]) / CLK_TCK };
}

/** Resident set size of `pid` in bytes (VmRSS). */
export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Samples RSS of `pid` every `everyMs` and keeps the peak. */
export function rssSampler(pid, everyMs = 250) {
  let peak = 0;
  let last = 0;
  const sample = () => {
    try {
      last = rssBytes(pid);
      if (last > peak) peak = last;
    } catch {
      /* process gone */
    }
  };
  sample();
  const t = setInterval(sample, everyMs);
  return {
    get peak() { return peak; },
    get last() { return last; },
    reset() { peak = 0; sample(); },
    stop() { clearInterval(t); sample(); return peak; },
  };
}

/** p-th percentile (0..100) of numbers, nearest-rank. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

/** Event-loop delay of the current process (same resolution as prom-client's default: 10 ms). */
export function loopLag() {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  return {
    reset: () => h.reset(),
    /** p99 in milliseconds since the last reset. */
    p99Ms: () => h.percentile(99) / 1e6,
    maxMs: () => h.max / 1e6,
  };
}

export const MiB = 1024 * 1024;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
