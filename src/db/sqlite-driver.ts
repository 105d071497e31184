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

/** One better-sqlite3 connection with its statement cache and a FIFO lock around it. */
export class SqliteHandle {
  readonly db: BetterSqlite3.Database;
  readonly #cache = new Map<string, BetterSqlite3.Statement>();
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

class SqliteConnection implements DatabaseConnection {
  readonly handle: SqliteHandle;
  constructor(handle: SqliteHandle) {
    this.handle = handle;
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

class CofferSqliteDriver implements Driver {
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
    const readOnly = settings.accessMode === 'read only';
    this.#handle.run(readOnly ? 'BEGIN DEFERRED' : 'BEGIN IMMEDIATE', []);
    this.#handle.inTransaction = true;
    if (readOnly && this.#handle.shared) this.#handle.readOnly = true;
  }
  async commitTransaction(): Promise<void> {
    try {
      this.#handle.run('COMMIT', []);
    } finally {
      this.#afterTransaction();
    }
  }
  async rollbackTransaction(): Promise<void> {
    try {
      // A failed COMMIT or an error like SQLITE_FULL may already have rolled back.
      if (this.#handle.db.inTransaction) this.#handle.run('ROLLBACK', []);
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
