// Reads what a live database really has (tables, columns, keys, indexes, checks, triggers) in
// the same normalised shape as compile.ts's expectations, so parity is a plain comparison;
// (introspectDefinitions) how the engine shows each object's definition, to compare with the
// same engine's rendering of this build's migrations (reference.ts); and (visibility) what of
// it the account reading cannot see, so that hidden is not taken for missing.
import { sql, type Kysely } from 'kysely';
import {
  emptyDefinitions,
  fkSignature,
  quote,
  type HiddenFacts,
  type SchemaDefinitions,
  type SchemaFacts,
  type TableDefinitions,
  type TableFacts,
} from './compile.js';
import type { Dialect } from './model.js';
import { hasKeyword, namedChecks, namedForeignKeys } from './sql-text.js';

type Row = Record<string, unknown>;

async function rows(db: Kysely<any>, q: ReturnType<typeof sql>): Promise<Row[]> {
  return (await q.execute(db)).rows as Row[];
}

function str(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}

function emptyTable(): TableFacts {
  return { columns: {}, primaryKey: [], indexes: {}, foreignKeys: [], checks: [], triggers: [] };
}

function finish(facts: SchemaFacts): SchemaFacts {
  for (const t of Object.values(facts)) {
    t.foreignKeys.sort();
    t.checks.sort();
    t.triggers.sort();
  }
  return facts;
}

export async function introspect(db: Kysely<any>, dialect: Dialect): Promise<SchemaFacts> {
  if (dialect === 'postgres') return introspectPostgres(db);
  if (dialect === 'mysql') return introspectMysql(db);
  return introspectSqlite(db);
}

async function introspectPostgres(db: Kysely<any>): Promise<SchemaFacts> {
  const facts: SchemaFacts = {};
  for (const r of await rows(db, sql`select c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relkind in ('r', 'p')`)) {
    facts[str(r.t)] = emptyTable();
  }
  const cols = await rows(db, sql`select c.relname as t, a.attname as col, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as notnull
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped order by a.attnum`);
  for (const r of cols) facts[str(r.t)]!.columns[str(r.col)] = { type: str(r.type), nullable: !r.notnull };
  const cons = await rows(db, sql`select c.relname as t, k.conname as name, k.contype as kind, k.confdeltype as ondelete,
        rc.relname as reft,
        (select array_agg(a.attname::text order by x.ord) from unnest(k.conkey) with ordinality x(n, ord)
           join pg_attribute a on a.attrelid = k.conrelid and a.attnum = x.n) as cols,
        (select array_agg(a.attname::text order by x.ord) from unnest(k.confkey) with ordinality x(n, ord)
           join pg_attribute a on a.attrelid = k.confrelid and a.attnum = x.n) as refcols
      from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      left join pg_class rc on rc.oid = k.confrelid
      where n.nspname = current_schema() and k.contype in ('p', 'f', 'c')`);
  const onDelete: Record<string, string> = { a: 'no action', r: 'restrict', c: 'cascade', n: 'set null', d: 'set default' };
  for (const r of cons) {
    const t = facts[str(r.t)];
    if (!t) continue;
    const colsOf = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
    if (r.kind === 'p') t.primaryKey = colsOf(r.cols);
    else if (r.kind === 'c') t.checks.push(str(r.name));
    else t.foreignKeys.push(fkSignature(colsOf(r.cols), str(r.reft), colsOf(r.refcols), onDelete[str(r.ondelete)] ?? '?'));
  }
  const idx = await rows(db, sql`select c.relname as t, i.relname as name, ix.indisunique as uniq,
        (select array_agg(a.attname::text order by x.ord) from unnest(ix.indkey) with ordinality x(n, ord)
           join pg_attribute a on a.attrelid = ix.indrelid and a.attnum = x.n) as cols
      from pg_index ix join pg_class i on i.oid = ix.indexrelid join pg_class c on c.oid = ix.indrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and not ix.indisprimary`);
  for (const r of idx) {
    const t = facts[str(r.t)];
    if (t) t.indexes[str(r.name)] = { columns: Array.isArray(r.cols) ? r.cols.map(String) : [], unique: Boolean(r.uniq) };
  }
  const trg = await rows(db, sql`select c.relname as t, g.tgname as name from pg_trigger g join pg_class c on c.oid = g.tgrelid
      join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and not g.tgisinternal`);
  for (const r of trg) facts[str(r.t)]?.triggers.push(str(r.name));
  return finish(facts);
}

function normaliseMysqlType(t: string): string {
  // MariaDB and MySQL < 8.0.19 show display widths on integer types; they mean nothing.
  return t.toLowerCase().replace(/^(int|bigint|smallint|mediumint)\(\d+\)/, '$1').replace(/ unsigned$/, ' unsigned');
}

async function introspectMysql(db: Kysely<any>): Promise<SchemaFacts> {
  const facts: SchemaFacts = {};
  for (const r of await rows(db, sql`select table_name as t from information_schema.tables where table_schema = database() and table_type = 'BASE TABLE'`)) {
    facts[str(r.t)] = emptyTable();
  }
  const cols = await rows(db, sql`select table_name as t, column_name as col, column_type as type, is_nullable as nullable
      from information_schema.columns where table_schema = database() order by table_name, ordinal_position`);
  for (const r of cols) {
    const t = facts[str(r.t)];
    if (t) t.columns[str(r.col)] = { type: normaliseMysqlType(str(r.type)), nullable: str(r.nullable) === 'YES' };
  }
  const stats = await rows(db, sql`select table_name as t, index_name as name, non_unique as nonuniq, column_name as col
      from information_schema.statistics where table_schema = database() order by table_name, index_name, seq_in_index`);
  for (const r of stats) {
    const t = facts[str(r.t)];
    if (!t) continue;
    const name = str(r.name);
    if (name === 'PRIMARY') t.primaryKey.push(str(r.col));
    else {
      const ix = (t.indexes[name] ??= { columns: [], unique: Number(r.nonuniq) === 0 });
      ix.columns.push(str(r.col));
    }
  }
  const fks = await rows(db, sql`select k.table_name as t, k.constraint_name as name, k.column_name as col,
        k.referenced_table_name as reft, k.referenced_column_name as refcol, r.delete_rule as ondelete
      from information_schema.key_column_usage k join information_schema.referential_constraints r
        on r.constraint_schema = k.constraint_schema and r.constraint_name = k.constraint_name and r.table_name = k.table_name
      where k.table_schema = database() and k.referenced_table_name is not null
      order by k.table_name, k.constraint_name, k.ordinal_position`);
  const grouped = new Map<string, { t: string; cols: string[]; reft: string; refcols: string[]; ondelete: string }>();
  for (const r of fks) {
    const key = `${str(r.t)}.${str(r.name)}`;
    const g = grouped.get(key) ?? { t: str(r.t), cols: [], reft: str(r.reft), refcols: [], ondelete: str(r.ondelete) };
    g.cols.push(str(r.col));
    g.refcols.push(str(r.refcol));
    grouped.set(key, g);
  }
  for (const g of grouped.values()) facts[g.t]?.foreignKeys.push(fkSignature(g.cols, g.reft, g.refcols, g.ondelete));
  const checks = await rows(db, sql`select table_name as t, constraint_name as name from information_schema.table_constraints
      where table_schema = database() and constraint_type = 'CHECK'`);
  for (const r of checks) facts[str(r.t)]?.checks.push(str(r.name));
  const trg = await rows(db, sql`select event_object_table as t, trigger_name as name from information_schema.triggers where trigger_schema = database()`);
  for (const r of trg) facts[str(r.t)]?.triggers.push(str(r.name));
  return finish(facts);
}

async function introspectSqlite(db: Kysely<any>): Promise<SchemaFacts> {
  const facts: SchemaFacts = {};
  const tables = await rows(db, sql`select name, sql from sqlite_schema where type = 'table' and name not like 'sqlite_%'`);
  for (const tr of tables) {
    const name = str(tr.name);
    const t = emptyTable();
    facts[name] = t;
    const cols = await rows(db, sql`select name, type, "notnull" as nn, pk from pragma_table_xinfo(${name}) where hidden = 0 order by cid`);
    const pk: { col: string; n: number }[] = [];
    for (const c of cols) {
      t.columns[str(c.name)] = { type: str(c.type).toUpperCase(), nullable: Number(c.nn) === 0 };
      if (Number(c.pk) > 0) pk.push({ col: str(c.name), n: Number(c.pk) });
    }
    t.primaryKey = pk.sort((a, b) => a.n - b.n).map((p) => p.col);
    const idx = await rows(db, sql`select name, "unique" as uniq, origin from pragma_index_list(${name})`);
    for (const i of idx) {
      if (str(i.origin) === 'pk') continue;
      const icols = await rows(db, sql`select name from pragma_index_info(${str(i.name)}) order by seqno`);
      t.indexes[str(i.name)] = { columns: icols.map((x) => str(x.name)), unique: Number(i.uniq) === 1 };
    }
    const fks = await rows(db, sql`select id, seq, "table" as reft, "from" as col, "to" as refcol, on_delete from pragma_foreign_key_list(${name}) order by id, seq`);
    const byId = new Map<number, { cols: string[]; refcols: string[]; reft: string; od: string }>();
    for (const f of fks) {
      const g = byId.get(Number(f.id)) ?? { cols: [], refcols: [], reft: str(f.reft), od: str(f.on_delete) };
      g.cols.push(str(f.col));
      g.refcols.push(str(f.refcol));
      byId.set(Number(f.id), g);
    }
    for (const g of byId.values()) t.foreignKeys.push(fkSignature(g.cols, g.reft, g.refcols, g.od));
    // SQLite keeps no catalogue of CHECKs; the named ones are read back from the table's DDL.
    for (const check of namedChecks(str(tr.sql)).keys()) t.checks.push(check);
  }
  const trg = await rows(db, sql`select tbl_name as t, name from sqlite_schema where type = 'trigger'`);
  for (const r of trg) facts[str(r.t)]?.triggers.push(str(r.name));
  return finish(facts);
}

// ---------------------------------------------------------------------------------------------
// Definitions (compile.ts's TableDefinitions)

const PG_ENABLED: Record<string, string> = { O: '', D: ' (DISABLED)', R: ' (ENABLE REPLICA)', A: ' (ENABLE ALWAYS)' };

/**
 * How the engine shows the definition of every check, default, index, trigger, foreign key and
 * table option of `tables` (default: every table of the schema).
 */
export async function introspectDefinitions(db: Kysely<any>, dialect: Dialect, tables?: readonly string[]): Promise<SchemaDefinitions> {
  const out = dialect === 'postgres' ? await definitionsPostgres(db, tables) : dialect === 'mysql' ? await definitionsMysql(db) : await definitionsSqlite(db);
  if (tables) for (const t of Object.keys(out)) if (!tables.includes(t)) delete out[t];
  return out;
}

/** A table whose definitions were not read: another session kept a lock on it past the wait. */
export interface LockedTable {
  table: string;
  /** The sessions holding a conflicting lock on it (or queued for one ahead of the reader). */
  blockers: { pid: number; granted: boolean; application: string; query: string }[];
}

export interface LiveDefinitions {
  definitions: SchemaDefinitions;
  /** Tables left out of `definitions` because they stayed locked longer than the wait. */
  locked: LockedTable[];
}

/** PostgreSQL's lock_not_available (lock_timeout, NOWAIT) and insufficient_privilege. */
const PG_LOCK_NOT_AVAILABLE = '55P03';
const PG_INSUFFICIENT_PRIVILEGE = '42501';
const sqlState = (e: unknown) => (e as { code?: unknown }).code;

/**
 * introspectDefinitions of `tables` (Coffer's, in the operator's database), waiting for no table
 * lock longer than `lockWaitMs`. PostgreSQL renders a CHECK, default or index definition
 * (pg_get_constraintdef, pg_get_expr, pg_get_indexdef) under an ACCESS SHARE lock on its table,
 * so a table someone holds ACCESS EXCLUSIVE (LOCK TABLE, VACUUM FULL, most ALTER TABLEs) would
 * stall the read for the connection's whole lock_timeout and then fail it. Here each table is
 * locked first, one at a time, inside one read transaction whose lock_timeout is `lockWaitMs`:
 * a table that stays locked is left out and named in `locked`, with who holds the lock; the
 * others are read under the locks already held, so nothing waits any more. Other tables of the
 * schema (another application's) are never touched. MySQL/MariaDB and SQLite read definitions
 * without table locks (information_schema takes a high-priority shared metadata lock that
 * LOCK TABLES … WRITE and online ALTERs do not block; SQLite has no table locks): nothing is
 * left out there.
 */
export async function readLiveDefinitions(
  db: Kysely<any>,
  dialect: Dialect,
  tables: readonly string[],
  lockWaitMs: number,
): Promise<LiveDefinitions> {
  if (dialect !== 'postgres') return { definitions: await introspectDefinitions(db, dialect, tables), locked: [] };
  return db.transaction().execute(async (trx) => {
    await sql`select set_config('lock_timeout', ${`${Math.max(1, Math.round(lockWaitMs))}ms`}, true)`.execute(trx);
    // Qualified: a temporary table of the same name would come first on the search path.
    const schema = str((await rows(trx, sql`select current_schema() as s`))[0]?.s);
    const locked: LockedTable[] = [];
    const held: string[] = [];
    const unheld: string[] = [];
    // Tries `fn` under a savepoint; a lock timeout marks `table` locked, other errors propagate.
    const attempt = async (table: string, fn: () => Promise<void>, onDenied?: () => void) => {
      await sql.raw('SAVEPOINT coffer_definitions').execute(trx);
      try {
        await fn();
        await sql.raw('RELEASE SAVEPOINT coffer_definitions').execute(trx);
      } catch (e) {
        await sql.raw('ROLLBACK TO SAVEPOINT coffer_definitions').execute(trx);
        if (sqlState(e) === PG_LOCK_NOT_AVAILABLE) locked.push({ table, blockers: await pgLockHolders(trx, table) });
        else if (onDenied && sqlState(e) === PG_INSUFFICIENT_PRIVILEGE) onDenied();
        else throw e;
      }
    };
    for (const t of tables)
      await attempt(
        t,
        async () => {
          await sql`lock table only ${sql.id(schema, t)} in access share mode`.execute(trx);
          held.push(t);
        },
        // LOCK TABLE needs SELECT (PostgreSQL < 16); the catalogue does not: read it unlocked, still bounded by the wait.
        () => unheld.push(t),
      );
    const definitions = held.length ? await definitionsPostgres(trx, held) : {};
    for (const t of unheld) await attempt(t, async () => void Object.assign(definitions, await definitionsPostgres(trx, [t])));
    return { definitions, locked };
  });
}

/** Who holds (or waits ahead for) the ACCESS EXCLUSIVE lock that keeps `table` from being read. */
async function pgLockHolders(db: Kysely<any>, table: string): Promise<LockedTable['blockers']> {
  const r = await rows(db, sql`select l.pid as pid, l.granted as granted, coalesce(a.application_name, '') as app, coalesce(a.query, '') as q
      from pg_locks l left join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'relation' and l.mode = 'AccessExclusiveLock' and l.pid <> pg_backend_pid()
        and l.database = (select oid from pg_database where datname = current_database())
        and l.relation = (select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = current_schema() and c.relname = ${table})
      order by l.granted desc, l.pid`);
  return r.map((x) => ({
    pid: Number(x.pid),
    granted: Boolean(x.granted),
    application: str(x.app),
    query: str(x.q).replace(/\s+/g, ' ').trim().slice(0, 120),
  }));
}

function tableOf(out: SchemaDefinitions, name: unknown): TableDefinitions | undefined {
  return out[str(name)];
}

async function definitionsPostgres(db: Kysely<any>, tables?: readonly string[]): Promise<SchemaDefinitions> {
  const out: SchemaDefinitions = {};
  // Only the tables asked for: rendering a definition locks its table (readLiveDefinitions).
  const only = tables ? sql`and c.relname = any(${[...tables]}::text[])` : sql``;
  for (const r of await rows(db, sql`select c.relname as t, c.relpersistence as persistence from pg_class c
      join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relkind in ('r', 'p') ${only}`)) {
    const t = (out[str(r.t)] = emptyDefinitions());
    t.option.UNLOGGED = str(r.persistence) === 'u' ? 'on' : 'off';
  }
  const checks = await rows(db, sql`select c.relname as t, k.conname as name, pg_get_constraintdef(k.oid) as def
      from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and k.contype = 'c' ${only}`);
  for (const r of checks) {
    const t = tableOf(out, r.t);
    if (t) t.check[str(r.name)] = str(r.def);
  }
  // A foreign key is enforced by internal triggers, which ALTER TABLE … DISABLE TRIGGER ALL (or a
  // bulk load that did so and stopped half-way) switches off while the constraint stays listed.
  const fks = await rows(db, sql`select c.relname as t, k.conname as name, pg_get_constraintdef(k.oid) as def,
        exists (select 1 from pg_trigger g where g.tgconstraint = k.oid and g.tgenabled = 'D') as disabled
      from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and k.contype = 'f' ${only}`);
  for (const r of fks) {
    const t = tableOf(out, r.t);
    if (t) t.foreignKey[str(r.name)] = `${str(r.def)}${r.disabled ? ' (enforcement triggers DISABLED)' : ''}`;
  }
  const cols = await rows(db, sql`select c.relname as t, a.attname as col, pg_get_expr(d.adbin, d.adrelid) as def,
        a.attidentity as ident, a.attgenerated as gen, co.collname as coll
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      left join pg_collation co on co.oid = a.attcollation
      where n.nspname = current_schema() and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped ${only}`);
  for (const r of cols) {
    const t = tableOf(out, r.t);
    if (!t) continue;
    const def = r.def === null || r.def === undefined ? null : str(r.def);
    const ident = str(r.ident ?? '');
    t.default[str(r.col)] =
      ident === 'd'
        ? 'GENERATED BY DEFAULT AS IDENTITY'
        : ident === 'a'
          ? 'GENERATED ALWAYS AS IDENTITY'
          : str(r.gen ?? '') === 's'
            ? `GENERATED ALWAYS AS (${def}) STORED`
            : def;
    t.collation[str(r.col)] = r.coll === null || r.coll === undefined ? null : str(r.coll);
  }
  // pg_get_indexdef and pg_get_triggerdef always name the table with its schema; the scratch
  // reference lives in another schema than the database it is compared with, so that goes.
  const idx = await rows(db, sql`select c.relname as t, i.relname as name,
        replace(pg_get_indexdef(i.oid), ' ON ' || quote_ident(n.nspname) || '.', ' ON ') as def
      from pg_index ix join pg_class i on i.oid = ix.indexrelid join pg_class c on c.oid = ix.indrelid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and not ix.indisprimary ${only}`);
  for (const r of idx) {
    const t = tableOf(out, r.t);
    if (t) t.index[str(r.name)] = str(r.def);
  }
  const trg = await rows(db, sql`select c.relname as t, g.tgname as name, g.tgenabled as enabled,
        replace(pg_get_triggerdef(g.oid), ' ON ' || quote_ident(n.nspname) || '.', ' ON ') as def,
        p.proname as fn, p.prosrc as body
      from pg_trigger g join pg_class c on c.oid = g.tgrelid join pg_namespace n on n.oid = c.relnamespace
      join pg_proc p on p.oid = g.tgfoid
      where n.nspname = current_schema() and not g.tgisinternal ${only}`);
  for (const r of trg) {
    const t = tableOf(out, r.t);
    if (!t) continue;
    t.trigger[str(r.name)] = `${str(r.def)}${PG_ENABLED[str(r.enabled)] ?? ` (enabled ${str(r.enabled)})`}`;
    t.function[str(r.name)] = `${str(r.fn)}() AS $$${str(r.body)}$$`;
  }
  return out;
}

async function definitionsMysql(db: Kysely<any>): Promise<SchemaDefinitions> {
  // Every column is aliased: MySQL 8 labels information_schema columns in upper case.
  const out: SchemaDefinitions = {};
  for (const r of await rows(db, sql`select table_name as t, engine as engine, table_collation as coll from information_schema.tables
      where table_schema = database() and table_type = 'BASE TABLE'`)) {
    const t = (out[str(r.t)] = emptyDefinitions());
    t.option.ENGINE = str(r.engine ?? 'none');
    t.option.COLLATE = str(r.coll ?? 'none');
  }
  // MariaDB names a CHECK per table (check_constraints has the table); MySQL per schema, and
  // can switch one off (table_constraints.enforced).
  const version = str((await rows(db, sql`select version() as v`))[0]?.v ?? '');
  const checks = /mariadb/i.test(version)
    ? await rows(db, sql`select table_name as t, constraint_name as name, check_clause as def, 'YES' as enforced
        from information_schema.check_constraints where constraint_schema = database()`)
    : await rows(db, sql`select tc.table_name as t, tc.constraint_name as name, cc.check_clause as def, tc.enforced as enforced
        from information_schema.table_constraints tc join information_schema.check_constraints cc
          on cc.constraint_schema = tc.constraint_schema and cc.constraint_name = tc.constraint_name
        where tc.table_schema = database() and tc.constraint_type = 'CHECK'`);
  for (const r of checks) {
    const t = tableOf(out, r.t);
    if (t) t.check[str(r.name)] = `CHECK (${str(r.def)})${str(r.enforced).toUpperCase() === 'NO' ? ' NOT ENFORCED' : ''}`;
  }
  const fks = await rows(db, sql`select k.table_name as t, k.constraint_name as name, k.column_name as col,
        k.referenced_table_name as reft, k.referenced_column_name as refcol,
        r.update_rule as onupdate, r.delete_rule as ondelete, r.match_option as matching
      from information_schema.key_column_usage k join information_schema.referential_constraints r
        on r.constraint_schema = k.constraint_schema and r.constraint_name = k.constraint_name and r.table_name = k.table_name
      where k.table_schema = database() and k.referenced_table_name is not null
      order by k.table_name, k.constraint_name, k.ordinal_position`);
  const foreign = new Map<string, { t: string; name: string; cols: string[]; refcols: string[]; reft: string; rules: string }>();
  for (const r of fks) {
    const key = `${str(r.t)}.${str(r.name)}`;
    const rules = `ON UPDATE ${str(r.onupdate)} ON DELETE ${str(r.ondelete)} MATCH ${str(r.matching)}`;
    const f = foreign.get(key) ?? { t: str(r.t), name: str(r.name), cols: [], refcols: [], reft: str(r.reft), rules };
    f.cols.push(str(r.col));
    f.refcols.push(str(r.refcol));
    foreign.set(key, f);
  }
  for (const f of foreign.values()) {
    const t = out[f.t];
    if (t) t.foreignKey[f.name] = `FOREIGN KEY (${f.cols.join(', ')}) REFERENCES ${f.reft} (${f.refcols.join(', ')}) ${f.rules}`;
  }
  const cols = await rows(db, sql`select table_name as t, column_name as col, column_default as def, extra as extra, collation_name as coll
      from information_schema.columns where table_schema = database()`);
  for (const r of cols) {
    const t = tableOf(out, r.t);
    if (!t) continue;
    const def = r.def === null || r.def === undefined ? null : str(r.def);
    const extra = str(r.extra ?? '').trim();
    t.default[str(r.col)] = extra ? `${def ?? 'none'} ${extra}` : def;
    t.collation[str(r.col)] = r.coll === null || r.coll === undefined ? null : str(r.coll);
  }
  const stats = await rows(db, sql`select table_name as t, index_name as name, non_unique as nonuniq, column_name as col,
        sub_part as part, collation as dir, index_type as kind
      from information_schema.statistics where table_schema = database() and index_name <> 'PRIMARY'
      order by table_name, index_name, seq_in_index`);
  const indexes = new Map<string, { t: string; name: string; unique: boolean; kind: string; cols: string[] }>();
  for (const r of stats) {
    const key = `${str(r.t)}.${str(r.name)}`;
    const ix = indexes.get(key) ?? { t: str(r.t), name: str(r.name), unique: Number(r.nonuniq) === 0, kind: str(r.kind), cols: [] };
    const part = r.part === null || r.part === undefined ? '' : `(${str(r.part)})`;
    ix.cols.push(`${r.col === null || r.col === undefined ? '(expression)' : str(r.col)}${part}${str(r.dir) === 'D' ? ' DESC' : ''}`);
    indexes.set(key, ix);
  }
  for (const ix of indexes.values()) {
    const t = out[ix.t];
    if (t) t.index[ix.name] = `${ix.unique ? 'UNIQUE ' : ''}INDEX ${ix.name} USING ${ix.kind} (${ix.cols.join(', ')})`;
  }
  const trg = await rows(db, sql`select event_object_table as t, trigger_name as name, action_timing as timing,
        event_manipulation as event, action_orientation as orientation, action_statement as body
      from information_schema.triggers where trigger_schema = database()`);
  for (const r of trg) {
    const t = tableOf(out, r.t);
    // MariaDB lists a trigger to an account with INSERT, UPDATE or DELETE on its table, but shows
    // what it does only with TRIGGER: a hidden statement is left out (visibility reports it), not
    // compared as the text "null".
    if (t && r.body !== null && r.body !== undefined)
      t.trigger[str(r.name)] = `${str(r.timing)} ${str(r.event)} FOR EACH ${str(r.orientation)} ${str(r.body)}`;
  }
  return out;
}

async function definitionsSqlite(db: Kysely<any>): Promise<SchemaDefinitions> {
  const out: SchemaDefinitions = {};
  const tables = await rows(db, sql`select l.name as name, l.strict as strict, l.wr as wr, s.sql as sql
      from pragma_table_list as l join sqlite_schema as s on s.name = l.name and s.type = 'table'
      where l.schema = 'main' and l.type = 'table' and l.name not like 'sqlite_%'`);
  for (const r of tables) {
    const name = str(r.name);
    const ddl = str(r.sql);
    const t = (out[name] = emptyDefinitions());
    t.option.STRICT = Number(r.strict) === 1 ? 'on' : 'off';
    t.option['WITHOUT ROWID'] = Number(r.wr) === 1 ? 'on' : 'off';
    t.option.AUTOINCREMENT = hasKeyword(ddl, 'AUTOINCREMENT') ? 'on' : 'off';
    for (const [check, expr] of namedChecks(ddl)) t.check[check] = `CHECK (${expr})`;
    for (const [fk, clause] of namedForeignKeys(ddl)) t.foreignKey[fk] = clause;
    const cols = await rows(db, sql`select name, dflt_value as def from pragma_table_xinfo(${name}) where hidden = 0`);
    for (const c of cols) {
      t.default[str(c.name)] = c.def === null || c.def === undefined ? null : str(c.def);
    }
  }
  // Indexes SQLite makes itself (PRIMARY KEY, UNIQUE constraints) have no text; Coffer names its own.
  const objects = await rows(db, sql`select type, name, tbl_name as t, sql from sqlite_schema
      where type in ('index', 'trigger') and sql is not null`);
  for (const r of objects) {
    const t = tableOf(out, r.t);
    if (!t) continue;
    if (str(r.type) === 'index') t.index[str(r.name)] = str(r.sql);
    else t.trigger[str(r.name)] = str(r.sql);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Visibility: what the account reading cannot see

/** Something the account cannot see, so it was not checked (doctor warns; diffFacts does not call it missing). */
export interface Unseen {
  /** What was not checked: "CHECK constraints and foreign keys", "triggers", "trigger definitions", … */
  what: string;
  /** A definition (compared only with the scratch reference), rather than whether the object exists. */
  definition: boolean;
  /** The tables concerned. */
  tables: string[];
  /** The objects concerned, where their names are known. */
  names: string[];
  /** Why the account cannot see them: what the probe found, and the engine's rule. */
  why: string;
  /** What would let this account see them: a GRANT, and what else it allows. */
  grant: string;
}

export interface Visibility {
  /** For diffFacts: what not to judge, per table. */
  hidden: HiddenFacts;
  unseen: Unseen[];
}

/**
 * What of `expected` the account `db` connects as cannot see in `live` (introspect's facts, read
 * through `db`) and, when given, in `definitions` (introspectDefinitions', read the same way).
 * Found by probes that tell hidden from absent, not by rules about privileges, which differ
 * between engines, versions and how a privilege was granted (MariaDB 10.11 shows a table's
 * constraints for REFERENCES on the database, not for ALL PRIVILEGES on the table):
 *
 *   PostgreSQL       nothing is hidden: pg_catalog and pg_get_*def show every constraint, index,
 *                    trigger, default and trigger function body to every role, whatever it may
 *                    do with the tables.
 *   SQLite           nothing: there are no accounts; whoever opens the file reads its schema.
 *   MySQL/MariaDB    information_schema leaves out what the account has too few privileges for:
 *     constraints    MariaDB lists a table's constraints (table_constraints,
 *                    referential_constraints) only to an account with a privilege beyond SELECT
 *                    on the whole database. Probe: every Coffer table has a primary key, which
 *                    statistics shows to any account that can read the table, so a table whose
 *                    unique keys table_constraints leaves out has its constraints hidden (a table
 *                    with no unique key left to probe counts as hidden when another table is). A
 *                    foreign key that key_column_usage or table_constraints names but
 *                    referential_constraints leaves out is hidden likewise.
 *     triggers       listed only to an account with TRIGGER on the table (MariaDB: or INSERT,
 *                    UPDATE, DELETE), and what one does (action_statement) only with TRIGGER.
 *                    Probe: each trigger `expected` has and the catalogue does not list is asked
 *                    for by name (SHOW CREATE TRIGGER), which answers "does not exist" for an
 *                    absent trigger and "access denied" for a hidden one: only the latter is
 *                    hidden, the former stays missing.
 *     CHECK text     a CHECK table_constraints lists that check_constraints leaves out.
 */
export async function visibility(
  db: Kysely<any>,
  dialect: Dialect,
  expected: SchemaFacts,
  live: SchemaFacts,
  definitions?: SchemaDefinitions,
): Promise<Visibility> {
  if (dialect !== 'mysql') return { hidden: {}, unseen: [] };
  return visibilityMysql(db, expected, live, definitions);
}

/** SHOW CREATE TRIGGER of a trigger this account may not see: MariaDB 1227, MySQL 1142 (or 1044 for the database). */
const ACCESS_DENIED = new Set([1044, 1142, 1227]);
const TRIGGER_DOES_NOT_EXIST = 1360;

/** Whether a trigger the catalogue does not list exists but is hidden from this account. */
async function triggerHidden(db: Kysely<any>, name: string): Promise<boolean> {
  try {
    await sql.raw(`SHOW CREATE TRIGGER ${quote('mysql', name)}`).execute(db);
    return false; // it shows: not hidden, so not where the catalogue would list it
  } catch (e) {
    const errno = (e as { errno?: unknown }).errno;
    if (errno === TRIGGER_DOES_NOT_EXIST) return false;
    if (typeof errno === 'number' && ACCESS_DENIED.has(errno)) return true;
    throw e;
  }
}

function byTable(rs: readonly Row[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of rs) {
    const t = str(r.t);
    const names = out.get(t) ?? new Set<string>();
    names.add(str(r.name));
    out.set(t, names);
  }
  return out;
}

async function visibilityMysql(db: Kysely<any>, expected: SchemaFacts, live: SchemaFacts, definitions?: SchemaDefinitions): Promise<Visibility> {
  const hidden: HiddenFacts = {};
  const unseen: Unseen[] = [];
  const who = (await rows(db, sql`select current_user() as u, database() as d, version() as v`))[0] ?? {};
  const account = str(who.u ?? '');
  const at = account.lastIndexOf('@');
  const grantee = at < 0 ? `'${account}'` : `'${account.slice(0, at)}'@'${account.slice(at + 1)}'`;
  const grant = (privilege: string) => `GRANT ${privilege} ON ${quote('mysql', str(who.d ?? ''))}.* TO ${grantee}`;
  const mariadb = /mariadb/i.test(str(who.v ?? ''));
  const references = `${grant('REFERENCES')} (it shows constraints; it lets the account change no row and no table)`;
  const trigger = `${grant('TRIGGER')} (which also lets the account create and drop triggers)`;
  // Coffer's tables the account can see at all (one it cannot is "missing table" to diffFacts).
  const tables = Object.keys(expected).filter((t) => live[t]);

  const uniques = byTable(
    await rows(db, sql`select distinct table_name as t, index_name as name from information_schema.statistics
      where table_schema = database() and non_unique = 0`),
  );
  const constraints = await rows(db, sql`select table_name as t, constraint_name as name, constraint_type as kind
      from information_schema.table_constraints where table_schema = database()`);
  const keys = byTable(constraints.filter((r) => ['PRIMARY KEY', 'UNIQUE'].includes(str(r.kind))));
  const foreign = byTable([
    ...constraints.filter((r) => str(r.kind) === 'FOREIGN KEY'),
    ...(await rows(db, sql`select distinct table_name as t, constraint_name as name from information_schema.key_column_usage
      where table_schema = database() and referenced_table_name is not null`)),
  ]);
  const referential = byTable(
    await rows(db, sql`select table_name as t, constraint_name as name from information_schema.referential_constraints
      where constraint_schema = database()`),
  );
  const keysHidden = (t: string) => [...(uniques.get(t) ?? [])].some((n) => !keys.get(t)?.has(n));
  const anyHidden = tables.some(keysHidden);
  const constraintsHidden = tables.filter((t) => (uniques.get(t)?.size ? keysHidden(t) : anyHidden));
  for (const t of constraintsHidden) hidden[t] = { checks: true, foreignKeys: true };
  if (constraintsHidden.length)
    unseen.push({
      what: 'CHECK constraints and foreign keys',
      definition: false,
      tables: constraintsHidden,
      names: [],
      why: `information_schema.table_constraints lists none of their constraints to this account, not even the primary keys information_schema.statistics shows${mariadb ? ' (MariaDB lists the constraints of a table only to an account with a privilege beyond SELECT on the whole database)' : ''}`,
      grant: references,
    });
  const fkHidden = tables.filter((t) => !hidden[t] && [...(foreign.get(t) ?? [])].some((n) => !referential.get(t)?.has(n)));
  for (const t of fkHidden) hidden[t] = { foreignKeys: true };
  if (fkHidden.length)
    unseen.push({
      what: 'foreign keys',
      definition: false,
      tables: fkHidden,
      names: fkHidden.flatMap((t) => [...(foreign.get(t) ?? [])].filter((n) => !referential.get(t)?.has(n))),
      why: 'information_schema.referential_constraints leaves out foreign keys that key_column_usage names',
      grant: references,
    });

  const triggerTables: string[] = [];
  const triggers: string[] = [];
  for (const t of tables) {
    const names: string[] = [];
    for (const name of expected[t]!.triggers) if (!live[t]!.triggers.includes(name) && (await triggerHidden(db, name))) names.push(name);
    if (!names.length) continue;
    (hidden[t] ??= {}).triggers = names;
    triggerTables.push(t);
    triggers.push(...names);
  }
  if (triggers.length)
    unseen.push({
      what: 'triggers',
      definition: false,
      tables: triggerTables,
      names: triggers,
      why: `information_schema.triggers does not list them to this account; each exists (SHOW CREATE TRIGGER, asked by name, answers "access denied", not "does not exist"), but which table it is on and what it does cannot be read (${mariadb ? 'MariaDB lists the triggers of a table only to an account with TRIGGER, INSERT, UPDATE or DELETE on it' : 'MySQL lists the triggers of a table only to an account with TRIGGER on it'})`,
      grant: trigger,
    });

  if (!definitions) return { hidden, unseen };
  const statementTables: string[] = [];
  const statements: string[] = [];
  const checkTables: string[] = [];
  const checks: string[] = [];
  for (const t of tables) {
    const d = definitions[t];
    const s = live[t]!.triggers.filter((n) => !d || !(n in d.trigger));
    if (s.length) statementTables.push(t);
    statements.push(...s);
    if (hidden[t]?.checks) continue;
    const c = live[t]!.checks.filter((n) => !d || !(n in d.check));
    if (c.length) checkTables.push(t);
    checks.push(...c);
  }
  if (statements.length)
    unseen.push({
      what: 'trigger definitions',
      definition: true,
      tables: statementTables,
      names: statements,
      why: 'information_schema.triggers lists them to this account but shows what they do (action_statement) only to an account with the TRIGGER privilege on their table',
      grant: trigger,
    });
  if (checks.length)
    unseen.push({
      what: 'CHECK expressions',
      definition: true,
      tables: checkTables,
      names: checks,
      why: 'information_schema.check_constraints leaves out CHECKs that table_constraints lists to this account',
      grant: references,
    });
  return { hidden, unseen };
}
