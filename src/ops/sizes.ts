// `coffer stats` and `coffer sizes`: rows and bytes per table and per index, largest first, on
// every backend. Row counts are exact (COUNT(*)) unless estimates are asked for; sizes come
// from each backend's catalogue (PostgreSQL relation sizes, InnoDB statistics, SQLite dbstat).
import { sql, type Kysely } from 'kysely';
import { toBigInt } from '../db/codec.js';
import type { Coffer } from '../db/store.js';
import type { Dialect } from '../schema/model.js';
import { estimateRows, listTables, opsDb } from './db.js';
import { MARKER_TABLE } from './marker.js';

export interface IndexSize {
  name: string;
  bytes: number | null;
}

export interface TableStats {
  table: string;
  rows: number;
  rowsEstimated: boolean;
  /** Heap/clustered data (with TOAST on PostgreSQL), without secondary indexes. */
  dataBytes: number | null;
  indexBytes: number | null;
  totalBytes: number | null;
  indexes: IndexSize[];
}

export interface DatabaseStats {
  backend: string;
  database: string;
  /** Whole database (file, or catalogue total). */
  totalBytes: number | null;
  tables: TableStats[];
  notes: string[];
}

interface RawSizes {
  tables: Map<string, { data: number | null; index: number | null; total: number | null }>;
  indexes: Map<string, { table: string; bytes: number | null }>;
  databaseBytes: number | null;
  notes: string[];
}

const n = (v: unknown): number => Number(toBigInt(v));

async function pgSizes(db: Kysely<any>): Promise<RawSizes> {
  const out: RawSizes = { tables: new Map(), indexes: new Map(), databaseBytes: null, notes: [] };
  const t = await sql<{
    t: string;
    total: unknown;
    idx: unknown;
  }>`select c.relname as t, pg_total_relation_size(c.oid) as total, pg_indexes_size(c.oid) as idx
      from pg_class c join pg_namespace s on s.oid = c.relnamespace where s.nspname = current_schema() and c.relkind in ('r', 'p')`.execute(
    db,
  );
  for (const r of t.rows) out.tables.set(r.t, { data: n(r.total) - n(r.idx), index: n(r.idx), total: n(r.total) });
  const i = await sql<{
    name: string;
    t: string;
    bytes: unknown;
  }>`select i.relname as name, c.relname as t, pg_relation_size(i.oid) as bytes
      from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class c on c.oid = x.indrelid
      join pg_namespace s on s.oid = c.relnamespace where s.nspname = current_schema()`.execute(db);
  for (const r of i.rows) out.indexes.set(r.name, { table: r.t, bytes: n(r.bytes) });
  const d = await sql<{ b: unknown }>`select pg_database_size(current_database()) as b`.execute(db);
  out.databaseBytes = n(d.rows[0]?.b);
  return out;
}

async function mysqlSizes(db: Kysely<any>): Promise<RawSizes> {
  const out: RawSizes = {
    tables: new Map(),
    indexes: new Map(),
    databaseBytes: 0,
    notes: ['MySQL/MariaDB sizes are InnoDB statistics (refreshed by coffer maintain / ANALYZE TABLE)'],
  };
  const t = await sql<{
    t: string;
    data: unknown;
    idx: unknown;
    free: unknown;
  }>`select table_name as t, data_length as data, index_length as idx, data_free as free
      from information_schema.tables where table_schema = database() and table_type = 'BASE TABLE'`.execute(db);
  for (const r of t.rows) {
    out.tables.set(r.t, { data: n(r.data), index: n(r.idx), total: n(r.data) + n(r.idx) });
    out.databaseBytes = (out.databaseBytes ?? 0) + n(r.data) + n(r.idx) + n(r.free);
  }
  try {
    const i = await sql<{
      name: string;
      t: string;
      pages: unknown;
      ps: unknown;
    }>`select index_name as name, table_name as t, stat_value as pages, @@innodb_page_size as ps
        from mysql.innodb_index_stats where database_name = database() and stat_name = 'size'`.execute(db);
    for (const r of i.rows) {
      // PRIMARY is the clustered index: the table's data itself.
      if (r.name !== 'PRIMARY') out.indexes.set(r.name, { table: r.t, bytes: n(r.pages) * n(r.ps) });
    }
  } catch {
    out.notes.push('per-index sizes need SELECT on mysql.innodb_index_stats');
    const i = await sql<{ name: string; t: string }>`select distinct index_name as name, table_name as t from information_schema.statistics
        where table_schema = database() and index_name <> 'PRIMARY'`.execute(db);
    for (const r of i.rows) out.indexes.set(r.name, { table: r.t, bytes: null });
  }
  return out;
}

async function sqliteSizes(db: Kysely<any>): Promise<RawSizes> {
  const out: RawSizes = { tables: new Map(), indexes: new Map(), databaseBytes: null, notes: [] };
  const objs = await sql<{
    name: string;
    type: string;
    t: string;
  }>`select name, type, tbl_name as t from sqlite_schema where type in ('table', 'index')`.execute(db);
  let bytes = new Map<string, number>();
  try {
    const r = await sql<{ name: string; b: unknown }>`select name, sum(pgsize) as b from dbstat group by name`.execute(db);
    bytes = new Map(r.rows.map((x) => [x.name, n(x.b)]));
  } catch {
    out.notes.push('this SQLite build has no dbstat table: per-object sizes are unavailable');
  }
  const size = (name: string) => (bytes.size ? (bytes.get(name) ?? 0) : null);
  for (const o of objs.rows) if (o.type === 'index') out.indexes.set(o.name, { table: o.t, bytes: size(o.name) });
  for (const o of objs.rows) {
    if (o.type !== 'table') continue;
    const idx = [...out.indexes.values()].filter((i) => i.table === o.name);
    const index = bytes.size ? idx.reduce((s, i) => s + (i.bytes ?? 0), 0) : null;
    const data = size(o.name);
    out.tables.set(o.name, { data, index, total: data === null || index === null ? null : data + index });
  }
  const p = await sql<{ page_count: unknown }>`pragma page_count`.execute(db);
  const ps = await sql<{ page_size: unknown }>`pragma page_size`.execute(db);
  out.databaseBytes = n(p.rows[0]?.page_count) * n(ps.rows[0]?.page_size);
  return out;
}

function rawSizes(db: Kysely<any>, d: Dialect): Promise<RawSizes> {
  return d === 'postgres' ? pgSizes(db) : d === 'mysql' ? mysqlSizes(db) : sqliteSizes(db);
}

/** Rows and sizes of Coffer's tables (those of this build's schema that exist, and the copy marker). */
export async function collectStats(coffer: Coffer, opts: { estimate?: boolean } = {}): Promise<DatabaseStats> {
  const db = opsDb(coffer);
  const live = await listTables(db.reader, db.dialect);
  const names = [...coffer.schema.tables.keys(), MARKER_TABLE].filter((t) => live.has(t));
  const raw = await rawSizes(db.reader, db.dialect);
  let counts: Map<string, number>;
  const estimated = Boolean(opts.estimate) && db.dialect !== 'sqlite';
  if (estimated) counts = await estimateRows(db.reader, db.dialect, names);
  else {
    counts = new Map();
    await coffer.read(
      async (tx) => {
        for (const t of names) {
          const r = await tx.db
            .selectFrom(t)
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirst();
          counts.set(t, n((r as { n: unknown } | undefined)?.n));
        }
      },
      { op: 'ops.stats' },
    );
  }
  const tables: TableStats[] = names.map((t) => {
    const s = raw.tables.get(t);
    const indexes = [...raw.indexes.entries()]
      .filter(([, i]) => i.table === t)
      .map(([name, i]) => ({ name, bytes: i.bytes }))
      .sort((a, b) => (b.bytes ?? -1) - (a.bytes ?? -1) || a.name.localeCompare(b.name));
    return {
      table: t,
      rows: counts.get(t) ?? 0,
      rowsEstimated: estimated,
      dataBytes: s?.data ?? null,
      indexBytes: s?.index ?? null,
      totalBytes: s?.total ?? null,
      indexes,
    };
  });
  tables.sort((a, b) => (b.totalBytes ?? -1) - (a.totalBytes ?? -1) || b.rows - a.rows || a.table.localeCompare(b.table));
  return { backend: db.label, database: db.describe, totalBytes: raw.databaseBytes, tables, notes: raw.notes };
}

export interface ObjectSize {
  kind: 'table' | 'index';
  name: string;
  table: string;
  rows: number | null;
  bytes: number | null;
}

/** Every table and index as one list, largest first (`coffer sizes`). */
export function objectSizes(stats: DatabaseStats): ObjectSize[] {
  const out: ObjectSize[] = [];
  for (const t of stats.tables) {
    out.push({ kind: 'table', name: t.table, table: t.table, rows: t.rows, bytes: t.dataBytes });
    for (const i of t.indexes) out.push({ kind: 'index', name: i.name, table: t.table, rows: null, bytes: i.bytes });
  }
  return out.sort((a, b) => (b.bytes ?? -1) - (a.bytes ?? -1) || a.name.localeCompare(b.name));
}
