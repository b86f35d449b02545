/**
 * The shipped rules and dashboard against the real Prometheus tools: `promtool` checks and unit
 * tests, and a `prometheus` server scraping a running daemon. Needs Debian's `prometheus` package
 * (`.ci/run` installs it), so it runs as `npm run test:prometheus`, not in `npm test`; the checks
 * that need no Prometheus binary are in monitoring.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { alertRules, daemonWithTraffic, dashboard, deploy, exportedMetrics, metricNames, queryPanels, resolve, type RuleTest } from '../helpers/monitoring.js';
import { onPath, startPrometheus } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait-for.js';

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

t.test('a real Prometheus scraping a running daemon: every dashboard query and template returns series, every rule evaluates', async (t) => {
  t.ok(onPath('prometheus'), 'prometheus is installed (.ci/run installs Debian\'s prometheus package)');
  const daemon = await daemonWithTraffic(t);
  const shipped = parse(readFileSync(deploy('prometheus/prometheus.yml'), 'utf8')) as { global: Record<string, unknown>; rule_files: string[]; scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
  const job = shipped.scrape_configs[0]!.job_name;
  const prom = await startPrometheus({
    ...shipped,
    global: { ...shipped.global, scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: shipped.rule_files.map((f) => deploy(join('prometheus', f))),
    scrape_configs: [{ ...shipped.scrape_configs[0], static_configs: [{ targets: [`127.0.0.1:${daemon.port}`] }] }],
  });
  t.teardown(() => prom.stop());
  await waitFor(async () => Number((await prom.query(`count_over_time(up{job="${job}"}[1m])`))[0]?.value[1] ?? 0) >= 5, 30_000, 'five scrapes', 200);
  t.equal((await prom.query(`up{job="${job}"}`))[0]?.value[1], '1', 'the daemon is up');

  const exported = await exportedMetrics(daemon.baseUrl);

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
  await waitFor(async () => (await loaded()).every((r) => r.health === 'ok'), 30_000, 'every rule evaluated', 200);
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
