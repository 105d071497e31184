// The typed error set every caller sees. Driver errors are mapped here once, so nothing above
// the engine layer ever parses a driver message.

export type ErrorCode =
  | 'not_found'
  | 'unique_violation'
  | 'foreign_key_violation'
  | 'check_violation'
  | 'not_null_violation'
  | 'invalid_state_transition'
  | 'conflict'
  | 'busy'
  | 'connection'
  | 'validation'
  | 'config'
  | 'migration'
  | 'storage_full'
  | 'read_only'
  | 'append_only'
  | 'decryption'
  | 'unauthenticated'
  | 'forbidden';

export interface ErrorDetails {
  /** The field, column or constraint the error is about, when known. */
  field?: string;
  constraint?: string;
  table?: string;
  [key: string]: unknown;
}

export class CofferError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;
  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
    this.name = new.target.name;
  }
}

export class NotFoundError extends CofferError {
  constructor(message: string, details?: ErrorDetails) {
    super('not_found', message, details);
  }
}
export class UniqueViolationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('unique_violation', message, details, options);
  }
}
export class ForeignKeyViolationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('foreign_key_violation', message, details, options);
  }
}
export class CheckViolationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('check_violation', message, details, options);
  }
}
export class NotNullViolationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('not_null_violation', message, details, options);
  }
}
export class InvalidStateTransitionError extends CofferError {
  constructor(message: string, details?: ErrorDetails) {
    super('invalid_state_transition', message, details);
  }
}
/** A lost race or stale version: the caller may re-read and try again. */
export class ConflictError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('conflict', message, details, options);
  }
}
/** Lock, statement or busy timeout: the database was reachable but could not serve in time. */
export class BusyError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('busy', message, details, options);
  }
}
export class ConnectionError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('connection', message, details, options);
  }
}
/** Bad input: nothing was written. `details.field` names the offending field. */
export class ValidationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('validation', message, details, options);
  }
}
export class ConfigError extends CofferError {
  constructor(message: string, details?: ErrorDetails) {
    super('config', message, details);
  }
}
export class MigrationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('migration', message, details, options);
  }
}
export class StorageFullError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('storage_full', message, details, options);
  }
}
export class ReadOnlyError extends CofferError {
  constructor(message: string, details?: ErrorDetails) {
    super('read_only', message, details);
  }
}

/** An UPDATE, DELETE or TRUNCATE on an append-only table (the audit log), refused by the database. */
export class AppendOnlyViolationError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('append_only', message, details, options);
  }
}
/** A ciphertext that cannot be opened: wrong or missing key id, altered or moved ciphertext. Never carries key material or plaintext. */
export class DecryptionError extends CofferError {
  constructor(message: string, details?: ErrorDetails) {
    super('decryption', message, details);
  }
}
/** Credentials (API key, token, session) unknown, wrong, expired or revoked. The message never says which. */
export class UnauthenticatedError extends CofferError {
  constructor(message = 'invalid credentials', details?: ErrorDetails) {
    super('unauthenticated', message, details);
  }
}
/** Authenticated, but not allowed: missing scope, address not on the allow-list, or a database privilege. */
export class ForbiddenError extends CofferError {
  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super('forbidden', message, details, options);
  }
}

export function isCofferError(e: unknown): e is CofferError {
  return e instanceof CofferError;
}
