import t from 'tap';
import { parseConfig } from '../../src/config/parse.js';
import { ConfigError } from '../../src/errors.js';
import { startTestApp } from '../helpers/app.js';

t.test('parseConfig checks the schema, then the rules that span several keys', async (t) => {
  const schema = t.throws(() => parseConfig({ server: { port: 'eighty' } })) as ConfigError;
  t.ok(schema instanceof ConfigError);
  t.match(schema.message, /server\.port: got "eighty"; allowed: .* \(env PORT\)/);
  const cross = t.throws(() => parseConfig({ whatsapp: { amqpConsumer: { enabled: true } } })) as ConfigError;
  t.ok(cross instanceof ConfigError);
  t.same(cross.problems, ['whatsapp.amqpConsumer.enabled: needs AMQP_URL (events.amqpUrl)']);
  const earlier = t.throws(() => parseConfig({ whatsapp: { amqpConsumer: { enabled: true } } }, ['FOO_FILE=/x: cannot be read (ENOENT)'])) as ConfigError;
  t.same(earlier.problems, ['FOO_FILE=/x: cannot be read (ENOENT)'], 'problems of the layers come first; cross-key rules wait for a clean tree');
  t.equal(parseConfig({}).shutdown.drainSeconds, 25);
});

t.test('the test daemon is configured through the same checks as the real one', async (t) => {
  await t.rejects(startTestApp({ livekit: { apiKey: 'lk-key' } }), { name: 'ConfigError', message: /LIVEKIT_API_KEY and LIVEKIT_API_SECRET go together/ });
  await t.rejects(startTestApp({ whatsapp: { amqpConsumer: { enabled: true } } }), { name: 'ConfigError', message: /needs AMQP_URL/ });
});
