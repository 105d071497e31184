// The HTTP service's request metrics: coffer_http_requests_total{method,route,status} and
// coffer_http_request_duration_seconds{method,route}. A request adds to plain numbers kept per
// series (one Map lookup); prom-client's own inc() and observe() validate and hash the label set
// on every call, which cost about a tenth of a GET's throughput on memory:// (docs/benchmarks.md).
// The registry reads the series when /metrics is scraped, through the same get() a prom-client
// Counter and Histogram answer, so the exposition is unchanged.
import type { Metric, Registry } from 'prom-client';

export const REQUESTS_METRIC = 'coffer_http_requests_total';
export const DURATION_METRIC = 'coffer_http_request_duration_seconds';
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

interface Requests {
  labels: { method: string; route: string; status: string };
  count: number;
}

interface Durations {
  labels: { method: string; route: string };
  /** Observations per bucket, not cumulative; the last one is above every bound (+Inf). */
  buckets: number[];
  sum: number;
  count: number;
}

type Value = { labels: Record<string, string | number>; value: number; metricName?: string };

/**
 * A collector as prom-client's Registry reads one (name, help, type, get(), reset()). Registered
 * with a cast: prom-client types registerMetric for its own classes, but the registry only
 * calls these members.
 */
function collector(name: string, help: string, type: 'counter' | 'histogram', values: () => Value[], reset: () => void): Metric {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    // `this.name`: the registry renames counters for OpenMetrics before it reads them.
    async get(this: { name: string }) {
      return { name: this.name, help, type, aggregator: 'sum', values: values() };
    },
    reset,
  } as unknown as Metric;
}

const byRegistry = new WeakMap<Registry, HttpMetrics>();

export class HttpMetrics {
  readonly #requests = new Map<string, Requests>();
  readonly #durations = new Map<string, Durations>();

  /** The registry's HTTP metrics (every app built on one Coffer shares its registry's series). */
  static of(registry: Registry): HttpMetrics {
    let m = byRegistry.get(registry);
    if (!m) byRegistry.set(registry, (m = new HttpMetrics(registry)));
    return m;
  }

  private constructor(registry: Registry) {
    registry.registerMetric(
      collector(
        REQUESTS_METRIC,
        'HTTP requests by route and status',
        'counter',
        () => [...this.#requests.values()].map((s) => ({ labels: { ...s.labels }, value: s.count })),
        () => this.#requests.clear(),
      ),
    );
    registry.registerMetric(
      collector(
        DURATION_METRIC,
        'HTTP request latency by route',
        'histogram',
        () => [...this.#durations.values()].flatMap((s) => durationValues(s)),
        () => this.#durations.clear(),
      ),
    );
  }

  /** One finished request: its method, route template (bounded cardinality), status and duration. */
  record(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${route}`;
    const rkey = `${key} ${status}`;
    let r = this.#requests.get(rkey);
    if (r === undefined) this.#requests.set(rkey, (r = { labels: { method, route, status: String(status) }, count: 0 }));
    r.count++;
    let d = this.#durations.get(key);
    if (d === undefined)
      this.#durations.set(
        key,
        (d = { labels: { method, route }, buckets: new Array(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 }),
      );
    // A bucket counts observations at or below its bound (Prometheus's `le`).
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    d.buckets[i]!++;
    d.sum += seconds;
    d.count++;
  }
}

/** A histogram series as Prometheus exposes it: cumulative buckets with `le`, then sum and count. */
function durationValues(s: Durations): Value[] {
  const out: Value[] = [];
  let acc = 0;
  for (let i = 0; i < DURATION_BUCKETS.length; i++) {
    acc += s.buckets[i]!;
    out.push({ labels: { le: DURATION_BUCKETS[i]!, ...s.labels }, value: acc, metricName: `${DURATION_METRIC}_bucket` });
  }
  out.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${DURATION_METRIC}_bucket` });
  out.push({ labels: { ...s.labels }, value: s.sum, metricName: `${DURATION_METRIC}_sum` });
  out.push({ labels: { ...s.labels }, value: s.count, metricName: `${DURATION_METRIC}_count` });
  return out;
}
