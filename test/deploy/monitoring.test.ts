/**
 * The shipped dashboard and alert rules, checked without Prometheus binaries: the dashboard is
 * well formed and covers what operators need, and every metric that it and the rules read is one
 * a running daemon exports. The same files against the real `promtool` and `prometheus`:
 * prometheus.check.ts (`npm run test:prometheus`).
 */
import t from 'tap';
import { alertRules, daemonWithTraffic, dashboard, exportedMetrics, metricNames, queryPanels } from '../helpers/monitoring.js';

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
    'finalize queue': 'audio_ingestd_finalize_queue',
    'finalize wait': 'audio_ingestd_finalize_wait_seconds_bucket',
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

t.test('every metric the dashboard and the alert rules read is exported by a running daemon', async (t) => {
  const daemon = await daemonWithTraffic(t);
  const exported = await exportedMetrics(daemon.baseUrl);
  for (const p of queryPanels(dashboard())) {
    for (const q of p.targets ?? []) for (const name of metricNames(q.expr)) t.ok(exported.has(name), `${p.title}: ${name} is exported by the daemon`);
  }
  for (const r of alertRules()) for (const name of metricNames(r.expr)) t.ok(exported.has(name), `${r.alert}: ${name} is exported by the daemon`);
});
