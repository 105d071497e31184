// Prometheus counters and histograms kept as plain numbers per label set, for the metrics
// recorded on every transaction and every HTTP request. prom-client's own inc() and observe()
// validate, sort and hash the label set on every call: about a microsecond alone, and under
// load several times that in throughput (docs/benchmarks.md). These record with one Map lookup
// (none when the label set repeats) and answer the registry's get() when /metrics is scraped,
// with the exposition prom-client's Counter and Histogram write for the same calls.
import type { Metric, Registry } from 'prom-client';

type Value = { labels: Record<string, string | number>; value: number; metricName?: string };

interface Series {
  /** Label values, in labelNames order. */
  values: readonly string[];
  labels: Record<string, string>;
  count: number;
  sum: number;
  /** Histograms: observations per bucket, not cumulative; the last one is above every bound (+Inf). */
  buckets: Float64Array | undefined;
}

abstract class LabelledSeries {
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';
  readonly #series = new Map<string, Series>();
  /** The series recorded last: a run of one label set (the common case) skips the key and the lookup. */
  #last: Series | undefined;

  constructor(
    /** Mutable: the registry renames counters for OpenMetrics before it reads them. */
    public name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  /** Adds this metric to a registry (which reads it through get() and reset()). */
  register(registry: Registry): this {
    // prom-client types registerMetric for its own classes; the registry only uses these members.
    registry.registerMetric(this as unknown as Metric);
    return this;
  }

  protected series(values: readonly string[], buckets: number): Series {
    const last = this.#last;
    if (last !== undefined && sameValues(last.values, values)) return last;
    const key = values.join('\u0000');
    let s = this.#series.get(key);
    if (s === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]!));
      s = { values: [...values], labels, count: 0, sum: 0, buckets: buckets ? new Float64Array(buckets) : undefined };
      this.#series.set(key, s);
    }
    return (this.#last = s);
  }

  protected abstract valuesOf(s: Series): Value[];

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    const values: Value[] = [];
    for (const s of this.#series.values()) values.push(...this.valuesOf(s));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#series.clear();
    this.#last = undefined;
  }
}

function sameValues(a: readonly string[], b: readonly string[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return a.length === b.length;
}

/** A counter: `inc(values)` with the label values in labelNames order. */
export class LabelledCounter extends LabelledSeries {
  readonly type = 'counter';

  inc(values: readonly string[], by = 1): void {
    this.series(values, 0).count += by;
  }

  protected valuesOf(s: Series): Value[] {
    return [{ labels: { ...s.labels }, value: s.count }];
  }
}

/** A histogram: `observe(values, x)`; a bucket counts observations at or below its bound (`le`). */
export class LabelledHistogram extends LabelledSeries {
  readonly type = 'histogram';

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
  }

  observe(values: readonly string[], x: number): void {
    if (!Number.isFinite(x)) return;
    const s = this.series(values, this.buckets.length + 1);
    const bounds = this.buckets;
    let i = 0;
    while (i < bounds.length && x > bounds[i]!) i++;
    s.buckets![i]!++;
    s.sum += x;
    s.count++;
  }

  protected valuesOf(s: Series): Value[] {
    const out: Value[] = [];
    const bucket = `${this.name}_bucket`;
    let acc = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      acc += s.buckets![i]!;
      out.push({ labels: { le: this.buckets[i]!, ...s.labels }, value: acc, metricName: bucket });
    }
    out.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket });
    out.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
    out.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    return out;
  }
}
