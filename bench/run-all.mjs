// Every scenario in order of importance, one at a time (they share a 2-core machine):
// live streams, events, object store, voice notes. Prints each table and writes
// bench/.out/results.md (paste into bench/RESULTS.md with the machine and date).
//
//   node bench/run-all.mjs [--quick]
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OUT } from './lib/daemon.mjs';
import { parseArgs } from './lib/table.mjs';

const args = parseArgs();
const quick = args.quick ? ['--quick'] : [];
const here = (f) => fileURLToPath(new URL(f, import.meta.url));
const scenarios = [
  ['live-streams.mjs', 'Scenario 1 — live streams'],
  ['events.mjs', 'Scenario 4 — events'],
  ['object-store.mjs', 'Scenario 3 — object store'],
  ['voice-notes.mjs', 'Scenario 2 — voice notes'],
];
const only = args.only ? String(args.only).split(',') : null;
// The scenarios' directories are removed at the end (see removeAtExit in lib/daemon.mjs).
mkdirSync(OUT, { recursive: true });
const cleanupList = join(OUT, `cleanup-${process.pid}.txt`);
writeFileSync(cleanupList, '');
let md = `# Benchmark run\n\n- date: ${new Date().toISOString()}\n- machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, node ${process.version}\n- mode: ${quick.length ? 'quick' : 'full'}\n`;
for (const [file, title] of scenarios) {
  if (only && !only.some((o) => file.startsWith(o))) continue;
  process.stdout.write(`\n=== ${title} ===\n`);
  try {
    execFileSync(process.execPath, [here(file), ...quick], { stdio: 'inherit', timeout: 30 * 60_000, env: { ...process.env, BENCH_CLEANUP_LIST: cleanupList } });
    md += `\n## ${title}\n\n${readFileSync(join(OUT, file.replace('.mjs', '.md')), 'utf8')}`;
  } catch (err) {
    md += `\n## ${title}\n\nfailed: ${err.message}\n`;
  }
}
writeFileSync(join(OUT, 'results.md'), md);
for (const dir of readFileSync(cleanupList, 'utf8').split('\n').filter(Boolean)) rmSync(dir, { recursive: true, force: true });
rmSync(cleanupList, { force: true });
process.stdout.write(`\nwritten: ${join(OUT, 'results.md')}\n`);
