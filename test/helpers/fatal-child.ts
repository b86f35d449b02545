/**
 * Child process of the process-guard test: the daemon's App with the process guards of
 * `serve`, plus one route whose timer throws — the only way left to raise an uncaught
 * exception from a request, since no client behaviour can. argv: data directory.
 * Prints `{"ready":port}` once listening.
 */
import { App } from '../../src/app.js';
import { parseConfig } from '../../src/config/parse.js';
import { json } from '../../src/http/server.js';
import { installProcessGuards } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { TEST_API_KEY, TEST_EGRESS_SECRET } from './app.js';

const [dataDir] = process.argv.slice(2) as [string];
const config = parseConfig({
  server: { host: '127.0.0.1', port: 0 },
  dataDir,
  auth: { apiKey: TEST_API_KEY },
  livekit: { egressTokenSecret: TEST_EGRESS_SECRET },
  whatsapp: { opusWorkers: 2 },
  log: { level: 'info' },
});
const logger = createLogger({ level: 'info' });
const app = await App.create(config, { logger });
installProcessGuards(app, logger);
app.http.route('post', '/test/boom', 'boom', () => {
  setTimeout(() => {
    throw new Error('a bug in request handling');
  }, 10);
  return json(202, { accepted: true });
});
await app.start();
process.stdout.write(`${JSON.stringify({ ready: app.listenPort })}\n`);
