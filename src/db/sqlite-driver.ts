// A Kysely driver for better-sqlite3 that does what Kysely's own does not: write transactions
// take the write lock up front (BEGIN IMMEDIATE, so the service and a CLI can share the file
// and a deferred reader never has to upgrade mid-transaction), read transactions are
// query_only, and prepared statements are cached instead of re-prepared on every call.
import BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  SelectQueryNode,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

const STATEMENT_CACHE_SIZE = 512;
const DDL = /^\s*(CREATE|DROP|ALTER|PRAGMA|VACUUM|REINDEX|ANALYZE)\b/i;

type ControlStatement = 'BEGIN DEFERRED' | 'BEGIN IMMEDIATE' | 'COMMIT' | 'ROLLBACK';

/** One better-sqlite3 connection with its statement cache and a FIFO lock around it. */
export class SqliteHandle {
  readonly db: BetterSqlite3.Database;
  readonly #cache = new Map<string, BetterSqlite3.Statement>();
  readonly #control = new Map<ControlStatement, BetterSqlite3.Statement>();
  #locked = false;
  #queue: (() => void)[] = [];
  inTransaction = false;
  /**
   * Reads share the writer connection (memory://), so read-only is enforced per transaction:
   * while `readOnly` is set, a statement that would write is refused with SQLITE_READONLY, as
   * `PRAGMA query_only` would. (Toggling that pragma per transaction made SQLite expire every
   * prepared statement twice per transaction, so the statement cache never hit.)
   */
  readonly shared: boolean;
  readOnly = false;
  constructor(db: BetterSqlite3.Database, shared: boolean) {
    this.db = db;
    this.shared = shared;
  }

  get waiting(): number {
    return this.#queue.length;
  }
  get busy(): boolean {
    return this.#locked;
  }

  async lock(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return;
    }
    await new Promise<void>((resolve) => this.#queue.push(resolve));
  }

  /** Takes the lock if it is free (no await); false when the caller must queue with lock(). */
  tryLock(): boolean {
    if (this.#locked) return false;
    this.#locked = true;
    return true;
  }

  unlock(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#locked = false;
  }

  prepare(sql: string): BetterSqlite3.Statement {
    let stmt = this.#cache.get(sql);
    if (stmt) {
      // Refresh the LRU position, once eviction is in sight (two map operations per hit otherwise).
      if (this.#cache.size > STATEMENT_CACHE_SIZE / 2) {
        this.#cache.delete(sql);
        this.#cache.set(sql, stmt);
      }
      return stmt;
    }
    stmt = this.db.prepare(sql);
    this.#cache.set(sql, stmt);
    if (this.#cache.size > STATEMENT_CACHE_SIZE) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return stmt;
  }

  /** Runs a transaction-control statement (BEGIN, COMMIT, ROLLBACK), prepared once. */
  control(sql: ControlStatement): void {
    let stmt = this.#control.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#control.set(sql, stmt);
    }
    stmt.run();
  }

  #prepareMiss(sql: string): BetterSqlite3.Statement {
    return DDL.test(sql) ? this.db.prepare(sql) : this.prepare(sql);
  }

  /** Runs one statement. DDL and pragmas bypass the cache (they change what statements mean). */
  run(sql: string, parameters: readonly unknown[]): QueryResult<unknown> {
    const stmt = this.#cache.size <= STATEMENT_CACHE_SIZE / 2 ? (this.#cache.get(sql) ?? this.#prepareMiss(sql)) : this.#prepareMiss(sql);
    if (this.readOnly && !stmt.readonly) {
      throw new BetterSqlite3.SqliteError('attempt to write a readonly database', 'SQLITE_READONLY');
    }
    if (stmt.reader) return { rows: stmt.all(parameters as unknown[]) };
    if (parameters.length === 1 && parameters[0] instanceof RowBatch) {
      let n = 0;
      for (const row of parameters[0].rows) n += stmt.run(row as unknown[]).changes;
      return { numAffectedRows: BigInt(n), rows: [] };
    }
    const { changes, lastInsertRowid } = stmt.run(parameters as unknown[]);
    return {
      numAffectedRows: BigInt(changes),
      insertId: lastInsertRowid !== undefined && lastInsertRowid !== null ? BigInt(lastInsertRowid) : undefined,
      rows: [],
    };
  }

  close(): void {
    this.#cache.clear();
    this.#control.clear();
    if (this.db.open) this.db.close();
  }
}

/**
 * The parameters of a one-row statement run once per row, in one driver call: the way to insert
 * many rows into SQLite. A cached one-row statement stepped 1,000 times costs less than one
 * 1,000-row VALUES list (which SQLite runs as a co-routine over 6,000 bound values), and nothing
 * crosses the async driver boundary per row.
 */
export class RowBatch {
  readonly rows: readonly (readonly unknown[])[];
  constructor(rows: readonly (readonly unknown[])[]) {
    this.rows = rows;
  }
}

/** A connection whose queries complete synchronously (SQLite): Tx.query skips a promise per statement. */
export interface SyncConnection extends DatabaseConnection {
  executeSync<R>(compiled: CompiledQuery): QueryResult<R>;
}

export class SqliteConnection implements SyncConnection {
  readonly handle: SqliteHandle;
  constructor(handle: SqliteHandle) {
    this.handle = handle;
  }
  executeSync<R>(compiled: CompiledQuery): QueryResult<R> {
    return this.handle.run(compiled.sql, compiled.parameters) as QueryResult<R>;
  }
  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    return Promise.resolve(this.handle.run(compiled.sql, compiled.parameters) as QueryResult<R>);
  }
  async *streamQuery<R>(compiled: CompiledQuery, chunkSize = 1000): AsyncIterableIterator<QueryResult<R>> {
    if (!SelectQueryNode.is(compiled.query) && !/^\s*(SELECT|WITH)\b/i.test(compiled.sql)) {
      throw new Error('SQLite streaming supports SELECT only');
    }
    // A fresh statement: an iterating statement cannot be reused by other queries meanwhile.
    const stmt = this.handle.db.prepare(compiled.sql);
    let rows: R[] = [];
    for (const row of stmt.iterate(compiled.parameters as unknown[])) {
      rows.push(row as R);
      if (rows.length >= chunkSize) {
        yield { rows };
        rows = [];
      }
    }
    if (rows.length > 0) yield { rows };
  }
}

export class CofferSqliteDriver implements Driver {
  readonly #handle: SqliteHandle;
  readonly #connection: SqliteConnection;
  constructor(handle: SqliteHandle) {
    this.#handle = handle;
    this.#connection = new SqliteConnection(handle);
  }
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    await this.#handle.lock();
    return this.#connection;
  }
  async beginTransaction(_c: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    this.#begin(settings.accessMode === 'read only');
  }
  async commitTransaction(): Promise<void> {
    this.#commit();
  }
  async rollbackTransaction(): Promise<void> {
    this.#rollback();
  }

  /**
   * One whole transaction: the engine's acquire, BEGIN, fn, COMMIT (ROLLBACK when fn or the
   * COMMIT throws), release, with the synchronous steps run synchronously. Through the Driver
   * interface each step is an awaited promise: about a microsecond per transaction, which a
   * point read (a few microseconds of SQLite work) notices.
   */
  async transaction<T>(readOnly: boolean, fn: (conn: DatabaseConnection) => Promise<T>): Promise<T> {
    const h = this.#handle;
    if (!h.tryLock()) await h.lock();
    try {
      this.#begin(readOnly);
      try {
        const result = await fn(this.#connection);
        this.#commit();
        return result;
      } catch (e) {
        this.#rollback();
        throw e;
      }
    } finally {
      h.unlock();
    }
  }

  #begin(readOnly: boolean): void {
    this.#handle.control(readOnly ? 'BEGIN DEFERRED' : 'BEGIN IMMEDIATE');
    this.#handle.inTransaction = true;
    if (readOnly && this.#handle.shared) this.#handle.readOnly = true;
  }
  #commit(): void {
    try {
      this.#handle.control('COMMIT');
    } finally {
      this.#afterTransaction();
    }
  }
  #rollback(): void {
    try {
      // A failed COMMIT or an error like SQLITE_FULL may already have rolled back.
      if (this.#handle.db.inTransaction) this.#handle.control('ROLLBACK');
    } finally {
      this.#afterTransaction();
    }
  }
  #afterTransaction(): void {
    this.#handle.inTransaction = false;
    this.#handle.readOnly = false;
  }
  async releaseConnection(): Promise<void> {
    this.#handle.unlock();
  }
  async destroy(): Promise<void> {
    // The owner closes the handle (several Kysely instances may share it).
  }
}

export class CofferSqliteDialect implements Dialect {
  readonly #handle: SqliteHandle;
  constructor(handle: SqliteHandle) {
    this.#handle = handle;
  }
  createDriver(): Driver {
    return new CofferSqliteDriver(this.#handle);
  }
  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }
  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}
