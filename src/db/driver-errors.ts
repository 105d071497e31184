// Maps each driver's error codes to Coffer's typed errors, and says which ones a transaction
// retry can cure. Driver messages are used only to fill in details, never to decide the type.
import type { Backend } from './url.js';
import {
  AppendOnlyViolationError,
  BusyError,
  CheckViolationError,
  CofferError,
  ConflictError,
  ConnectionError,
  ForbiddenError,
  ForeignKeyViolationError,
  NotNullViolationError,
  StorageFullError,
  UniqueViolationError,
  ValidationError,
} from './errors.js';

interface DriverErrorLike {
  code?: unknown;
  errno?: unknown;
  sqlState?: unknown;
  constraint?: unknown;
  table?: unknown;
  column?: unknown;
  message?: unknown;
}

function fields(e: unknown): DriverErrorLike {
  return typeof e === 'object' && e !== null ? (e as DriverErrorLike) : {};
}

/**
 * SQLSTATE the append-only triggers raise (audit/0001): PostgreSQL RAISE … ERRCODE, MySQL SIGNAL
 * SQLSTATE, and the first word of the SQLite RAISE(ABORT) message (SQLite has no custom codes).
 */
export const APPEND_ONLY_SQLSTATE = 'CFA01';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_CON_COUNT_ERROR',
]);

/** True when running the whole transaction again may succeed (deadlock, serialization, busy). */
/** PostgreSQL refuses a named statement whose result columns changed since it was prepared (DDL). */
export function isStalePlan(e: unknown): boolean {
  const f = e as { code?: unknown; message?: unknown } | null;
  return f?.code === '0A000' && typeof f.message === 'string' && f.message.includes('cached plan must not change result type');
}

export function isRetryable(backend: Backend, e: unknown): boolean {
  const f = fields(e);
  // A stale named statement (engine.ts) is prepared again under a new name on the retry.
  if (backend === 'postgres') return f.code === '40001' || f.code === '40P01' || isStalePlan(e);
  if (backend === 'mysql') return f.errno === 1213 || f.errno === 1205;
  // SQLITE_BUSY covers BUSY_SNAPSHOT/BUSY_RECOVERY; LOCKED is a shared-cache/self lock.
  return typeof f.code === 'string' && (f.code.startsWith('SQLITE_BUSY') || f.code.startsWith('SQLITE_LOCKED'));
}

/** Pulls a constraint name out of MySQL/SQLite messages, which carry no structured field for it. */
function constraintFromMessage(message: string): string | undefined {
  const mysqlKey = /for key '([^']+)'/.exec(message);
  if (mysqlKey) return mysqlKey[1]!.split('.').pop();
  const mysqlCheck = /CONSTRAINT [`']([^`']+)[`'] failed/i.exec(message) ?? /Check constraint '([^']+)' is violated/i.exec(message);
  if (mysqlCheck) return mysqlCheck[1];
  const mysqlFk = /CONSTRAINT `([^`]+)` FOREIGN KEY/.exec(message);
  if (mysqlFk) return mysqlFk[1];
  const sqliteCheck = /CHECK constraint failed: (\S+)/.exec(message);
  if (sqliteCheck) return sqliteCheck[1];
  const sqliteUnique = /UNIQUE constraint failed: (.+)$/.exec(message);
  if (sqliteUnique) return sqliteUnique[1];
  return undefined;
}

/**
 * Converts a driver error into a CofferError. Errors that are already typed pass through;
 * anything unrecognised is returned unchanged so programming errors keep their stack.
 */
export function mapDriverError(backend: Backend, e: unknown): unknown {
  if (e instanceof CofferError) return e;
  const f = fields(e);
  const message = typeof f.message === 'string' ? f.message : String(e);
  const constraint = typeof f.constraint === 'string' ? f.constraint : constraintFromMessage(message);
  const details = {
    ...(constraint ? { constraint } : {}),
    ...(typeof f.table === 'string' ? { table: f.table } : {}),
    ...(typeof f.column === 'string' ? { field: f.column } : {}),
  };
  const opts = { cause: e };
  if (typeof f.code === 'string' && NETWORK_CODES.has(f.code)) {
    return new ConnectionError(`database connection failed (${f.code})`, { backend }, opts);
  }
  if (backend === 'postgres') {
    const code = typeof f.code === 'string' ? f.code : '';
    switch (code) {
      case '23505':
        return new UniqueViolationError(`unique constraint ${constraint ?? ''} violated`.trim(), details, opts);
      case '23503':
        return new ForeignKeyViolationError(`foreign key ${constraint ?? ''} violated`.trim(), details, opts);
      case '23514':
        return new CheckViolationError(`check constraint ${constraint ?? ''} violated`.trim(), details, opts);
      case '23502':
        return new NotNullViolationError(`column ${f.column ?? ''} may not be null`, details, opts);
      case '40001':
      case '40P01':
        return new ConflictError('transaction conflicted with a concurrent one and retries ran out', details, opts);
      case '55P03':
        return new BusyError('lock timeout: a row or table stayed locked too long', details, opts);
      case '57014':
        return new BusyError('statement timeout: the statement was cancelled', details, opts);
      case '53100':
        return new StorageFullError('the database server is out of disk space', details, opts);
      case '22001':
      case '22003':
      case '22P02':
      // NUL in text or JSON (22021, 22P05), a timestamp out of range (22008): input the domain
      // validators refuse by name; should one slip through it is still bad input, not a 500.
      case '22021':
      case '22P05':
      case '22008':
        return new ValidationError(`value out of range or malformed: ${message}`, details, opts);
      case '25006':
        return new CofferError('read_only', 'write attempted in a read-only transaction', details, opts);
      case APPEND_ONLY_SQLSTATE:
        return new AppendOnlyViolationError(`${f.table ?? 'table'} is append-only: UPDATE, DELETE and TRUNCATE are refused`, details, opts);
      case '42501':
        return new ForbiddenError('permission denied: the database role lacks a privilege for this statement', details, opts);
    }
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') {
      return new ConnectionError(`database connection failed (${code})`, { backend }, opts);
    }
    if (/Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message)) {
      return new ConnectionError(`database connection failed: ${message}`, { backend }, opts);
    }
    return e;
  }
  if (backend === 'mysql') {
    const errno = typeof f.errno === 'number' ? f.errno : -1;
    switch (errno) {
      case 1062:
      case 1586:
        return new UniqueViolationError(`unique constraint ${constraint ?? ''} violated`.trim(), details, opts);
      case 1451:
      case 1452:
      case 1216:
      case 1217:
        return new ForeignKeyViolationError(`foreign key ${constraint ?? ''} violated`.trim(), details, opts);
      case 3819: // MySQL 8
      case 4025: // MariaDB ER_CONSTRAINT_FAILED
        return new CheckViolationError(`check constraint ${constraint ?? ''} violated`.trim(), details, opts);
      case 1048:
      case 1364:
        return new NotNullViolationError(message, details, opts);
      case 1213:
        return new ConflictError('deadlock and retries ran out', details, opts);
      case 1205:
        return new BusyError('lock wait timeout: a row stayed locked too long', details, opts);
      case 3024: // MySQL max_execution_time
      case 1969: // MariaDB max_statement_time
        return new BusyError('statement timeout: the statement was cancelled', details, opts);
      case 1406:
      case 1264:
      case 1690: // BIGINT value out of range (e.g. a CHECK computing quantity * price)
      case 1366:
      case 1292:
        return new ValidationError(`value out of range or malformed: ${message}`, details, opts);
      case 1114:
      case 1021:
        return new StorageFullError('the database server is out of space', details, opts);
      case 1792:
        return new CofferError('read_only', 'write attempted in a read-only transaction', details, opts);
      case 1644: // ER_SIGNAL_EXCEPTION: only our own SQLSTATE is typed
        if (f.sqlState === APPEND_ONLY_SQLSTATE)
          return new AppendOnlyViolationError('the table is append-only: UPDATE and DELETE are refused', details, opts);
        break;
      case 1142:
      case 1143:
        return new ForbiddenError('permission denied: the database user lacks a privilege for this statement', details, opts);
      case 1040:
      case 1045:
      case 1049:
      case 2002:
      case 2003:
      case 2006:
      case 2013:
      case 4031:
      case 1927:
        return new ConnectionError(`database connection failed (${errno}): ${message}`, { backend }, opts);
    }
    if (typeof f.code === 'string' && f.code.startsWith('PROTOCOL_')) {
      return new ConnectionError(`database connection failed (${f.code})`, { backend }, opts);
    }
    // mysql2 marks errors that end the connection `fatal`, some without a code: "Can't add new
    // command when connection is in closed state" is what the ROLLBACK after a connection killed
    // mid-transaction throws, and it replaces the original error (it was a 500; found by the
    // database-restart test).
    if ((e as { fatal?: unknown }).fatal === true) {
      return new ConnectionError(`database connection failed: ${message}`, { backend }, opts);
    }
    return e;
  }
  // SQLite (file and memory)
  const code = typeof f.code === 'string' ? f.code : '';
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new UniqueViolationError(`unique constraint ${constraint ?? ''} violated`.trim(), details, opts);
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') return new ForeignKeyViolationError('foreign key violated', details, opts);
  if (code === 'SQLITE_CONSTRAINT_CHECK') {
    return new CheckViolationError(`check constraint ${constraint ?? ''} violated`.trim(), details, opts);
  }
  if (code === 'SQLITE_CONSTRAINT_NOTNULL') return new NotNullViolationError(message, details, opts);
  if (code === 'SQLITE_CONSTRAINT_TRIGGER') {
    if (message.startsWith(`${APPEND_ONLY_SQLSTATE}:`))
      return new AppendOnlyViolationError('the table is append-only: UPDATE and DELETE are refused', details, opts);
    return new CheckViolationError(`a trigger refused the change: ${message}`, details, opts);
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new BusyError('the database file stayed locked by another writer past busy_timeout', details, opts);
  }
  if (code === 'SQLITE_FULL') return new StorageFullError('the disk holding the database is full', details, opts);
  if (code === 'SQLITE_READONLY' || code.startsWith('SQLITE_READONLY')) {
    return new CofferError('read_only', 'the database file is read-only here', details, opts);
  }
  if (code === 'SQLITE_CANTOPEN' || code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new ConnectionError(`cannot open the SQLite database (${code})`, { backend }, opts);
  }
  return e;
}
