// Plain-text tables for the console and Markdown for RESULTS.md.

const fmt = (v) => (v === undefined || v === null || Number.isNaN(v) ? '—' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) : String(v));

/** Prints rows (objects) as an aligned table; returns the Markdown version. */
export function printTable(title, rows, columns = [...new Set(rows.flatMap((r) => Object.keys(r)))]) {
  const cells = rows.map((r) => columns.map((c) => fmt(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (vals) => vals.map((v, i) => v.padStart(widths[i])).join('  ');
  process.stdout.write(`\n${title}\n${line(columns)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${cells.map(line).join('\n')}\n`);
  return `| ${columns.join(' | ')} |\n|${columns.map(() => '---').join('|')}|\n${cells.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n`;
}

/** Parses `--flag`, `--key=value` and `--key value` arguments. */
export function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[a.slice(2)] = argv[++i];
    else out[a.slice(2)] = true;
  }
  return out;
}
