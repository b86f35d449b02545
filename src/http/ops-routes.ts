import type { Metrics } from '../observability/metrics.js';
import { json, type HttpServer } from './server.js';

/** A dependency /ready reports on; `check` throws (or rejects) when it is not usable. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void> | void;
}

export interface OpsRoutesOptions {
  metrics: Metrics;
  checks: () => ReadinessCheck[];
  draining: () => boolean;
  version: string;
  /** Per-check deadline, so one hung dependency cannot hang /ready. */
  checkTimeoutMs?: number;
}

/**
 * `/health`: the process answers (liveness; never depends on other services).
 * `/ready`: every dependency answered and the daemon is not draining (503 otherwise, with the
 * state of each so an operator sees which one failed).
 * `/metrics`: Prometheus text.
 */
export function registerOpsRoutes(server: HttpServer, options: OpsRoutesOptions): void {
  const started = Date.now();
  server.route('get', '/health', 'health', () =>
    json(200, { status: 'ok', version: options.version, uptimeSec: Math.round((Date.now() - started) / 1000) }),
  );

  server.route('get', '/ready', 'ready', async () => {
    const timeoutMs = options.checkTimeoutMs ?? 2000;
    const results = await Promise.all(
      options.checks().map(async (c) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(() => c.check()),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
            }),
          ]);
          return [c.name, { ok: true }] as const;
        } catch (err) {
          return [c.name, { ok: false, error: (err as Error).message }] as const;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const draining = options.draining();
    const ready = !draining && results.every(([, r]) => r.ok);
    return json(ready ? 200 : 503, { ready, draining, checks: Object.fromEntries(results) });
  });

  server.route('get', '/metrics', 'metrics', async () => ({
    status: 200,
    body: await options.metrics.registry.metrics(),
    contentType: options.metrics.registry.contentType,
  }));
}
