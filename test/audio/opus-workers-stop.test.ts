import { spawn } from 'node:child_process';
import t from 'tap';
import { longOpusVoiceNote, opusVoiceNote } from '../helpers/audio-fixtures.js';

t.test('stopping the pool while notes decode never aborts the process (no terminate inside libopus)', async (t) => {
  const [long, short] = await Promise.all([longOpusVoiceNote(30), opusVoiceNote()]);
  const started = Date.now();
  const child = spawn(process.execPath, [...process.execArgv, 'test/helpers/opus-stop-child.ts', long, short, '3', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exit = await new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  t.equal(exit, 70, `the process exits with its own code after 3 stops mid-decode, not by a signal\n${out.slice(-2000)}`);
  t.notMatch(out, /FATAL ERROR/, 'no fatal error from native code');
  const outcomes = (JSON.parse(out.split('\n').find((l) => l.startsWith('{')) ?? '{"outcomes":[]}') as { outcomes: string[] }).outcomes;
  t.comment(`3 cycles in ${Date.now() - started} ms`);
  t.ok(outcomes.includes('DRAINING'), `jobs running at the stop fail with DRAINING (${outcomes.join(', ')})`);
});
