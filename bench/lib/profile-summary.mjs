// Top self-time functions of a V8 .cpuprofile (from --cpu-prof).
//   node bench/lib/profile-summary.mjs <file.cpuprofile|dir> [top=25] [--from <µs>] [--to <µs>] [--inclusive]
// --inclusive: time with each function anywhere on the stack (callers included), not self time.
// --from/--to: only the samples in that window of the monotonic clock (µs, as the profile's
// startTime; live-streams.mjs --cpu-prof prints each phase's window). A directory: every
// profile in it (one per thread), each summarized on its own.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function summarizeProfile(file, top = 25, { from = -Infinity, to = Infinity, inclusive = false } = {}) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const nameOf = (n) => {
    const cf = n.callFrame;
    const where = cf.url ? `${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : '';
    return `${cf.functionName || '(anonymous)'} ${where}`.trim();
  };
  const self = new Map();
  const dt = p.timeDeltas;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += dt[i] ?? 0;
    if (t < from || t > to) continue;
    const n = byId.get(p.samples[i]);
    if (!inclusive) {
      const key = nameOf(n);
      self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
      continue;
    }
    // inclusive: every function on the sample's stack, once
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const key = nameOf(byId.get(id));
      if (seen.has(key)) continue;
      seen.add(key);
      self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
    }
  }
  if (inclusive) {
    // shares of the window's samples, not of the summed inclusive times
    let sum = 0;
    t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += dt[i] ?? 0;
      if (t >= from && t <= to) sum += dt[i] ?? 0;
    }
    return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, us]) => ({ 'self %': (100 * us) / sum, 'self ms': us / 1000, fn }));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, us]) => ({ 'self %': (100 * us) / total, 'self ms': us / 1000, fn }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const opt = (name) => {
    const i = argv.indexOf(name);
    if (i < 0) return undefined;
    const v = Number(argv[i + 1]);
    argv.splice(i, 2);
    return v;
  };
  const incl = argv.indexOf('--inclusive');
  if (incl >= 0) argv.splice(incl, 1);
  const window = { from: opt('--from') ?? -Infinity, to: opt('--to') ?? Infinity, inclusive: incl >= 0 };
  const f = argv[0];
  const files = statSync(f).isDirectory() ? readdirSync(f).filter((x) => x.endsWith('.cpuprofile')).sort().map((x) => join(f, x)) : [f];
  for (const file of files) {
    const rows = summarizeProfile(file, Number(argv[1] ?? 25), window);
    if (files.length > 1) process.stdout.write(`${file}\n`);
    for (const r of rows) process.stdout.write(`${r['self %'].toFixed(1).padStart(5)}%  ${r['self ms'].toFixed(0).padStart(7)} ms  ${r.fn}\n`);
  }
}
