// What every identity store shares: the transaction, the actor, the row-history writer and the
// audit writer (both on the same clock), and the mapping of "no row changed" to typed errors.
import { ConflictError, InvalidStateTransitionError, NotFoundError } from '../../db/errors.js';
import type { Tx } from '../../db/tx.js';
import type { Keyring } from '../../secrets/envelope.js';
import { checkActor, type Actor } from '../audit/actor.js';
import { rowHistory, type RowHistory } from '../audit/history.js';
import { audit, type AuditEntry, type AuditInput } from '../audit/log.js';

export interface IdentityOptions {
  /** Clock (tests); defaults to the system clock. */
  now?: () => Date;
  /** Master keys for encrypted columns; defaults to COFFER_MASTER_KEY / COFFER_MASTER_KEY_FILE, read when first needed. */
  keyring?: Keyring;
}

export type Row = Record<string, unknown>;

// Bumped after every committed identity change that can change what an authentication decides
// (keys, integrations, users, roles, session revocation); caches of authentications
// (src/server/auth-cache.ts) drop what they hold when it moves. Minting or consuming a
// single-use token or creating a session or key does not move it: those run all day and would
// empty the cache each time.
let generation = 0;
const bump = () => {
  generation++;
};
/** The identity generation of this process. */
export const identityGeneration = (): number => generation;

export abstract class IdentityStore {
  protected readonly tx: Tx;
  readonly actor: Actor;
  protected readonly rows: RowHistory;
  protected readonly opts: IdentityOptions;

  constructor(tx: Tx, actor: Actor, opts: IdentityOptions = {}) {
    this.tx = tx;
    this.actor = checkActor(actor);
    this.opts = opts;
    this.rows = rowHistory(tx, this.actor, { now: () => this.now() });
  }

  protected now(): Date {
    return new Date((this.opts.now?.() ?? new Date()).getTime());
  }

  /** Records the change in the audit log (call last: it takes the audit head lock until commit). */
  protected record(input: Omit<AuditInput, 'actor' | 'domain'>): Promise<AuditEntry> {
    return audit(this.tx, { now: () => this.now() }).record({ ...input, actor: this.actor, domain: 'identity' });
  }

  /** Several entries under one head lock, in order (call last). */
  protected recordMany(inputs: Omit<AuditInput, 'actor' | 'domain'>[]): Promise<AuditEntry[]> {
    return audit(this.tx, { now: () => this.now() }).recordMany(inputs.map((i) => ({ ...i, actor: this.actor, domain: 'identity' })));
  }

  /** `authentication`: false for a change no cached authentication can depend on. */
  protected writable(op: string, authentication = true): void {
    this.tx.assertWritable(`identity: ${op}`);
    if (authentication) this.tx.afterCommit(bump);
  }
}

/**
 * Explains why a conditional write changed nothing: no row, a soft-deleted row, a stale
 * version (ConflictError: re-read and retry), or a state that forbids the change.
 */
export function explainNoChange(what: string, id: string, before: Row | undefined, expectedVersion: number | undefined): never {
  if (!before) throw new NotFoundError(`${what} ${id} not found`, { id });
  if (before.deleted_at !== undefined && before.deleted_at !== null) {
    throw new InvalidStateTransitionError(`${what} ${id} is deleted`, { id });
  }
  if (expectedVersion !== undefined && before.version !== expectedVersion) {
    throw new ConflictError(
      `${what} ${id} was changed by someone else (version ${String(before.version)}, expected ${expectedVersion}): re-read and retry`,
      {
        id,
        expectedVersion,
        actualVersion: before.version,
      },
    );
  }
  throw new InvalidStateTransitionError(`${what} ${id} cannot make this change in its current state`, { id });
}
