// Prometheus metrics of one Coffer instance: pool gauges, per-operation latency and errors,
// transaction retries. Each instance has its own registry so tests and several databases in
// one process never collide.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LabelledHistogram } from '../util/prom-series.js';
import type { PoolStats } from './engine.js';

export interface SlowOperation {
  op: string;
  kind: string;
  backend: string;
  ms: number;
  at: string;
}

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class StoreMetrics {
  readonly registry: Registry;
  /** Store-operation latency (op, kind, backend), recorded on every transaction: src/util/prom-series.ts. */
  readonly opDuration: LabelledHistogram;
  readonly opErrors: Counter<'op' | 'backend' | 'code'>;
  readonly txRetries: Counter<'op' | 'backend'>;
  readonly slowOps: Counter<'op' | 'backend'>;
  readonly #pools = new Map<string, () => PoolStats>();
  /** Store operations slower than this are kept in `recentSlow` and counted. */
  slowThresholdMs = 250;
  readonly #slow: SlowOperation[] = [];
  /** Operations completed per second over the last 10 minutes (for the dashboard's plot). */
  readonly #perSecond = new Map<number, { ok: number; failed: number; totalMs: number }>();
  #current: { ok: number; failed: number; totalMs: number } | undefined;
  #currentSecond = -1;

  constructor(registry: Registry = new Registry(), opts: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'coffer_process_' });
    this.opDuration = new LabelledHistogram(
      'coffer_store_operation_duration_seconds',
      'Duration of store operations (one transaction each, retries included)',
      ['op', 'kind', 'backend'],
      DURATION_BUCKETS,
    ).register(registry);
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
    this.slowOps = new Counter({
      name: 'coffer_store_slow_operations_total',
      help: 'Store operations slower than the slow-query threshold',
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

  /** Records one finished store operation (called by Coffer for every transaction). */
  recordOperation(op: string, kind: string, backend: string, ms: number, ok: boolean): void {
    this.opDuration.observe([op, kind, backend], ms / 1000);
    const second = Math.floor(Date.now() / 1000);
    let slot = this.#current;
    if (this.#currentSecond !== second || slot === undefined) {
      slot = this.#perSecond.get(second);
      if (!slot) {
        slot = { ok: 0, failed: 0, totalMs: 0 };
        this.#perSecond.set(second, slot);
      }
      this.#current = slot;
      this.#currentSecond = second;
    }
    if (ok) slot.ok++;
    else slot.failed++;
    slot.totalMs += ms;
    if (this.#perSecond.size > 660) {
      for (const k of this.#perSecond.keys()) if (k < second - 600) this.#perSecond.delete(k);
    }
    if (ms >= this.slowThresholdMs) {
      this.slowOps.inc({ op, backend });
      this.#slow.push({ op, kind, backend, ms: Math.round(ms * 10) / 10, at: new Date().toISOString() });
      if (this.#slow.length > 100) this.#slow.shift();
    }
  }

  /** The newest slow operations, newest first. */
  recentSlow(limit = 20): SlowOperation[] {
    return this.#slow.slice(-limit).reverse();
  }

  /** Per-second throughput and mean latency over the last `seconds`, oldest first. */
  throughput(seconds = 300): { t: number; ok: number; failed: number; meanMs: number }[] {
    const now = Math.floor(Date.now() / 1000);
    const out = [];
    for (let t = now - seconds + 1; t <= now; t++) {
      const s = this.#perSecond.get(t);
      out.push({ t, ok: s?.ok ?? 0, failed: s?.failed ?? 0, meanMs: s && s.ok + s.failed > 0 ? s.totalMs / (s.ok + s.failed) : 0 });
    }
    return out;
  }

  /** Registers a pool under a name (the backend, or a per-chain database). */
  addPool(name: string, stats: () => PoolStats): void {
    this.#pools.set(name, stats);
  }

  removePool(name: string): void {
    this.#pools.delete(name);
  }
}
