// The reference a live schema's definitions are compared with: this build's migrations run on a
// scratch database of the same engine, introspected exactly as the live one is.
//
// Why a scratch database rather than the logical schema's own text: every engine rewrites what
// it is given. PostgreSQL deparses a CHECK (`status IN ('a')` comes back as
// `((status)::text = ANY ((ARRAY['a'::character varying])::text[]))`), MariaDB re-prints it
// (`length(x)` as `octet_length(x)`), MySQL adds charset introducers, defaults come back quoted
// or cast. Normalising each dialect's rewriting by hand would be a second compiler that drifts
// from the engines; the engine itself rendering this build's DDL is exact by construction, on
// every version, with no rules to keep up.
//
// The scratch never touches the operator's tables, and does not outlive the call:
//   SQLite / memory://  an in-memory database, closed at the end.
//   PostgreSQL          a schema created inside one transaction on the operator's connection,
//                       filled, read and ROLLED BACK: it is never committed, so no other session
//                       sees it and no object is left behind even if the process dies midway.
//                       The catalogue rows it wrote stay as dead rows until (auto)vacuum clears
//                       them, about 2,000 per run (pg_attribute, pg_depend, pg_class, …): cheap
//                       daily, worth avoiding every minute (doctor --check without schema).
//                       Needs CREATE on the database (its owner has it).
//   MySQL / MariaDB     a database `coffer_doctor_<Date.now() base 36>_<random>` (DDL is not
//                       transactional there), dropped in `finally`; the CLI drops it on Ctrl-C
//                       or SIGTERM too (onScratch), so only a process killed outright (SIGKILL,
//                       a crash) leaves it behind, and doctor names one older than a few
//                       minutes (its name says when it was made). Needs CREATE and DROP on it,
//                       e.g. GRANT ALL ON `coffer\_doctor\_%`.* TO the operator's account.
// When the scratch cannot be created, ScratchUnavailableError says why; doctor reports that the
// comparison could not run instead of passing it.
//
// One more rewriting: a dump and restore (pg_dump, mysqldump) re-creates each CHECK from the
// text the engine showed, and PostgreSQL shows a re-parsed expression differently from the
// first (`(ARRAY['a'::varchar])::text[]` comes back as `ARRAY[('a'::varchar)::text]`); a
// server upgrade may print a stored MySQL expression differently too. So a CHECK whose two texts
// differ is parsed once more on both sides, in the scratch, and counts as the same when the two
// come back the same (one re-parse is a fixed point).
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { openEngine, type Engine } from '../db/engine.js';
import { mapDriverError } from '../db/driver-errors.js';
import { withDatabase } from '../db/url.js';
import { historyTable } from '../migrations/history.js';
import type { Migration } from '../migrations/migration.js';
import { migrationSteps } from '../migrations/runner.js';
import { createTableSteps, quote, type SchemaDefinitions } from './compile.js';
import { normaliseSql } from './sql-text.js';
import { introspectDefinitions } from './introspect.js';
import type { Dialect } from './model.js';

/** A scratch database that exists until `drop` (MySQL/MariaDB), for a caller that may have to stop midway. */
export interface Scratch {
  name: string;
  /** DROP DATABASE IF EXISTS, on the operator's connection. */
  drop(): Promise<void>;
}

export interface ReferenceOptions {
  /**
   * Told the scratch database before it is created, and undefined once it is dropped (or could
   * not be): a CLI stopped by a signal meanwhile drops it (doctor's dropScratchOnSignal).
   */
  onScratch?: (scratch: Scratch | undefined) => void;
}

/** The scratch database (or schema) could not be created or used; the message says why. */
export class ScratchUnavailableError extends Error {}

export interface Reference {
  /** What this build's migrations produce on this engine. */
  expected: SchemaDefinitions;
  /** The live definitions passed in, a CHECK that differs only by a dump and restore set to the expected text. */
  live: SchemaDefinitions;
  /** Where the reference was built, for messages ("an in-memory SQLite database", …). */
  where: string;
  /** A scratch database that could not be dropped afterwards (MySQL), with the reason. */
  leftover?: { name: string; reason: string };
}

const reason = (d: Dialect, e: unknown) => (mapDriverError(d, e) as Error).message;

/** Runs what the Migrator runs for these migrations, from an empty database: the history table, then every step. */
async function applyMigrations(db: Kysely<any>, d: Dialect, migrations: readonly Migration[]): Promise<void> {
  for (const s of createTableSteps(d, historyTable, { ifNotExists: true })) await sql.raw(s.sql).execute(db);
  for (const m of migrations) for (const s of migrationSteps(d, m)) await sql.raw(s.sql).execute(db);
}

export function scratchName(): string {
  return `coffer_doctor_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/**
 * What `migrations`, run from an empty database on the engine `engine` connects to, produce
 * (compile.ts's SchemaDefinitions), beside `live` (read from the operator's database with
 * introspectDefinitions) made comparable with it. Throws ScratchUnavailableError when the
 * scratch cannot be created or the migrations cannot run in it.
 */
export async function referenceDefinitions(
  engine: Engine,
  migrations: readonly Migration[],
  live: SchemaDefinitions,
  opts: ReferenceOptions = {},
): Promise<Reference> {
  const d = engine.dialect;
  if (d === 'sqlite') {
    const where = 'an in-memory SQLite database';
    let scratch: Engine;
    try {
      scratch = await openEngine({ backend: 'sqlite', memory: true, path: ':memory:', url: 'memory://' });
    } catch (e) {
      throw new ScratchUnavailableError(`cannot open ${where}: ${reason(d, e)}`);
    }
    try {
      await build(scratch.writer, d, migrations, where);
      // SQLite keeps the CREATE TABLE text as given: nothing to re-parse.
      return { expected: await introspectDefinitions(scratch.writer, d), live, where };
    } finally {
      await scratch.close();
    }
  }
  const name = scratchName();
  if (d === 'postgres') {
    const where = `a scratch schema ${name} (rolled back)`;
    return engine.writer.connection().execute(async (conn) => {
      await sql.raw('BEGIN').execute(conn);
      try {
        try {
          await sql.raw(`CREATE SCHEMA ${quote(d, name)}`).execute(conn);
          // Only the scratch schema: an unqualified name can resolve to nothing of the operator's.
          await sql.raw(`SET LOCAL search_path TO ${quote(d, name)}`).execute(conn);
        } catch (e) {
          throw new ScratchUnavailableError(`cannot create a scratch schema in this database: ${reason(d, e)}`);
        }
        await build(conn, d, migrations, where);
        const expected = await introspectDefinitions(conn, d);
        return { expected, live: await reconcileChecks(conn, d, expected, live), where };
      } finally {
        await sql
          .raw('ROLLBACK')
          .execute(conn)
          .catch(() => {});
      }
    });
  }
  const target = engine.target;
  if (target.backend !== 'mysql') throw new Error(`unexpected target ${target.backend} for dialect ${d}`);
  const where = `a scratch database ${name}`;
  const charset = await sql<{ cs: unknown; coll: unknown }>`select default_character_set_name as cs, default_collation_name as coll
    from information_schema.schemata where schema_name = database()`.execute(engine.writer);
  const cs = String(charset.rows[0]?.cs ?? 'utf8mb4');
  const coll = String(charset.rows[0]?.coll ?? 'utf8mb4_bin');
  const drop = async () => void (await sql.raw(`DROP DATABASE IF EXISTS ${quote(d, name)}`).execute(engine.writer));
  opts.onScratch?.({ name, drop });
  try {
    await sql.raw(`CREATE DATABASE ${quote(d, name)} CHARACTER SET ${cs} COLLATE ${coll}`).execute(engine.writer);
  } catch (e) {
    opts.onScratch?.(undefined);
    throw new ScratchUnavailableError(`cannot create a scratch database: ${reason(d, e)}`);
  }
  let result: Reference | undefined;
  let failure: unknown;
  try {
    const scratch = await openEngine({ ...target, database: name, url: withDatabase(target.url, name) }, { poolMax: 1 }).catch((e) => {
      throw new ScratchUnavailableError(`cannot connect to ${where}: ${reason(d, e)}`);
    });
    try {
      await build(scratch.writer, d, migrations, where);
      const expected = await introspectDefinitions(scratch.writer, d);
      result = { expected, live: await reconcileChecks(scratch.writer, d, expected, live), where };
    } finally {
      await scratch.close();
    }
  } catch (e) {
    failure = e;
  }
  try {
    await drop();
  } catch (e) {
    if (result) result.leftover = { name, reason: reason(d, e) };
    else if (failure instanceof Error) failure.message += `; the scratch database ${name} could not be dropped (${reason(d, e)}): drop it by hand`;
  } finally {
    opts.onScratch?.(undefined);
  }
  if (!result) throw failure;
  return result;
}

/** A trailing clause that is state, not expression: kept aside while the expression is re-parsed. */
const CHECK_STATE = /\s+(NOT VALID|NOT ENFORCED)$/i;

/**
 * A CHECK as this engine shows it (`CHECK (…)`), added to `table` of the scratch under a
 * throwaway name and shown again; null when the engine refuses it there.
 */
async function reparseCheck(db: Kysely<any>, d: Dialect, table: string, def: string, n: number): Promise<string | null> {
  const state = CHECK_STATE.exec(def)?.[1] ?? '';
  const body = def.replace(CHECK_STATE, '');
  const tmp = `coffer_reparse_${n}`;
  if (d === 'postgres') {
    await sql.raw('SAVEPOINT coffer_reparse').execute(db);
    try {
      // NOT VALID: the scratch's seed rows need not satisfy a tampered CHECK.
      await sql.raw(`ALTER TABLE ${quote(d, table)} ADD CONSTRAINT ${quote(d, tmp)} ${body} NOT VALID`).execute(db);
      const r = await sql<{ def: string }>`select pg_get_constraintdef(oid) as def from pg_constraint
        where conrelid = ${quote(d, table)}::regclass and conname = ${tmp}`.execute(db);
      const shown = r.rows[0]?.def;
      return shown === undefined ? null : `${String(shown).replace(CHECK_STATE, '')}${state ? ` ${state}` : ''}`;
    } catch {
      return null;
    } finally {
      await sql.raw('ROLLBACK TO SAVEPOINT coffer_reparse').execute(db);
    }
  }
  try {
    await sql.raw(`ALTER TABLE ${quote(d, table)} ADD CONSTRAINT ${quote(d, tmp)} ${body}`).execute(db);
  } catch {
    return null;
  }
  try {
    const r = await sql<{ def: unknown }>`select check_clause as def from information_schema.check_constraints
      where constraint_schema = database() and constraint_name = ${tmp}`.execute(db);
    const shown = r.rows[0]?.def;
    return shown === undefined || shown === null ? null : `CHECK (${String(shown)})${state ? ` ${state}` : ''}`;
  } finally {
    // The scratch is dropped in the end anyway.
    await sql
      .raw(`ALTER TABLE ${quote(d, table)} DROP CONSTRAINT ${quote(d, tmp)}`)
      .execute(db)
      .catch(() => {});
  }
}

/** `live`, with each CHECK whose text differs from the expected one only by a re-parse set to the expected text. */
async function reconcileChecks(db: Kysely<any>, d: Dialect, expected: SchemaDefinitions, live: SchemaDefinitions): Promise<SchemaDefinitions> {
  const out = structuredClone(live);
  let n = 0;
  for (const [table, e] of Object.entries(expected)) {
    const l = out[table];
    if (!l) continue;
    for (const [name, ev] of Object.entries(e.check)) {
      const lv = l.check[name];
      if (ev === null || lv === undefined || lv === null || normaliseSql(ev) === normaliseSql(lv)) continue;
      const [re, rl] = [await reparseCheck(db, d, table, ev, n++), await reparseCheck(db, d, table, lv, n++)];
      if (re !== null && re === rl) l.check[name] = ev;
    }
  }
  return out;
}

async function build(db: Kysely<any>, d: Dialect, migrations: readonly Migration[], where: string): Promise<void> {
  try {
    await applyMigrations(db, d, migrations);
  } catch (e) {
    throw new ScratchUnavailableError(`this build's migrations could not run in ${where}: ${reason(d, e)}`);
  }
}
