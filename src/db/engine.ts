// The one place dialect differences live: opening each backend with its session settings
// pinned, and the Kysely instances the unit of work runs on.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import {
  CompiledQuery,
  Kysely,
  MysqlDialect,
  MysqlDriver,
  PostgresDialect,
  SingleConnectionProvider,
  sql,
  Transaction,
  type DatabaseConnection,
  type Dialect as KyselyDialect,
  type Driver,
  type MysqlDialectConfig,
  type TransactionSettings,
} from 'kysely';
import { createHash } from 'node:crypto';
import mysql from 'mysql2';
import pg from 'pg';
import type { Dialect } from '../schema/model.js';
import { parseMysqlDateTime } from './codec.js';
import { isStalePlan, mapDriverError } from './driver-errors.js';
import { installFastRowDescriptions } from './pg-fields.js';
import { PG_STATEMENT_NAMES } from './prepared.js';
import { ConfigError, ConnectionError } from './errors.js';
import { CofferSqliteDialect, CofferSqliteDriver, SqliteHandle } from './sqlite-driver.js';
import { backendLabel, redactUrl, type Backend, type DbTarget, type ServerTarget } from './url.js';

export interface EngineSettings {
  sqliteSynchronous: 'NORMAL' | 'FULL';
  busyTimeoutMs: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  poolMax: number;
  poolIdleTimeoutMs: number;
  connectTimeoutMs: number;
  applicationName: string;
}

export const DEFAULT_ENGINE_SETTINGS: EngineSettings = {
  sqliteSynchronous: 'NORMAL',
  busyTimeoutMs: 5000,
  statementTimeoutMs: 30_000,
  lockTimeoutMs: 10_000,
  poolMax: 10,
  poolIdleTimeoutMs: 30_000,
  connectTimeoutMs: 5000,
  applicationName: 'coffer',
};

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
  created: number;
  closed: number;
}

/** Transaction isolation each backend runs at, stated once (docs/foundation.md) and tested. */
export const ISOLATION: Record<Dialect, string> = {
  postgres: 'read committed',
  mysql: 'read committed',
  sqlite: 'serializable',
};

/** Isolation of read transactions (`coffer.read`): one snapshot for the whole transaction everywhere. */
export const READ_ISOLATION: Record<Dialect, string> = {
  postgres: 'repeatable read',
  mysql: 'repeatable read',
  sqlite: 'serializable',
};

/** One driver shared by a Kysely instance and the engine's own transaction runner. */
class SharedDriver implements Driver {
  readonly #driver: Driver;
  constructor(driver: Driver) {
    this.#driver = driver;
  }
  async init(): Promise<void> {} // initialised by the engine before first use
  acquireConnection(): Promise<DatabaseConnection> {
    return this.#driver.acquireConnection();
  }
  beginTransaction(c: DatabaseConnection, s: TransactionSettings): Promise<void> {
    return this.#driver.beginTransaction(c, s);
  }
  commitTransaction(c: DatabaseConnection): Promise<void> {
    return this.#driver.commitTransaction(c);
  }
  rollbackTransaction(c: DatabaseConnection): Promise<void> {
    return this.#driver.rollbackTransaction(c);
  }
  releaseConnection(c: DatabaseConnection): Promise<void> {
    return this.#driver.releaseConnection(c);
  }
  // Kysely destroys only a driver it initialised itself; the engine destroys the real one (close()).
  async destroy(): Promise<void> {}
}

interface Opened {
  db: Kysely<any>;
  driver: Driver;
  /** A Kysely transaction handle bound to `conn` (as Kysely's own transaction() gives its callback). */
  bind: (conn: DatabaseConnection) => Kysely<any>;
  /** Destroys the Kysely instance and then the driver (its pool). */
  close: () => Promise<void>;
}

/** A Kysely instance over `dialect` whose driver the engine can also use directly. */
async function openKysely(dialect: KyselyDialect): Promise<Opened> {
  const driver = dialect.createDriver();
  await driver.init();
  const shared = new SharedDriver(driver);
  const wrapped: KyselyDialect = {
    createDriver: () => shared,
    createAdapter: () => dialect.createAdapter(),
    createIntrospector: (k) => dialect.createIntrospector(k),
    createQueryCompiler: () => dialect.createQueryCompiler(),
  };
  const db = new Kysely<any>({ dialect: wrapped });
  const config = { dialect: wrapped };
  const executor = db.getExecutor();
  const bind = (conn: DatabaseConnection) =>
    new Transaction<any>({
      config,
      driver: shared,
      dialect: wrapped,
      executor: executor.withConnectionProvider(new SingleConnectionProvider(conn)),
    });
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      try {
        await db.destroy();
      } finally {
        await driver.destroy();
      }
    })());
  return { db, driver, bind, close };
}

/** Same semantics as Kysely's TransactionBuilder.execute, minus the per-transaction Kysely. */
async function runTransaction<T>(driver: Driver, settings: TransactionSettings, fn: (conn: DatabaseConnection) => Promise<T>): Promise<T> {
  const conn = await driver.acquireConnection();
  try {
    let begun = false;
    try {
      await driver.beginTransaction(conn, settings);
      begun = true;
      const result = await fn(conn);
      await driver.commitTransaction(conn);
      return result;
    } catch (e) {
      if (begun) await driver.rollbackTransaction(conn);
      throw e;
    }
  } finally {
    await driver.releaseConnection(conn);
  }
}

const WRITE_SETTINGS: Record<Dialect, TransactionSettings> = {
  sqlite: Object.freeze({}),
  // Named in the one BEGIN statement: a database or role default (ALTER DATABASE … SET
  // default_transaction_isolation) must not change what a write sees. MySQL's writer sessions
  // are set to READ COMMITTED when opened (openMysql), so its BEGIN stays one statement too.
  postgres: Object.freeze({ isolationLevel: 'read committed' }),
  mysql: Object.freeze({}),
};
const READ_SETTINGS: Record<Dialect, TransactionSettings> = {
  sqlite: Object.freeze({ accessMode: 'read only' }),
  // One statement: START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY.
  postgres: Object.freeze({ accessMode: 'read only', isolationLevel: 'repeatable read' }),
  // The MySQL reader pool's sessions are REPEATABLE READ already (openMysql), so a read is one
  // START TRANSACTION READ ONLY instead of SET TRANSACTION … plus BEGIN.
  mysql: Object.freeze({ accessMode: 'read only' }),
};

function transactionRunner(dialect: Dialect, writer: Opened, reader: Opened): Pick<Engine, 'transaction' | 'bind'> {
  const readSettings = READ_SETTINGS[dialect];
  const writeSettings = WRITE_SETTINGS[dialect];
  const w = writer.driver;
  const r = reader.driver;
  if (w instanceof CofferSqliteDriver && r instanceof CofferSqliteDriver) {
    // The same steps, run synchronously where SQLite is synchronous (sqlite-driver.ts).
    return {
      transaction: (kind, fn) => (kind === 'write' ? w.transaction(false, fn) : r.transaction(true, fn)),
      bind: (kind, conn) => (kind === 'write' ? writer : reader).bind(conn),
    };
  }
  return {
    transaction: (kind, fn) => (kind === 'write' ? runTransaction(w, writeSettings, fn) : runTransaction(r, readSettings, fn)),
    bind: (kind, conn) => (kind === 'write' ? writer : reader).bind(conn),
  };
}

export interface Engine {
  readonly target: DbTarget;
  readonly backend: Backend;
  /** memory, sqlite, postgres or mysql. */
  readonly label: string;
  readonly dialect: Dialect;
  /** MariaDB rather than MySQL (a few statements differ). */
  readonly mariadb: boolean;
  /** Kysely instance for write transactions. */
  readonly writer: Kysely<any>;
  /** Kysely instance for read transactions (a separate connection on SQLite files, a separate pool on MySQL). */
  readonly reader: Kysely<any>;
  /**
   * Runs `fn` in one transaction on one connection: BEGIN (a read: the snapshot settings of
   * READ_ISOLATION, in one statement), COMMIT, or ROLLBACK when `fn` or the COMMIT throws. The
   * same drivers as `writer`/`reader`, without a Kysely instance per transaction.
   */
  transaction<T>(kind: 'read' | 'write', fn: (conn: DatabaseConnection) => Promise<T>): Promise<T>;
  /** A Kysely handle on a connection of `transaction` (what Tx.db returns). */
  bind(kind: 'read' | 'write', conn: DatabaseConnection): Kysely<any>;
  poolStats(): PoolStats;
  serverVersion(): Promise<string>;
  close(): Promise<void>;
}

function describe(target: DbTarget): string {
  return target.backend === 'sqlite' ? (target.memory ? 'memory://' : target.path) : redactUrl(target.url);
}

function connectionFailure(target: DbTarget, e: unknown): ConnectionError {
  const mapped = mapDriverError(target.backend, e);
  const base = e as { code?: string; message?: string };
  const reason =
    base.code && base.message && !base.message.includes(base.code) ? `${base.message} (${base.code})` : (base.message ?? String(e));
  if (mapped instanceof ConnectionError || !(mapped instanceof Error) || mapped === e) {
    return new ConnectionError(`cannot connect to ${describe(target)}: ${reason}`, { backend: backendLabel(target) }, { cause: e });
  }
  return new ConnectionError(`cannot open ${describe(target)}: ${mapped.message}`, {}, { cause: e });
}

function tlsOptions(t: ServerTarget): false | { rejectUnauthorized: boolean; ca?: string; checkServerIdentity?: () => undefined } {
  if (t.ssl.mode === 'disable') return false;
  let ca: string | undefined;
  if (t.ssl.caFile) {
    try {
      ca = readFileSync(t.ssl.caFile, 'utf8');
    } catch (e) {
      throw new ConfigError(`database.url: cannot read CA file ${t.ssl.caFile}: ${(e as Error).message}`, { field: 'database.url' });
    }
  }
  // "prefer" is treated as "require": silently falling back to plaintext is not offered.
  if (t.ssl.mode === 'prefer' || t.ssl.mode === 'require') return { rejectUnauthorized: false, ...(ca ? { ca } : {}) };
  if (t.ssl.mode === 'verify-ca') return { rejectUnauthorized: true, ...(ca ? { ca } : {}), checkServerIdentity: () => undefined };
  return { rejectUnauthorized: true, ...(ca ? { ca } : {}) };
}

interface SharedSqliteFile {
  writer: SqliteHandle;
  reader: SqliteHandle;
  refs: number;
}

// Connections to one SQLite file are shared by every Coffer instance in this process: two
// instances then queue on one in-process lock instead of one blocking the event loop in
// busy_timeout while the other (same thread) can never finish. Other processes still contend
// through SQLite's file lock, busy_timeout and the retry loop.
const sharedFiles = new Map<string, SharedSqliteFile>();

function openSqliteConnection(path: string, s: EngineSettings): Database.Database {
  const db = new Database(path, { timeout: s.busyTimeoutMs });
  try {
    db.defaultSafeIntegers(true);
    db.pragma(`busy_timeout = ${s.busyTimeoutMs}`);
    db.pragma('foreign_keys = ON');
    db.pragma(`synchronous = ${s.sqliteSynchronous}`);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

function acquireSqliteFile(target: DbTarget & { backend: 'sqlite' }, s: EngineSettings): { shared: SharedSqliteFile; release: () => void } {
  if (target.memory) {
    const handle = new SqliteHandle(openSqliteConnection(':memory:', s), true);
    const shared = { writer: handle, reader: handle, refs: 1 };
    return { shared, release: () => handle.close() };
  }
  const key = resolve(target.path);
  let shared = sharedFiles.get(key);
  if (!shared) {
    mkdirSync(dirname(key), { recursive: true });
    const writerDb = openSqliteConnection(key, s);
    try {
      const mode = writerDb.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new Error(`could not switch ${target.path} to WAL (got ${mode})`);
      const readerDb = openSqliteConnection(key, s);
      readerDb.pragma('query_only = ON');
      shared = { writer: new SqliteHandle(writerDb, false), reader: new SqliteHandle(readerDb, false), refs: 0 };
    } catch (e) {
      writerDb.close();
      throw e;
    }
    sharedFiles.set(key, shared);
  }
  shared.refs++;
  const s2 = shared;
  let released = false;
  return {
    shared: s2,
    release: () => {
      if (released) return;
      released = true;
      if (--s2.refs === 0) {
        sharedFiles.delete(key);
        s2.writer.close();
        s2.reader.close();
      }
    },
  };
}

// memory://'s one connection, by engine. Nothing else can open that database, so a tool that must
// run beside Coffer on the same rows (the benchmarks' raw side) gets it here, not a copy: a copy
// is a different database (deserialized or vacuumed pages read faster than ones grown in place).
const inProcess = new WeakMap<Engine, Database.Database>();

/**
 * The native connection of a memory:// engine (undefined for every other backend: open the file
 * or the server yourself). Statements run on it bypass Coffer's transaction queue, so use it only
 * while no Coffer transaction is open.
 */
export function inProcessConnection(engine: Engine): Database.Database | undefined {
  return inProcess.get(engine);
}

async function openSqlite(target: DbTarget & { backend: 'sqlite' }, s: EngineSettings): Promise<Engine> {
  let acquired: ReturnType<typeof acquireSqliteFile>;
  try {
    acquired = acquireSqliteFile(target, s);
  } catch (e) {
    throw connectionFailure(target, e);
  }
  const { writer: writerHandle, reader: readerHandle } = acquired.shared;
  const w = await openKysely(new CofferSqliteDialect(writerHandle));
  const r = readerHandle !== writerHandle ? await openKysely(new CofferSqliteDialect(readerHandle)) : w;
  const writer = w.db;
  const reader = r.db;
  const handles = readerHandle !== writerHandle ? [writerHandle, readerHandle] : [writerHandle];
  const engine: Engine = {
    target,
    backend: 'sqlite',
    label: backendLabel(target),
    dialect: 'sqlite',
    mariadb: false,
    writer,
    reader,
    ...transactionRunner('sqlite', w, r),
    poolStats: () => ({
      total: handles.length,
      idle: handles.filter((h) => !h.busy).length,
      waiting: handles.reduce((n, h) => n + h.waiting, 0),
      created: handles.length,
      closed: 0,
    }),
    serverVersion: async () => `SQLite ${(writerHandle.db.prepare('select sqlite_version() as v').get() as { v: string }).v}`,
    close: async () => {
      try {
        await w.close();
        if (r !== w) await r.close();
      } finally {
        acquired.release();
      }
    },
  };
  if (target.memory) inProcess.set(engine, writerHandle.db);
  return engine;
}

interface PgQueryable {
  query: (...args: unknown[]) => unknown;
}

// Statements run as named (prepared) statements: node-postgres parses each name once per
// connection and then only binds and executes it, as the raw side's { name, text } queries do,
// so the server neither parses nor plans the same text again (about half of PostgreSQL's CPU
// per short statement). Kysely's connection calls client.query(sql, params) with no way to pass
// a name, so the client's query method maps the SQL text to a name:
// - queries of the compiled-query cache (prepared.ts) are named from their first run;
// - any other SELECT/INSERT/UPDATE/DELETE text run inside a transaction is named once it has
//   run AUTO_NAME_AFTER times in this process (a statement a domain runs on every operation), up
//   to AUTO_NAME_MAX texts, so one-off texts (IN lists of every length, ad hoc tools) stay
//   unnamed and the number of statements a connection keeps prepared stays bounded. Statements
//   outside a transaction (autocommit tools, DDL scripts) are never auto-named.
// A statement made stale by DDL (its result columns changed) fails once with 0A000; this
// connection then prepares it again under a new name, and the error is retryable
// (driver-errors.ts), so the transaction re-runs.
const AUTO_NAME_AFTER = 3;
const AUTO_NAME_MAX = 2_000;
const AUTO_NAME_MAX_TEXT = 8_192;
const AUTO_COUNT_MAX = 20_000;
const DML = /^\s*(select|insert|update|delete|with)\s/i;
const TX_START = /^\s*(begin|start transaction)\b/i;
const TX_END = /^\s*(commit|rollback)\s*;?\s*$/i;
const COMMIT = /^\s*commit\s*;?\s*$/i;

/**
 * PostgreSQL answers COMMIT of a transaction in which a statement failed (outside a savepoint)
 * with ROLLBACK, and no error: the write would report success with nothing stored. Raised here
 * instead. (A failure a caller means to survive belongs inside tx.savepoint().)
 */
function committed<R extends { command?: string }>(r: R): R {
  if (r.command === 'ROLLBACK')
    throw new Error(
      'the transaction was rolled back, not committed: a statement in it failed and the error was caught without a savepoint (use tx.savepoint() to go on after a failure)',
    );
  return r;
}
/** SQL text → runs so far (a number) or its statement name, shared by every pool of the process. */
const autoNames = new Map<string, number | string>();
let autoNamed = 0;

/** The statement name for `text`, or undefined to run it unnamed; `inTransaction`: whether it may be auto-named. */
export function statementName(text: string, inTransaction: boolean): string | undefined {
  const fixed = PG_STATEMENT_NAMES.get(text);
  if (fixed !== undefined || !inTransaction) return fixed;
  const seen = autoNames.get(text);
  if (typeof seen === 'string') return seen;
  if (seen === undefined && (autoNamed >= AUTO_NAME_MAX || text.length > AUTO_NAME_MAX_TEXT || !DML.test(text))) return undefined;
  // Counts of texts that never became hot are dropped now and then, so the map stays bounded.
  if (seen === undefined && autoNames.size >= AUTO_COUNT_MAX)
    for (const [k, v] of autoNames) if (typeof v === 'number') autoNames.delete(k);
  const n = (seen ?? 0) + 1;
  if (n < AUTO_NAME_AFTER) {
    autoNames.set(text, n);
    return undefined;
  }
  const name = `aq_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
  autoNames.set(text, name);
  autoNamed++;
  return name;
}

function useNamedStatements(client: pg.PoolClient): void {
  const c = client as unknown as PgQueryable;
  const query = c.query;
  const renamed = new Map<string, string>();
  let generation = 0;
  // Whether this connection is inside a transaction block (Kysely runs BEGIN/START TRANSACTION,
  // COMMIT and ROLLBACK through this same method).
  let inTransaction = false;
  c.query = function (...args: unknown[]) {
    if (args.length === 2 && typeof args[0] === 'string' && Array.isArray(args[1])) {
      const text = args[0];
      if (TX_START.test(text)) inTransaction = true;
      else if (TX_END.test(text)) {
        inTransaction = false;
        if (COMMIT.test(text)) return (query.apply(client, args) as Promise<{ command?: string }>).then(committed);
      }
      const name = renamed.get(text) ?? statementName(text, inTransaction);
      if (name !== undefined) {
        return (query.call(client, { name, text, values: args[1] }) as Promise<unknown>).catch((e: unknown) => {
          if (isStalePlan(e)) renamed.set(text, `${name.replace(/_g\d+$/, '')}_g${++generation}`);
          throw e;
        });
      }
    }
    return query.apply(client, args);
  };
}

async function openPostgres(target: DbTarget & { backend: 'postgres' }, s: EngineSettings, onError: (e: unknown) => void): Promise<Engine> {
  installFastRowDescriptions();
  const options = [
    '-c TimeZone=UTC',
    `-c statement_timeout=${s.statementTimeoutMs}`,
    `-c lock_timeout=${s.lockTimeoutMs}`,
    // A client that dies mid-transaction must not hold locks forever.
    '-c idle_in_transaction_session_timeout=60000',
  ].join(' ');
  const pool = new pg.Pool({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl: tlsOptions(target),
    max: s.poolMax,
    idleTimeoutMillis: s.poolIdleTimeoutMs,
    connectionTimeoutMillis: s.connectTimeoutMs,
    application_name: s.applicationName,
    options,
    // json/jsonb come back as text, as from MySQL and SQLite: the codec parses every backend's
    // JSON the same way (pg would hand a JSON string document back as a bare JS string).
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === 114 || oid === 3802 ? (v: string) => v : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  let created = 0;
  let closed = 0;
  // A client losing its server (the database restarting, pg_terminate_backend) emits 'error'.
  // The pool listens only while a client is idle; a client checked out between two statements
  // of a transaction had no listener, and the unhandled 'error' crashed the process (found by
  // the database-restart test). So every client gets a listener for its whole life; the failed
  // statement still fails (as a ConnectionError), and the pool drops the dead client on release.
  pool.on('connect', (client) => {
    created++;
    client.on('error', onError);
    useNamedStatements(client);
  });
  pool.on('remove', () => closed++);
  // The pool re-emits an idle client's error, already logged by the client's listener above;
  // this listener only keeps the re-emit from being unhandled.
  pool.on('error', () => {});
  try {
    const client = await pool.connect();
    client.release();
  } catch (e) {
    await pool.end().catch(() => {});
    throw connectionFailure(target, e);
  }
  const opened = await openKysely(new PostgresDialect({ pool }));
  const db = opened.db;
  return {
    target,
    backend: 'postgres',
    label: 'postgres',
    dialect: 'postgres',
    mariadb: false,
    writer: db,
    reader: db,
    ...transactionRunner('postgres', opened, opened),
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, created, closed }),
    serverVersion: async () => {
      const r = await sql<{ server_version: string }>`show server_version`.execute(db);
      return `PostgreSQL ${r.rows[0]?.server_version ?? '?'}`;
    },
    close: () => opened.close(),
  };
}

// Kysely's MySQL driver starts a read-only transaction with two statements (SET TRANSACTION
// READ ONLY, then BEGIN), one round trip each; START TRANSACTION READ ONLY is the same thing
// in one (MySQL 5.6.5+, MariaDB 10.0+). Every coffer.read() saves a round trip.
class CofferMysqlDriver extends MysqlDriver {
  override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    if (settings.accessMode && !settings.isolationLevel) {
      await connection.executeQuery(CompiledQuery.raw(`start transaction ${settings.accessMode}`));
      return;
    }
    await super.beginTransaction(connection, settings);
  }
}

class CofferMysqlDialect extends MysqlDialect {
  readonly #config: MysqlDialectConfig;
  constructor(config: MysqlDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new CofferMysqlDriver(this.#config);
  }
}

/**
 * mysql2's typeCast for every MySQL/MariaDB pool: DATE, DATETIME and TIMESTAMP values are read
 * from their text by parseMysqlDateTime (codec.ts), exact for every year, where mysql2's reader
 * turns years 0-99 into 1900-1999 (`new Date("0050-06-01 00:00:00.000Z")` is 1950); every
 * other column is read by mysql2 as before. It runs for every column of every row read, so it is
 * one module-level function doing a string comparison before handing over.
 */
function castMysqlField(field: { type: string; string(encoding?: string): string | null }, next: () => unknown): unknown {
  const type = field.type;
  if (type !== 'DATETIME' && type !== 'TIMESTAMP' && type !== 'DATE') return next();
  const text = field.string('latin1');
  return text === null ? null : parseMysqlDateTime(text);
}

interface Mysql2PoolInternals {
  _allConnections?: { length: number };
  _freeConnections?: { length: number };
  _connectionQueue?: { length: number };
}

async function openMysql(target: DbTarget & { backend: 'mysql' }, s: EngineSettings, onError: (e: unknown) => void): Promise<Engine> {
  const ssl = tlsOptions(target);
  let created = 0;
  const createPool = () => {
    const pool = mysql.createPool({
      host: target.host,
      port: target.port,
      user: target.user,
      password: target.password,
      database: target.database,
      connectionLimit: s.poolMax,
      maxIdle: s.poolMax,
      idleTimeout: s.poolIdleTimeoutMs,
      connectTimeout: s.connectTimeoutMs,
      waitForConnections: true,
      queueLimit: 0,
      supportBigNumbers: true,
      bigNumberStrings: true,
      // Times are UTC on the wire (time_zone '+00:00', below) and read by castMysqlField, which
      // every query of these pools (Kysely's, the ops tools' raw SQL, streams) goes through.
      timezone: 'Z',
      dateStrings: false,
      typeCast: castMysqlField,
      charset: 'UTF8MB4_BIN',
      enableKeepAlive: true,
      ...(ssl ? { ssl } : {}),
    });
    pool.on('connection', (conn) => {
      created++;
      conn.on('error', onError);
    });
    return pool;
  };
  const endPool = (p: mysql.Pool) => new Promise<void>((r) => p.end(() => r()));
  const pool = createPool();
  // Probe once: reachability, and MariaDB vs MySQL (statement timeouts are spelled differently).
  let version: string;
  try {
    version = await new Promise<string>((res, rej) =>
      pool.query('SELECT VERSION() AS v', (err, rows) => (err ? rej(err) : res(String((rows as { v: string }[])[0]?.v ?? '')))),
    );
  } catch (e) {
    await endPool(pool);
    throw connectionFailure(target, e);
  }
  const mariadb = /mariadb/i.test(version);
  const lockWaitSeconds = Math.max(1, Math.ceil(s.lockTimeoutMs / 1000));
  const session = (isolation: string) => [
    'SET NAMES utf8mb4 COLLATE utf8mb4_bin',
    `SET SESSION time_zone = '+00:00', SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', SESSION innodb_lock_wait_timeout = ${lockWaitSeconds}`,
    `SET SESSION TRANSACTION ISOLATION LEVEL ${isolation}`,
    mariadb
      ? `SET SESSION max_statement_time = ${s.statementTimeoutMs / 1000}`
      : `SET SESSION max_execution_time = ${s.statementTimeoutMs}`,
  ];
  const dialect = (p: mysql.Pool, isolation: string) => {
    const stmts = session(isolation);
    return new CofferMysqlDialect({
      pool: p,
      onCreateConnection: async (conn) => {
        for (const stmt of stmts) await conn.executeQuery(CompiledQuery.raw(stmt));
      },
    });
  };
  // Reads run on their own pool whose sessions are REPEATABLE READ (READ_ISOLATION), so a read
  // transaction starts with one statement, START TRANSACTION READ ONLY, rather than two
  // (SET TRANSACTION ISOLATION LEVEL … then BEGIN: MySQL cannot name an isolation level in
  // START TRANSACTION). Writes stay READ COMMITTED with row locks. It opens connections lazily.
  const readPool = createPool();
  const w = await openKysely(dialect(pool, 'READ COMMITTED'));
  const r = await openKysely(dialect(readPool, 'REPEATABLE READ'));
  const pools = [pool, readPool].map((p) => p as unknown as Mysql2PoolInternals);
  const sum = (f: (p: Mysql2PoolInternals) => number) => pools.reduce((n, p) => n + f(p), 0);
  return {
    target,
    backend: 'mysql',
    label: 'mysql',
    dialect: 'mysql',
    mariadb,
    writer: w.db,
    reader: r.db,
    ...transactionRunner('mysql', w, r),
    poolStats: () => {
      const total = sum((p) => p._allConnections?.length ?? 0);
      return {
        total,
        idle: sum((p) => p._freeConnections?.length ?? 0),
        waiting: sum((p) => p._connectionQueue?.length ?? 0),
        created,
        closed: Math.max(0, created - total),
      };
    },
    serverVersion: async () => (mariadb ? `MariaDB ${version.replace(/-MariaDB.*$/i, '')}` : `MySQL ${version}`),
    close: async () => {
      try {
        await w.close();
      } finally {
        await r.close();
      }
    },
  };
}

export async function openEngine(
  target: DbTarget,
  settings: Partial<EngineSettings> = {},
  onPoolError: (e: unknown) => void = () => {},
): Promise<Engine> {
  const s = { ...DEFAULT_ENGINE_SETTINGS, ...settings };
  if (target.backend === 'sqlite') return openSqlite(target, s);
  if (target.backend === 'postgres') return openPostgres(target, s, onPoolError);
  return openMysql(target, s, onPoolError);
}
