// Database plumbing shared by the operator commands, generic over the logical schema: which
// tables exist and in what dependency order, a consistent read snapshot, keyset-paginated
// reads in primary-key order, lookups by key, batched inserts, and the few statements that are
// inherently per backend (listing tables, snapshot start, auto-increment positions).
import Database from 'better-sqlite3';
import { Kysely, sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely';
import { insertEncoded } from '../db/bulk.js';
import { keysetAfter } from '../db/keyset.js';
import { decodeValue, encodeValue, toBigInt } from '../db/codec.js';
import { ConfigError, MigrationError } from '../db/errors.js';
import { mapDriverError } from '../db/driver-errors.js';
import { CofferSqliteDialect, SqliteHandle } from '../db/sqlite-driver.js';
import type { Coffer } from '../db/store.js';
import { redactUrl, type DbTarget } from '../db/url.js';
import { HISTORY_TABLE } from '../migrations/history.js';
import { migrationChecksum, type Migration } from '../migrations/migration.js';
import { logicalSchema } from '../migrations/runner.js';
import { quote } from '../schema/compile.js';
import type { ColumnDef, Dialect, Schema, TableDef } from '../schema/model.js';
import { keyColumns, type Row } from './rows.js';

/** A database an operator command reads or writes (a Coffer, or a raw SQLite backup file). */
export interface OpsDb {
  /** memory, sqlite, postgres or mysql. */
  readonly label: string;
  readonly dialect: Dialect;
  readonly mariadb: boolean;
  readonly reader: Kysely<any>;
  readonly writer: Kysely<any>;
  /** Redacted URL or path, for messages. */
  readonly describe: string;
  readonly backend: 'sqlite' | 'postgres' | 'mysql';
}

/** A database as messages name it (a redacted URL or the SQLite path), opened or not. */
export function describeTarget(t: DbTarget): string {
  return t.backend === 'sqlite' ? (t.memory ? 'memory://' : `sqlite:${t.path}`) : redactUrl(t.url);
}

export function describeCoffer(coffer: Coffer): string {
  return describeTarget(coffer.target);
}

export function opsDb(coffer: Coffer): OpsDb {
  return {
    label: coffer.engine.label,
    dialect: coffer.engine.dialect,
    mariadb: coffer.engine.mariadb,
    reader: coffer.engine.reader,
    writer: coffer.engine.writer,
    describe: describeCoffer(coffer),
    backend: coffer.engine.backend,
  };
}

/** Opens a SQLite file read-only (a backup file), as an OpsDb; close() when done. */
export function openSqliteFileReadOnly(path: string): OpsDb & { close(): void } {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    db.defaultSafeIntegers(true);
    db.prepare('select count(*) from sqlite_schema').get();
  } catch (e) {
    throw new ConfigError(`cannot open SQLite file ${path}: ${(e as Error).message}`, { path });
  }
  const handle = new SqliteHandle(db, false);
  const k = new Kysely<any>({ dialect: new CofferSqliteDialect(handle) });
  return {
    label: 'sqlite',
    dialect: 'sqlite',
    mariadb: false,
    reader: k,
    writer: k,
    describe: `sqlite:${path}`,
    backend: 'sqlite',
    close: () => {
      void k.destroy();
      handle.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Schema

/** Tables ordered so every table comes after the tables its foreign keys reference. */
export function dependencyOrder(tables: readonly TableDef[]): TableDef[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const done = new Set<string>();
  const out: TableDef[] = [];
  let remaining = [...tables];
  while (remaining.length) {
    const ready = remaining.filter((t) =>
      t.foreignKeys.every((fk) => fk.refTable === t.name || done.has(fk.refTable) || !byName.has(fk.refTable)),
    );
    // A cycle between tables cannot be ordered; keep declaration order for what is left.
    const next = ready.length ? ready : [remaining[0]!];
    for (const t of next) {
      out.push(t);
      done.add(t.name);
    }
    remaining = remaining.filter((t) => !done.has(t.name));
  }
  return out;
}

export interface AppliedMigration {
  domain: string;
  version: number;
  name: string;
  checksum: string;
}

export interface LiveSchema {
  /** The logical schema of the migrations applied to this database. */
  schema: Schema;
  /** Applied migrations, in the code's order. */
  applied: AppliedMigration[];
  /** Ids of migrations the code has and the database has not applied. */
  pending: string[];
}

/** Data tables of a schema (every table but the migration history), in dependency order. */
export function dataTables(schema: Schema): TableDef[] {
  return dependencyOrder([...schema.tables.values()].filter((t) => t.name !== HISTORY_TABLE));
}

/**
 * The schema a database really has, derived from its migration history: refuses a history the
 * code cannot interpret (an edited, unknown or half-applied migration).
 */
export async function liveSchema(coffer: Coffer): Promise<LiveSchema> {
  const states = await coffer.migrator.status();
  const bad = states.filter((s) => s.state === 'edited' || s.state === 'unknown' || s.state === 'running');
  if (bad.length) {
    throw new MigrationError(
      `${describeCoffer(coffer)}: migration history does not match this build of Coffer (${bad.map((b) => `${b.id} is ${b.state}`).join(', ')}); run \`coffer migrate status\` for details`,
    );
  }
  const appliedIds = new Set(states.filter((s) => s.state === 'applied').map((s) => s.id));
  return schemaOfApplied(coffer.migrator.migrations, (m) => appliedIds.has(`${m.domain}/${String(m.version).padStart(4, '0')}_${m.name}`));
}

/** The logical schema and history of the code migrations a predicate accepts. */
export function schemaOfApplied(migrations: readonly Migration[], isApplied: (m: Migration) => boolean): LiveSchema {
  const applied = migrations.filter(isApplied);
  return {
    schema: logicalSchema(applied),
    applied: applied.map((m) => ({ domain: m.domain, version: m.version, name: m.name, checksum: migrationChecksum(m) })),
    pending: migrations.filter((m) => !isApplied(m)).map((m) => `${m.domain}/${String(m.version).padStart(4, '0')}_${m.name}`),
  };
}

/** Reads a migration history table directly (for a backup file, which has no Migrator). */
export async function readHistory(db: Kysely<any>): Promise<AppliedMigration[]> {
  const rows = await db.selectFrom(HISTORY_TABLE).select(['domain', 'version', 'name', 'checksum', 'state']).execute();
  return rows
    .filter((r) => r.state === 'applied')
    .map((r) => ({ domain: String(r.domain), version: Number(r.version), name: String(r.name), checksum: String(r.checksum) }));
}

/**
 * Matches a recorded history against the code's migrations: returns the live schema, or throws
 * naming the migration this build does not know (or knows differently).
 */
export function schemaOfHistory(migrations: readonly Migration[], history: readonly AppliedMigration[], where: string): LiveSchema {
  const code = new Map(migrations.map((m) => [`${m.domain}/${m.version}`, m]));
  for (const h of history) {
    const m = code.get(`${h.domain}/${h.version}`);
    if (!m) {
      throw new MigrationError(
        `${where} has migration ${h.domain}/${String(h.version).padStart(4, '0')}_${h.name}, which this build of Coffer does not know: upgrade Coffer first`,
      );
    }
    if (migrationChecksum(m) !== h.checksum) {
      throw new MigrationError(
        `${where} has migration ${h.domain}/${String(h.version).padStart(4, '0')}_${h.name} with a different checksum than this build's ${m.file}`,
      );
    }
  }
  const have = new Set(history.map((h) => `${h.domain}/${h.version}`));
  return schemaOfApplied(migrations, (m) => have.has(`${m.domain}/${m.version}`));
}

/** Two histories as comparable sets; the differences, described. */
export function historyDifferences(a: readonly AppliedMigration[], b: readonly AppliedMigration[], aName: string, bName: string): string[] {
  const key = (m: AppliedMigration) => `${m.domain}/${String(m.version).padStart(4, '0')}_${m.name}`;
  const am = new Map(a.map((m) => [key(m), m.checksum]));
  const bm = new Map(b.map((m) => [key(m), m.checksum]));
  const out: string[] = [];
  for (const [k, c] of am) {
    if (!bm.has(k)) out.push(`${k} is applied on ${aName} but not on ${bName}`);
    else if (bm.get(k) !== c) out.push(`${k} has different checksums on ${aName} and ${bName}`);
  }
  for (const k of bm.keys()) if (!am.has(k)) out.push(`${k} is applied on ${bName} but not on ${aName}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Per-backend statements (kept small)

/** Names of the base tables in the current database or schema. */
export async function listTables(db: Kysely<any>, d: Dialect): Promise<Set<string>> {
  const q =
    d === 'postgres'
      ? sql<{ t: string }>`select tablename as t from pg_tables where schemaname = current_schema()`
      : d === 'mysql'
        ? sql<{
            t: string;
          }>`select table_name as t from information_schema.tables where table_schema = database() and table_type = 'BASE TABLE'`
        : sql<{ t: string }>`select name as t from sqlite_schema where type = 'table' and name not like 'sqlite_%'`;
  const r = await q.execute(db);
  return new Set(r.rows.map((x) => String(x.t)));
}

/** Statements that start a read-only transaction seeing one consistent snapshot of every table. */
function snapshotBegin(d: Dialect): string[] {
  if (d === 'postgres') {
    return [
      'start transaction isolation level repeatable read read only',
      // Long operator reads: no statement limit; a dead client still frees the snapshot.
      'set local statement_timeout = 0',
      "set local idle_in_transaction_session_timeout = '10min'",
    ];
  }
  if (d === 'mysql') return ['set transaction isolation level repeatable read, read only', 'start transaction with consistent snapshot'];
  // The WAL read snapshot is taken by the first read.
  return ['begin deferred', 'select count(*) from sqlite_schema'];
}

/**
 * Runs `fn` inside one read-only transaction on one connection, seeing one consistent snapshot
 * of the whole database (PostgreSQL REPEATABLE READ, InnoDB consistent snapshot, a SQLite WAL
 * read transaction), whatever writers do meanwhile.
 */
export async function withSnapshot<T>(db: OpsDb, fn: (conn: Kysely<any>) => Promise<T>): Promise<T> {
  try {
    return await db.reader.connection().execute(async (conn) => {
      for (const s of snapshotBegin(db.dialect)) await sql.raw(s).execute(conn);
      try {
        const result = await fn(conn);
        await sql.raw('commit').execute(conn);
        return result;
      } catch (e) {
        await sql
          .raw('rollback')
          .execute(conn)
          .catch(() => {});
        throw e;
      }
    });
  } catch (e) {
    throw mapDriverError(db.backend, e);
  }
}

/** Row-count estimates from the catalogue (exact count on SQLite); for progress only. */
export async function estimateRows(db: Kysely<any>, d: Dialect, tables: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (d === 'sqlite') {
    for (const t of tables) {
      const r = await db
        .selectFrom(t)
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirst();
      out.set(t, Number(toBigInt((r as { n: unknown } | undefined)?.n)));
    }
    return out;
  }
  const q =
    d === 'postgres'
      ? sql<{ t: string; n: unknown }>`select c.relname as t, greatest(c.reltuples, 0)::bigint as n from pg_class c
          join pg_namespace s on s.oid = c.relnamespace where s.nspname = current_schema() and c.relkind in ('r', 'p')`
      : sql<{
          t: string;
          n: unknown;
        }>`select table_name as t, table_rows as n from information_schema.tables where table_schema = database()`;
  const r = await q.execute(db);
  for (const row of r.rows) if (tables.includes(String(row.t))) out.set(String(row.t), Number(toBigInt(row.n)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

function encodeKeyValue(d: Dialect, c: ColumnDef, v: unknown): unknown {
  return encodeValue(d, c.type, v, c.name);
}

/** `key > after` in primary-key order, written so every backend can start an index range scan. */
function afterKey(eb: ExpressionBuilder<any, any>, d: Dialect, cols: ColumnDef[], after: Row): Expression<SqlBool> {
  const v = cols.map((c) => encodeKeyValue(d, c, after[c.name]));
  if (cols.length === 1) return eb(cols[0]!.name, '>', v[0]);
  // PostgreSQL and SQLite seek an index with a row-value comparison; spelled out as
  // "a >= x AND (a > x OR (a = x AND b > y))" they scan from the first row with a = x and filter,
  // which is every row again per page when the leading key column is constant (chain_id): a
  // 1M-row table read quadratically. MariaDB does the opposite: it turns the spelled-out form
  // into one index range and scans the whole index for the row value.
  if (d !== 'mysql') {
    return sql<SqlBool>`(${sql.join(cols.map((c) => sql.ref(c.name)))}) > (${sql.join(v.map((x) => sql.val(x)))})`;
  }
  return keysetAfter(
    eb,
    cols.map((c, i) => ({ column: c.name, value: v[i] })),
  );
}

/**
 * Decodes a row as the driver returned it (every driver returns JSON as text; engine.ts).
 */
export function decodeRow(_d: Dialect, columns: readonly ColumnDef[], raw: Row): Row {
  const out: Row = {};
  for (const c of columns) out[c.name] = decodeValue(c.type, raw[c.name]);
  return out;
}

/** One keyset page: the `limit` rows after the key `after` (from the start when null), in key order. */
export function pageQuery(db: Kysely<any>, d: Dialect, table: TableDef, columns: readonly ColumnDef[], after: Row | null, limit: number) {
  const keys = keyColumns(table);
  let q = db.selectFrom(table.name).select(columns.map((c) => c.name));
  if (after) q = q.where((eb) => afterKey(eb, d, keys, after));
  for (const k of keys) q = q.orderBy(k.name);
  return q.limit(limit);
}

/**
 * Reads a table in primary-key order, `batchSize` rows at a time, each batch a keyset query
 * (`WHERE key > last ORDER BY key LIMIT n`): bounded memory, and resumable from any key.
 */
export async function* readBatches(
  db: Kysely<any>,
  d: Dialect,
  table: TableDef,
  columns: readonly ColumnDef[],
  opts: { after?: Row | null; batchSize: number },
): AsyncGenerator<Row[]> {
  const keys = keyColumns(table);
  let after = opts.after ?? null;
  for (;;) {
    const raw = (await pageQuery(db, d, table, columns, after, opts.batchSize).execute()) as Row[];
    if (raw.length === 0) return;
    const rows = raw.map((r) => decodeRow(d, columns, r));
    yield rows;
    if (raw.length < opts.batchSize) return;
    const last = rows[rows.length - 1]!;
    after = Object.fromEntries(keys.map((k) => [k.name, last[k.name]]));
  }
}

/** The rows with the given primary keys (decoded), for comparing two databases row by row. */
export async function fetchByKeys(
  db: Kysely<any>,
  d: Dialect,
  table: TableDef,
  columns: readonly ColumnDef[],
  keys: readonly Row[],
): Promise<Row[]> {
  const kc = keyColumns(table);
  const out: Row[] = [];
  for (let i = 0; i < keys.length; i += 200) {
    const chunk = keys.slice(i, i + 200);
    const raw = (await db
      .selectFrom(table.name)
      .select(columns.map((c) => c.name))
      .where((eb) => eb.or(chunk.map((k) => eb.and(kc.map((c) => eb(c.name, '=', encodeKeyValue(d, c, k[c.name])))))))
      .execute()) as Row[];
    for (const r of raw) out.push(decodeRow(d, columns, r));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Bound parameters per statement stay under every backend's limit (SQLite 32766). */
const MAX_PARAMS = 30_000;
/** Statement size stays well under MySQL's default max_allowed_packet (16 MB on MariaDB, 64 MB on MySQL 8). */
const MAX_STATEMENT_BYTES = 4 * 1024 * 1024;

function approxSize(v: unknown): number {
  if (v === null || v === undefined) return 4;
  if (typeof v === 'string') return v.length * 2 + 8;
  if (v instanceof Uint8Array) return v.byteLength * 2 + 8;
  return 24;
}

/** Inserts decoded rows (encoded for the target's dialect) in as few statements as the limits allow. */
export async function insertRows(
  db: Kysely<any>,
  d: Dialect,
  table: TableDef,
  columns: readonly ColumnDef[],
  rows: readonly Row[],
): Promise<void> {
  const maxRows = Math.max(1, Math.min(1000, Math.floor(MAX_PARAMS / Math.max(1, columns.length))));
  let chunk: Row[] = [];
  let size = 0;
  const flush = async () => {
    if (chunk.length) await insertEncoded(db, d, table.name, columns, chunk);
    chunk = [];
    size = 0;
  };
  for (const row of rows) {
    const enc: Row = {};
    for (const c of columns) enc[c.name] = encodeValue(d, c.type, row[c.name], `${table.name}.${c.name}`);
    const s = columns.reduce((n, c) => n + approxSize(enc[c.name]), 0);
    if (chunk.length && (chunk.length >= maxRows || size + s > MAX_STATEMENT_BYTES)) await flush();
    chunk.push(enc);
    size += s;
  }
  await flush();
}

/** Drops the given tables (children first) if they exist. */
export async function dropTables(db: Kysely<any>, d: Dialect, names: readonly string[]): Promise<void> {
  for (const n of names) await sql.raw(`DROP TABLE IF EXISTS ${quote(d, n)}`).execute(db);
}

/** The serial (auto-increment) column of a table, if it has one. */
export function serialColumn(table: TableDef): ColumnDef | undefined {
  return table.columns.find((c) => c.type.kind === 'serial');
}

/**
 * The next value the table's serial column would hand out (at least max+1), so a copy keeps
 * ids that were used and deleted from being handed out again.
 */
export async function serialNext(db: Kysely<any>, d: Dialect, table: TableDef): Promise<bigint | null> {
  const col = serialColumn(table);
  if (!col) return null;
  const maxRow = await db
    .selectFrom(table.name)
    .select((eb) => eb.fn.max(col.name).as('m'))
    .executeTakeFirst();
  const m = (maxRow as { m: unknown } | undefined)?.m;
  let next = m === null || m === undefined ? 1n : toBigInt(m) + 1n;
  let seq: bigint | null = null;
  if (d === 'postgres') {
    const r = await sql<{ v: unknown; called: boolean }>`select last_value as v, is_called as called from ${sql.raw(
      `${await pgSequenceName(db, table.name, col.name)}`,
    )}`.execute(db);
    const row = r.rows[0];
    if (row) seq = toBigInt(row.v) + (row.called ? 1n : 0n);
  } else if (d === 'mysql') {
    const r = await sql<{
      v: unknown;
    }>`select auto_increment as v from information_schema.tables where table_schema = database() and table_name = ${table.name}`.execute(
      db,
    );
    if (r.rows[0]?.v !== null && r.rows[0]?.v !== undefined) seq = toBigInt(r.rows[0].v);
  } else {
    const r = await sql<{ v: unknown }>`select seq as v from sqlite_sequence where name = ${table.name}`
      .execute(db)
      .catch(() => ({ rows: [] as { v: unknown }[] }));
    if (r.rows[0]) seq = toBigInt(r.rows[0].v) + 1n;
  }
  if (seq !== null && seq > next) next = seq;
  return next;
}

async function pgSequenceName(db: Kysely<any>, table: string, column: string): Promise<string> {
  const r = await sql<{ s: string | null }>`select pg_get_serial_sequence(${quote('postgres', table)}, ${column}) as s`.execute(db);
  const s = r.rows[0]?.s;
  if (!s) throw new Error(`no sequence behind ${table}.${column}`);
  return s;
}

/** Makes the table's serial column hand out `next` (or later) from now on. */
export async function setSerialNext(db: Kysely<any>, d: Dialect, table: TableDef, next: bigint): Promise<void> {
  const col = serialColumn(table);
  if (!col) return;
  if (d === 'postgres') {
    const seq = await pgSequenceName(db, table.name, col.name);
    // setval(seq, v, false): the next nextval() returns v.
    await sql`select setval(${seq}::regclass, ${next.toString()}::bigint, false)`.execute(db);
  } else if (d === 'mysql') {
    await sql.raw(`ALTER TABLE ${quote(d, table.name)} AUTO_INCREMENT = ${next.toString()}`).execute(db);
  } else {
    const cur = await sql<{ v: unknown }>`select seq as v from sqlite_sequence where name = ${table.name}`.execute(db);
    // sqlite_sequence holds the last id handed out; bound as integers (text would compare wrongly).
    if (cur.rows.length)
      await sql`update sqlite_sequence set seq = ${next - 1n} where name = ${table.name} and seq < ${next - 1n}`.execute(db);
    else await sql`insert into sqlite_sequence (name, seq) values (${table.name}, ${next - 1n})`.execute(db);
  }
}

/**
 * Planner statistics for tables just bulk-loaded by copy or restore (PostgreSQL `ANALYZE`,
 * MySQL/MariaDB `ANALYZE TABLE`), as pg_restore's own documentation advises. A loaded table has
 * none until autovacuum gets to it, and without them PostgreSQL plans a lookup of many keys
 * (ingest's duplicate check of a block's 1,000 transactions) as a sequential scan: 0.3 s per
 * block at 1M rows instead of milliseconds. SQLite plans these lookups without statistics.
 */
export async function analyzeTables(db: OpsDb, tables: readonly string[]): Promise<void> {
  if (db.dialect === 'sqlite') return;
  for (const t of tables) {
    if (db.dialect === 'postgres') await sql.raw(`ANALYZE ${quote('postgres', t)}`).execute(db.writer);
    else await sql.raw(`ANALYZE TABLE ${quote('mysql', t)}`).execute(db.writer);
  }
}
