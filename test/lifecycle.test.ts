import { Writable } from 'node:stream';
import t from 'tap';
import { Lifecycle, type Service } from '../src/lifecycle.js';
import { createLogger } from '../src/observability/logger.js';

function recorder(): { logs: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { logs, logger: createLogger({ level: 'info', destination: destination as never }) };
}

function service(name: string, calls: string[], extra: Partial<Service> = {}): Service {
  return { name, start: () => void calls.push(`start ${name}`), stop: () => void calls.push(`stop ${name}`), ...extra };
}

t.test('services start in order and stop in reverse; every one is stopped, started or not', async (t) => {
  const calls: string[] = [];
  const { logger } = recorder();
  const life = new Lifecycle([service('a', calls), service('b', calls), { name: 'no-stop', start: () => void calls.push('start no-stop') }, service('c', calls)], logger);
  await life.start();
  await life.stop({ deadlineMs: 10_000 });
  t.same(calls, ['start a', 'start b', 'start no-stop', 'start c', 'stop c', 'stop b', 'stop a']);

  const partial: string[] = [];
  const failing = new Lifecycle([service('a', partial), service('b', partial, { start: () => Promise.reject(new Error('cannot listen')) }), service('c', partial)], logger);
  await t.rejects(failing.start(), { message: 'cannot listen' }, 'the first start failure is thrown');
  await failing.stop({ deadlineMs: 10_000 });
  t.same(partial, ['start a', 'stop c', 'stop b', 'stop a'], 'a failed start stops every service, the unstarted ones too');
  t.throws(() => new Lifecycle([service('a', []), service('a', [])], logger), { name: 'TypeError' });
});

t.test('a failing stop is logged with its component and the next one still stops', async (t) => {
  const calls: string[] = [];
  const { logs, logger } = recorder();
  const life = new Lifecycle([service('a', calls), service('b', calls, { stop: () => Promise.reject(new Error('flush failed')) }), service('c', calls, { stop: () => { throw new Error('sync throw'); } })], logger);
  await life.start();
  await life.stop({ deadlineMs: 10_000 });
  t.same(calls, ['start a', 'start b', 'start c', 'stop a']);
  const failures = logs.filter((l) => l['msg'] === 'component failed to stop cleanly');
  t.same(failures.map((l) => [l['component'], (l['err'] as { message: string }).message]), [['c', 'sync throw'], ['b', 'flush failed']]);
});

t.test('one deadline for the whole stop: a service still stopping then is logged and the rest stop without it', async (t) => {
  const calls: string[] = [];
  const { logs, logger } = recorder();
  let release: () => void = () => undefined;
  const stuck = new Promise<void>((resolve) => (release = resolve));
  const life = new Lifecycle([service('a', calls), service('stuck', calls, { stop: () => stuck }), service('c', calls)], logger);
  await life.start();
  await life.stop({ deadlineMs: 200 });
  t.same(calls, ['start a', 'start stuck', 'start c', 'stop c', 'stop a'], 'a is stopped although stuck never finished');
  const late = logs.filter((l) => l['msg'] === 'component still stopping at the stop deadline: the others stop without it');
  t.same(late.map((l) => l['component']), ['stuck'], 'only the one still stopping is reported');
  release();
});

t.test('readiness probes are those of the services started so far', async (t) => {
  const { logger } = recorder();
  let startB: () => void = () => undefined;
  const bStarted = new Promise<void>((resolve) => (startB = resolve));
  const life = new Lifecycle([{ name: 'a', checks: [{ name: 'a', check: () => undefined }] }, { name: 'b', start: () => bStarted, checks: [{ name: 'b1', check: () => undefined }, { name: 'b2', check: () => undefined }] }], logger);
  t.same(life.checks(), []);
  const starting = life.start();
  await new Promise((r) => setImmediate(r));
  t.same(life.checks().map((c) => c.name), ['a']);
  startB();
  await starting;
  t.same(life.checks().map((c) => c.name), ['a', 'b1', 'b2']);
});
