import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { AppError } from '../../src/errors.js';
import { httpStatus } from '../../src/http/error-status.js';
import {
  DEFAULT_DURATION_LIMITS,
  DURATION_STATE_FILE,
  DurationFilter,
  durationRejectionError,
} from '../../src/limits/duration-filter.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('defaults: 3 s to 7200 s, both bounds inclusive', async (t) => {
  const f = await DurationFilter.open();
  t.same(DEFAULT_DURATION_LIMITS, { minSec: 3, maxSec: 7200, enabled: true });
  t.same(f.get('any'), { minSec: 3, maxSec: 7200, enabled: true });
  t.same(f.check('any', 3), { ok: true });
  t.same(f.check('any', 7200), { ok: true });
  t.same(f.check('any', 0), {
    ok: false,
    code: 'DURATION_TOO_SHORT',
    message: 'audio lasts 0 s, shorter than the 3 s minimum of instance "any"',
    minSec: 3,
    maxSec: 7200,
  });
  t.match(f.check('any', 2.999), { ok: false, code: 'DURATION_TOO_SHORT' });
  t.same(f.check('any', 7200.001), {
    ok: false,
    code: 'DURATION_TOO_LONG',
    message: 'audio lasts 7200.001 s, longer than the 7200 s maximum of instance "any"',
    minSec: 3,
    maxSec: 7200,
  });
});

t.test('configured overrides fall back to defaults field by field; disabled passes all', async (t) => {
  const f = await DurationFilter.open({
    defaults: { minSec: 5 },
    instances: { sales: { maxSec: 60 }, bulk: { enabled: false } },
  });
  t.same(f.get('other'), { minSec: 5, maxSec: 7200, enabled: true });
  t.same(f.get('sales'), { minSec: 5, maxSec: 60, enabled: true });
  t.match(f.check('sales', 61), { ok: false, code: 'DURATION_TOO_LONG', maxSec: 60 });
  t.match(f.check('sales', 4), { ok: false, code: 'DURATION_TOO_SHORT', minSec: 5 });
  t.same(f.check('bulk', 0), { ok: true });
  t.same(f.check('bulk', 99_999), { ok: true });
  t.same(f.list(), { sales: { minSec: 5, maxSec: 60, enabled: true }, bulk: { minSec: 5, maxSec: 7200, enabled: false } });
});

t.test('allowed ranges: min 1..300, max <= 7200, min < max', async (t) => {
  const good = [
    { minSec: 1, maxSec: 2 },
    { minSec: 300, maxSec: 7200 },
    { minSec: 299, maxSec: 300 },
  ];
  for (const limits of good) t.same((await DurationFilter.open({ defaults: limits })).get('x'), { ...limits, enabled: true });
  const bad: [object, string, unknown, RegExp][] = [
    [{ minSec: 0 }, 'defaults.minSec', 0, /from 1 to 300/],
    [{ minSec: 0.5 }, 'defaults.minSec', 0.5, /from 1 to 300/],
    [{ minSec: 301 }, 'defaults.minSec', 301, /from 1 to 300/],
    [{ maxSec: 7201 }, 'defaults.maxSec', 7201, /at most 7200/],
    [{ maxSec: 0 }, 'defaults.maxSec', 0, /at most 7200/],
    [{ minSec: 10, maxSec: 10 }, 'defaults.maxSec', 10, /above minSec \(10\)/],
    [{ minSec: 20, maxSec: 10 }, 'defaults.maxSec', 10, /above minSec \(20\)/],
    [{ minSec: '5' }, 'defaults.minSec', '5', /from 1 to 300/],
    [{ maxSec: Number.NaN }, 'defaults.maxSec', Number.NaN, /at most 7200/],
    [{ enabled: 'yes' }, 'defaults.enabled', 'yes', /true or false/],
    [{ minsec: 5 }, 'defaults.minsec', 5, /allowed fields are minSec, maxSec, enabled/],
  ];
  for (const [defaults, field, value, allowed] of bad) {
    const err = (await DurationFilter.open({ defaults: defaults as never }).catch((e: unknown) => e)) as AppError;
    t.ok(err instanceof AppError, JSON.stringify(defaults));
    t.equal(err.code, 'INVALID_PARAMETER');
    t.equal(httpStatus(err.code), 400);
    t.equal(err.details?.field, field);
    t.same(err.details?.value, value);
    t.match(String(err.details?.allowed), allowed);
    t.match(err.message, `${field} must be `);
  }
  await t.rejects(DurationFilter.open({ instances: { sales: { maxSec: 9000 } } }), {
    code: 'INVALID_PARAMETER',
    details: { field: 'instances.sales.maxSec', value: 9000 },
  });
  await t.rejects(DurationFilter.open({ instances: { '': {} } }), { code: 'INVALID_PARAMETER', details: { field: 'instance' } });
  const f = await DurationFilter.open();
  t.throws(() => f.check('x', -1), { code: 'INVALID_PARAMETER', details: { field: 'seconds' } });
  t.throws(() => f.check('x', Number.POSITIVE_INFINITY), { code: 'INVALID_PARAMETER' });
});

t.test('setInstanceFilter persists atomically and survives a restart', async (t) => {
  const dir = await tempDir(t, 'aid-limits-');
  const f = await DurationFilter.open({ stateDir: dir, instances: { sales: { maxSec: 60 } } });
  t.same(await f.setInstanceFilter('sales', { minSec: 10 }), { minSec: 10, maxSec: 60, enabled: true }, 'unset fields kept');
  t.same(await f.setInstanceFilter('support', { minSec: 1, maxSec: 30, enabled: false }), { minSec: 1, maxSec: 30, enabled: false });
  t.match(f.check('sales', 9), { ok: false, code: 'DURATION_TOO_SHORT', minSec: 10 });
  t.same(await readdir(dir), [DURATION_STATE_FILE], 'no temporary file left behind');
  t.same(JSON.parse(await readFile(join(dir, DURATION_STATE_FILE), 'utf8')), {
    version: 1,
    instances: { sales: { minSec: 10, maxSec: 60, enabled: true }, support: { minSec: 1, maxSec: 30, enabled: false } },
  });

  const restarted = await DurationFilter.open({ stateDir: dir, instances: { sales: { maxSec: 60 } } });
  t.same(restarted.get('sales'), { minSec: 10, maxSec: 60, enabled: true }, 'runtime value wins over config');
  t.same(restarted.get('support'), { minSec: 1, maxSec: 30, enabled: false });
  t.same(restarted.check('support', 9999), { ok: true });

  t.same(await restarted.removeInstanceFilter('sales'), { minSec: 3, maxSec: 60, enabled: true }, 'back to config');
  const again = await DurationFilter.open({ stateDir: dir });
  t.same(again.get('sales'), DEFAULT_DURATION_LIMITS);
});

t.test('an invalid change is refused and changes nothing, in memory or on disk', async (t) => {
  const dir = await tempDir(t, 'aid-limits-');
  const f = await DurationFilter.open({ stateDir: dir });
  await f.setInstanceFilter('sales', { minSec: 5, maxSec: 50 });
  const before = await readFile(join(dir, DURATION_STATE_FILE), 'utf8');
  await t.rejects(f.setInstanceFilter('sales', { maxSec: 5 }), {
    code: 'INVALID_PARAMETER',
    details: { field: 'instances.sales.maxSec', value: 5, instance: 'sales' },
  });
  await t.rejects(f.setInstanceFilter('sales', { minSec: 500 }), { code: 'INVALID_PARAMETER', details: { field: 'instances.sales.minSec', value: 500 } }, 'min above 300');
  t.same(f.get('sales'), { minSec: 5, maxSec: 50, enabled: true });
  t.equal(await readFile(join(dir, DURATION_STATE_FILE), 'utf8'), before);
});

t.test('concurrent changes are all kept', async (t) => {
  const dir = await tempDir(t, 'aid-limits-');
  const f = await DurationFilter.open({ stateDir: dir });
  await Promise.all(Array.from({ length: 20 }, (_, i) => f.setInstanceFilter(`i${i}`, { minSec: i + 1 })));
  const restarted = await DurationFilter.open({ stateDir: dir });
  for (let i = 0; i < 20; i++) t.equal(restarted.get(`i${i}`).minSec, i + 1);
});

t.test('a corrupt state file stops the start with a clear message', async (t) => {
  const dir = await tempDir(t, 'aid-limits-');
  await writeFile(join(dir, DURATION_STATE_FILE), '{"version":1,"instances":{"sales":{"minSec":0,"maxSec":10,"enabled":true}}}');
  await t.rejects(DurationFilter.open({ stateDir: dir }), { code: 'CONFIG_INVALID', message: /instances\.sales\.minSec must be/ });
  await writeFile(join(dir, DURATION_STATE_FILE), '{not json');
  await t.rejects(DurationFilter.open({ stateDir: dir }), { code: 'CONFIG_INVALID', message: /not valid JSON/ });
  await writeFile(join(dir, DURATION_STATE_FILE), '[]');
  await t.rejects(DurationFilter.open({ stateDir: dir }), { code: 'CONFIG_INVALID' });
});

t.test('a rejection becomes the 422 answer', async (t) => {
  const f = await DurationFilter.open();
  const r = f.check('x', 1);
  if (r.ok) throw new Error('expected a rejection');
  const err = durationRejectionError(r, 1);
  t.equal(err.code, 'DURATION_TOO_SHORT');
  t.equal(httpStatus(err.code), 422);
  t.same(err.toBody(), { error: { code: 'DURATION_TOO_SHORT', message: r.message, details: { minSec: 3, maxSec: 7200, seconds: 1 } } });
});
