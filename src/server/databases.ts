// Reads across the chain databases (the default one and each per-chain one) for what shows all of
// them at once: GET /v1/chains, the dashboard's chains, the chain gauges of /metrics, /ready. One
// database that does not answer leaves its chains out, named with a fixed reason; the driver's
// message is logged, never returned (a database URL, a host or a user name can be in it), and
// once an outage, not once a read.
import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import { CofferError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
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

/** What outage lines are written to (a request's logger, or the service's for /metrics). */
export type OutageLogger = Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>;

/**
 * When outage lines are due: a reminder at most every `reminderMs` per database that stays down;
 * `now` in ms. Tests move the clock rather than wait a minute.
 */
export const outageLog = { reminderMs: 60_000, now: (): number => Date.now() };

interface Outage {
  reason: UnavailableReason;
  /** When its first failure was seen, and when a line about it was last written. */
  since: number;
  lastLine: number;
  /** Reads it left out: in all, and since the last line. */
  failed: number;
  sinceLine: number;
  /** The sequence number of its latest failure (failureSeq). */
  seq: number;
}

// Process-wide, per database (its Coffer): the dashboard polls every 2 s from each open tab, API
// clients and Prometheus read too, and an outage of minutes must not write a line for each read.
// Keyed by the Coffer so services over other databases in the same process keep their own state.
const outages = new WeakMap<Coffer, Outage>();
// Failures seen so far in the process: an answer to a read begun before a database's latest
// failure (in flight when it went down) does not end that outage.
let failureSeq = 0;

function detail(x: unknown): { message: unknown; code: unknown } {
  return { message: (x as Error)?.message, code: (x as { code?: unknown })?.code };
}

function seconds(ms: number): number {
  return Math.round(ms / 1000);
}

function reads(n: number): string {
  return n === 1 ? '1 read' : `${n} reads`;
}

/**
 * A failed read of `db`: logged in full (the driver's message and code) when it begins an outage
 * or changes its reason; otherwise counted, with a reminder at most every reminderMs.
 */
function outageFailed(log: OutageLogger, db: ChainDatabase, e: unknown, op: string): void {
  const now = outageLog.now();
  const reason = unavailableReason(e);
  const database = databaseName(db);
  const seq = ++failureSeq;
  const o = outages.get(db.coffer);
  if (o && o.reason === reason) {
    o.failed++;
    o.sinceLine++;
    o.seq = seq;
    if (now - o.lastLine < outageLog.reminderMs) return;
    log.warn(
      { database, op, reason, downSeconds: seconds(now - o.since), failedReads: o.sinceLine, err: detail(e) },
      `${database} still down (${reason}) after ${seconds(now - o.since)} s: ${reads(o.sinceLine)} left it out since the last line`,
    );
    o.lastLine = now;
    o.sinceLine = 0;
    return;
  }
  const cause = (e as { cause?: unknown })?.cause;
  log[reason === 'database error' ? 'error' : 'warn'](
    { database, op, err: detail(e), ...(cause ? { cause: detail(cause) } : {}) },
    `${op}: ${database} left out: ${reason}`,
  );
  if (!o) {
    outages.set(db.coffer, { reason, since: now, lastLine: now, failed: 1, sinceLine: 0, seq });
    return;
  }
  // The same outage with another reason: logged in full above, counted on from its start.
  o.reason = reason;
  o.lastLine = now;
  o.failed++;
  o.sinceLine = 0;
  o.seq = seq;
}

/** `db` answered a read begun when failureSeq was `start`: the end of its outage, if it had one. */
function outageAnswered(log: OutageLogger, db: ChainDatabase, start: number): void {
  const o = outages.get(db.coffer);
  if (!o || start < o.seq) return;
  outages.delete(db.coffer);
  const database = databaseName(db);
  const down = seconds(outageLog.now() - o.since);
  log.info(
    { database, downSeconds: down, failedReads: o.failed },
    `${database} answered again after ${down} s; ${reads(o.failed)} left it out`,
  );
}

/**
 * The databases that failed one response's reads, each once, in the router's order. Failures and
 * answers also go to the process-wide outage log above, unless `log` is undefined (then nothing
 * is logged: a registry's chain gauges built without a logger, as tests build them).
 */
export class Unavailable {
  readonly #log: OutageLogger | undefined;
  readonly #failed = new Map<number, UnavailableDatabase & { error: unknown }>();
  /** failureSeq when the response began. */
  readonly #start = failureSeq;

  constructor(log: OutageLogger | undefined) {
    this.#log = log;
  }

  /** What the response names: database and fixed reason, the default database first. */
  get list(): UnavailableDatabase[] {
    return [...this.#failed.entries()].sort(([a], [b]) => a - b).map(([, f]) => ({ database: f.database, reason: f.reason }));
  }

  /**
   * A failed read of the `index`-th of the router's databases: names it in the response and goes
   * to the outage log (the driver's message and code are logged, never returned); returns
   * undefined, the read's result.
   */
  record(db: ChainDatabase, index: number, e: unknown, op: string): undefined {
    if (this.#log) outageFailed(this.#log, db, e, op);
    if (!this.#failed.has(index)) this.#failed.set(index, { database: databaseName(db), reason: unavailableReason(e), error: e });
    return undefined;
  }

  /**
   * A read of `db` answered; returns its result. It ends the database's outage only when this
   * response began after the outage's latest failure: neither a read in flight when the database
   * went down, nor a later read here that skips a database which failed earlier in this response
   * (it answers without asking it), says anything about now.
   */
  answered<T>(db: ChainDatabase, result: T): T {
    if (this.#log) outageAnswered(this.#log, db, this.#start);
    return result;
  }

  /** When none of `databases` answered there is nothing to serve: the first one's failure is the response. */
  throwIfAllOf(databases: readonly ChainDatabase[]): void {
    if (this.#failed.size === 0 || this.#failed.size < databases.length) return;
    throw [...this.#failed.entries()].sort(([a], [b]) => a - b)[0]![1].error;
  }
}

/**
 * `read` on every database at once; a database whose read fails is recorded and gives undefined,
 * and one that answers may end its outage (each goes to the outage log).
 */
export function fromEach<T>(
  databases: readonly ChainDatabase[],
  read: (db: ChainDatabase, index: number) => Promise<T>,
  unavailable: Unavailable,
  op: string,
): Promise<(T | undefined)[]> {
  return Promise.all(
    databases.map((db, i) =>
      read(db, i).then(
        (r) => unavailable.answered(db, r),
        (e: unknown) => unavailable.record(db, i, e, op),
      ),
    ),
  );
}
