import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseAllDocuments, parseDocument } from 'yaml';
import { ENV_MAP } from '../../src/config/load.js';
import type { Tap } from '../helpers/storage-conformance.js';

const root = join(import.meta.dirname, '..', '..');
const deploy = (p: string): string => join(root, 'deploy', p);
const defaults = JSON.parse(readFileSync(join(root, 'config/default.json'), 'utf8')) as { server: { port: number; host: string }; shutdown: { drainSeconds: number }; storage: { s3: { bucket: string } } };
/** Variables the daemon (or the AWS SDK and ffmpeg lookup it uses) reads; anything else in a manifest is a typo. */
const KNOWN_ENV = new Set([...ENV_MAP.flatMap(([n]) => [n, `${n}_FILE`]), 'AUDIO_INGEST_CONFIG', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'FFMPEG_PATH', 'NODE_ENV', 'NODE_OPTIONS']);

/** Parses one YAML file strictly: any error or warning (duplicate keys included) fails the test. */
function yamlDocs(t: Tap, path: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'), { uniqueKeys: true, prettyErrors: true });
  if (!Array.isArray(docs)) throw new Error(`${path}: not a YAML stream`);
  for (const d of docs) {
    t.same(d.errors.map((e) => e.message), [], `${path}: parses without errors`);
    t.same(d.warnings.map((e) => e.message), [], `${path}: no warnings`);
  }
  return docs.map((d) => d.toJS() as unknown);
}

/** Seconds of a Compose duration such as `45s`, `1m30s`. */
function composeSeconds(d: string): number {
  let total = 0;
  for (const [, n, unit] of d.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)) total += Number(n) * ({ h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6 } as Record<string, number>)[unit!]!;
  return total;
}

/** A value with `${VAR:-default}` interpolated as Compose would with an empty environment. */
function interpolate(value: string): string {
  return value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_m, _name: string, def: string | undefined) => def ?? '');
}

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string };
  ports?: string[];
  environment?: Record<string, string | number | boolean | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  volumes?: string[];
  command?: string[];
  entrypoint?: string[];
  profiles?: string[];
}

t.test('deploy/compose.yaml: daemon, RabbitMQ and MinIO wired to the config defaults', async (t) => {
  const [compose] = yamlDocs(t, deploy('compose.yaml')) as [{ services: Record<string, ComposeService>; volumes: Record<string, unknown> }];
  const s = compose.services;
  for (const name of ['audio-ingestd', 'rabbitmq', 'minio', 'minio-init']) t.ok(s[name], `service ${name}`);
  const daemon = s['audio-ingestd']!;
  const env = Object.fromEntries(Object.entries(daemon.environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));

  t.ok(daemon.build, 'the daemon is built from this repository');
  t.ok(existsSync(join(deploy('.'), daemon.build!.context, daemon.build!.dockerfile ?? 'Dockerfile')), 'its build context holds the Dockerfile');
  t.equal(Number(env['PORT']), defaults.server.port, 'PORT is the default port');
  t.ok(daemon.ports?.includes(`${defaults.server.port}:${defaults.server.port}`), `publishes ${defaults.server.port}`);
  t.equal(env['HOST'], '0.0.0.0', 'listens on every interface of the container');
  for (const name of Object.keys(env)) t.ok(KNOWN_ENV.has(name), `${name} is read by the daemon`);

  t.equal(env['STORAGE_DRIVER'], 's3');
  const s3 = new URL(env['S3_ENDPOINT']!);
  t.equal(s3.hostname, 'minio', 'S3 endpoint is the MinIO service');
  t.ok(s['minio']!.ports?.some((p) => p.endsWith(`:${s3.port}`)), `MinIO serves ${s3.port}`);
  t.equal(env['S3_FORCE_PATH_STYLE'], 'true', 'path-style addressing for MinIO');
  t.equal(env['S3_BUCKET'], defaults.storage.s3.bucket);
  const mc = s['minio-init']!;
  t.same([...(mc.entrypoint ?? []), ...(mc.command ?? [])], ['mc', 'mb', '--ignore-existing', `target/${env['S3_BUCKET']}`], 'the bucket is created');
  t.equal(new URL(interpolate(String(mc.environment?.['MC_HOST_target']))).host, `minio:${s3.port}`);
  const minioEnv = s['minio']!.environment ?? {};
  t.equal(interpolate(String(minioEnv['MINIO_ROOT_USER'])), env['AWS_ACCESS_KEY_ID'], 'the daemon uses MinIO\'s credentials');
  t.equal(interpolate(String(minioEnv['MINIO_ROOT_PASSWORD'])), env['AWS_SECRET_ACCESS_KEY']);
  t.ok(env['AWS_SECRET_ACCESS_KEY']!.length >= 8, 'MinIO needs a password of at least 8 characters');

  const amqp = new URL(env['AMQP_URL']!);
  t.equal(amqp.protocol, 'amqp:');
  t.equal(amqp.host, 'rabbitmq:5672', 'AMQP_URL is the RabbitMQ service');
  const rabbitEnv = s['rabbitmq']!.environment ?? {};
  t.equal(decodeURIComponent(amqp.username), rabbitEnv['RABBITMQ_DEFAULT_USER'], 'with the user RabbitMQ creates (guest only logs in from localhost)');
  t.equal(decodeURIComponent(amqp.password), interpolate(String(rabbitEnv['RABBITMQ_DEFAULT_PASS'])));

  t.equal(daemon.depends_on?.['rabbitmq']?.condition, 'service_healthy');
  t.equal(daemon.depends_on?.['minio-init']?.condition, 'service_completed_successfully');
  t.equal(mc.depends_on?.['minio']?.condition, 'service_healthy');
  t.ok(s['rabbitmq']!.healthcheck && s['minio']!.healthcheck, 'the services it waits for have health checks');

  const grace = composeSeconds(daemon.stop_grace_period ?? '10s');
  const drain = Number(env['DRAIN_SECONDS'] ?? defaults.shutdown.drainSeconds);
  t.ok(grace > drain + 10, `stop_grace_period (${grace} s) leaves time after the drain (${drain} s) to finalize`);
  t.ok(daemon.volumes?.some((v) => v.endsWith(`:${env['DATA_DIR']}`)), 'DATA_DIR is a volume');
  for (const svc of Object.values(s)) {
    for (const v of svc.volumes ?? []) {
      const source = v.split(':')[0]!;
      if (source.startsWith('.')) t.ok(existsSync(join(deploy('.'), source)), `${source} exists`);
      else t.ok(source in compose.volumes, `named volume ${source} is declared`);
    }
    if (svc.image) t.notMatch(svc.image, /:latest$|^[^:]+$/, `${svc.image}: a pinned tag`);
  }
  t.same(s['prometheus']?.profiles, ['monitoring']);
  t.same(s['grafana']?.profiles, ['monitoring']);

  const promConfig = parseDocument(readFileSync(deploy('prometheus/prometheus.yml'), 'utf8')).toJS() as { scrape_configs: { static_configs: { targets: string[] }[] }[] };
  t.same(promConfig.scrape_configs[0]!.static_configs[0]!.targets, [`audio-ingestd:${defaults.server.port}`], 'Prometheus scrapes the daemon service');
  for (const f of ['grafana/provisioning/datasources/prometheus.yaml', 'grafana/provisioning/dashboards/audio-ingestd.yaml']) yamlDocs(t, deploy(f));
});

interface Probe { httpGet: { path: string; port: string | number } ; periodSeconds?: number; failureThreshold?: number }
interface Container {
  name: string;
  image: string;
  ports: { name?: string; containerPort: number }[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    replicas?: number;
    selector: { matchLabels?: Record<string, string> } & Record<string, string>;
    template?: { metadata: { labels: Record<string, string> }; spec: { terminationGracePeriodSeconds?: number; securityContext?: { runAsNonRoot?: boolean; runAsUser?: number }; containers: Container[]; volumes?: { name: string }[] } };
    maxUnavailable?: number | string;
    minAvailable?: number | string;
    ports?: { port: number; targetPort: number | string }[];
  };
}

/** `500m` → 0.5, `2` → 2 (cores). */
const cores = (q: string): number => (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));
const UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
/** `512Mi` → bytes. */
const bytes = (q: string): number => {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  return m ? Number(m[1]) * UNITS[m[2] ?? '']! : NaN;
};

t.test('deploy/kubernetes: Deployment with probes on /ready and /health, drain-aware stop, PodDisruptionBudget, sized requests', async (t) => {
  const objects = yamlDocs(t, deploy('kubernetes/audio-ingestd.yaml')) as K8sObject[];
  for (const o of objects) {
    t.ok(o.apiVersion && o.kind && o.metadata?.name, `${o.kind}/${o.metadata?.name}: apiVersion, kind, name`);
  }
  const byKind = (kind: string): K8sObject => {
    const found = objects.filter((o) => o.kind === kind);
    t.equal(found.length, 1, `one ${kind}`);
    return found[0]!;
  };
  const dep = byKind('Deployment');
  const pdb = byKind('PodDisruptionBudget');
  const svc = byKind('Service');
  t.equal(dep.apiVersion, 'apps/v1');
  t.equal(pdb.apiVersion, 'policy/v1');
  t.equal(svc.apiVersion, 'v1');

  const podLabels = dep.spec.template!.metadata.labels;
  const matches = (sel: Record<string, string> | undefined): boolean => sel !== undefined && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => podLabels[k] === v);
  t.ok(matches(dep.spec.selector.matchLabels), 'the Deployment selects its pods');
  t.ok(matches(pdb.spec.selector.matchLabels), 'the PodDisruptionBudget selects them');
  t.ok(matches(svc.spec.selector as Record<string, string>), 'the Service selects them');
  t.ok(pdb.spec.maxUnavailable !== undefined || pdb.spec.minAvailable !== undefined, 'the budget limits disruptions');
  t.ok((dep.spec.replicas ?? 1) >= 2, 'more than one replica (the budget can then let one go)');

  const pod = dep.spec.template!.spec;
  t.equal(pod.containers.length, 1);
  const c = pod.containers[0]!;
  const env = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  for (const e of c.env) t.ok(KNOWN_ENV.has(e.name), `${e.name} is read by the daemon`);
  const port = c.ports.find((p) => p.name === 'http');
  t.equal(port?.containerPort, defaults.server.port, 'container port is the default port');
  t.equal(Number(env['PORT'] ?? defaults.server.port), port?.containerPort, 'PORT agrees with the container port');
  t.equal(env['HOST'] ?? defaults.server.host, '0.0.0.0');
  const probePort = (p: Probe | undefined): number | undefined => (p?.httpGet.port === 'http' ? port?.containerPort : Number(p?.httpGet.port));
  t.equal(c.readinessProbe?.httpGet.path, '/ready', 'readiness on /ready');
  t.equal(c.livenessProbe?.httpGet.path, '/health', 'liveness on /health');
  t.equal(probePort(c.readinessProbe), defaults.server.port);
  t.equal(probePort(c.livenessProbe), defaults.server.port);
  if (c.startupProbe) t.equal(c.startupProbe.httpGet.path, '/health', 'the startup probe waits for /health, not for recovery to end');
  t.equal(svc.spec.ports?.[0]?.targetPort, 'http', 'the Service targets the named port');

  const preStop = c.lifecycle?.preStop;
  t.ok(preStop, 'a preStop hook');
  const preStopSec = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command.join(' ').match(/^sleep (\d+)$/)?.[1]);
  t.ok(preStopSec > 0, `preStop waits ${preStopSec} s for load balancers`);
  const drain = Number(env['DRAIN_SECONDS'] ?? defaults.shutdown.drainSeconds);
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  t.ok(grace > preStopSec + drain + 10, `terminationGracePeriodSeconds (${grace}) above preStop (${preStopSec}) + drain (${drain}) + time to finalize`);

  t.equal(pod.securityContext?.runAsNonRoot, true);
  t.equal(pod.securityContext?.runAsUser, Number(/--uid (\d+)/.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))?.[1]), 'the Dockerfile\'s user');
  t.ok(c.volumeMounts?.some((m) => m.mountPath === env['DATA_DIR']), 'DATA_DIR is a volume');
  for (const m of c.volumeMounts ?? []) t.ok(pod.volumes?.some((v) => v.name === m.name), `volume ${m.name} is declared`);

  // Requests sized for 500 streams from bench/RESULTS.md (quiet machine, 2026-12-02, defaults with the VAD on): ≈ 6.3 core-s per stream-hour, ≤ 524 KiB per stream over ~125 MiB.
  const req = c.resources.requests ?? {};
  t.ok(cores(req['cpu'] ?? '0') >= (500 * 6.3) / 3600, `cpu request ${req['cpu']} covers 500 streams`);
  t.ok(bytes(req['memory'] ?? '0') >= 125 * 1024 ** 2 + 500 * 524 * 1024, `memory request ${req['memory']} covers 500 streams`);
  t.ok(bytes(c.resources.limits?.['memory'] ?? '0') >= bytes(req['memory'] ?? '0'), 'memory limit at or above the request');
  t.notOk(c.resources.limits?.['cpu'], 'no CPU limit (throttling stalls the event loop)');
  t.ok(Number(env['SPOOL_MAX_BYTES']) > 0, 'the spool budget is explicit (half the node disk is not a pod\'s to take)');
  t.match(readFileSync(deploy('kubernetes/audio-ingestd.yaml'), 'utf8'), /bench\/RESULTS\.md/, 'the sizing cites its figures');
});
