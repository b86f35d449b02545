#!/usr/bin/env node
// Prints the test files of one kind, one a line, for `npm run test:unit` / `npm run test:e2e`.
// unit: a module on its own, no service, no daemon. e2e: everything else — test/e2e/, and every
// file that (through the helpers it imports) starts the app or a daemon, or talks to RabbitMQ,
// Redis or PostgreSQL. `npm test` runs both kinds in one tap run.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const SERVICE = /\bstartTestApp\b|\bstartDaemon\b|from 'amqplib'|from 'ioredis'|from 'pg'|\bAMQP_URL\b|\bREDIS_URL\b|helpers\/daemon\.js|helpers\/whatsapp-app\.js/;

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

const seen = new Map();
/** Whether `file` or a test helper it imports (transitively) needs a service or the daemon. */
function needsServices(file) {
  if (seen.has(file)) return seen.get(file);
  seen.set(file, false);
  const text = readFileSync(file, 'utf8');
  let found = SERVICE.test(text);
  for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) {
    if (found) break;
    const target = resolve(dirname(file), `${m[1]}.ts`);
    if (target.startsWith(join(root, 'test'))) {
      try {
        found = needsServices(target);
      } catch {
        // not a .ts helper (a .mjs child): it is started, not imported
      }
    }
  }
  seen.set(file, found);
  return found;
}

const kind = process.argv[2];
if (kind !== 'unit' && kind !== 'e2e') {
  process.stderr.write('usage: test-files.mjs unit|e2e\n');
  process.exit(64);
}
const files = walk(join(root, 'test'))
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => relative(root, f))
  .sort();
for (const f of files) {
  const e2e = f.startsWith('test/e2e/') || needsServices(join(root, f));
  if ((kind === 'e2e') === e2e) process.stdout.write(`${f}\n`);
}
