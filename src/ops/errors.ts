// Errors of the operator commands. Environment problems (a missing tool, a file that cannot be
// written, a target that is not empty) are ConfigErrors, so the CLI prints one line and exits 2;
// a full disk is a StorageFullError; a failed verification is its own type (exit 1); an
// interruption says what state it left behind (exit 130).
import { CofferError, ConfigError, StorageFullError } from '../db/errors.js';

/** The copy or restore finished loading but the target does not match its source. */
export class VerificationError extends Error {
  readonly problems: string[];
  constructor(message: string, problems: string[]) {
    super(message);
    this.name = 'VerificationError';
    this.problems = problems;
  }
}

/** Ctrl-C (or SIGTERM) stopped the operation; `message` says what was left behind. */
export class InterruptedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InterruptedError';
  }
}

export function throwIfAborted(signal: AbortSignal | undefined, what: () => string): void {
  if (signal?.aborted) throw new InterruptedError(what());
}

/** One clear error for a failed file operation: disk full, permission, missing folder. */
export function fileError(e: unknown, action: string, path: string): Error {
  if (e instanceof CofferError) return e;
  const code = (e as { code?: string }).code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
    case 'SQLITE_FULL':
      return new StorageFullError(`${action} ${path}: the disk is full (free some space or choose another location)`, { path });
    case 'EACCES':
    case 'EPERM':
    case 'SQLITE_PERM':
      return new ConfigError(`${action} ${path}: permission denied (check the file's owner and mode)`, { path });
    case 'EROFS':
      return new ConfigError(`${action} ${path}: the file system is read-only`, { path });
    case 'SQLITE_CANTOPEN':
      return new ConfigError(`${action} ${path}: cannot open the file (check that its folder exists and is writable)`, { path });
    case 'ENOENT':
      return new ConfigError(`${action} ${path}: no such file or directory`, { path });
    case 'ENOTDIR':
      return new ConfigError(`${action} ${path}: a part of the path is not a directory`, { path });
    case 'EISDIR':
      return new ConfigError(`${action} ${path}: is a directory (name a file)`, { path });
    case 'EEXIST':
      return new ConfigError(`${action} ${path}: already exists`, { path });
    default:
      return new ConfigError(`${action} ${path}: ${(e as Error).message ?? String(e)}`, { path });
  }
}
