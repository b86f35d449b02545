import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from './config/schema.js';
import { persistentSecret } from './config/secrets.js';
import { type ReadinessCheck, registerOpsRoutes } from './http/ops-routes.js';
import { HttpServer } from './http/server.js';
import { uwsRuntime } from './http/uws.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { TenantRegistry } from './tenants/tenant-registry.js';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** A part of the daemon with a lifecycle; started in order, stopped in reverse. */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface AppOptions {
  logger?: Logger;
  metrics?: Metrics;
}

export type AppState = 'created' | 'starting' | 'running' | 'draining' | 'stopped';

/**
 * Wires every part of the daemon. `start()` brings it up and listens; `stop()` drains (no new
 * work, live streams may continue up to `shutdown.drainSeconds`), finalizes and closes.
 */
export class App {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly dataDir: string;
  readonly http: HttpServer;
  tenants!: TenantRegistry;
  /** Secrets in force (from the environment, or generated into DATA_DIR for the embedded defaults). */
  readonly secrets: { apiKey?: string; egressTokenSecret: string } = { egressTokenSecret: '' };
  private readonly components: Component[] = [];
  private readonly checks: ReadinessCheck[] = [];
  private readonly drainWaiters: (() => Promise<void>)[] = [];
  private stateValue: AppState = 'created';
  private port = 0;
  private stopping: Promise<void> | undefined;

  constructor(config: Config, options: AppOptions = {}) {
    this.config = config;
    this.logger = options.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty });
    this.metrics = options.metrics ?? new Metrics();
    this.dataDir = resolve(config.dataDir);
    this.http = new HttpServer({ logger: this.logger, metrics: this.metrics, requestTimeoutSec: config.server.requestTimeoutSec });
  }

  get state(): AppState {
    return this.stateValue;
  }

  get draining(): boolean {
    return this.stateValue === 'draining' || this.stateValue === 'stopped';
  }

  /** The port actually listened on (differs from config when it was 0). */
  get listenPort(): number {
    return this.port;
  }

  /** Base URL clients reach us at: `server.publicUrl`, else derived from host and port. */
  get publicUrl(): string {
    if (this.config.server.publicUrl) return this.config.server.publicUrl.replace(/\/+$/, '');
    const host = this.config.server.host === '0.0.0.0' || this.config.server.host === '::' ? '127.0.0.1' : this.config.server.host;
    return `http://${host}:${this.port}`;
  }

  addComponent(component: Component): void {
    this.components.push(component);
  }

  addReadinessCheck(check: ReadinessCheck): void {
    this.checks.push(check);
  }

  /** Called during drain; resolves when that part has no live work left (or is told to finish). */
  addDrainWaiter(waiter: () => Promise<void>): void {
    this.drainWaiters.push(waiter);
  }

  async start(): Promise<void> {
    if (this.stateValue !== 'created') throw new Error(`cannot start an app that is ${this.stateValue}`);
    this.stateValue = 'starting';
    const log = this.logger;
    mkdirSync(this.dataDir, { recursive: true });

    this.metrics.buildInfo.set({ version: VERSION, node: process.version, uws_native: String(uwsRuntime.native) }, 1);
    if (uwsRuntime.native) log.info({ binary: uwsRuntime.binary }, 'uWebSockets.js native binary loaded');
    else log.error('uWebSockets.js fell back to its JavaScript implementation: expect far lower throughput');

    this.loadSecrets();
    this.tenants = new TenantRegistry({
      defaultTenant: this.config.auth.defaultTenant,
      apiKey: this.secrets.apiKey,
      tenantsFile: this.config.auth.tenantsFile,
      defaults: this.config.tenantDefaults,
    });

    registerOpsRoutes(this.http, {
      metrics: this.metrics,
      checks: () => this.checks,
      draining: () => this.draining,
      version: VERSION,
    });

    for (const c of this.components) {
      await c.start();
      log.debug({ component: c.name }, 'component started');
    }
    this.http.fallback();
    this.port = await this.http.listen(this.config.server.host, this.config.server.port);
    this.stateValue = 'running';
    log.info({ host: this.config.server.host, port: this.port, dataDir: this.dataDir, storage: this.config.storage.driver, tenants: this.tenants.size }, 'audio-ingestd listening');
  }

  private loadSecrets(): void {
    const log = this.logger;
    if (this.config.auth.apiKey) this.secrets.apiKey = this.config.auth.apiKey;
    else if (!this.config.auth.tenantsFile) {
      const s = persistentSecret(this.dataDir, 'api-key');
      this.secrets.apiKey = s.value;
      log.warn({ path: s.path, created: s.created }, 'API_KEY not set: using the generated key stored in this file');
    }
    if (this.config.livekit.egressTokenSecret) this.secrets.egressTokenSecret = this.config.livekit.egressTokenSecret;
    else {
      const s = persistentSecret(this.dataDir, 'egress-token-secret');
      this.secrets.egressTokenSecret = s.value;
      log.warn({ path: s.path, created: s.created }, 'EGRESS_TOKEN_SECRET not set: using the generated secret stored in this file (other hosts cannot verify its tokens)');
    }
  }

  /**
   * Drain then stop: not ready at once, new work refused with DRAINING, live work may finish
   * until `drainSeconds`, then every part is stopped in reverse order (they finalize what is
   * left). Idempotent.
   */
  stop(options: { drainSeconds?: number; reason?: string } = {}): Promise<void> {
    this.stopping ??= this.doStop(options.drainSeconds ?? this.config.shutdown.drainSeconds, options.reason ?? 'stop');
    return this.stopping;
  }

  private async doStop(drainSeconds: number, reason: string): Promise<void> {
    const log = this.logger;
    const wasRunning = this.stateValue === 'running';
    this.stateValue = 'draining';
    log.info({ reason, drainSeconds }, 'draining');
    if (wasRunning && drainSeconds > 0 && this.drainWaiters.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), drainSeconds * 1000);
      });
      const outcome = await Promise.race([Promise.all(this.drainWaiters.map((w) => w())).then(() => 'drained' as const), deadline]);
      clearTimeout(timer);
      log.info({ outcome }, 'drain window over');
    }
    for (const c of [...this.components].reverse()) {
      try {
        await c.stop();
        log.debug({ component: c.name }, 'component stopped');
      } catch (err) {
        log.error({ err, component: c.name }, 'component failed to stop cleanly');
      }
    }
    this.http.stopListening();
    this.stateValue = 'stopped';
    log.info('stopped');
  }
}
