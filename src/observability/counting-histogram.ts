import { Histogram, type Registry } from 'prom-client';

type Snapshot = Awaited<ReturnType<Histogram['get']>>;

/** Options of {@link CountingHistogram}. */
export interface CountingHistogramOptions {
  name: string;
  help: string;
  /** Upper bounds of the buckets, ascending (`+Inf` is implied). */
  buckets: number[];
  registers: Registry[];
}

/**
 * A histogram without labels whose observe is one bucket search and two typed-array adds: for
 * a value observed per message on a hot path (prom-client's observe makes a closure and a
 * label object and hashes the labels each call). The registry renders it exactly as it
 * renders prom-client's Histogram with the same buckets.
 */
export class CountingHistogram extends Histogram {
  private readonly bounds: Float64Array;
  /** Observations per bucket (not cumulative); the last one is `+Inf`. */
  private readonly counts: Float64Array;
  private total = 0;
  private readonly metricName: string;
  private readonly helpText: string;

  constructor(opts: CountingHistogramOptions) {
    super({ name: opts.name, help: opts.help, buckets: opts.buckets, registers: opts.registers });
    for (let i = 1; i < opts.buckets.length; i++) {
      if (!(opts.buckets[i]! > opts.buckets[i - 1]!)) throw new RangeError(`CountingHistogram ${opts.name}: buckets must ascend, got ${opts.buckets.join(', ')}`);
    }
    this.metricName = opts.name;
    this.helpText = opts.help;
    this.bounds = Float64Array.from(opts.buckets);
    this.counts = new Float64Array(opts.buckets.length + 1);
    // prom-client's constructor sets observe on the instance: this one replaces it
    this.observe = ((a: number | Record<string, string | number>, b?: number) => this.record(typeof a === 'number' ? a : b!)) as Histogram['observe'];
  }

  /** One observation (what observe does, without its overloads). */
  record(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.total += value;
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist
    (this.counts as Float64Array | undefined)?.fill(0);
    this.total = 0;
  }

  override get(): Promise<Snapshot> {
    return Promise.resolve(this.snapshot());
  }

  /** What the registry's text output reads (prom-client's Histogram has the same method). */
  getForPromString(): Promise<Snapshot> {
    return Promise.resolve(this.snapshot());
  }

  private snapshot(): Snapshot {
    const values: Snapshot['values'] = [];
    const bucket = `${this.metricName}_bucket`;
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.counts[i]!;
      values.push({ labels: { le: this.bounds[i]! }, value: acc, metricName: bucket });
    }
    acc += this.counts[this.bounds.length]!;
    values.push({ labels: { le: '+Inf' }, value: acc, metricName: bucket });
    values.push({ labels: {}, value: this.total, metricName: `${this.metricName}_sum` });
    values.push({ labels: {}, value: acc, metricName: `${this.metricName}_count` });
    // the type is prom-client's MetricType enum, a string at run time that the package does not export
    return { name: this.metricName, help: this.helpText, type: 'histogram' as unknown as Snapshot['type'], values, aggregator: 'sum', collect: () => undefined };
  }
}
