// Reads across the chain databases (the default one and each per-chain one) for what shows all of
// them at once: GET /v1/chains, the dashboard's chains, /ready. One database that does not answer
// leaves its chains out, named with a fixed reason; the driver's message is logged, never returned
// (a database URL, a host or a user name can be in it).
import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import { CofferError } from '../db/errors.js';
import type { ChainDatabase } from '../domains/chain/router.js';

/** "default", or "chain:<ids>" for a per-chain database: never its URL. */
export function databaseName(db: ChainDatabase): string {
  if (db.isDefault) return 'default';
  return db.chains.length > 0 ? `chain:${db.chains.join(',')}` : db.coffer.name;
}

export const UNAVAILABLE_REASONS = ['database unreachable', 'database busy', 'database error'] as const;
export type UnavailableReason = (typeof UNAVAILABLE_REASONS)[number];

export interface UnavailableDatabase {
  database: string;
  reason: UnavailableReason;
}

/** The `unavailable` field of a response, for its schema (and so /openapi.json). */
export const unavailableOut = z
  .array(z.object({ database: z.string(), reason: z.enum(UNAVAILABLE_REASONS) }))
  .describe('databases that did not answer: what they hold is missing from this response');

/** A fixed phrase for a failed read: connection failures, timeouts and locks, anything else. */
export function unavailableReason(e: unknown): UnavailableReason {
  if (e instanceof CofferError && e.code === 'connection') return 'database unreachable';
  if (e instanceof CofferError && e.code === 'busy') return 'database busy';
  return 'database error';
}

/** The databases that failed one response's reads, each once, in the router's order. */
export class Unavailable {
  readonly #log: FastifyBaseLogger;
  readonly #failed = new Map<number, UnavailableDatabase & { error: unknown }>();

  constructor(log: FastifyBaseLogger) {
    this.#log = log;
  }

  /** What the response names: database and fixed reason, the default database first. */
  get list(): UnavailableDatabase[] {
    return [...this.#failed.entries()].sort(([a], [b]) => a - b).map(([, f]) => ({ database: f.database, reason: f.reason }));
  }

  /**
   * Logs a failed read in full (the driver's message and code) and names the database, the
   * `index`-th of the router's; returns undefined, the read's result.
   */
  record(db: ChainDatabase, index: number, e: unknown, op: string): undefined {
    const database = databaseName(db);
    const reason = unavailableReason(e);
    const cause = (e as { cause?: unknown })?.cause;
    const detail = (x: unknown) => ({ message: (x as Error)?.message, code: (x as { code?: unknown })?.code });
    this.#log[reason === 'database error' ? 'error' : 'warn'](
      { database, op, err: detail(e), ...(cause ? { cause: detail(cause) } : {}) },
      `${op}: ${database} left out: ${reason}`,
    );
    if (!this.#failed.has(index)) this.#failed.set(index, { database, reason, error: e });
    return undefined;
  }

  /** When none of `databases` answered there is nothing to serve: the first one's failure is the response. */
  throwIfAllOf(databases: readonly ChainDatabase[]): void {
    if (this.#failed.size === 0 || this.#failed.size < databases.length) return;
    throw [...this.#failed.entries()].sort(([a], [b]) => a - b)[0]![1].error;
  }
}

/** `read` on every database at once; a database whose read fails is recorded and gives undefined. */
export function fromEach<T>(
  databases: readonly ChainDatabase[],
  read: (db: ChainDatabase, index: number) => Promise<T>,
  unavailable: Unavailable,
  op: string,
): Promise<(T | undefined)[]> {
  return Promise.all(databases.map((db, i) => read(db, i).catch((e: unknown) => unavailable.record(db, i, e, op))));
}
