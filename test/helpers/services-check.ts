/**
 * Run once by tap before any test file (`tap.before` in package.json): the suite needs the
 * machine's RabbitMQ and Redis, so it checks both here and stops with one line per missing
 * service, saying how to start it, instead of letting every test that needs one time out.
 */
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { AMQP_URL } from './events-amqp.js';
import { REDIS_URL } from './limits-redis.js';

const TIMEOUT_MS = 5000;

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from ${what} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function rabbitmq(): Promise<string | undefined> {
  try {
    const c = await withTimeout(connect(AMQP_URL), 'RabbitMQ');
    await c.close();
    return undefined;
  } catch (err) {
    return `RabbitMQ is not reachable at ${redact(AMQP_URL)} (AMQP_URL; ${(err as Error).message}): start it with \`rabbitmq-server -detached\` (Debian: apt-get install rabbitmq-server) or \`docker run -d -p 5672:5672 rabbitmq:3\``;
  }
}

async function redis(): Promise<string | undefined> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let cause: Error | undefined;
  client.on('error', (err: Error) => (cause ??= err));
  try {
    await withTimeout(client.connect().then(() => client.ping()), 'Redis');
    return undefined;
  } catch (err) {
    return `Redis is not reachable at ${redact(REDIS_URL)} (TEST_REDIS_URL; ${(cause ?? (err as Error)).message}): start it with \`redis-server --daemonize yes --bind 127.0.0.1 --save ""\` (Debian: apt-get install redis-server) or \`docker run -d -p 6379:6379 redis:7\``;
  } finally {
    client.disconnect();
  }
}

// `npm run test:unit` runs only files that need no service (scripts/test-files.mjs picks them)
if (process.env['TEST_KIND'] === 'unit') process.exit(0);
const missing = (await Promise.all([rabbitmq(), redis()])).filter((m): m is string => m !== undefined);
for (const m of missing) console.error(`test setup: ${m}`);
process.exit(missing.length === 0 ? 0 : 1);
