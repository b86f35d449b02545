// Top self-time functions of a V8 .cpuprofile (from --cpu-prof).
//   node bench/lib/profile-summary.mjs <file.cpuprofile|dir> [top=25]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function summarizeProfile(file, top = 25) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = p.timeDeltas;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]);
    const cf = n.callFrame;
    const where = cf.url ? `${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, us]) => ({ 'self %': (100 * us) / total, 'self ms': us / 1000, fn }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let f = process.argv[2];
  if (statSync(f).isDirectory()) f = join(f, readdirSync(f).find((x) => x.endsWith('.cpuprofile')));
  for (const r of summarizeProfile(f, Number(process.argv[3] ?? 25))) process.stdout.write(`${r['self %'].toFixed(1).padStart(5)}%  ${r['self ms'].toFixed(0).padStart(7)} ms  ${r.fn}\n`);
}
