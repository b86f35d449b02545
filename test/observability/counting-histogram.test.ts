import t from 'tap';
import { Histogram, Registry } from 'prom-client';
import { CountingHistogram } from '../../src/observability/counting-histogram.js';

const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05];

t.test('the counting histogram renders what prom-client\'s Histogram renders for the same observations', async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const a = new CountingHistogram({ name: 'x_seconds', help: 'a latency', buckets: BUCKETS, registers: [ours] });
  const b = new Histogram({ name: 'x_seconds', help: 'a latency', buckets: BUCKETS, registers: [theirs] });
  // bounds themselves (le is inclusive), between them, beyond the last, zero
  const values = [0, 0.001, 0.0011, 0.005, 0.007, 0.01, 0.02, 0.025, 0.05, 0.051, 3, 0.0004];
  for (const [i, v] of values.entries()) {
    if (i % 2 === 0) a.record(v);
    else a.observe(v);
    b.observe(v);
  }
  t.equal(await ours.metrics(), await theirs.metrics());
  // JSON too (prom-client adds an empty exemplar field to its buckets)
  const series = async (r: Registry) => (await r.getMetricsAsJSON()).flatMap((m) => m.values.map((v) => ({ labels: v.labels, value: v.value, metricName: (v as { metricName?: string }).metricName })));
  t.same(await series(ours), await series(theirs));
  a.reset();
  b.reset();
  b.zero({});
  t.equal(await ours.metrics(), await theirs.metrics(), 'reset: every bucket back to 0');
});

t.test('buckets that do not ascend are refused', async (t) => {
  t.throws(() => new CountingHistogram({ name: 'y_seconds', help: 'h', buckets: [0.01, 0.005], registers: [] }), RangeError);
});
