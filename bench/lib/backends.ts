// The backends a benchmark runs on, Coffer opened on a fresh database (random name, dropped at
// the end, through test/harness.ts) and a raw driver connection to the same database with the
// same session settings Coffer pins (src/db/engine.ts).
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Coffer } from '../../src/db/store.js';
import { DEFAULT_ENGINE_SETTINGS, inProcessConnection } from '../../src/db/engine.js';
import { parseDatabaseUrl } from '../../src/db/url.js';
import { createDatabase, type BackendName, type TestDatabase } from '../../test/harness.js';

export type { BackendName };
export const BACKENDS: readonly BackendName[] = ['memory', 'sqlite', 'postgres', 'mysql'];

const ENV: Record<'postgres' | 'mysql', string> = { postgres: 'COFFER_TEST_POSTGRES_URL', mysql: 'COFFER_TEST_MYSQL_URL' };

/** Why a backend cannot run here, or undefined. */
export function unavailable(b: BackendName): string | undefined {
  if (b === 'memory' || b === 'sqlite') return undefined;
  return process.env[ENV[b]] ? undefined : `${ENV[b]} not set`;
}

export type Raw =
  | { kind: 'sqlite'; db: Database.Database; close(): Promise<void> }
  | { kind: 'postgres'; pool: pg.Pool; close(): Promise<void> }
  | { kind: 'mysql'; pool: mysql.Pool; close(): Promise<void> };

export interface BenchDb {
  backend: BackendName;
  url: string;
  coffer: Coffer;
  /** Opens a raw connection (pool of `poolMax`) to the same database; memory://: Coffer's own connection. */
  openRaw(opts?: { poolMax?: number }): Promise<Raw>;
  /** Reopens Coffer with another pool size (closing the current one). */
  reopen(opts: { poolMax: number }): Promise<Coffer>;
  /** What autovacuum keeps doing on a database in service; run between measured phases (see `upkeep`). */
  upkeep(): Promise<void>;
  close(): Promise<void>;
}

const open: BenchDb[] = [];

/** Closes and drops every database still open (on exit or failure). */
export async function closeAll(): Promise<void> {
  for (const d of open.splice(0)) await d.close().catch(() => {});
}

/** Coffer on a fresh, migrated database of `backend`. */
export async function newBenchDb(backend: BackendName, opts: { poolMax?: number } = {}): Promise<BenchDb> {
  const db: TestDatabase = await createDatabase(backend);
  const settings = { poolMax: opts.poolMax ?? DEFAULT_ENGINE_SETTINGS.poolMax };
  let coffer = await Coffer.open({ url: db.url, settings });
  const raws: Raw[] = [];
  let closed = false;
  const bench: BenchDb = {
    backend,
    url: db.url,
    get coffer() {
      return coffer;
    },
    openRaw: async (o = {}) => {
      const r = await openRaw(backend, db.url, coffer, o.poolMax ?? settings.poolMax);
      raws.push(r);
      const close = r.close;
      r.close = async () => {
        const i = raws.indexOf(r);
        if (i >= 0) raws.splice(i, 1);
        await close();
      };
      return r;
    },
    reopen: async (o) => {
      if (backend === 'memory') return coffer; // one connection whatever the pool size
      await coffer.close();
      coffer = await Coffer.open({ url: db.url, settings: { poolMax: o.poolMax }, migrate: 'skip' });
      return coffer;
    },
    upkeep: () => upkeep(backend, db.url),
    close: async () => {
      if (closed) return;
      closed = true;
      const i = open.indexOf(bench);
      if (i >= 0) open.splice(i, 1);
      for (const r of raws.splice(0)) await r.close().catch(() => {});
      await coffer.close().catch(() => {});
      await db.drop();
    },
  };
  open.push(bench);
  return bench;
}

/**
 * PostgreSQL: VACUUM (ANALYZE) of the whole database. A workload that grows its tables from empty
 * (settlement, HTTP POST) otherwise runs on tables that were never analyzed nor vacuumed whenever
 * autovacuum is slower than the run or off (it is off on the CI machine: conf.d/90-ci.conf). The
 * planner then keeps the generic plans it cached while the tables were nearly empty (a hashed
 * subplan reading all of token_invoices per token block) and the indexes fill with dead
 * entries, so every statement slows as the run goes on (settlement: 6.9 to 13.9 ms over 4,000).
 * Both sides run on the same tables, so both get the same upkeep. MariaDB recalculates InnoDB
 * statistics itself (innodb_stats_auto_recalc) and purges in the background; SQLite's planner
 * needs no statistics for these key lookups.
 */
async function upkeep(backend: BackendName, url: string): Promise<void> {
  if (backend !== 'postgres') return;
  const t = parseDatabaseUrl(url);
  if (t.backend !== 'postgres') return;
  const c = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database });
  await c.connect();
  try {
    await c.query('VACUUM (ANALYZE)');
  } finally {
    await c.end();
  }
}

/**
 * Coffer's connection reads integers as BigInt (defaultSafeIntegers); the raw side reads them
 * as a raw connection does by default, as numbers. Every statement prepared through the view
 * gets safeIntegers(false); everything else is the connection itself.
 */
function asRawConnection(native: Database.Database): Database.Database {
  const prepare = (text: string) => native.prepare(text).safeIntegers(false);
  return new Proxy(native, {
    get(target, key) {
      if (key === 'prepare') return prepare;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

function sqlitePragmas(d: Database.Database): void {
  d.pragma(`busy_timeout = ${DEFAULT_ENGINE_SETTINGS.busyTimeoutMs}`);
  d.pragma('foreign_keys = ON');
  d.pragma(`synchronous = ${DEFAULT_ENGINE_SETTINGS.sqliteSynchronous}`);
}

/** The SQLite connection a careful engineer would open: WAL, synchronous=NORMAL (as Coffer), foreign keys on. */
async function openRaw(backend: BackendName, url: string, coffer: Coffer, poolMax: number): Promise<Raw> {
  if (backend === 'memory') {
    // Coffer's own connection: the only way into an in-process database, and the same pages.
    // (Until 2026-12-04 the raw side read a copy taken by VACUUM INTO and deserialized. With the
    // same raw code, that copy answered point reads 13–23 % faster than Coffer's own database at
    // 1M rows: packed pages in one buffer against pages grown in place. Every memory:// ratio
    // was low by that much for the storage alone.)
    const native = inProcessConnection(coffer.engine);
    if (!native) throw new Error('memory:// engine has no in-process connection');
    return { kind: 'sqlite', db: asRawConnection(native), close: async () => {} };
  }
  const t = parseDatabaseUrl(url);
  if (t.backend === 'sqlite') {
    const d = new Database(t.path);
    d.pragma('journal_mode = WAL');
    sqlitePragmas(d);
    return { kind: 'sqlite', db: d, close: async () => void d.close() };
  }
  if (t.backend === 'postgres') {
    const s = DEFAULT_ENGINE_SETTINGS;
    const pool = new pg.Pool({
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password,
      database: t.database,
      max: poolMax,
      application_name: 'coffer-bench-raw',
      options: `-c TimeZone=UTC -c statement_timeout=${s.statementTimeoutMs} -c lock_timeout=${s.lockTimeoutMs}`,
    });
    // An idle connection dropped by the server must not crash the run (as in src/db/engine.ts).
    pool.on('error', () => {});
    return { kind: 'postgres', pool, close: () => pool.end() };
  }
  const pool = mysql.createPool({
    host: t.host,
    port: t.port,
    user: t.user,
    password: t.password,
    database: t.database,
    connectionLimit: poolMax,
    supportBigNumbers: true,
    bigNumberStrings: true,
    timezone: 'Z',
    charset: 'UTF8MB4_BIN',
  });
  // Same session as Coffer's connections: READ COMMITTED, strict mode, UTC.
  pool.on('connection', (c) => {
    const cb = c as unknown as { query(sql: string): void };
    cb.query(
      "SET SESSION time_zone = '+00:00', SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
    );
    cb.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
  });
  return { kind: 'mysql', pool, close: () => pool.end() };
}

/** Server and driver versions for the report. */
export async function versions(b: BenchDb): Promise<Record<string, string>> {
  const out: Record<string, string> = { server: await b.coffer.engine.serverVersion() };
  return out;
}
