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
  sql,
  type DatabaseConnection,
  type Driver,
  type MysqlDialectConfig,
  type TransactionSettings,
} from 'kysely';
import mysql from 'mysql2';
import pg from 'pg';
import type { Dialect } from '../schema/model.js';
import { mapDriverError } from './driver-errors.js';
import { ConfigError, ConnectionError } from './errors.js';
import { CofferSqliteDialect, SqliteHandle } from './sqlite-driver.js';
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
  /** Kysely instance for read transactions (a separate connection on SQLite files). */
  readonly reader: Kysely<any>;
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

function openSqlite(target: DbTarget & { backend: 'sqlite' }, s: EngineSettings): Engine {
  let acquired: ReturnType<typeof acquireSqliteFile>;
  try {
    acquired = acquireSqliteFile(target, s);
  } catch (e) {
    throw connectionFailure(target, e);
  }
  const { writer: writerHandle, reader: readerHandle } = acquired.shared;
  const writer = new Kysely<any>({ dialect: new CofferSqliteDialect(writerHandle) });
  const reader = readerHandle !== writerHandle ? new Kysely<any>({ dialect: new CofferSqliteDialect(readerHandle) }) : writer;
  const handles = readerHandle !== writerHandle ? [writerHandle, readerHandle] : [writerHandle];
  return {
    target,
    backend: 'sqlite',
    label: backendLabel(target),
    dialect: 'sqlite',
    mariadb: false,
    writer,
    reader,
    poolStats: () => ({
      total: handles.length,
      idle: handles.filter((h) => !h.busy).length,
      waiting: handles.reduce((n, h) => n + h.waiting, 0),
      created: handles.length,
      closed: 0,
    }),
    serverVersion: async () => `SQLite ${(writerHandle.db.prepare('select sqlite_version() as v').get() as { v: string }).v}`,
    close: async () => {
      await writer.destroy();
      if (reader !== writer) await reader.destroy();
      acquired.release();
    },
  };
}

async function openPostgres(target: DbTarget & { backend: 'postgres' }, s: EngineSettings, onError: (e: unknown) => void): Promise<Engine> {
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
    types: { getTypeParser: ((oid: number, format?: string) => (oid === 114 || oid === 3802 ? (v: string) => v : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser },
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
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  return {
    target,
    backend: 'postgres',
    label: 'postgres',
    dialect: 'postgres',
    mariadb: false,
    writer: db,
    reader: db,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, created, closed }),
    serverVersion: async () => {
      const r = await sql<{ server_version: string }>`show server_version`.execute(db);
      return `PostgreSQL ${r.rows[0]?.server_version ?? '?'}`;
    },
    close: () => db.destroy(),
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

interface Mysql2PoolInternals {
  _allConnections?: { length: number };
  _freeConnections?: { length: number };
  _connectionQueue?: { length: number };
}

async function openMysql(target: DbTarget & { backend: 'mysql' }, s: EngineSettings, onError: (e: unknown) => void): Promise<Engine> {
  const ssl = tlsOptions(target);
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
    timezone: 'Z',
    dateStrings: false,
    charset: 'UTF8MB4_BIN',
    enableKeepAlive: true,
    ...(ssl ? { ssl } : {}),
  });
  let created = 0;
  pool.on('connection', (conn) => {
    created++;
    conn.on('error', onError);
  });
  // Probe once: reachability, and MariaDB vs MySQL (statement timeouts are spelled differently).
  let version: string;
  try {
    version = await new Promise<string>((res, rej) =>
      pool.query('SELECT VERSION() AS v', (err, rows) => (err ? rej(err) : res(String((rows as { v: string }[])[0]?.v ?? '')))),
    );
  } catch (e) {
    await new Promise<void>((r) => pool.end(() => r()));
    throw connectionFailure(target, e);
  }
  const mariadb = /mariadb/i.test(version);
  const lockWaitSeconds = Math.max(1, Math.ceil(s.lockTimeoutMs / 1000));
  const session = [
    'SET NAMES utf8mb4 COLLATE utf8mb4_bin',
    `SET SESSION time_zone = '+00:00', SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', SESSION innodb_lock_wait_timeout = ${lockWaitSeconds}`,
    'SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED',
    mariadb
      ? `SET SESSION max_statement_time = ${s.statementTimeoutMs / 1000}`
      : `SET SESSION max_execution_time = ${s.statementTimeoutMs}`,
  ];
  const db = new Kysely<any>({
    dialect: new CofferMysqlDialect({
      pool,
      onCreateConnection: async (conn) => {
        for (const stmt of session) await conn.executeQuery(CompiledQuery.raw(stmt));
      },
    }),
  });
  const internals = pool as unknown as Mysql2PoolInternals;
  return {
    target,
    backend: 'mysql',
    label: 'mysql',
    dialect: 'mysql',
    mariadb,
    writer: db,
    reader: db,
    poolStats: () => {
      const total = internals._allConnections?.length ?? 0;
      return {
        total,
        idle: internals._freeConnections?.length ?? 0,
        waiting: internals._connectionQueue?.length ?? 0,
        created,
        closed: Math.max(0, created - total),
      };
    },
    serverVersion: async () => (mariadb ? `MariaDB ${version.replace(/-MariaDB.*$/i, '')}` : `MySQL ${version}`),
    close: () => db.destroy(),
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
