import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { encodeWav } from '../../src/audio/wav.js';
import { simulateEgress, tonePcm } from '../../src/clients/egress-simulator.js';
import { mintEgressToken } from '../../src/sources/egress-token.js';
import { startDaemon } from '../helpers/daemon.js';
import { startReceiver } from '../helpers/events-http.js';
import { onPath, startPrometheus } from '../helpers/prometheus.js';

const root = join(import.meta.dirname, '..', '..');
const deploy = (p: string): string => join(root, 'deploy', p);
const API_KEY = 'e2e-api-key-0123456789';
const EGRESS_SECRET = 'e2e-egress-secret-0123456789abcdef0123';

interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
interface RuleTest { alertname: string; eval_time: string; exp_alerts: unknown[] | null }
interface Panel { type: string; title: string; id: number; datasource?: { uid: string }; targets?: { expr: string; refId: string }[]; gridPos: { h: number; w: number; x: number; y: number }; panels?: Panel[] }
interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: { name: string; type: string; query: unknown; allValue?: string }[] } }

const alertRules = (): Rule[] => (parse(readFileSync(deploy('prometheus/alerts.yml'), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const dashboard = (): Dashboard => JSON.parse(readFileSync(deploy('grafana/audio-ingestd.json'), 'utf8')) as Dashboard;
const queryPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');

/** Grafana's variables as the dashboard resolves them with "All" hosts selected. */
function resolve(expr: string, job: string): string {
  return expr.replaceAll('$__rate_interval', '30s').replaceAll('$job', job).replaceAll('$instance', '.*');
}

/** Metric names an expression reads (ours and Prometheus's own `up`). */
function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b(audio_ingestd_[a-z0-9_]+|up)\b(?=\s*[{[)\s])/g)].map((m) => m[1]!))];
}

t.test('promtool checks the rules and their unit tests; every alert has a firing and a quiet case', async (t) => {
  t.ok(onPath('promtool'), 'promtool is installed (.ci/run installs Debian\'s prometheus package)');
  const check = spawnSync('promtool', ['check', 'rules', deploy('prometheus/alerts.yml')], { encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  t.match(check.stdout, /SUCCESS: 7 rules found/);
  const unit = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: deploy('prometheus'), encoding: 'utf8' });
  t.equal(unit.status, 0, `promtool test rules: ${unit.stdout}${unit.stderr}`);
  t.match(unit.stdout, /SUCCESS/);
  const config = spawnSync('promtool', ['check', 'config', deploy('prometheus/prometheus.yml')], { encoding: 'utf8' });
  t.equal(config.status, 0, `promtool check config: ${config.stdout}${config.stderr}`);

  const rules = alertRules();
  const names = rules.map((r) => r.alert).filter((a): a is string => a !== undefined);
  t.same(names.length, rules.length, 'alert rules only');
  for (const wanted of ['Down', 'TargetsMissing', 'SpoolAlmostFull', 'OutboxNotDraining', 'AudioDropped', 'StoreErrors', 'EventLoopLag']) {
    t.ok(names.includes(`AudioIngestd${wanted}`), `alert AudioIngestd${wanted}`);
  }
  const tests = (parse(readFileSync(deploy('prometheus/alerts.test.yml'), 'utf8')) as { tests: { alert_rule_test?: RuleTest[] }[] }).tests.flatMap((g) => g.alert_rule_test ?? []);
  for (const name of names) {
    const cases = tests.filter((c) => c.alertname === name);
    t.ok(cases.some((c) => (c.exp_alerts ?? []).length > 0), `${name}: a case where it fires`);
    t.ok(cases.some((c) => (c.exp_alerts ?? []).length === 0), `${name}: a case where it does not`);
  }
  for (const r of rules) {
    t.match(r.labels?.severity, /^(warning|critical)$/, `${r.alert}: severity`);
    t.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
  }
});

t.test('the dashboard is well formed and covers what operators need', async (t) => {
  const d = dashboard();
  t.equal(d.uid, 'audio-ingestd');
  const all = d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  t.equal(new Set(all.map((p) => p.id)).size, all.length, 'panel ids are unique');
  for (const p of all) {
    t.ok(p.gridPos.x + p.gridPos.w <= 24 && p.gridPos.h > 0, `${p.title}: fits the 24-column grid`);
  }
  const panels = queryPanels(d);
  for (const p of panels) {
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the datasource variable`);
    t.ok((p.targets ?? []).length > 0, `${p.title}: has queries`);
    for (const q of p.targets ?? []) t.match(q.expr, /job="\$job", instance=~"\$instance"/, `${p.title} ${q.refId}: filtered by job and host`);
  }
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((q) => q.expr)).join('\n');
  const needs: Record<string, string> = {
    streams: 'audio_ingestd_streams_active',
    'audio seconds': 'audio_ingestd_audio_seconds_total',
    'drops by reason': 'audio_ingestd_frames_dropped_total',
    'spool bytes': 'audio_ingestd_spool_bytes',
    'outbox depth': 'audio_ingestd_outbox_pending',
    'delivery lag': 'audio_ingestd_outbox_lag_seconds',
    'delivery latency': 'audio_ingestd_event_delivery_seconds_bucket',
    'store latency': 'audio_ingestd_store_operation_seconds_bucket',
    'store errors': 'outcome="error"',
    'voice notes by outcome': 'sum by (outcome) (rate(audio_ingestd_voicenotes_total',
    'voice note answer latency': 'audio_ingestd_voicenote_answer_seconds_bucket',
    'chunk stored latency': 'audio_ingestd_chunk_store_latency_seconds_bucket',
    'event-loop lag': 'audio_ingestd_nodejs_eventloop_lag_p99_seconds',
    RSS: 'audio_ingestd_process_resident_memory_bytes',
  };
  for (const [what, needle] of Object.entries(needs)) t.ok(exprs.includes(needle), `dashboard shows ${what}`);
  t.match(exprs, /sum by \(source, reason\) \(rate\(audio_ingestd_frames_dropped_total/, 'drops split by reason');
});

t.test('a real Prometheus scraping a running daemon: every dashboard query and template returns series, every rule evaluates', async (t) => {
  t.ok(onPath('prometheus'), 'prometheus is installed (.ci/run installs Debian\'s prometheus package)');
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

  // Traffic that makes every series the dashboard draws exist: a live stream to its normal end
  // (chunks stored as objects), a voice note stored and repeated, one refused.
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
  await waitUntil(() => hookTypes().includes('recording.completed') && hookTypes().includes('voicenote.stored'), 'webhook deliveries');

  const shipped = parse(readFileSync(deploy('prometheus/prometheus.yml'), 'utf8')) as { global: Record<string, unknown>; rule_files: string[]; scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
  const job = shipped.scrape_configs[0]!.job_name;
  const prom = await startPrometheus({
    ...shipped,
    global: { ...shipped.global, scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: shipped.rule_files.map((f) => deploy(join('prometheus', f))),
    scrape_configs: [{ ...shipped.scrape_configs[0], static_configs: [{ targets: [`127.0.0.1:${daemon.port}`] }] }],
  });
  t.teardown(() => prom.stop());
  await waitUntil(async () => Number((await prom.query(`count_over_time(up{job="${job}"}[1m])`))[0]?.value[1] ?? 0) >= 5, 'five scrapes');
  t.equal((await prom.query(`up{job="${job}"}`))[0]?.value[1], '1', 'the daemon is up');

  const scraped = await (await fetch(`${daemon.baseUrl}/metrics`)).text();
  const exported = new Set(scraped.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]!));
  exported.add('up');

  const d = dashboard();
  for (const p of queryPanels(d)) {
    for (const q of p.targets ?? []) {
      for (const name of metricNames(q.expr)) t.ok(exported.has(name), `${p.title}: ${name} is exported by the daemon`);
      const series = await prom.query(resolve(q.expr, job));
      t.ok(series.length > 0, `${p.title} ${q.refId}: ${series.length} series`);
    }
  }
  for (const v of d.templating.list.filter((x) => x.type === 'query')) {
    const text = (v.query as { query: string }).query;
    const m = /^label_values\((.+), (\w+)\)$/.exec(text);
    t.ok(m, `variable ${v.name}: label_values(…)`);
    const series = await prom.query(resolve(m![1]!, job));
    t.ok(series.some((s) => s.metric[m![2]!] !== undefined), `variable ${v.name}: values of ${m![2]}`);
  }

  for (const r of alertRules()) {
    for (const name of metricNames(r.expr)) t.ok(exported.has(name), `${r.alert}: ${name} is exported by the daemon`);
    await prom.query(r.expr); // rejects on a PromQL error
  }
  type RuleState = { name: string; health: string; lastError?: string; state: string };
  const loaded = async (): Promise<RuleState[]> => (await prom.api<{ groups: { rules: RuleState[] }[] }>('/api/v1/rules')).groups.flatMap((g) => g.rules);
  await waitUntil(async () => (await loaded()).every((r) => r.health === 'ok'), 'every rule evaluated');
  const states = await loaded();
  t.equal(states.length, alertRules().length, 'every rule of alerts.yml is loaded');
  for (const r of states) t.equal(r.health, 'ok', `${r.name} evaluates against the daemon's series${r.lastError ? `: ${r.lastError}` : ''}`);
  t.same(states.filter((r) => r.state !== 'inactive').map((r) => r.name), [], 'a healthy daemon raises no alert');

  // the values behind a few panels are the traffic above, not just present
  const value = async (q: string): Promise<number> => Number((await prom.query(q))[0]?.value[1] ?? NaN);
  t.equal(await value(`sum(audio_ingestd_voicenotes_total{outcome="stored"})`), 1);
  t.equal(await value(`sum(audio_ingestd_voicenotes_total{outcome="duplicate"})`), 1);
  t.equal(await value(`sum(audio_ingestd_voicenote_answer_seconds_count{outcome="error"})`), 1, 'the refusal is timed');
  t.equal(await value(`sum(audio_ingestd_streams_total{end_reason="normal"})`), 1);
  t.ok((await value(`sum(audio_ingestd_chunk_store_latency_seconds_count)`)) >= 1, 'chunk objects timed');
  t.ok((await value(`sum(audio_ingestd_event_delivery_seconds_count{sink="webhook"})`)) >= 3, 'webhook deliveries timed');
  t.ok((await value(`sum(audio_ingestd_store_operation_seconds_count{op="put"})`)) >= 2, 'store puts timed');
  t.ok((await value(`max(audio_ingestd_spool_max_bytes)`)) >= 1024 ** 3, 'spool budget exported');
  t.ok(Math.abs((await value(`sum(audio_ingestd_audio_seconds_total{source="livekit"})`)) - 2.5) < 0.01, 'live audio seconds counted');
});

async function configFileOf(t: { teardown(fn: () => unknown): void }, config: Record<string, unknown>): Promise<string> {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'aid-dash-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.json');
  await writeFile(file, JSON.stringify(config));
  return file;
}

async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
