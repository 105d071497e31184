// The metrics recorded per request and per transaction keep their own series
// (src/util/prom-series.ts) instead of calling prom-client each time; /metrics must read exactly
// as prom-client's Counter and Histogram would have written the same calls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Counter, Histogram, Registry } from 'prom-client';
import { StoreMetrics } from '../src/db/metrics.js';
import { DURATION_BUCKETS, DURATION_METRIC, HttpMetrics, REQUESTS_METRIC } from '../src/server/http-metrics.js';

type Request = { method: string; route: string; status: number; seconds: number };

/** The exposition prom-client's own metrics give for the same requests. */
async function viaPromClient(requests: readonly Request[]): Promise<string> {
  const registry = new Registry();
  const counter = new Counter({
    name: REQUESTS_METRIC,
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const histogram = new Histogram({
    name: DURATION_METRIC,
    help: 'HTTP request latency by route',
    labelNames: ['method', 'route'],
    buckets: [...DURATION_BUCKETS],
    registers: [registry],
  });
  for (const r of requests) {
    counter.inc({ method: r.method, route: r.route, status: String(r.status) });
    histogram.observe({ method: r.method, route: r.route }, r.seconds);
  }
  return registry.metrics();
}

async function viaHttpMetrics(requests: readonly Request[]): Promise<string> {
  const registry = new Registry();
  const m = HttpMetrics.of(registry);
  for (const r of requests) m.record(r.method, r.route, r.status, r.seconds);
  return registry.metrics();
}

test('the exposition is the one prom-client writes for the same requests, bucket bounds included', async () => {
  const requests: Request[] = [
    { method: 'GET', route: '/v1/a/:id', status: 200, seconds: 0.001 }, // on a bound: counted in it (le)
    { method: 'GET', route: '/v1/a/:id', status: 200, seconds: 0.0010001 },
    { method: 'GET', route: '/v1/a/:id', status: 404, seconds: 0 },
    { method: 'POST', route: '/v1/b', status: 201, seconds: 5 },
    { method: 'POST', route: '/v1/b', status: 201, seconds: 7.5 }, // above every bound: +Inf only
    { method: 'GET', route: 'unmatched', status: 404, seconds: 0.3 },
  ];
  const text = await viaHttpMetrics(requests);
  assert.equal(text, await viaPromClient(requests));
  assert.match(text, /coffer_http_requests_total\{method="GET",route="\/v1\/a\/:id",status="200"\} 2/);
  assert.match(text, /coffer_http_request_duration_seconds_bucket\{le="0\.001",method="GET",route="\/v1\/a\/:id"\} 2/);
  assert.match(text, /coffer_http_request_duration_seconds_bucket\{le="5",method="POST",route="\/v1\/b"\} 1/);
  assert.match(text, /coffer_http_request_duration_seconds_bucket\{le="\+Inf",method="POST",route="\/v1\/b"\} 2/);
});

test('any sequence of requests reads the same as through prom-client (property)', async () => {
  const req = fc.record({
    method: fc.constantFrom('GET', 'POST', 'DELETE'),
    route: fc.constantFrom('/v1/x', '/v1/x/:id', 'unmatched'),
    status: fc.constantFrom(200, 201, 400, 404, 500),
    seconds: fc.oneof(fc.constantFrom(...DURATION_BUCKETS, 0), fc.double({ min: 0, max: 20, noNaN: true })),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(req, { maxLength: 60 }), async (requests) => {
      assert.equal(await viaHttpMetrics(requests), await viaPromClient(requests));
    }),
    { numRuns: 200 },
  );
});

test('every app on one registry shares its series, and a registry reset empties them', async () => {
  const registry = new Registry();
  HttpMetrics.of(registry).record('GET', '/v1/x', 200, 0.002);
  assert.equal(HttpMetrics.of(registry), HttpMetrics.of(registry));
  HttpMetrics.of(registry).record('GET', '/v1/x', 200, 0.002);
  assert.match(await registry.metrics(), /coffer_http_requests_total\{method="GET",route="\/v1\/x",status="200"\} 2/);
  registry.resetMetrics();
  assert.doesNotMatch(await registry.metrics(), /route="\/v1\/x"/);
  const json = await registry.getMetricsAsJSON();
  assert.deepEqual(
    json.map((m) => [m.name, m.type]),
    [
      [REQUESTS_METRIC, 'counter'],
      [DURATION_METRIC, 'histogram'],
    ],
  );
});

test('the store-operation histogram reads as prom-client writes it (property)', async () => {
  const call = fc.record({
    op: fc.constantFrom('chain.transaction', 'tokens.settle', 'a"quoted\\op'),
    kind: fc.constantFrom('read', 'write'),
    backend: fc.constantFrom('sqlite', 'postgres'),
    ms: fc.oneof(fc.constantFrom(0.5, 1, 10_000, 0), fc.double({ min: 0, max: 20_000, noNaN: true })),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(call, { maxLength: 60 }), async (calls) => {
      const ours = new StoreMetrics(new Registry());
      const registry = new Registry();
      const theirs = new Histogram({
        name: 'coffer_store_operation_duration_seconds',
        help: 'Duration of store operations (one transaction each, retries included)',
        labelNames: ['op', 'kind', 'backend'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [registry],
      });
      for (const c of calls) {
        ours.opDuration.observe([c.op, c.kind, c.backend], c.ms / 1000);
        theirs.observe({ op: c.op, kind: c.kind, backend: c.backend }, c.ms / 1000);
      }
      assert.equal(
        await ours.registry.getSingleMetricAsString('coffer_store_operation_duration_seconds'),
        await registry.metrics().then((t) => t.trimEnd()),
      );
    }),
    { numRuns: 100 },
  );
});
