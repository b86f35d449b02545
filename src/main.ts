import { App } from './app.js';
import { loadConfig } from './config/load.js';
import { ConfigError } from './errors.js';
import { requestScopeOf } from './http/request-scope.js';
import { createLogger, type Logger } from './observability/logger.js';

/**
 * Process entry for `serve`: config → app → signals. The first SIGTERM/SIGINT drains and
 * exits 0; a second one exits at once with 130.
 */
export async function serve(configFile: string | undefined): Promise<void> {
  // The AWS SDK is pinned (see README); its warning that later releases need Node 22 would
  // otherwise go to stderr outside the JSON log on every start.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  let config;
  try {
    config = loadConfig({ file: configFile });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`audio-ingestd: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty });
  let app: App;
  try {
    app = await App.create(config, { logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`audio-ingestd: ${err.message}\n`);
      process.exit(78);
    }
    logger.fatal({ err }, 'start failed');
    process.exit(1);
  }

  installProcessGuards(app, logger);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without finalizing');
      process.exit(130);
    }
    logger.info({ signal }, 'signal received: draining');
    app.stop({ reason: signal }).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    await app.start();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`audio-ingestd: ${err.message}\n`);
      process.exit(78);
    }
    logger.fatal({ err }, 'start failed');
    await app.stop({ drainSeconds: 0, reason: 'start failed' }).catch(() => undefined); // the start failure is what gets reported; exit follows either way
    process.exit(1);
  }
}

/**
 * Process-level handlers. An unhandled rejection is counted and logged. An uncaught exception
 * stays fatal — state may be corrupt — and no client behaviour may cause one: each is counted
 * and logged with the route and request id it came from, then the app stops without a drain
 * window (live recordings are finalized, the Opus workers exit between two decode steps, the
 * outbox is flushed) and the process exits 70. A second one during that stop is only logged.
 */
export function installProcessGuards(
  app: App,
  logger: Logger,
  proc: { on(event: 'uncaughtException' | 'unhandledRejection', listener: (err: unknown) => void): unknown } = process,
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  const where = (err: unknown): { route: string; requestId?: string } => {
    const scope = requestScopeOf(err);
    return scope ? { route: scope.route, requestId: scope.requestId } : { route: 'none' };
  };
  proc.on('unhandledRejection', (reason) => {
    const at = where(reason);
    app.metrics.unhandled.inc({ kind: 'rejection', route: at.route });
    logger.error({ err: reason, ...at }, 'unhandled promise rejection');
  });
  let fatal = false;
  proc.on('uncaughtException', (err) => {
    const at = where(err);
    app.metrics.unhandled.inc({ kind: 'exception', route: at.route });
    if (fatal) {
      logger.fatal({ err, ...at }, 'uncaught exception while stopping');
      return;
    }
    fatal = true;
    logger.fatal({ err, ...at }, 'uncaught exception: stopping');
    void app.stop({ reason: 'uncaught exception', drainSeconds: 0 }).finally(() => exit(70)); // exit(70) follows however the stop ends
  });
}
