// Single-row statements shaped by the columns they name: INSERT of these columns, UPDATE … SET
// these, DELETE or SELECT … WHERE each of those = a value (or IS NULL). The generic helpers of
// Tx (insert, insertOrIgnore, updateWhere, deleteWhere, selectWhere) take one per table and
// shape from here, compiled once through the cache of prepared.ts: a hot write path neither
// builds nor compiles a Kysely query per call, and runs as a prepared statement.
import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../schema/model.js';
import { defineQuery, type PreparedQuery, type QueryBuild } from './prepared.js';

/** A WHERE clause's shape: each column compared with `=` (a bound value) or tested IS NULL. */
export type WhereShape = readonly (readonly [column: string, isNull: boolean])[];

// Shapes come from code, not data (a table's columns, and which of them are null), so the set
// is small; the cap only keeps a caller that builds shapes from input from growing it forever.
const MAX_SHAPES = 4096;
const shapes = new Map<string, PreparedQuery>();

function shaped(key: string, build: QueryBuild): PreparedQuery {
  let q = shapes.get(key);
  if (!q) {
    q = defineQuery(key, build);
    if (shapes.size < MAX_SHAPES) shapes.set(key, q);
  }
  return q;
}

const whereKey = (w: WhereShape) => w.map(([c, isNull]) => (isNull ? `${c}∅` : c)).join(',');

/** Adds the WHERE shape, binding its non-null values from placeholder `from` on. */
function where<Q extends { where: (...a: any[]) => Q }>(q: Q, w: WhereShape, $: (i: number) => unknown, from: number): Q {
  let i = from;
  for (const [c, isNull] of w) q = isNull ? q.where(c, 'is', null) : q.where(c, '=', $(i++));
  return q;
}

/** Values one multi-row INSERT of this module binds at most (within prepared.ts's MAX_PLACEHOLDERS). */
export const MAX_BOUND = 3000;

/** A multi-row INSERT's VALUES, placeholders numbered row by row from 0. */
function valuesOf(columns: readonly string[], rows: number, $: (i: number) => unknown): Record<string, unknown>[] {
  const n = columns.length;
  return Array.from({ length: rows }, (_, r) => Object.fromEntries(columns.map((c, i) => [c, $(r * n + i)])));
}

/** The arguments of those VALUES: each row's `columns`, row by row. */
export function rowArgs(rows: readonly Record<string, unknown>[], columns: readonly string[]): unknown[] {
  const args = new Array<unknown>(rows.length * columns.length);
  let k = 0;
  for (const r of rows) for (const c of columns) args[k++] = r[c];
  return args;
}

/** ON CONFLICT (columns) DO NOTHING. */
const ignoring = <Q extends { onConflict: (f: (oc: any) => any) => Q }>(q: Q, columns: readonly string[]): Q =>
  q.onConflict((oc) => oc.columns(columns as string[]).doNothing());

/**
 * INSERT INTO table (columns) VALUES (…)[, (…) × rows]: arguments row by row. With `ignoreOn`,
 * ON CONFLICT (ignoreOn) DO NOTHING (not MySQL).
 */
export function insertStatement(table: string, columns: readonly string[], ignoreOn?: readonly string[], rows = 1): PreparedQuery {
  if (rows < 1 || rows * columns.length > MAX_BOUND)
    throw new Error(`insert into ${table}: ${rows} rows of ${columns.length} columns in one statement`);
  const key = `insert ${table} (${columns.join(',')})${rows > 1 ? ` x${rows}` : ''}${ignoreOn ? ` ignore (${ignoreOn.join(',')})` : ''}`;
  return shaped(key, (db, $) => {
    const values = valuesOf(columns, rows, $);
    const q = db.insertInto(table).values(rows === 1 ? values[0]! : values);
    return ignoreOn ? ignoring(q, ignoreOn) : q;
  });
}

/**
 * PostgreSQL: `WITH ins AS (INSERT INTO table (columns) VALUES … × rows) UPDATE target SET … WHERE …`,
 * one statement (one round trip) for an insert and the update that must go with it; its count is
 * the UPDATE's. Arguments: the rows' values row by row, then the SET values, then the WHERE values.
 */
export function insertThenUpdateStatement(
  table: string,
  columns: readonly string[],
  rows: number,
  target: string,
  setColumns: readonly string[],
  w: WhereShape,
): PreparedQuery {
  const n = columns.length;
  if (rows < 1 || rows * n + setColumns.length + w.length > MAX_BOUND)
    throw new Error(`insert into ${table} then update ${target}: too many values for one statement`);
  const key = `insert ${table} (${columns.join(',')}) x${rows} then update ${target} set ${setColumns.join(',')} where ${whereKey(w)}`;
  return shaped(key, (db, $) => {
    const off = rows * n;
    const update = db
      .with('ins', (qc) => qc.insertInto(table).values(valuesOf(columns, rows, $)))
      .updateTable(target)
      .set(Object.fromEntries(setColumns.map((c, i) => [c, $(off + i)])));
    return where(update, w, $, off + setColumns.length);
  });
}

/**
 * One part of writeAllStatement: an INSERT of these columns (ON CONFLICT (ignoreOn) DO NOTHING),
 * an UPDATE … SET these WHERE that shape, or a DELETE … WHERE that shape.
 */
export type WritePart =
  | { readonly insert: string; readonly columns: readonly string[]; readonly ignoreOn?: readonly string[] }
  | { readonly update: string; readonly columns: readonly string[]; readonly where: WhereShape }
  | { readonly delete: string; readonly columns: readonly []; readonly where: WhereShape }
  | AfterAllPart;

/**
 * The last part of a writeAllStatement: `rows` rows of these columns (each value cast to its
 * PostgreSQL type, `types`) inserted only if every other part wrote a row.
 */
export interface AfterAllPart {
  readonly insertAfterAll: string;
  readonly columns: readonly string[];
  readonly types: readonly string[];
  readonly rows: number;
}

/** Values a part binds: its columns (each row's), and the non-null WHERE values of an UPDATE or DELETE. */
export const partArity = (p: WritePart): number =>
  'insertAfterAll' in p
    ? p.columns.length * p.rows
    : p.columns.length + ('insert' in p ? 0 : p.where.filter(([, isNull]) => !isNull).length);

/**
 * PostgreSQL: the writes as data-modifying CTEs of one statement, `WITH w0 AS (INSERT … RETURNING
 * 1), w1 AS (UPDATE … RETURNING 1) … SELECT (SELECT count(*) FROM w0) AS n0, …`: one round trip,
 * and each write's row count. Every part runs against the same snapshot, so none may depend on
 * another (Tx.writeAll checks they touch distinct rows). Arguments: each part's, in order (its
 * columns, then the WHERE values of an UPDATE or DELETE).
 */
export function writeAllStatement(parts: readonly WritePart[]): PreparedQuery {
  const total = parts.reduce((n, p) => n + partArity(p), 0);
  if (!parts.length || total > MAX_BOUND) throw new Error(`${parts.length} writes binding ${total} values in one statement`);
  const key = `write all ${parts
    .map((p) =>
      'insertAfterAll' in p
        ? `insert after all ${p.insertAfterAll} (${p.columns.map((c, j) => `${c}:${p.types[j]}`).join(',')}) x${p.rows}`
        : 'insert' in p
          ? `insert ${p.insert} (${p.columns.join(',')})${p.ignoreOn ? ` ignore (${p.ignoreOn.join(',')})` : ''}`
          : 'update' in p
            ? `update ${p.update} set ${p.columns.join(',')} where ${whereKey(p.where)}`
            : `delete ${p.delete} where ${whereKey(p.where)}`,
    )
    .join('; ')}`;
  return shaped(key, (db, $) => {
    let q: any = db;
    let off = 0;
    parts.forEach((p, i) => {
      const from = off;
      const at = (j: number) => $(from + j);
      const set = Object.fromEntries(p.columns.map((c, j) => [c, at(j)]));
      const one = sql<number>`1`.as('one');
      q = q.with(`w${i}`, (qc: Kysely<any>) =>
        'insertAfterAll' in p
          ? afterAll(qc, p, at, i).returning(one)
          : 'insert' in p
            ? (p.ignoreOn ? ignoring(qc.insertInto(p.insert).values(set), p.ignoreOn) : qc.insertInto(p.insert).values(set)).returning(one)
            : 'update' in p
              ? where(qc.updateTable(p.update).set(set), p.where, $, from + p.columns.length).returning(one)
              : where(qc.deleteFrom(p.delete), p.where, $, from).returning(one),
      );
      off += partArity(p);
    });
    return q.selectNoFrom((eb: any) => parts.map((_, i) => eb.selectFrom(`w${i}`).select(eb.fn.countAll().as('n')).as(`n${i}`)));
  });
}

/**
 * `INSERT INTO table (columns) SELECT * FROM (VALUES ($1::type, …), …) AS v (columns) WHERE EXISTS
 * (SELECT 1 FROM w0) AND …`: the rows go in only if each of the `before` parts wrote one.
 */
function afterAll(qc: Kysely<any>, p: AfterAllPart, at: (j: number) => unknown, before: number) {
  if (before < 1) throw new Error('writeAll: rows inserted after all writes need writes before them');
  const n = p.columns.length;
  const rows = Array.from(
    { length: p.rows },
    (_, r) => sql`(${sql.join(p.columns.map((_, j) => sql`${at(r * n + j)}::${sql.raw(p.types[j]!)}`))})`,
  );
  const wrote = Array.from({ length: before }, (_, k) => sql`exists (select 1 from ${sql.table(`w${k}`)})`);
  return qc
    .insertInto(p.insertAfterAll)
    .columns(p.columns as never)
    .expression(
      sql`select * from (values ${sql.join(rows)}) as v (${sql.join(p.columns.map((c) => sql.ref(c)))}) where ${sql.join(wrote, sql` and `)}`,
    );
}

/** UPDATE table SET columns = … WHERE …: arguments are the SET values, then the WHERE values. */
export function updateStatement(table: string, columns: readonly string[], w: WhereShape): PreparedQuery {
  return shaped(`update ${table} set ${columns.join(',')} where ${whereKey(w)}`, (db, $) =>
    where(db.updateTable(table).set(Object.fromEntries(columns.map((c, i) => [c, $(i)]))), w, $, columns.length),
  );
}

export function deleteStatement(table: string, w: WhereShape): PreparedQuery {
  return shaped(`delete ${table} where ${whereKey(w)}`, (db, $) => where(db.deleteFrom(table), w, $, 0));
}

/**
 * SELECT * … WHERE … AND column IN (… × count) ORDER BY column, optionally FOR UPDATE: several
 * rows in one round trip, locked in key order (so two callers locking overlapping sets cannot
 * deadlock). Arguments: the WHERE values, then the IN values.
 */
export function selectInStatement(
  dialect: Dialect,
  table: string,
  w: WhereShape,
  column: string,
  count: number,
  lock: boolean,
): PreparedQuery {
  if (count < 1 || count + w.length > MAX_BOUND) throw new Error(`select from ${table}: ${count} values in one IN list`);
  const forUpdate = lock && dialect !== 'sqlite';
  const key = `${dialect} select ${table} where ${whereKey(w)} and ${column} in x${count} order by ${column}${forUpdate ? ' for update' : ''}`;
  return shaped(key, (db, $) => {
    const from = w.filter(([, isNull]) => !isNull).length;
    const q = where(db.selectFrom(table).selectAll(), w, $, 0)
      .where(
        column,
        'in',
        Array.from({ length: count }, (_, i) => $(from + i)),
      )
      .orderBy(column);
    return forUpdate ? q.forUpdate() : q;
  });
}

/** SELECT * … WHERE …, optionally FOR UPDATE (which SQLite has no syntax for, nor needs). */
export function selectStatement(dialect: Dialect, table: string, w: WhereShape, lock: boolean): PreparedQuery {
  const forUpdate = lock && dialect !== 'sqlite';
  return shaped(`${dialect} select ${table} where ${whereKey(w)}${forUpdate ? ' for update' : ''}`, (db, $) => {
    const q = where(db.selectFrom(table).selectAll(), w, $, 0);
    return forUpdate ? q.forUpdate() : q;
  });
}
