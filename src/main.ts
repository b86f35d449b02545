import { App } from './app.js';
import { loadConfig } from './config/load.js';
import { ConfigError } from './errors.js';
import { createLogger } from './observability/logger.js';

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
  const app = new App(config, { logger });

  process.on('unhandledRejection', (reason) => {
    app.metrics.unhandled.inc({ kind: 'rejection' });
    logger.error({ err: reason }, 'unhandled promise rejection');
  });
  process.on('uncaughtException', (err) => {
    app.metrics.unhandled.inc({ kind: 'exception' });
    logger.fatal({ err }, 'uncaught exception: stopping');
    void app.stop({ reason: 'uncaught exception', drainSeconds: 0 }).finally(() => process.exit(70));
  });

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
    await app.stop({ drainSeconds: 0, reason: 'start failed' }).catch(() => undefined);
    process.exit(1);
  }
}
