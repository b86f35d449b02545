import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, setGlobalDispatcher } from 'undici';
import { App } from '../../src/app.js';
import { parseConfig } from '../../src/config/parse.js';
import type { Config, ConfigInput } from '../../src/config/schema.js';
import { createLogger } from '../../src/observability/logger.js';

// Test clients drop idle keep-alive sockets at once, so a stopped daemon's process can exit
// without waiting for the server's keep-alive timeout.
setGlobalDispatcher(new Agent({ keepAliveTimeout: 20, keepAliveMaxTimeout: 20 }));

export const TEST_API_KEY = 'test-api-key-0123456789abcdef';
export const TEST_EGRESS_SECRET = 'test-egress-secret-0123456789abcdef0123456789';

export interface TestApp {
  app: App;
  config: Config;
  baseUrl: string;
  wsUrl: string;
  dataDir: string;
  /** Every log line the app wrote, parsed. */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/** Starts a whole daemon in this process on a free port with its own data directory. */
export async function startTestApp(overrides: DeepPartial<ConfigInput> = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'aid-app-'));
  const input = merge(
    {
      server: { host: '127.0.0.1', port: 0 },
      dataDir,
      auth: { apiKey: TEST_API_KEY },
      livekit: { egressTokenSecret: TEST_EGRESS_SECRET },
      shutdown: { drainSeconds: 0 },
      log: { level: 'debug' },
      // In-process daemons run the sources through the TypeScript loader, which takes seconds to
      // start a VAD worker thread; tests that look at speech turn it on (`vad: { enabled: true }`).
      // Daemons of test/helpers/daemon.ts run dist/ and keep the default (on).
      vad: { enabled: false },
    },
    overrides as Record<string, unknown>,
  );
  const config = parseConfig(input);
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger({ level: config.log.level, destination: destination as never });
  const app = await App.create(config, { logger });
  await app.start();
  const baseUrl = `http://127.0.0.1:${app.listenPort}`;
  return {
    app,
    config,
    baseUrl,
    wsUrl: `ws://127.0.0.1:${app.listenPort}`,
    dataDir,
    logs,
    async close() {
      await app.stop({ drainSeconds: 0 });
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' ? merge(cur as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Reads the Prometheus text and returns the value of one series (labels as given, in order). */
export async function metricValue(baseUrl: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}
