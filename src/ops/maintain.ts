// `coffer maintain`: the routine upkeep each backend needs, every step reported.
//
//   PostgreSQL    VACUUM (ANALYZE) per table (VACUUM FULL with --full), REINDEX TABLE CONCURRENTLY
//   MySQL/MariaDB ANALYZE TABLE, OPTIMIZE TABLE (InnoDB: an online rebuild)
//   SQLite        PRAGMA optimize, VACUUM, PRAGMA wal_checkpoint(TRUNCATE)
//
// A failed step (a lock it could not get in time, a busy SQLite file) is reported and the rest
// go on; the command exits non-zero if any step failed.
import { sql, type Kysely } from 'kysely';
import { toBigInt } from '../db/codec.js';
import { mapDriverError } from '../db/driver-errors.js';
import type { Coffer } from '../db/store.js';
import { quote } from '../schema/compile.js';
import { listTables, opsDb, type OpsDb } from './db.js';
import { InterruptedError } from './errors.js';
import { MARKER_TABLE } from './marker.js';

export interface MaintainStep {
  step: string;
  /** The table, or "database". */
  target: string;
  ok: boolean;
  ms: number;
  detail?: string;
}

export interface MaintainOptions {
  /** PostgreSQL: VACUUM FULL (rewrites tables, takes an exclusive lock per table). */
  full?: boolean;
  /** PostgreSQL: rebuild indexes (default true). */
  reindex?: boolean;
  signal?: AbortSignal;
  onStep?: (s: MaintainStep) => void;
}

export interface MaintainReport {
  backend: string;
  database: string;
  steps: MaintainStep[];
  bytesBefore: number | null;
  bytesAfter: number | null;
  ok: boolean;
}

async function databaseBytes(db: Kysely<any>, d: OpsDb['dialect']): Promise<number | null> {
  if (d === 'postgres')
    return Number(toBigInt((await sql<{ b: unknown }>`select pg_database_size(current_database()) as b`.execute(db)).rows[0]?.b));
  if (d === 'mysql') {
    const r = await sql<{
      b: unknown;
    }>`select sum(data_length + index_length + data_free) as b from information_schema.tables where table_schema = database()`.execute(db);
    return Number(toBigInt(r.rows[0]?.b));
  }
  const p = (await sql<{ page_count: unknown }>`pragma page_count`.execute(db)).rows[0]?.page_count;
  const s = (await sql<{ page_size: unknown }>`pragma page_size`.execute(db)).rows[0]?.page_size;
  return Number(toBigInt(p)) * Number(toBigInt(s));
}

type Runner = (step: string, target: string, fn: () => Promise<string | undefined>) => Promise<void>;

async function maintainPostgres(conn: Kysely<any>, tables: string[], opts: MaintainOptions, run: Runner): Promise<void> {
  // Maintenance may legitimately run longer than the service's statement limit.
  await sql`set statement_timeout = 0`.execute(conn);
  try {
    for (const t of tables) {
      const q = quote('postgres', t);
      await run(opts.full ? 'VACUUM (FULL, ANALYZE)' : 'VACUUM (ANALYZE)', t, async () => {
        await sql.raw(`VACUUM (${opts.full ? 'FULL, ' : ''}ANALYZE) ${q}`).execute(conn);
        return undefined;
      });
      if (opts.reindex !== false) {
        await run('REINDEX TABLE CONCURRENTLY', t, async () => {
          await sql.raw(`REINDEX TABLE CONCURRENTLY ${q}`).execute(conn);
          return undefined;
        });
      }
    }
  } finally {
    await sql`reset statement_timeout`.execute(conn).catch(() => {});
  }
}

async function maintainMysql(conn: Kysely<any>, tables: string[], mariadb: boolean, run: Runner): Promise<void> {
  const limit = mariadb ? 'max_statement_time' : 'max_execution_time';
  const before = (await sql<{ v: unknown }>`select ${sql.raw(`@@session.${limit}`)} as v`.execute(conn)).rows[0]?.v;
  await sql.raw(`SET SESSION ${limit} = 0`).execute(conn);
  // ANALYZE / OPTIMIZE report problems as result rows, not as errors.
  const check = (rows: Record<string, unknown>[]) => {
    const bad = rows.filter((r) => /error/i.test(String(r.Msg_type ?? r.msg_type ?? '')));
    if (bad.length) throw new Error(bad.map((r) => String(r.Msg_text ?? r.msg_text)).join('; '));
    const notes = rows
      .filter((r) => !/^status$/i.test(String(r.Msg_type ?? r.msg_type ?? '')))
      .map((r) => String(r.Msg_text ?? r.msg_text));
    return notes.length ? notes.join('; ') : undefined;
  };
  try {
    for (const t of tables) {
      const q = quote('mysql', t);
      await run('ANALYZE TABLE', t, async () =>
        check((await sql.raw(`ANALYZE TABLE ${q}`).execute(conn)).rows as Record<string, unknown>[]),
      );
      await run('OPTIMIZE TABLE', t, async () =>
        check((await sql.raw(`OPTIMIZE TABLE ${q}`).execute(conn)).rows as Record<string, unknown>[]),
      );
    }
  } finally {
    await sql
      .raw(`SET SESSION ${limit} = ${Number(before ?? 0)}`)
      .execute(conn)
      .catch(() => {});
  }
}

async function maintainSqlite(db: Kysely<any>, memory: boolean, run: Runner): Promise<void> {
  await run('PRAGMA optimize', 'database', async () => {
    await sql`pragma optimize`.execute(db);
    return undefined;
  });
  await run('VACUUM', 'database', async () => {
    await sql.raw('VACUUM').execute(db);
    return undefined;
  });
  if (memory) return;
  await run('PRAGMA wal_checkpoint(TRUNCATE)', 'database', async () => {
    const r = (await sql<{ busy: unknown; log: unknown; checkpointed: unknown }>`pragma wal_checkpoint(TRUNCATE)`.execute(db)).rows[0];
    if (r && Number(toBigInt(r.busy)) !== 0) {
      throw new Error(
        `a reader kept the WAL busy: ${toBigInt(r.checkpointed)} of ${toBigInt(r.log)} frames checkpointed (run again when the service is quiet)`,
      );
    }
    return undefined;
  });
}

export async function maintainDatabase(coffer: Coffer, opts: MaintainOptions = {}): Promise<MaintainReport> {
  const db = opsDb(coffer);
  const live = await listTables(db.reader, db.dialect);
  const tables = [...coffer.schema.tables.keys(), MARKER_TABLE].filter((t) => live.has(t));
  const steps: MaintainStep[] = [];
  const run: Runner = async (step, target, fn) => {
    if (opts.signal?.aborted)
      throw new InterruptedError(
        `maintenance stopped after ${steps.length} step(s); every completed step stands, nothing is left half-done`,
      );
    const started = performance.now();
    let s: MaintainStep;
    try {
      const detail = await fn();
      s = { step, target, ok: true, ms: Math.round(performance.now() - started), ...(detail ? { detail } : {}) };
    } catch (e) {
      const mapped = mapDriverError(db.backend, e) as Error;
      s = { step, target, ok: false, ms: Math.round(performance.now() - started), detail: mapped.message };
    }
    steps.push(s);
    opts.onStep?.(s);
  };
  const bytesBefore = await databaseBytes(db.reader, db.dialect).catch(() => null);
  await db.writer.connection().execute(async (conn) => {
    if (db.dialect === 'postgres') await maintainPostgres(conn, tables, opts, run);
    else if (db.dialect === 'mysql') await maintainMysql(conn, tables, db.mariadb, run);
  });
  if (db.dialect === 'sqlite') await maintainSqlite(db.writer, coffer.target.backend === 'sqlite' && coffer.target.memory, run);
  const bytesAfter = await databaseBytes(db.reader, db.dialect).catch(() => null);
  return { backend: db.label, database: db.describe, steps, bytesBefore, bytesAfter, ok: steps.every((s) => s.ok) };
}
