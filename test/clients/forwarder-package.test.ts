/**
 * The clients as a user gets them from the built package: `audio-ingestd/baileys-forwarder` and
 * `audio-ingestd/egress-simulator` resolve through package.json `exports`, carry types, load
 * nothing of the server at run time, and the README's Baileys example type-checks against the
 * real Baileys and those types. Needs `npm run build` (the test script builds first).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const dist = join(root, 'dist', 'clients');

t.test('the built package has the clients and their declarations', async (t) => {
  for (const f of ['baileys-forwarder.js', 'baileys-forwarder.d.ts', 'egress-simulator.js', 'egress-simulator.d.ts']) {
    t.ok(existsSync(join(dist, f)), `dist/clients/${f} (run npm run build)`);
  }
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }> };
  t.same(pkg.exports['./baileys-forwarder'], { types: './dist/clients/baileys-forwarder.d.ts', default: './dist/clients/baileys-forwarder.js' });
  t.same(pkg.exports['./egress-simulator'], { types: './dist/clients/egress-simulator.d.ts', default: './dist/clients/egress-simulator.js' });
});

t.test('the forwarder loads nothing of the server at run time: its only import is node:crypto', async (t) => {
  const js = readFileSync(join(dist, 'baileys-forwarder.js'), 'utf8');
  const specifiers = [...js.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm)].map((m) => m[1] ?? m[2] ?? m[3]);
  t.same(specifiers, ['node:crypto']);
  const egress = readFileSync(join(dist, 'egress-simulator.js'), 'utf8');
  t.notMatch(egress, /from\s*['"]\.\.?\//, 'the egress simulator imports no server module either');
});

t.test('both entry points resolve by package name through exports', async (t) => {
  const script = [
    "const f = await import('audio-ingestd/baileys-forwarder');",
    "const e = await import('audio-ingestd/egress-simulator');",
    'console.log(JSON.stringify({ forwarder: Object.keys(f).sort(), simulator: Object.keys(e).sort() }));',
  ].join('\n');
  // run from inside the package, where its own name resolves through `exports` (self-reference)
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root });
  const names = JSON.parse(stdout) as { forwarder: string[]; simulator: string[] };
  t.same(names.forwarder, ['ForwardError', 'createBaileysForwarder', 'parseRetryAfter']);
  t.ok(names.simulator.includes('simulateEgress'));
  const deep = await run(process.execPath, ['--input-type=module', '-e', "await import('audio-ingestd/dist/app.js')"], { cwd: root }).then(
    () => 'loaded',
    (err: { stderr?: string }) => err.stderr ?? '',
  );
  t.match(deep, /ERR_PACKAGE_PATH_NOT_EXPORTED/, 'server internals are not importable by path');
});

t.test("the README's Baileys example type-checks against the real Baileys and the package's types", { timeout: 120_000 }, async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## WhatsApp with Baileys'), readme.indexOf('### Evolution API'));
  const example = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  t.ok(example, 'the section has a js example');
  // JavaScript → TypeScript: what a JS file may leave implicit, spelled out (each must be there)
  const edits: [string, string][] = [
    ["import qrcode from 'qrcode-terminal';", 'const qrcode = { generate: (_qr: string, _opts: { small: boolean }): void => undefined };'],
    ['process.env.AUDIO_INGEST_URL,', 'process.env.AUDIO_INGEST_URL as string,'],
    ['process.env.AUDIO_INGEST_API_KEY,', 'process.env.AUDIO_INGEST_API_KEY as string,'],
    ['lastDisconnect?.error?.output?.statusCode', '(lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)?.output?.statusCode'],
  ];
  let source = example ?? '';
  for (const [from, to] of edits) {
    t.ok(source.includes(from), `the example has ${from}`);
    source = source.replace(from, to);
  }
  // a user's project: the package and Baileys installed, nothing else
  const dir = await tempDir(t, 'aid-readme-');
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(root, join(dir, 'node_modules', 'audio-ingestd'));
  symlinkSync(join(root, 'node_modules', '@whiskeysockets'), join(dir, 'node_modules', '@whiskeysockets'));
  symlinkSync(join(root, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'bot', type: 'module', private: true }));
  writeFileSync(join(dir, 'bot.ts'), source);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'], skipLibCheck: true },
      files: ['bot.ts'],
    }),
  );
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await run(process.execPath, [tsc, '-p', dir], { cwd: dir }).then(
    () => '',
    (err: { stdout?: string }) => err.stdout ?? String(err),
  );
  t.equal(result, '', 'tsc reports nothing');
});
