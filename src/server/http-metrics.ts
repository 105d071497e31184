// The HTTP service's request metrics: coffer_http_requests_total{method,route,status} and
// coffer_http_request_duration_seconds{method,route}, kept as plain numbers per series
// (src/util/prom-series.ts): recording them through prom-client's own Counter and Histogram
// cost about a tenth of a GET's throughput on memory:// (docs/benchmarks.md).
import type { Registry } from 'prom-client';
import { LabelledCounter, LabelledHistogram } from '../util/prom-series.js';

export const REQUESTS_METRIC = 'coffer_http_requests_total';
export const DURATION_METRIC = 'coffer_http_request_duration_seconds';
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const byRegistry = new WeakMap<Registry, HttpMetrics>();

export class HttpMetrics {
  readonly #requests: LabelledCounter;
  readonly #durations: LabelledHistogram;

  /** The registry's HTTP metrics (every app built on one Coffer shares its registry's series). */
  static of(registry: Registry): HttpMetrics {
    let m = byRegistry.get(registry);
    if (!m) byRegistry.set(registry, (m = new HttpMetrics(registry)));
    return m;
  }

  private constructor(registry: Registry) {
    this.#requests = new LabelledCounter(REQUESTS_METRIC, 'HTTP requests by route and status', ['method', 'route', 'status']).register(
      registry,
    );
    this.#durations = new LabelledHistogram(
      DURATION_METRIC,
      'HTTP request latency by route',
      ['method', 'route'],
      DURATION_BUCKETS,
    ).register(registry);
  }

  /** One finished request: its method, route template (bounded cardinality), status and duration. */
  record(method: string, route: string, status: number, seconds: number): void {
    this.#requests.inc([method, route, String(status)]);
    this.#durations.observe([method, route], seconds);
  }
}
