import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError } from '../../src/errors.js';
import { apiKeyFromHeaders, sha256Hex, TenantRegistry } from '../../src/tenants/tenant-registry.js';
import { startTestApp } from '../helpers/app.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = await tempDir(t, 'aid-tenants-');
const defaults = { maxStreams: 3, requestsPerMinute: 100 };

t.test('API_KEY makes the default tenant; a tenants file adds more with hashed keys', async (t) => {
  const file = join(dir, 'tenants.json');
  writeFileSync(file, JSON.stringify({ tenants: [{ id: 'acme', keySha256: [sha256Hex('acme-key-1'), sha256Hex('acme-key-2')], maxStreams: 1 }, { id: 'globex', keySha256: [sha256Hex('globex-key')] }] }));
  const reg = new TenantRegistry({ defaultTenant: 'default', apiKey: 'the-default-key', tenantsFile: file, defaults });
  t.equal(reg.size, 3);
  t.equal(reg.authenticate('the-default-key').id, 'default');
  t.equal(reg.authenticate('acme-key-2').id, 'acme');
  t.equal(reg.authenticate('globex-key').maxStreams, 3, 'defaults fill what the file leaves out');
  t.throws(() => reg.authenticate('acme-key-'), { code: 'INVALID_API_KEY' });
  t.throws(() => reg.authenticate(undefined), { code: 'UNAUTHORIZED' });
  const release = reg.acquireStream(reg.get('acme')!);
  t.throws(() => reg.acquireStream(reg.get('acme')!), { code: 'TOO_MANY_STREAMS' });
  t.equal(reg.activeStreams('acme'), 1);
  release();
  release();
  t.equal(reg.activeStreams('acme'), 0, 'release is idempotent');
  reg.acquireStream(reg.get('acme')!);
});

t.test('a bad tenants file is a configuration error naming the problem', async (t) => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ tenants: [{ id: 'x/y', keySha256: ['nothex'] }] }));
  const err = t.throws(() => new TenantRegistry({ defaultTenant: 'd', tenantsFile: bad, defaults })) as ConfigError;
  t.ok(err instanceof ConfigError);
  t.match(err.message, /tenants\.0\.id/);
  t.match(err.message, /keySha256/);
  t.throws(() => new TenantRegistry({ defaultTenant: 'd', tenantsFile: join(dir, 'nope.json'), defaults }), ConfigError);
});

t.test('keys come from apikey or Authorization: Bearer', async (t) => {
  t.equal(apiKeyFromHeaders({ apikey: 'a' }), 'a');
  t.equal(apiKeyFromHeaders({ authorization: 'Bearer  b ' }), 'b');
  t.equal(apiKeyFromHeaders({ authorization: 'Basic c' }), undefined);
  t.equal(apiKeyFromHeaders({}), undefined);
});

t.test('each tenant has its own request budget', async (t) => {
  const file = join(dir, 'budget.json');
  writeFileSync(file, JSON.stringify({ tenants: [{ id: 'small', keySha256: [sha256Hex('small-key-0123456789')], requestsPerMinute: 3 }, { id: 'big', keySha256: [sha256Hex('big-key-0123456789')] }] }));
  const h = await startTestApp({ auth: { tenantsFile: file, apiKey: undefined } });
  t.teardown(() => h.close());
  const call = (key: string): Promise<Response> => fetch(`${h.baseUrl}/v1/egress/urls`, { method: 'POST', headers: { apikey: key }, body: JSON.stringify({ roomName: 'r' }) });
  for (let i = 0; i < 3; i++) t.equal((await call('small-key-0123456789')).status, 201);
  const refused = await call('small-key-0123456789');
  t.equal(refused.status, 429);
  t.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After');
  t.match(await refused.json(), { error: { code: 'RATE_LIMITED' } });
  t.equal((await call('big-key-0123456789')).status, 201, 'another tenant is unaffected');
});
