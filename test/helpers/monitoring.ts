/**
 * What the monitoring tests share: the shipped dashboard and alert rules as data, the metric
 * names their expressions read, and a daemon with traffic that makes every series exist.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import { parse } from 'yaml';
import { encodeWav } from '../../src/audio/wav.js';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import { type Daemon, startDaemon } from './daemon.js';
import { startReceiver } from './events-http.js';
import { tempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

const root = join(import.meta.dirname, '..', '..');
export const deploy = (p: string): string => join(root, 'deploy', p);
const API_KEY = 'e2e-api-key-0123456789';
const EGRESS_SECRET = 'e2e-egress-secret-0123456789abcdef0123';

export interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
export interface RuleTest { alertname: string; eval_time: string; exp_alerts: unknown[] | null }
export interface Panel { type: string; title: string; id: number; datasource?: { uid: string }; targets?: { expr: string; refId: string }[]; gridPos: { h: number; w: number; x: number; y: number }; panels?: Panel[] }
export interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: { name: string; type: string; query: unknown; allValue?: string }[] } }

export const alertRules = (): Rule[] => (parse(readFileSync(deploy('prometheus/alerts.yml'), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
export const dashboard = (): Dashboard => JSON.parse(readFileSync(deploy('grafana/audio-ingestd.json'), 'utf8')) as Dashboard;
export const queryPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');

/** Grafana's variables as the dashboard resolves them with "All" hosts selected. */
export function resolve(expr: string, job: string): string {
  return expr.replaceAll('$__rate_interval', '30s').replaceAll('$job', job).replaceAll('$instance', '.*');
}

/** Metric names an expression reads (ours and Prometheus's own `up`). */
export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b(audio_ingestd_[a-z0-9_]+|up)\b(?=\s*[{[)\s])/g)].map((m) => m[1]!))];
}

/**
 * A daemon (webhooks signed, chunk objects on) after the traffic that makes every series the
 * dashboard draws exist: a live stream to its normal end, a voice note stored and repeated, one
 * refused, and the webhook deliveries of their events.
 */
export async function daemonWithTraffic(t: Test): Promise<Daemon> {
  const hook = await startReceiver(t);
  const daemon = await startDaemon({
    API_KEY,
    EGRESS_TOKEN_SECRET: EGRESS_SECRET,
    WEBHOOK_URL: hook.url,
    WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
    AUDIO_INGEST_CONFIG: await configFileOf(t, { storage: { chunkObjects: true } }),
  });
  t.teardown(async () => {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  });
  const { token } = await mintEgressToken(EGRESS_SECRET, { tenant: 'default', roomName: 'dash', trackId: 'TR_dash' }, 600);
  const stream = await simulateEgress({ url: `ws://127.0.0.1:${daemon.port}/egress-audio?token=${encodeURIComponent(token)}`, pcm: tonePcm(2.5), realtime: false });
  t.ok([1000, 1005].includes(stream.closeCode), `the stream closed normally (${stream.closeCode})`);
  const note = encodeWav(tonePcm(3.5, 300, 16000, 1), { sampleRate: 16000, channels: 1 });
  const post = (body: Buffer, key: string): Promise<Response> =>
    fetch(`${daemon.baseUrl}/v1/whatsapp/audio`, {
      method: 'POST',
      body,
      headers: { apikey: API_KEY, 'content-type': 'audio/wav', 'x-instance': 'inst-dash', 'x-chat-id': '5511999990000@s.whatsapp.net', 'x-message-id': key, 'idempotency-key': key },
    });
  t.equal((await post(note, 'DASH1')).status, 201, 'voice note stored');
  t.equal((await post(note, 'DASH1')).status, 200, 'its repeat answered from the idempotency record');
  t.equal((await post(randomBytes(4096), 'DASH2')).status, 415, 'noise refused');
  const hookTypes = (): string[] => hook.requests.map((r) => (JSON.parse(r.body.toString()) as { type: string }).type);
  await waitFor(() => hookTypes().includes('recording.completed') && hookTypes().includes('voicenote.stored'), 30_000, 'webhook deliveries', 200);
  return daemon;
}

/** Metric names the daemon exports now, read from its /metrics (plus Prometheus's own `up`). */
export async function exportedMetrics(baseUrl: string): Promise<Set<string>> {
  const scraped = await (await fetch(`${baseUrl}/metrics`)).text();
  const exported = new Set(scraped.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]!));
  exported.add('up');
  return exported;
}

async function configFileOf(t: Test, config: Record<string, unknown>): Promise<string> {
  const dir = await tempDir(t, 'aid-dash-cfg-');
  const file = join(dir, 'config.json');
  await writeFile(file, JSON.stringify(config));
  return file;
}

