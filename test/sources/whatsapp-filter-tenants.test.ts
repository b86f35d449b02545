import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DurationFilter } from '../../src/limits/duration-filter.js';
import { sha256Hex } from '../../src/tenants/tenant-registry.js';
import { startTestApp } from '../helpers/app.js';
import { tempDir } from '../helpers/temp-dir.js';

t.test('runtime filters belong to the tenant that set them; configured instances apply to all', async (t) => {
  const dir = await tempDir(t, 'aid-filter-');
  const f = await DurationFilter.open({ defaults: { minSec: 3, maxSec: 7200 }, instances: { shared: { minSec: 10, maxSec: 100, enabled: true } }, stateDir: dir });
  await f.setInstanceFilter('inst', { minSec: 30 }, 'acme');
  t.equal(f.get('inst', 'acme').minSec, 30);
  t.equal(f.get('inst', 'globex').minSec, 3, 'another tenant keeps the defaults');
  t.equal(f.check('inst', 20, 'acme').ok, false);
  t.equal(f.check('inst', 20, 'globex').ok, true);
  t.equal(f.get('shared', 'globex').minSec, 10, 'configured instance for every tenant');
  const reopened = await DurationFilter.open({ defaults: { minSec: 3, maxSec: 7200 }, stateDir: dir });
  t.equal(reopened.get('inst', 'acme').minSec, 30, 'persisted per tenant');
  await reopened.removeInstanceFilter('inst', 'acme');
  t.equal(reopened.get('inst', 'acme').minSec, 3);
});

t.test('over HTTP, one tenant cannot change or see another tenant\'s instance filter', async (t) => {
  const dir = await tempDir(t, 'aid-filter-http-');
  const file = join(dir, 'tenants.json');
  writeFileSync(file, JSON.stringify({ tenants: [{ id: 'acme', keySha256: [sha256Hex('acme-key-0123456789')] }, { id: 'globex', keySha256: [sha256Hex('globex-key-0123456789')] }] }));
  const h = await startTestApp({ auth: { tenantsFile: file, apiKey: undefined } });
  t.teardown(() => h.close());
  const url = `${h.baseUrl}/v1/whatsapp/instances/sales/filter`;
  const put = await fetch(url, { method: 'PUT', headers: { apikey: 'acme-key-0123456789' }, body: JSON.stringify({ minSec: 60, maxSec: 600 }) });
  t.equal(put.status, 200);
  t.match(await put.json(), { minSec: 60, maxSec: 600 });
  const mine = await (await fetch(url, { headers: { apikey: 'acme-key-0123456789' } })).json();
  const theirs = await (await fetch(url, { headers: { apikey: 'globex-key-0123456789' } })).json();
  t.match(mine, { minSec: 60 });
  t.match(theirs, { minSec: 3, maxSec: 7200 }, 'globex still has the defaults');
});
