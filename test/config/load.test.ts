import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_CONFIG_FILE, ENV_MAP, loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

const dir = await tempDir(t, 'aid-config-');
const file = (name: string, content: unknown): string => {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};

t.test('the embedded defaults are the schema defaults and need no environment', async (t) => {
  const cfg = loadConfig({ env: {} });
  t.same(cfg, configSchema.parse({}));
  t.same(JSON.parse(readFileSync(DEFAULT_CONFIG_FILE, 'utf8')), configSchema.parse({}), 'config/default.json lists every default');
  t.equal(cfg.server.port, 8080);
  t.equal(cfg.server.host, '0.0.0.0');
  t.equal(cfg.dataDir, './data');
  t.equal(cfg.storage.driver, 'fs');
  t.equal(cfg.events.amqpUrl, undefined);
});

t.test('defaults < config file < environment', async (t) => {
  const f = file('layer.json', { server: { port: 9000, requestTimeoutSec: 7 }, livekit: { groupSeconds: 5 } });
  const fromFile = loadConfig({ file: f, env: {} });
  t.equal(fromFile.server.port, 9000);
  t.equal(fromFile.livekit.groupSeconds, 5);
  const both = loadConfig({ env: { AUDIO_INGEST_CONFIG: f, PORT: '9100', GROUP_SECONDS: '0.5', S3_FORCE_PATH_STYLE: 'true', STORAGE_DRIVER: 's3', S3_BUCKET: 'bkt' } });
  t.equal(both.server.port, 9100, 'env wins over the file');
  t.equal(both.server.requestTimeoutSec, 7, 'file wins over defaults');
  t.equal(both.livekit.groupSeconds, 0.5);
  t.equal(both.storage.s3.forcePathStyle, true);
  t.equal(both.storage.driver, 's3');
});

t.test('every contract environment variable lands somewhere', async (t) => {
  const names = ENV_MAP.map(([n]) => n);
  for (const n of ['PORT', 'HOST', 'DATA_DIR', 'LOG_LEVEL', 'API_KEY', 'EGRESS_TOKEN_SECRET', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET', 'STORAGE_DRIVER', 'S3_ENDPOINT', 'S3_BUCKET', 'S3_REGION', 'S3_FORCE_PATH_STYLE', 'AMQP_URL', 'REDIS_URL', 'WEBHOOK_URL', 'MONITORING_WEBHOOK_URL', 'WEBHOOK_SECRET']) {
    t.ok(names.includes(n), n);
  }
  const cfg = loadConfig({
    env: {
      HOST: '127.0.0.1', DATA_DIR: '/tmp/x', LOG_LEVEL: 'warn', API_KEY: 'k'.repeat(20), EGRESS_TOKEN_SECRET: 's'.repeat(40),
      LIVEKIT_API_KEY: 'APIx', LIVEKIT_API_SECRET: 'y'.repeat(20), S3_ENDPOINT: 'http://127.0.0.1:9000', S3_REGION: 'eu-west-1',
      AMQP_URL: 'amqp://u:p@h:5672', REDIS_URL: 'redis://127.0.0.1:6379', WEBHOOK_URL: 'http://a/b', MONITORING_WEBHOOK_URL: 'http://a/c', WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`,
    },
  });
  t.equal(cfg.server.host, '127.0.0.1');
  t.equal(cfg.auth.apiKey, 'k'.repeat(20));
  t.equal(cfg.events.amqpUrl, 'amqp://u:p@h:5672');
  t.equal(cfg.rateLimit.redisUrl, 'redis://127.0.0.1:6379');
  t.equal(cfg.storage.s3.region, 'eu-west-1');
});

t.test('secrets can come from <NAME>_FILE', async (t) => {
  const secret = file('api-key', 'from-a-file-0123456789\n');
  t.equal(loadConfig({ env: { API_KEY_FILE: secret } }).auth.apiKey, 'from-a-file-0123456789');
});

t.test('every bad value is reported at once, naming key, value and what is allowed', async (t) => {
  const f = file('bad.json', { server: { port: 70000 }, storage: { driver: 'ftp' }, whatsapp: { filter: { minSec: 500 } }, nonsense: 1 });
  const err = t.throws(() => loadConfig({ file: f, env: { PORT: 'abc', LOG_LEVEL: 'loud', API_KEY: 'short', GROUP_SECONDS: '-1' } })) as ConfigError;
  t.ok(err instanceof ConfigError);
  const text = err.message;
  t.match(text, /PORT \(server\.port\): got "abc"; allowed: an integer/);
  t.match(text, /log\.level: got "loud"; allowed: .*info/);
  t.match(text, /storage\.driver: got "ftp"; allowed: .*fs.*s3/);
  t.match(text, /whatsapp\.filter\.minSec: got 500; allowed: .*300/);
  t.match(text, /unknown key\(s\) nonsense/);
  t.match(text, /auth\.apiKey: got <redacted>/, 'secret values are never echoed');
  t.notMatch(text, /short/);
  t.match(text, /livekit\.groupSeconds: got -1/);
  t.ok(err.problems.length >= 6, `${err.problems.length} problems listed`);
});

t.test('whatsapp.opusWorkers takes "auto" or a thread count, 0 meaning the event loop', async (t) => {
  t.equal(loadConfig({ env: {} }).whatsapp.opusWorkers, 'auto');
  t.equal(loadConfig({ file: file('w0.json', { whatsapp: { opusWorkers: 0 } }), env: {} }).whatsapp.opusWorkers, 0);
  t.equal(loadConfig({ file: file('w3.json', { whatsapp: { opusWorkers: 3 } }), env: {} }).whatsapp.opusWorkers, 3);
  const err = t.throws(() => loadConfig({ file: file('wbad.json', { whatsapp: { opusWorkers: 'many' } }), env: {} })) as ConfigError;
  t.match(err.message, /whatsapp\.opusWorkers: got "many"/);
  t.throws(() => loadConfig({ file: file('wneg.json', { whatsapp: { opusWorkers: -1 } }), env: {} }), { message: /whatsapp\.opusWorkers: got -1/ });
});

t.test('secrets in a config file are refused', async (t) => {
  const f = file('secret.json', { auth: { apiKey: 'a'.repeat(20) }, events: { webhookSecret: 'b'.repeat(20) } });
  const err = t.throws(() => loadConfig({ file: f, env: {} })) as ConfigError;
  t.match(err.message, /auth\.apiKey: secrets are not read from config files; set API_KEY/);
  t.match(err.message, /events\.webhookSecret: .*WEBHOOK_SECRET/);
  t.notMatch(err.message, /aaaa/);
});

t.test('unreadable and invalid files, and cross-key rules', async (t) => {
  t.throws(() => loadConfig({ file: join(dir, 'missing.json'), env: {} }), { message: /cannot be read \(ENOENT\)/ });
  t.throws(() => loadConfig({ file: file('broken.json', '{'), env: {} }), { message: /invalid JSON/ });
  t.throws(() => loadConfig({ file: file('array.json', '[]'), env: {} }), { message: /must hold a JSON object/ });
  t.throws(() => loadConfig({ file: file('minmax.json', { whatsapp: { filter: { minSec: 60, maxSec: 30 } } }), env: {} }), { message: /minSec \(60\) must be below maxSec \(30\)/ });
  t.throws(() => loadConfig({ env: { LIVEKIT_API_KEY: 'x' } }), { message: /LIVEKIT_API_KEY and LIVEKIT_API_SECRET go together/ });
  t.throws(() => loadConfig({ env: { S3_FORCE_PATH_STYLE: 'maybe' } }), { message: /true\/false/ });
});
