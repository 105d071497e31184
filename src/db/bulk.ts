// Multi-row inserts, the one place where how a batch reaches each backend differs. Rows are
// validated and encoded by the table's codec exactly as tx.insert does; then
// - PostgreSQL gets one statement per batch, `INSERT … SELECT * FROM unnest($1::t[], …)`: one
//   array parameter per column, so the statement text is the same for every batch size (parsed
//   once per connection, not 9 × 1,000 placeholders per block) and the server binds a handful of
//   parameters instead of thousands;
// - SQLite gets one cached one-row INSERT stepped once per row inside a single driver call
//   (sqlite-driver.ts RowBatch): in process, that beats any multi-row statement;
// - MySQL gets multi-row `VALUES (…), (…)` statements written here, not by the query builder
//   (building and compiling a 1,000-row VALUES tree cost more than the insert itself).
// The SQL text is cached per (dialect, table, columns, rows).
import { CompiledQuery, sql, type Expression, type Kysely, type SqlBool } from 'kysely';
import type { ColumnType, Dialect } from '../schema/model.js';
import { STRING_KINDS, encodeValue } from './codec.js';
import { quote } from '../schema/compile.js';
import { RowBatch } from './sqlite-driver.js';
import type { Tx } from './tx.js';
import { insertStatement, MAX_BOUND, rowArgs } from './row-statements.js';

type Row = Record<string, unknown>;

/** Rows per VALUES statement (MySQL): well under its 65,535 placeholders. */
const VALUES_PARAMS_MAX = 16_000;
const VALUES_ROWS_MAX = 1_000;
/** Rows per unnest statement on PostgreSQL (bounded so one statement's arrays stay small). */
const UNNEST_ROWS_MAX = 5_000;

/** The array element type PostgreSQL binds a column's values as. */
export function pgArrayType(t: ColumnType): string {
  switch (t.kind) {
    case 'int':
      return 'int4[]';
    case 'bigint':
    case 'serial':
      return 'int8[]';
    case 'uint256':
      return 'numeric[]';
    case 'bytes':
      return 'bytea[]';
    case 'bool':
      return 'bool[]';
    case 'timestamp':
      return 'timestamptz[]';
    case 'json':
      return 'jsonb[]';
    case 'varchar':
    case 'text':
    case 'hex':
    case 'enum':
      return 'text[]';
  }
}

const sqlCache = new Map<string, string>();

function cachedSql(key: string, build: () => string): string {
  let s = sqlCache.get(key);
  if (s === undefined) {
    s = build();
    if (sqlCache.size > 1_000) sqlCache.clear();
    sqlCache.set(key, s);
  }
  return s;
}

function valuesSql(d: Dialect, table: string, columns: readonly string[], rows: number): string {
  return cachedSql(`${d}\0${table}\0${columns.join(',')}\0${rows}`, () => {
    const tuple = `(${columns.map(() => '?').join(', ')})`;
    return `insert into ${quote(d, table)} (${columns.map((c) => quote(d, c)).join(', ')}) values ${Array(rows).fill(tuple).join(', ')}`;
  });
}

/**
 * `INSERT … SELECT` over one unnest() of the columns' arrays. A column whose value is the same
 * in every row (`scalar[i]`: a block's chain id, height and hash) is bound once as a scalar
 * instead of an array of copies: node-postgres serialises and the server parses every array
 * element, and on block ingest that was a third of them.
 */
function unnestSql(table: string, columns: readonly string[], types: readonly string[], scalar: readonly boolean[]): string {
  return cachedSql(`postgres\0${table}\0${columns.join(',')}\0${types.join(',')}\0${scalar.map(Number).join('')}`, () => {
    const cols = columns.map((c) => quote('postgres', c)).join(', ');
    if (!scalar.some(Boolean)) {
      const arrays = types.map((t, i) => `$${i + 1}::${t}`).join(', ');
      return `insert into ${quote('postgres', table)} (${cols}) select * from unnest(${arrays})`;
    }
    const select: string[] = [];
    const arrays: string[] = [];
    const aliases: string[] = [];
    types.forEach((t, i) => {
      if (scalar[i]) select.push(`$${i + 1}::${t.slice(0, -2)}`);
      else {
        aliases.push(`c${i}`);
        arrays.push(`$${i + 1}::${t}`);
        select.push(`u.c${i}`);
      }
    });
    return `insert into ${quote('postgres', table)} (${cols}) select ${select.join(', ')} from unnest(${arrays.join(', ')}) as u(${aliases.join(', ')})`;
  });
}

/** Which columns hold one primitive value in every row (never all of them: unnest needs an array). */
function constantColumns(names: readonly string[], rows: readonly Row[]): boolean[] {
  const out = names.map((c) => {
    if (rows.length < 2) return false;
    const v = rows[0]![c];
    if (typeof v === 'object' && v !== null) return false; // Buffers, arrays: compared by value they may differ
    for (let i = 1; i < rows.length; i++) if (rows[i]![c] !== v) return false;
    return true;
  });
  if (out.every(Boolean)) out[0] = false;
  return out;
}

/** Keys per lookup of those present (insertRowsUnlessPresent, other than PostgreSQL). */
const PRESENT_LOOKUP_MAX = 500;

// Helpers at module level, not closures per call: tsx runs the sources through esbuild with
// keepNames, which names a named closure with Object.defineProperty each time it is created
// (about 1 µs, on every domain write).

/** A row's key as text: drivers return text keys as strings and integers as numbers or strings. */
const textOf = (r: Row, cols: readonly string[]): string => cols.map((k) => String(r[k])).join('\0');

/** Rows of `columns` columns that one statement can bind. */
const rowsPerStatement = (columns: number): number => Math.max(1, Math.floor(MAX_BOUND / Math.max(1, columns)));

/**
 * Inserts those of `rows` whose key (`keyColumns`: the primary key or a unique key, text or
 * integer columns) is not in `table` yet, and says for each row whether it inserted it. Rows
 * must have distinct keys and the same columns; all are validated and encoded before any SQL
 * runs. PostgreSQL: one `INSERT … ON CONFLICT (key) DO NOTHING RETURNING key` per batch.
 * Elsewhere: a lookup of the keys, then one insert of the others. A concurrent transaction
 * inserting one of those keys between the two makes the insert fail with a duplicate key (never
 * a row lost or doubled); callers use it where writers of these keys are serialised anyway (a
 * chain's ingest lock), and on SQLite the transaction is the only writer.
 */
export async function insertRowsUnlessPresent(
  tx: Tx,
  table: string,
  rows: readonly Row[],
  keyColumns: readonly string[],
): Promise<boolean[]> {
  tx.assertWritable(`insert into ${table}`);
  if (!rows.length) return [];
  const codec = tx.codec(table);
  for (const k of keyColumns) {
    const kind = codec.column(k).type.kind;
    if (!STRING_KINDS.has(kind) && kind !== 'int' && kind !== 'bigint')
      throw new Error(`insertRowsUnlessPresent: key column ${table}.${k} is ${kind}, not text or integer`);
  }
  const encoded = rows.map((r) => codec.encode(r));
  const columns = Object.keys(encoded[0]!);
  if (!encoded.every((r) => sameKeys(columns, r))) throw new Error(`insertRowsUnlessPresent: rows of ${table} differ in their columns`);
  const keys = encoded.map((r) => textOf(r, keyColumns));
  if (new Set(keys).size !== keys.length) throw new Error(`insertRowsUnlessPresent: two rows of ${table} have one key`);
  if (tx.dialect === 'postgres') {
    const inserted = new Set<string>();
    const types = columns.map((c) => pgArrayType(codec.column(c).type));
    const keyList = keyColumns.map((k) => quote('postgres', k)).join(', ');
    for (let i = 0; i < encoded.length; i += UNNEST_ROWS_MAX) {
      const part = encoded.length <= UNNEST_ROWS_MAX ? encoded : encoded.slice(i, i + UNNEST_ROWS_MAX);
      const scalar = constantColumns(columns, part);
      const r = await tx.db.executeQuery<Row>(
        CompiledQuery.raw(
          `${unnestSql(table, columns, types, scalar)} on conflict (${keyList}) do nothing returning ${keyList}`,
          columns.map((c, j) => (scalar[j] ? part[0]![c] : part.map((row) => row[c]))),
        ),
      );
      for (const row of r.rows) inserted.add(textOf(row, keyColumns));
    }
    return keys.map((k) => inserted.has(k));
  }
  // The keys present, looked up per group of rows equal in every key column but the last: by
  // those, and the last one's values.
  const present = new Set<string>();
  const prefix = keyColumns.slice(0, -1);
  const last = keyColumns[keyColumns.length - 1]!;
  const groups = new Map<string, number[]>();
  encoded.forEach((r, i) => {
    const g = textOf(r, prefix);
    (groups.get(g) ?? groups.set(g, []).get(g)!).push(i);
  });
  for (const group of groups.values()) {
    const where = Object.fromEntries(prefix.map((k) => [k, rows[group[0]!]![k]]));
    for (let i = 0; i < group.length; i += PRESENT_LOOKUP_MAX) {
      const values = group.slice(i, i + PRESENT_LOOKUP_MAX).map((j) => rows[j]![last]);
      for (const row of await tx.selectWhereIn(table, where, last, values)) present.add(textOf(row, keyColumns));
    }
  }
  const fresh = encoded.filter((_, i) => !present.has(keys[i]!));
  if (fresh.length) await insertBatch(tx, table, columns, fresh);
  return keys.map((k) => !present.has(k));
}

/**
 * Inserts `rows` into `table` (validated and encoded like tx.insert, all of them before any
 * SQL runs), in as few statements as the backend allows.
 */
export async function insertRows(tx: Tx, table: string, rows: readonly Row[]): Promise<void> {
  tx.assertWritable(`insert into ${table}`);
  const codec = tx.codec(table);
  for (const [columns, run] of columnRuns(rows.map((r) => codec.encode(r)))) await insertBatch(tx, table, columns, run);
}

/**
 * Inserts `rows` (validated and encoded like tx.insert) as multi-row `VALUES (…), (…)`
 * statements, compiled once per table, columns and row count: serial ids follow the rows'
 * order on every backend (the undo journal relies on it), and each statement is a prepared one
 * that needs no building. For the short batches of domain writes; insertRows is the path for
 * bulk loads.
 */
export async function insertRowsInOrder(tx: Tx, table: string, rows: readonly Row[]): Promise<void> {
  tx.assertWritable(`insert into ${table}`);
  const codec = tx.codec(table);
  const runs = columnRuns(
    rows.map((r) => codec.encode(r)),
    rowsPerStatement,
  );
  for (const [columns, run] of runs) {
    if (columns.length === 0 || run.length === 1) await insertBatch(tx, table, columns, run);
    else await tx.run(insertStatement(table, columns, undefined, run.length), rowArgs(run, columns));
  }
}

/**
 * Consecutive rows with the same columns, in order, at most `maxRows(columns)` a run: a column
 * left out must get its DEFAULT, which SQLite cannot spell inside a VALUES list.
 */
function* columnRuns(encoded: Row[], maxRows: (columns: number) => number = () => Infinity): Generator<[string[], Row[]]> {
  for (let i = 0; i < encoded.length;) {
    const columns = Object.keys(encoded[i]!);
    const end = Math.min(encoded.length, i + maxRows(columns.length));
    let j = i + 1;
    while (j < end && sameKeys(columns, encoded[j]!)) j++;
    yield [columns, i === 0 && j === encoded.length ? encoded : encoded.slice(i, j)];
    i = j;
  }
}

/** Whether `row` has exactly `columns`, in that order. */
export function sameKeys(columns: readonly string[], row: Row): boolean {
  const keys = Object.keys(row);
  if (keys.length !== columns.length) return false;
  for (let i = 0; i < keys.length; i++) if (keys[i] !== columns[i]) return false;
  return true;
}

async function insertBatch(tx: Tx, table: string, columns: string[], encoded: Row[]): Promise<void> {
  if (columns.length === 0) {
    for (const r of encoded) await tx.db.insertInto(table).values(r).execute();
    return;
  }
  // One row: the cached single-row statement (row-statements.ts), a prepared statement that
  // needs no building, instead of a one-row batch.
  if (encoded.length === 1) {
    await tx.run(insertStatement(table, columns), rowArgs(encoded, columns));
    return;
  }
  const codec = tx.codec(table);
  await insertEncoded(
    tx.db,
    tx.dialect,
    table,
    columns.map((c) => ({ name: c, type: codec.column(c).type })),
    encoded,
  );
}

/**
 * Inserts rows already encoded for `dialect` (values by column name) into `table`, in as few
 * statements as the backend allows: the one multi-row path of the stores (insertRows) and of
 * copy and restore (ops/db.ts). Every row must have every column; the caller bounds the batch
 * (statement size on MySQL).
 */
export async function insertEncoded(
  db: Kysely<any>,
  dialect: Dialect,
  table: string,
  columns: readonly { name: string; type: ColumnType }[],
  encoded: readonly Row[],
): Promise<void> {
  const names = columns.map((c) => c.name);
  if (dialect === 'postgres') {
    const types = columns.map((c) => pgArrayType(c.type));
    for (let i = 0; i < encoded.length; i += UNNEST_ROWS_MAX) {
      const part = encoded.length <= UNNEST_ROWS_MAX ? encoded : encoded.slice(i, i + UNNEST_ROWS_MAX);
      const scalar = constantColumns(names, part);
      await db.executeQuery(
        CompiledQuery.raw(
          unnestSql(table, names, types, scalar),
          names.map((c, j) => (scalar[j] ? part[0]![c] : part.map((r) => r[c]))),
        ),
      );
    }
    return;
  }
  if (dialect === 'sqlite') {
    const rows = encoded.map((r) => names.map((c) => r[c]));
    await db.executeQuery(CompiledQuery.raw(valuesSql(dialect, table, names, 1), [new RowBatch(rows)]));
    return;
  }
  const perStatement = Math.max(1, Math.min(VALUES_ROWS_MAX, Math.floor(VALUES_PARAMS_MAX / names.length)));
  for (let i = 0; i < encoded.length; i += perStatement) {
    const part = encoded.slice(i, i + perStatement);
    const params: unknown[] = [];
    for (const r of part) for (const c of names) params.push(r[c]);
    await db.executeQuery(CompiledQuery.raw(valuesSql(dialect, table, names, part.length), params));
  }
}

/**
 * `column IN (values)` for a lookup by many keys: on PostgreSQL one array parameter
 * (`= any($1::text[])`, one statement text whatever the count), on SQLite one JSON array for a
 * text column, elsewhere an IN list. Values are encoded by the column's codec; callers keep
 * lists to a few thousand.
 */
export function inValues(tx: Tx, table: string, column: string, values: readonly unknown[]): Expression<SqlBool> {
  const codec = tx.codec(table);
  const type = codec.column(column).type;
  const encoded = values.map((v, i) => encodeValue(tx.dialect, type, v, `${column}[${i}]`));
  if (tx.dialect === 'postgres') return sql<SqlBool>`${sql.ref(column)} = any(${sql.val(encoded)}::${sql.raw(pgArrayType(type))})`;
  // SQLite: strings as one JSON array parameter, unpacked by json_each (one statement text and
  // one bound value whatever the count; building and binding a 1,000-value IN list cost more
  // than the lookup). Text columns only: json_each yields TEXT, which compares as the column does.
  if (tx.dialect === 'sqlite' && STRING_KINDS.has(type.kind)) {
    return sql<SqlBool>`${sql.ref(column)} in (select value from json_each(${JSON.stringify(encoded)}))`;
  }
  return sql<SqlBool>`${sql.ref(column)} in (${sql.join(encoded)})`;
}
