// The transaction handle every domain store takes. It exists only inside store.write/read, and
// every use after the transaction ended throws, so a store cannot run outside one.
import { Kysely, sql, type DatabaseConnection, type QueryResult, type SelectQueryBuilder } from 'kysely';
import type { Dialect, Schema } from '../schema/model.js';
import { TableCodec } from './codec.js';
import { ReadOnlyError, UniqueViolationError } from './errors.js';
import { mapDriverError } from './driver-errors.js';
import { bind, bindThroughPlugins, type PreparedQuery } from './prepared.js';
import { insertRows, insertRowsInOrder, pgArrayType, sameKeys } from './bulk.js';
import {
  deleteStatement,
  insertStatement,
  insertThenUpdateStatement,
  MAX_BOUND,
  partArity,
  rowArgs,
  selectInStatement,
  selectStatement,
  updateStatement,
  writeAllStatement,
  type AfterAllPart,
  type WhereShape,
  type WritePart,
} from './row-statements.js';
import type { SyncConnection } from './sqlite-driver.js';

export type TxKind = 'read' | 'write';

/** @internal What Coffer hands a Tx: the transaction's connection, without a Kysely per transaction. */
export interface TxConnection {
  readonly conn: DatabaseConnection;
  /** Creates the Kysely transaction handle on `conn` (only when a store uses tx.db). */
  bind(): Kysely<any>;
  /** A Kysely instance of the same dialect, to compile cached queries with. */
  readonly compiler: Kysely<any>;
  /** `conn` is a SyncConnection (SQLite). */
  readonly sync?: boolean;
}

const rowsOf = <R>(r: QueryResult<R>): R[] => r.rows as R[];

/** A WHERE's values, encoded. An undefined value would drop its column and widen the statement to every row. */
function encodeWhere(codec: TableCodec, table: string, where: Record<string, unknown>): Record<string, unknown> {
  for (const k in where)
    if (where[k] === undefined) throw new Error(`${table}: WHERE column ${k} is undefined (the statement would reach every row)`);
  return codec.encode(where);
}

/** The WHERE shape of an encoded row (which columns are null) and the values it binds. */
const shapeOf = (w: Record<string, unknown>): WhereShape => Object.keys(w).map((c) => [c, w[c] === null] as const);
const boundOf = (w: Record<string, unknown>): unknown[] => Object.values(w).filter((v) => v !== null);

/**
 * One write of Tx.writeAll: a row to insert (with `ignoreOn`, as insertOrIgnore), or an update or
 * delete of the one row `where` names by its primary key (and any other columns, as guards).
 */
export type RowWrite =
  | { readonly insert: string; readonly row: Record<string, unknown>; readonly ignoreOn?: readonly string[] }
  | { readonly update: string; readonly set: Record<string, unknown>; readonly where: Record<string, unknown> }
  | { readonly delete: string; readonly where: Record<string, unknown> };

const tableOf = (w: RowWrite): string => ('insert' in w ? w.insert : 'update' in w ? w.update : w.delete);

/** A primary-key value as text, to compare keys across writes (Buffers by content). */
const keyText = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('hex') : String(v));

const ENDED = 'this transaction has ended: run store calls inside coffer.write()/read()';

export class Tx {
  readonly kind: TxKind;
  readonly dialect: Dialect;
  /** MariaDB rather than MySQL. */
  readonly mariadb: boolean;
  #db: Kysely<any> | undefined;
  readonly #conn: TxConnection | undefined;
  readonly #codecs: Map<string, TableCodec>;
  readonly #schema: Schema;
  #closed = false;
  readonly #afterCommit: (() => void)[] = [];
  #savepointRollbacks = 0;
  /** Savepoints open now (tx.savepoint nesting). */
  #depth = 0;
  /**
   * The first statement failure not yet undone by a savepoint's rollback, and the savepoint depth
   * it happened at. While it is set every statement and the commit raise it (see #refuseIfFailed).
   */
  #failed = false;
  #failure: unknown;
  #failureDepth = 0;

  /** `db`: a Kysely transaction, or (Coffer) the transaction's connection. */
  constructor(
    kind: TxKind,
    dialect: Dialect,
    mariadb: boolean,
    db: Kysely<any> | TxConnection,
    schema: Schema,
    codecs: Map<string, TableCodec>,
  ) {
    this.kind = kind;
    this.dialect = dialect;
    this.mariadb = mariadb;
    if (db instanceof Kysely) this.#db = db;
    else this.#conn = db;
    this.#schema = schema;
    this.#codecs = codecs;
  }

  /** The Kysely transaction (created on first use). Throws once the transaction has ended. */
  get db(): Kysely<any> {
    if (this.#closed) throw new Error(ENDED);
    return (this.#db ??= this.#conn!.bind());
  }

  /**
   * Runs a query of the compiled-query cache (prepared.ts) with `args` bound to its
   * placeholders, in this transaction, and returns the rows as the driver gave them. No query
   * building or compiling per call, and a prepared statement on SQLite and PostgreSQL.
   */
  query<R = Record<string, unknown>>(q: PreparedQuery, args: readonly unknown[]): Promise<R[]> {
    // Not an async function: on SQLite the statement runs synchronously and the caller's await
    // is the only promise (every error still arrives as a rejection).
    try {
      const r = this.#execute<R>(q, args);
      return r instanceof Promise ? r.then(rowsOf, (e: unknown) => this.rethrowFailure(e)) : Promise.resolve(r.rows);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** As query(), but the driver's whole result: the rows and the number of rows a write affected. */
  run<R = Record<string, unknown>>(q: PreparedQuery, args: readonly unknown[]): Promise<QueryResult<R>> {
    try {
      const r = this.#execute<R>(q, args);
      return r instanceof Promise ? r.catch((e: unknown) => this.rethrowFailure(e)) : Promise.resolve(r);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * The result, synchronously where the driver is (SQLite); throws synchronously only there. A
   * synchronous failure is recorded here, a rejection by the caller (query, run).
   */
  #execute<R>(q: PreparedQuery, args: readonly unknown[]): QueryResult<R> | Promise<QueryResult<R>> {
    this.beforeStatement();
    const c = this.#conn;
    if (c) {
      const compiled = bind(q.template(this.dialect, c.compiler), q.key, args);
      const conn = c.conn;
      if (c.sync) {
        try {
          return (conn as SyncConnection).executeSync<R>(compiled);
        } catch (e) {
          this.statementFailed(e);
          throw e;
        }
      }
      return conn.executeQuery<R>(compiled);
    }
    // A Tx made over a Kysely transaction (tests with plugins): through its executor and plugins.
    const db = this.#db!;
    return db.executeQuery<R>(bindThroughPlugins(q.template(this.dialect, db.withoutPlugins()), q.key, args, db));
  }

  /** Whether writeAll sends its writes (and its thenInsert rows) as one statement: PostgreSQL. */
  get writesInOneStatement(): boolean {
    return this.dialect === 'postgres';
  }

  /**
   * Whether a statement costs a round trip to a server (PostgreSQL, MySQL), rather than a call
   * into the process (SQLite), where two simple prepared statements beat one compound statement
   * that does the work of both (the point read as one UNION ALL: 10–15 % slower on SQLite, 20–37 %
   * faster on PostgreSQL and MariaDB, in bench/ at 10k rows).
   */
  get statementsCostRoundTrips(): boolean {
    return this.dialect !== 'sqlite';
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The logical schema this transaction's codecs come from. */
  get schema(): Schema {
    return this.#schema;
  }

  /** Encoder/decoder for a table of the logical schema. */
  codec(table: string): TableCodec {
    let c = this.#codecs.get(table);
    if (!c) {
      const def = this.#schema.tables.get(table);
      if (!def) throw new Error(`unknown table ${table}`);
      c = new TableCodec(this.dialect, def);
      this.#codecs.set(table, c);
    }
    return c;
  }

  /** Domain write operations call this first, so a read transaction refuses them early. */
  assertWritable(operation: string): void {
    if (this.kind !== 'write') throw new ReadOnlyError(`${operation} needs a write transaction (coffer.write)`);
  }

  /** Runs after a successful commit (notifications, caches); never inside the transaction. */
  afterCommit(fn: () => void): void {
    this.#afterCommit.push(fn);
  }

  /**
   * @internal Called before every statement: refuses it once the transaction has ended, and once
   * a statement of it failed outside a savepoint. PostgreSQL refuses every later statement and
   * answers COMMIT with ROLLBACK there; SQLite and MySQL undo only the failed statement and would
   * commit the rest, and MySQL, when the failure was a deadlock or lock wait timeout that rolled
   * the whole transaction back, would run the rest in autocommit, each statement committed on its
   * own. Refusing here makes a failure mean the same on every backend: the transaction is over,
   * and the caller sees the failure itself (so a deadlock is still retried).
   */
  beforeStatement(): void {
    if (this.#closed) throw new Error(ENDED);
    if (this.#failed) throw this.#failure;
  }

  /**
   * @internal Records a statement's failure and rethrows it: the rejection handler of a
   * statement, passed as an inline arrow (a handler kept per Tx would be a named closure, which
   * tsx's keepNames names with Object.defineProperty on every transaction).
   */
  rethrowFailure(e: unknown): never {
    this.statementFailed(e);
    throw e;
  }

  /** @internal Records a statement's failure (the first one counts) at the current savepoint depth. */
  statementFailed(e: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#failure = e;
    this.#failureDepth = this.#depth;
  }

  /**
   * @internal After the callback returned: a failure it caught without a savepoint ends the
   * transaction here, so the write rolls back and reports it rather than committing the rest.
   */
  assertNotFailed(): void {
    if (this.#failed) throw this.#failure;
  }

  /**
   * @internal Ends the use of this Tx before COMMIT or ROLLBACK is sent: a statement started
   * later (an un-awaited promise, a handle kept past the callback) fails instead of running
   * after the transaction, in autocommit or inside the next transaction on the connection.
   */
  close(): void {
    this.#closed = true;
  }

  end(committed: boolean): (() => void)[] {
    this.#closed = true;
    return committed ? this.#afterCommit.splice(0) : [];
  }

  /** Inserts one row (validated and encoded). */
  async insert(table: string, row: Record<string, unknown>): Promise<void> {
    this.assertWritable(`insert into ${table}`);
    const enc = this.codec(table).encode(row);
    const columns = Object.keys(enc);
    await this.run(
      insertStatement(table, columns),
      columns.map((c) => enc[c]),
    );
  }

  /** Inserts a row with a serial key and returns the key. */
  async insertReturningId(table: string, row: Record<string, unknown>, idColumn = 'id'): Promise<bigint> {
    this.assertWritable(`insert into ${table}`);
    const q = this.db.insertInto(table).values(this.codec(table).encode(row));
    if (this.dialect === 'postgres') {
      const r = await q.returning(idColumn).executeTakeFirstOrThrow();
      return BigInt(String((r as Record<string, unknown>)[idColumn]));
    }
    const r = await q.executeTakeFirstOrThrow();
    if (r.insertId === undefined) throw new Error(`no insert id returned for ${table}`);
    return BigInt(r.insertId);
  }

  /**
   * Inserts unless a row with the same `conflict` key exists; true when inserted. On MySQL any
   * unique key conflict counts, so a false result obliges the caller to check the existing row
   * is the same one (idempotent replay) rather than a different row colliding.
   */
  async insertOrIgnore(table: string, row: Record<string, unknown>, conflict: readonly string[]): Promise<boolean> {
    this.assertWritable(`insert into ${table}`);
    const enc = this.codec(table).encode(row);
    const columns = Object.keys(enc);
    return this.#insertOrIgnore(
      table,
      columns,
      columns.map((c) => enc[c]),
      conflict,
    );
  }

  /** insertOrIgnore of a row already encoded: its columns and their values. */
  async #insertOrIgnore(table: string, columns: readonly string[], values: unknown[], conflict: readonly string[]): Promise<boolean> {
    if (this.dialect === 'mysql') {
      // InnoDB rolls back only the failed statement on a duplicate key, so the transaction
      // goes on; ON DUPLICATE KEY UPDATE cannot tell "ignored" from "inserted" under FOUND_ROWS.
      // The one failure a transaction survives by design, so it is not recorded as one.
      try {
        await this.#execute(insertStatement(table, columns), values);
        return true;
      } catch (e) {
        if ((e as { errno?: number }).errno === 1062) return false;
        this.statementFailed(e);
        throw e;
      }
    }
    const r = await this.run(insertStatement(table, columns, conflict), values);
    return BigInt(r.numAffectedRows ?? 0n) > 0n;
  }

  /**
   * UPDATE table SET changes WHERE each column of `where` equals its value (IS NULL for null),
   * validated and encoded like insert(); returns how many rows it changed.
   */
  async updateWhere(table: string, changes: Record<string, unknown>, where: Record<string, unknown>): Promise<bigint> {
    this.assertWritable(`update of ${table}`);
    const codec = this.codec(table);
    const set = codec.encode(changes);
    const columns = Object.keys(set);
    const w = encodeWhere(codec, table, where);
    const r = await this.run(updateStatement(table, columns, shapeOf(w)), columns.map((c) => set[c]).concat(boundOf(w)));
    return BigInt(r.numAffectedRows ?? 0n);
  }

  /**
   * Inserts `rows` into `table`, then runs updateWhere(target, changes, where) and returns its
   * count, as one statement where the backend can (PostgreSQL: a data-modifying CTE): a lock
   * held across both, such as the audit head's, is held one round trip less. Elsewhere, and for
   * rows of differing columns, the same two steps as insertRows and updateWhere.
   */
  async insertThenUpdate(
    table: string,
    rows: readonly Record<string, unknown>[],
    target: string,
    changes: Record<string, unknown>,
    where: Record<string, unknown>,
  ): Promise<bigint> {
    this.assertWritable(`insert into ${table}`);
    this.assertWritable(`update of ${target}`);
    if (this.dialect === 'postgres' && rows.length > 0) {
      const codec = this.codec(table);
      const encoded = rows.map((r) => codec.encode(r));
      const columns = Object.keys(encoded[0]!);
      const tc = this.codec(target);
      const set = tc.encode(changes);
      const setColumns = Object.keys(set);
      const w = encodeWhere(tc, target, where);
      const sameColumns = encoded.every((r) => sameKeys(columns, r));
      if (columns.length && sameColumns && rows.length * columns.length + setColumns.length + Object.keys(w).length <= MAX_BOUND) {
        const args = rowArgs(encoded, columns).concat(rowArgs([set], setColumns), boundOf(w));
        const q = insertThenUpdateStatement(table, columns, rows.length, target, setColumns, shapeOf(w));
        const r = await this.run(q, args);
        return BigInt(r.numAffectedRows ?? 0n);
      }
    }
    await insertRows(this, table, rows);
    return this.updateWhere(target, changes, where);
  }

  /**
   * Several single-row writes (inserts, and updates and deletes of one row by its primary key),
   * validated and encoded like insert(), insertOrIgnore(), updateWhere() and deleteWhere() before
   * any runs, then run as one statement where the backend can (PostgreSQL: data-modifying CTEs,
   * one round trip) and one after another in the given order elsewhere. Returns each write's
   * row count in order (an insert's is 1, or 0 if ignored).
   * On PostgreSQL every write sees the database as it was before the statement, so the writes
   * must not depend on each other: each names its row's whole primary key, and no two name the
   * same row (refused). A failing write fails the call; where they run one by one, the writes
   * before it have run, and it is the caller's transaction that ends with the error.
   * `thenInsert`: rows of a table keyed by a generated id (so they cannot collide with the
   * writes), inserted in order after the writes and only if every write wrote a row; in the
   * same statement on PostgreSQL (the undo journal's entries of the writes).
   */
  async writeAll(
    writes: readonly RowWrite[],
    opts: { thenInsert?: { table: string; rows: readonly Record<string, unknown>[] } } = {},
  ): Promise<bigint[]> {
    const parts: Exclude<WritePart, AfterAllPart>[] = [];
    const args: unknown[][] = [];
    const after = opts.thenInsert && opts.thenInsert.rows.length ? this.#afterAll(opts.thenInsert.table, opts.thenInsert.rows) : undefined;
    const rows = new Set<string>();
    for (const w of writes) {
      const table = tableOf(w);
      this.assertWritable(`${'insert' in w ? 'insert into' : 'update' in w ? 'update of' : 'delete from'} ${table}`);
      const codec = this.codec(table);
      const values = 'insert' in w ? codec.encode(w.row) : 'update' in w ? codec.encode(w.set) : {};
      const columns = Object.keys(values);
      const keyed = 'insert' in w ? values : codec.encode(w.where);
      const pk = codec.table.primaryKey;
      const missing = pk.filter((c) => keyed[c] === undefined || keyed[c] === null);
      if (missing.length)
        throw new Error(`writeAll: the ${'insert' in w ? 'row' : 'where'} for ${table} lacks its key column(s) ${missing.join(', ')}`);
      const row = `${table}(${pk.map((c) => keyText(keyed[c])).join(',')})`;
      if (rows.has(row)) throw new Error(`writeAll: two writes of ${row}; each must touch its own row`);
      rows.add(row);
      const bound = columns.map((c) => values[c]);
      if ('insert' in w) {
        parts.push(w.ignoreOn ? { insert: table, columns, ignoreOn: w.ignoreOn } : { insert: table, columns });
        args.push(bound);
      } else {
        parts.push(
          'update' in w ? { update: table, columns, where: shapeOf(keyed) } : { delete: table, columns: [], where: shapeOf(keyed) },
        );
        args.push(bound.concat(boundOf(keyed)));
      }
    }
    if (!parts.length && after) throw new Error('writeAll: rows inserted after all writes need writes before them');
    if (
      this.dialect === 'postgres' &&
      parts.length + (after ? 1 : 0) > 1 &&
      parts.reduce((n, p) => n + partArity(p), 0) + (after ? partArity(after.part) : 0) <= MAX_BOUND
    ) {
      const all = after ? [...parts, after.part] : parts;
      const [counts] = await this.query(writeAllStatement(all), (after ? [...args, after.args] : args).flat());
      return parts.map((_, i) => BigInt(String(counts![`n${i}`])));
    }
    const out: bigint[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      const a = args[i]!;
      if ('insert' in p)
        out.push(
          p.ignoreOn
            ? (await this.#insertOrIgnore(p.insert, p.columns, a, p.ignoreOn))
              ? 1n
              : 0n
            : (await this.run(insertStatement(p.insert, p.columns), a), 1n),
        );
      else {
        const q = 'update' in p ? updateStatement(p.update, p.columns, p.where) : deleteStatement(p.delete, p.where);
        out.push(BigInt((await this.run(q, a)).numAffectedRows ?? 0n));
      }
    }
    if (after && out.every((n) => n > 0n)) await insertRowsInOrder(this, opts.thenInsert!.table, opts.thenInsert!.rows);
    return out;
  }

  /** writeAll's `thenInsert` rows, validated and encoded: its statement part and arguments. */
  #afterAll(table: string, rows: readonly Record<string, unknown>[]): { part: AfterAllPart; args: unknown[] } {
    this.assertWritable(`insert into ${table}`);
    const codec = this.codec(table);
    const pk = codec.table.primaryKey;
    if (pk.length !== 1 || codec.column(pk[0]!).type.kind !== 'serial')
      throw new Error(`writeAll: rows inserted after all writes must be of a table keyed by a generated id, not ${table}`);
    const encoded = rows.map((r) => codec.encode(r));
    const columns = Object.keys(encoded[0]!);
    if (columns.includes(pk[0]!) || !encoded.every((r) => sameKeys(columns, r)))
      throw new Error(`writeAll: rows inserted after all writes into ${table} must have the same columns, without ${pk[0]}`);
    const types = columns.map((c) => pgArrayType(codec.column(c).type).slice(0, -2));
    return { part: { insertAfterAll: table, columns, types, rows: encoded.length }, args: rowArgs(encoded, columns) };
  }

  /** DELETE FROM table WHERE each column of `where` equals its value (IS NULL for null); returns how many rows went. */
  async deleteWhere(table: string, where: Record<string, unknown>): Promise<bigint> {
    this.assertWritable(`delete from ${table}`);
    const w = encodeWhere(this.codec(table), table, where);
    const r = await this.run(deleteStatement(table, shapeOf(w)), boundOf(w));
    return BigInt(r.numAffectedRows ?? 0n);
  }

  /**
   * SELECT * FROM table WHERE each column of `where` equals its value (IS NULL for null), rows
   * as the driver gives them (decode with codec()); `lock`: FOR UPDATE, as lockRows().
   */
  selectWhere(table: string, where: Record<string, unknown>, opts: { lock?: boolean } = {}): Promise<Record<string, unknown>[]> {
    try {
      if (opts.lock) this.assertWritable('locking read');
      const w = encodeWhere(this.codec(table), table, where);
      return this.query(selectStatement(this.dialect, table, shapeOf(w), opts.lock ?? false), boundOf(w));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * SELECT * FROM table WHERE `where` (as selectWhere) AND `column` IN `values`, ordered by
   * `column`: the rows of several keys in one statement; with `lock`, FOR UPDATE, so the rows are
   * locked in `column` order whatever the order of `values`. Values are encoded and validated
   * like insert()'s; duplicates are bound once.
   */
  selectWhereIn(
    table: string,
    where: Record<string, unknown>,
    column: string,
    values: readonly unknown[],
    opts: { lock?: boolean } = {},
  ): Promise<Record<string, unknown>[]> {
    try {
      if (opts.lock) this.assertWritable('locking read');
      const codec = this.codec(table);
      const w = encodeWhere(codec, table, where);
      const distinct = [...new Set(values)];
      if (!distinct.length) return Promise.resolve([]);
      const bound = distinct.map((v) => codec.encode({ [column]: v })[column]);
      const q = selectInStatement(this.dialect, table, shapeOf(w), column, bound.length, opts.lock ?? false);
      return this.query(q, boundOf(w).concat(bound));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** How many savepoints of this transaction were rolled back: what a cache of its writes must forget. */
  get savepointRollbacks(): number {
    return this.#savepointRollbacks;
  }

  /**
   * Runs `fn` under a savepoint: when it throws, its writes are undone and the transaction goes
   * on (PostgreSQL would otherwise refuse every later statement, and SQLite keeps the rows a
   * failed batch inserted before the failing one). `name` is an SQL identifier.
   */
  async savepoint<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.assertWritable('savepoint');
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad savepoint name ${name}`);
    const db = this.db;
    await sql.raw(`savepoint ${name}`).execute(db);
    const depth = ++this.#depth;
    let result: T | undefined;
    let failed = false;
    let error: unknown;
    try {
      result = await fn();
    } catch (e) {
      failed = true;
      error = e;
    }
    this.#depth = depth - 1;
    // A statement that failed inside (and was caught there) fails the savepoint as if fn had
    // thrown it: its rollback undoes the failure, and the caller decides whether to go on.
    if (this.#failed && this.#failureDepth >= depth) {
      if (!failed) error = this.#failure;
      failed = true;
      this.#failed = false;
      this.#failure = undefined;
    }
    if (failed) {
      this.#savepointRollbacks++;
      try {
        await sql.raw(`rollback to savepoint ${name}`).execute(db);
        await sql.raw(`release savepoint ${name}`).execute(db);
      } catch {
        // The transaction itself is gone (MySQL rolls the whole of it back on a deadlock, and
        // the savepoint with it): the original error is the one to report and retry on, and
        // the transaction is over whether or not the caller catches it.
        this.#failed = true;
        this.#failure = error;
        this.#failureDepth = this.#depth;
      }
      throw error;
    }
    await sql.raw(`release savepoint ${name}`).execute(db);
    return result as T;
  }

  /**
   * Runs `write`, whose expected failure is a unique violation that `explain` turns into a typed
   * error (`explain` throws it when it finds the conflicting row, and returns otherwise), so that
   * the refusal leaves nothing of `write` behind and the transaction usable:
   * - PostgreSQL and MySQL: `write` runs under a savepoint and `explain` only after a unique
   *   violation, since a lookup up front is a round trip and an index probe per key on every call;
   * - SQLite: `explain` runs first, then `write`. The lookup is in process, and a savepoint would
   *   copy every page `write` touches to the statement journal (a fifth of block ingest).
   */
  async uniqueGuarded(name: string, write: () => Promise<void>, explain: () => Promise<void>): Promise<void> {
    if (this.dialect === 'sqlite') {
      await explain();
      return write();
    }
    try {
      await this.savepoint(name, write);
    } catch (e) {
      if (mapDriverError(this.dialect, e) instanceof UniqueViolationError) await explain();
      throw e;
    }
  }

  /**
   * Locks the selected rows until the transaction ends (FOR UPDATE, optionally SKIP LOCKED).
   * SQLite needs nothing: a write transaction already holds the database's write lock.
   */
  lockRows<QB extends SelectQueryBuilder<any, any, any>>(qb: QB, opts: { skipLocked?: boolean } = {}): QB {
    this.assertWritable('locking read');
    if (this.dialect === 'sqlite') return qb;
    const locked = qb.forUpdate() as QB;
    return opts.skipLocked ? (locked.skipLocked() as QB) : locked;
  }
}

/**
 * The connection a Tx's Kysely handle (tx.db) runs on: refuses every statement once the Tx is
 * closed, so a handle kept past the transaction cannot reach the connection it was bound to, and
 * records a failed statement as the Tx's own do (beforeStatement).
 */
export class ClosableConnection implements DatabaseConnection {
  readonly #conn: DatabaseConnection;
  readonly #tx: Pick<Tx, 'beforeStatement' | 'rethrowFailure'>;
  constructor(conn: DatabaseConnection, tx: Pick<Tx, 'beforeStatement' | 'rethrowFailure'>) {
    this.#conn = conn;
    this.#tx = tx;
  }
  executeQuery<R>(query: Parameters<DatabaseConnection['executeQuery']>[0]): Promise<QueryResult<R>> {
    try {
      this.#tx.beforeStatement();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#conn.executeQuery<R>(query).catch((e: unknown) => this.#tx.rethrowFailure(e));
  }
  streamQuery<R>(query: Parameters<DatabaseConnection['streamQuery']>[0], chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    // Not used by any store (nothing streams inside a transaction); refused like any statement.
    this.#tx.beforeStatement();
    return this.#conn.streamQuery<R>(query, chunkSize);
  }
}
