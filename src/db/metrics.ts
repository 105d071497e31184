// Prometheus metrics of one Coffer instance: pool gauges, per-operation latency and errors,
// transaction retries. Each instance has its own registry so tests and several databases in
// one process never collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PoolStats } from './engine.js';

export class StoreMetrics {
  readonly registry: Registry;
  readonly opDuration: Histogram<'op' | 'kind' | 'backend'>;
  readonly opErrors: Counter<'op' | 'backend' | 'code'>;
  readonly txRetries: Counter<'op' | 'backend'>;
  readonly #pools = new Map<string, () => PoolStats>();

  constructor(registry: Registry = new Registry(), opts: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'coffer_process_' });
    this.opDuration = new Histogram({
      name: 'coffer_store_operation_duration_seconds',
      help: 'Duration of store operations (one transaction each, retries included)',
      labelNames: ['op', 'kind', 'backend'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.opErrors = new Counter({
      name: 'coffer_store_operation_errors_total',
      help: 'Store operations that failed, by typed error code',
      labelNames: ['op', 'backend', 'code'],
      registers: [registry],
    });
    this.txRetries = new Counter({
      name: 'coffer_transaction_retries_total',
      help: 'Transactions retried after a serialization failure, deadlock or busy database',
      labelNames: ['op', 'backend'],
      registers: [registry],
    });
    const pools = this.#pools;
    const gauge = (name: string, help: string, pick: (s: PoolStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['database'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [db, stats] of pools) this.set({ database: db }, pick(stats()));
        },
      });
    gauge('coffer_pool_connections_total', 'Connections open in the pool', (s) => s.total);
    gauge('coffer_pool_connections_idle', 'Idle connections in the pool', (s) => s.idle);
    gauge('coffer_pool_waiting_requests', 'Requests waiting for a connection', (s) => s.waiting);
    gauge('coffer_pool_connections_created', 'Connections created since start', (s) => s.created);
    gauge('coffer_pool_connections_closed', 'Connections closed since start', (s) => s.closed);
  }

  /** Registers a pool under a name (the backend, or a per-chain database). */
  addPool(name: string, stats: () => PoolStats): void {
    this.#pools.set(name, stats);
  }

  removePool(name: string): void {
    this.#pools.delete(name);
  }
}
