// What the dashboard shows, gathered in one call: chain sync (from every database), throughput,
// pool, migrations, table sizes, slow operations (Coffer's own timing on every backend, plus
// pg_stat_statements where installed), waiting locks, and the audit log's newest entries and
// verified head (only for callers holding audit:read, the scope /v1/audit/entries itself needs).
import type { FastifyBaseLogger } from 'fastify';
import { sql } from 'kysely';
import { z } from 'zod';
import type { Coffer } from '../../db/store.js';
import { redactUrl } from '../../db/url.js';
import { hasScope } from '../../domains/identity/scopes.js';
import { collectStats } from '../../ops/sizes.js';
import { fromEach, Unavailable, type UnavailableDatabase } from '../databases.js';
import { route, type RouteSpec } from '../route.js';
import type { Services } from '../services.js';

export interface ChainPanel {
  chainId: string;
  height: string | null;
  latestKnownHeight: string | null;
  lag: string | null;
  finalizedHeight: string | null;
  updatedAt: string | null;
}

export interface AuditPanel {
  ok: boolean;
  length: string;
  head: string;
  firstBad?: string;
  recent: { seq: string; at: string; actor: string; action: string; entity: string }[];
}

export interface TablePanel {
  name: string;
  rows: string | null;
  bytes: string | null;
}

/** Domain-provided parts of the dashboard; absent ones show as empty. */
export interface DashboardSources {
  /** The chains registered in one database; called for each database the chain router holds. */
  chains?: (coffer: Coffer) => Promise<ChainPanel[]>;
  audit?: (coffer: Coffer) => Promise<AuditPanel | null>;
  tables?: (coffer: Coffer) => Promise<TablePanel[]>;
}

export interface LockWait {
  waiting: string;
  blockedBy: string;
  seconds: number;
}

/** Lock waits right now (PostgreSQL and MySQL/MariaDB; SQLite has a single writer and none). */
export async function waitingLocks(coffer: Coffer): Promise<LockWait[]> {
  const db = coffer.engine.writer;
  if (coffer.dialect === 'postgres') {
    const r = await sql<{ waiting: string; blocked_by: string; seconds: number }>`
      select left(w.query, 120) as waiting, coalesce(left(b.query, 120), '?') as blocked_by,
             extract(epoch from now() - w.query_start)::float8 as seconds
      from pg_stat_activity w
      left join lateral unnest(pg_blocking_pids(w.pid)) bp(pid) on true
      left join pg_stat_activity b on b.pid = bp.pid
      where w.wait_event_type = 'Lock' and w.datname = current_database()`.execute(db);
    return r.rows.map((x) => ({ waiting: x.waiting, blockedBy: x.blocked_by, seconds: Math.round(Number(x.seconds)) }));
  }
  if (coffer.dialect === 'mysql') {
    try {
      // MariaDB and MySQL 5.7 expose lock waits here; MySQL 8 moved them to performance_schema.
      const q = coffer.engine.mariadb
        ? sql<{ waiting: string | null; blocked_by: string | null; seconds: number }>`
          select left(r.trx_query, 120) as waiting, left(b.trx_query, 120) as blocked_by,
                 timestampdiff(second, r.trx_wait_started, now()) as seconds
          from information_schema.innodb_lock_waits w
          join information_schema.innodb_trx b on b.trx_id = w.blocking_trx_id
          join information_schema.innodb_trx r on r.trx_id = w.requesting_trx_id`
        : sql<{ waiting: string | null; blocked_by: string | null; seconds: number }>`
          select left(r.trx_query, 120) as waiting, left(b.trx_query, 120) as blocked_by,
                 timestampdiff(second, r.trx_wait_started, now()) as seconds
          from performance_schema.data_lock_waits w
          join information_schema.innodb_trx b on b.trx_id = w.blocking_engine_transaction_id
          join information_schema.innodb_trx r on r.trx_id = w.requesting_engine_transaction_id`;
      const r = await q.execute(db);
      return r.rows.map((x) => ({
        waiting: x.waiting ?? '?',
        blockedBy: x.blocked_by ?? '(idle in transaction)',
        seconds: Number(x.seconds),
      }));
    } catch {
      return [];
    }
  }
  return [];
}

/** Slowest statements from pg_stat_statements, when the extension is installed. */
export async function topStatements(coffer: Coffer): Promise<{ query: string; calls: string; meanMs: number }[]> {
  if (coffer.dialect !== 'postgres') return [];
  try {
    const ext = await sql<{ n: string }>`select count(*) as n from pg_extension where extname = 'pg_stat_statements'`.execute(
      coffer.engine.writer,
    );
    if (Number(ext.rows[0]?.n ?? 0) === 0) return [];
    const r = await sql<{ query: string; calls: string; mean: number }>`
      select left(query, 120) as query, calls::text as calls, mean_exec_time as mean
      from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())
      order by mean_exec_time desc limit 10`.execute(coffer.engine.writer);
    return r.rows.map((x) => ({ query: x.query, calls: x.calls, meanMs: Math.round(Number(x.mean) * 100) / 100 }));
  } catch {
    return [];
  }
}

/** Rows and bytes per table, largest first (the same figures as `coffer stats`). */
async function defaultTables(coffer: Coffer): Promise<TablePanel[]> {
  const stats = await collectStats(coffer, { estimate: coffer.dialect !== 'sqlite' });
  return stats.tables.map((t) => ({
    name: t.table,
    rows: `${t.rowsEstimated ? '~' : ''}${t.rows}`,
    bytes: t.totalBytes === null ? null : String(t.totalBytes),
  }));
}

/**
 * Every chain's panel, from every database (the default and each per-chain one), as GET
 * /v1/chains lists them: a chain is shown from the database it is routed to only. A database
 * that does not answer is named in `unavailable` (its chains are missing); the others are shown.
 */
async function allChainPanels(
  services: Services,
  source: NonNullable<DashboardSources['chains']>,
  log: FastifyBaseLogger,
): Promise<{ chains: ChainPanel[]; unavailable: UnavailableDatabase[] }> {
  const unavailable = new Unavailable(log);
  const perDatabase = await fromEach(
    services.chains.databases(),
    async (db) => (await source(db.coffer)).filter((p) => services.chains.for(p.chainId) === db.coffer),
    unavailable,
    'dashboard.chains',
  );
  return { chains: perDatabase.flatMap((panels) => panels ?? []), unavailable: unavailable.list };
}

/**
 * The dashboard document. `auditPermitted` false leaves the audit panel out (audit null) without
 * reading or verifying the log: the panel shows entries, so it needs what /v1/audit/entries needs.
 */
export async function dashboardData(
  services: Services,
  sources: DashboardSources,
  opts: { auditPermitted: boolean; log: FastifyBaseLogger },
) {
  const { coffer } = services;
  const { auditPermitted } = opts;
  const [migrations, tables, locks, statements, { chains, unavailable }, audit, server] = await Promise.all([
    coffer.migrator.status(),
    (sources.tables ?? defaultTables)(coffer),
    waitingLocks(coffer),
    topStatements(coffer),
    sources.chains ? allChainPanels(services, sources.chains, opts.log) : Promise.resolve({ chains: [], unavailable: [] }),
    sources.audit && auditPermitted ? sources.audit(coffer) : Promise.resolve(null),
    coffer.engine.serverVersion(),
  ]);
  return {
    generatedAt: new Date().toISOString(),
    database: { backend: coffer.engine.label, server, url: redactUrl(coffer.target.url), pool: coffer.engine.poolStats() },
    chains,
    /** Databases whose chains are missing from `chains` because they did not answer (fixed reasons). */
    unavailable,
    throughput: coffer.metrics.throughput(300),
    migrations: migrations.map((m) => ({ id: m.id, state: m.state, appliedAt: m.appliedAt?.toISOString() ?? null })),
    tables,
    slowQueries: coffer.metrics.recentSlow(20),
    statements,
    locks,
    audit,
    auditPermitted,
  };
}

export function dashboardRoutes(sources: DashboardSources = {}): RouteSpec[] {
  return [
    route({
      method: 'GET',
      url: '/v1/dashboard',
      summary:
        'Everything the operator dashboard shows, in one document; the audit panel only for keys with audit:read (otherwise audit is null and auditPermitted false); a chain database that does not answer is named in unavailable and its chains are missing',
      tag: 'service',
      auth: { domain: 'core', level: 'read' },
      response: z.object({}).passthrough(),
      handler: ({ services, principal, log }) =>
        dashboardData(services, sources, { auditPermitted: hasScope(principal?.scopes ?? [], 'audit', 'read'), log }),
    }),
  ];
}
