// Compiled-query cache for hot paths. A query is defined once at module level with numbered
// placeholders, built and compiled by Kysely once per dialect (the SQL text depends on nothing
// else), and then executed with fresh parameters on every call: no query building, no
// compiling, and a stable SQL text that the engine turns into a prepared statement (SQLite:
// the statement cache; PostgreSQL: a named statement per connection, see engine.ts).
//
//   const GET_TX = defineQuery('chain.getTx', (db, $) =>
//     db.selectFrom('chain_transactions').selectAll().where('chain_id', '=', $(0)).where('tx_hash', '=', $(1)));
//   const rows = await tx.query(GET_TX, [chainId, hash]);
//
// Every bound value must come from a placeholder: a query whose compiled parameters contain
// anything else (a value captured from the first call) is refused, so one call's parameters can
// never leak into another's.
import { createHash } from 'node:crypto';
import { createQueryId, type Compilable, type CompiledQuery, type Kysely, type QueryId, type RootOperationNode } from 'kysely';
import type { Dialect } from '../schema/model.js';

class Slot {
  readonly index: number;
  constructor(index: number) {
    this.index = index;
  }
}

/** Placeholders one query may number ($(0) … $(MAX_PLACEHOLDERS - 1)): within every backend's limit. */
export const MAX_PLACEHOLDERS = 4096;

const SLOTS: Slot[] = [];
function slot(i: number): any {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_PLACEHOLDERS) throw new Error(`bad placeholder index ${i}`);
  return (SLOTS[i] ??= new Slot(i));
}

export type QueryBuild = (db: Kysely<any>, $: (index: number) => any) => Compilable<unknown>;

export interface CompiledTemplate {
  readonly sql: string;
  readonly query: RootOperationNode;
  readonly queryId: QueryId;
  /** For each bound parameter, the index of the argument it takes. */
  readonly slots: readonly number[];
  /** Number of arguments a call must pass. */
  readonly arity: number;
  /** PostgreSQL: the name of the prepared statement. */
  readonly name: string;
}

/** SQL texts of compiled templates on PostgreSQL → statement name (engine.ts prepares these by name). */
export const PG_STATEMENT_NAMES = new Map<string, string>();

export class PreparedQuery {
  readonly key: string;
  readonly #build: QueryBuild;
  readonly #compiled: Partial<Record<Dialect, CompiledTemplate>> = {};
  constructor(key: string, build: QueryBuild) {
    this.key = key;
    this.#build = build;
  }

  /** The compiled template for the dialect of `db` (compiled on first use). */
  template(dialect: Dialect, db: Kysely<any>): CompiledTemplate {
    return this.#compiled[dialect] ?? this.#compile(dialect, db);
  }

  #compile(dialect: Dialect, db: Kysely<any>): CompiledTemplate {
    const c: CompiledQuery = this.#build(db, slot).compile();
    const slots = c.parameters.map((p, j) => {
      if (!(p instanceof Slot)) {
        throw new Error(
          `prepared query ${this.key}: bound parameter ${j + 1} is a constant, not a placeholder $(n); pass every value as an argument`,
        );
      }
      return p.index;
    });
    const arity = slots.length ? Math.max(...slots) + 1 : 0;
    const name = `cq_${createHash('sha1').update(c.sql).digest('hex').slice(0, 20)}`;
    const t: CompiledTemplate = Object.freeze({ sql: c.sql, query: c.query, queryId: c.queryId, slots, arity, name });
    if (dialect === 'postgres') PG_STATEMENT_NAMES.set(c.sql, name);
    this.#compiled[dialect] = t;
    return t;
  }
}

/** Defines a query compiled once per dialect; `key` names it in errors. */
export function defineQuery(key: string, build: QueryBuild): PreparedQuery {
  return new PreparedQuery(key, build);
}

/** The CompiledQuery of one call: the template's SQL with this call's arguments bound. */
export function bind(t: CompiledTemplate, key: string, args: readonly unknown[]): CompiledQuery {
  if (args.length !== t.arity) throw new Error(`prepared query ${key}: expected ${t.arity} arguments, got ${args.length}`);
  const slots = t.slots;
  const parameters = new Array<unknown>(slots.length);
  for (let i = 0; i < slots.length; i++) {
    const v = args[slots[i]!];
    if (v === undefined) throw new Error(`prepared query ${key}: argument ${slots[i]} is undefined`);
    parameters[i] = v;
  }
  return { sql: t.sql, query: t.query, queryId: t.queryId, parameters };
}

/**
 * As bind(), for a Kysely instance with plugins (tests that observe every statement): the
 * template's query runs through the plugins' transformQuery, is compiled, and then its
 * placeholders take this call's arguments.
 */
export function bindThroughPlugins(t: CompiledTemplate, key: string, args: readonly unknown[], db: Kysely<any>): CompiledQuery {
  bind(t, key, args); // the same checks of the arguments
  const exec = db.getExecutor();
  const queryId = createQueryId();
  const c = exec.compileQuery(exec.transformQuery(t.query, queryId), queryId);
  return { ...c, parameters: c.parameters.map((p) => (p instanceof Slot ? args[p.index] : p)) };
}
