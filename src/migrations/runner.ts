// Applies migrations forward only, exactly once, under a lock, and refuses to run against a
// database whose applied migrations no longer match the code (an edited landed migration).
import { sql, type Kysely } from 'kysely';
import { TableCodec } from '../db/codec.js';
import type { Engine } from '../db/engine.js';
import { MigrationError } from '../db/errors.js';
import { compileOperation, createTableSteps, quote, type Probe, type Step } from '../schema/compile.js';
import { applyOperation, schemaOf, type Dialect, type Operation, type Schema } from '../schema/model.js';
import { HISTORY_TABLE, historyTable } from './history.js';
import { migrationChecksum, migrationId, type Migration } from './migration.js';

export type MigrationStateName = 'applied' | 'pending' | 'running' | 'edited' | 'unknown';

export interface MigrationState {
  id: string;
  domain: string;
  version: number;
  name: string;
  file: string | null;
  checksum: string;
  state: MigrationStateName;
  appliedAt: Date | null;
  durationMs: number | null;
}

export interface MigrateEvents {
  onWaitingForLock?: () => void;
  onStart?: (m: Migration) => void;
  onApplied?: (m: Migration, ms: number) => void;
}

interface HistoryRow {
  domain: string;
  version: number;
  name: string;
  checksum: string;
  state: 'applied' | 'running';
  steps_done: number;
  applied_at: Date;
  duration_ms: number;
}

const LOCK_WAIT_MS = 10 * 60_000;
const PG_LOCK_KEY = 0x436f66666572n; // "Coffer"

/** The logical schema the migrations produce: the history table plus every domain's tables. */
export function logicalSchema(migrations: readonly Migration[]): Schema {
  const ops: Operation[] = [{ op: 'createTable', table: historyTable }];
  for (const m of migrations) ops.push(...m.ops);
  return schemaOf(ops);
}

/** Checks the list itself: unique ids, versions 1..n per domain in order, a consistent schema. */
export function validateMigrations(migrations: readonly Migration[]): void {
  const next = new Map<string, number>();
  for (const m of migrations) {
    const expected = next.get(m.domain) ?? 1;
    if (m.version !== expected) {
      throw new MigrationError(`migration ${migrationId(m)} (${m.file}): expected version ${expected} of domain ${m.domain} next`);
    }
    next.set(m.domain, expected + 1);
  }
  // Built migration by migration, so an operation the schema refuses names its file.
  const schema = schemaOf([{ op: 'createTable', table: historyTable }]);
  for (const m of migrations) {
    for (const op of m.ops) {
      try {
        applyOperation(schema, op);
      } catch (e) {
        throw new MigrationError(`migration ${migrationId(m)} (${m.file}): ${(e as Error).message}`, {
          migration: migrationId(m),
          file: m.file,
        });
      }
    }
  }
}

/** The statements a migration runs on a dialect. */
export function migrationSteps(d: Dialect, m: Migration): Step[] {
  return m.ops.flatMap((op) => compileOperation(d, op));
}

export class Migrator {
  readonly #engine: Engine;
  readonly migrations: readonly Migration[];
  readonly #checksums: Map<Migration, string>;
  /** Test hook: rewrites a dialect's compiled steps (to prove parity catches drift). */
  readonly #rewrite: ((d: Dialect, m: Migration, steps: Step[]) => Step[]) | undefined;

  constructor(
    engine: Engine,
    migrations: readonly Migration[],
    opts: { rewriteSteps?: (d: Dialect, m: Migration, steps: Step[]) => Step[] } = {},
  ) {
    validateMigrations(migrations);
    this.#engine = engine;
    this.migrations = migrations;
    this.#checksums = new Map(migrations.map((m) => [m, migrationChecksum(m)]));
    this.#rewrite = opts.rewriteSteps;
  }

  #steps(m: Migration): Step[] {
    const steps = migrationSteps(this.#engine.dialect, m);
    return this.#rewrite ? this.#rewrite(this.#engine.dialect, m, steps) : steps;
  }

  async #historyExists(db: Kysely<any>): Promise<boolean> {
    const d = this.#engine.dialect;
    const q =
      d === 'postgres'
        ? sql`select to_regclass(${HISTORY_TABLE}) is not null as e`
        : d === 'mysql'
          ? sql`select count(*) as e from information_schema.tables where table_schema = database() and table_name = ${HISTORY_TABLE}`
          : sql`select count(*) as e from sqlite_schema where type = 'table' and name = ${HISTORY_TABLE}`;
    const r = await q.execute(db);
    const v = (r.rows[0] as { e: unknown } | undefined)?.e;
    return v === true || Number(v) > 0;
  }

  async #history(db: Kysely<any>): Promise<HistoryRow[]> {
    if (!(await this.#historyExists(db))) return [];
    const rows = await db.selectFrom(HISTORY_TABLE).selectAll().orderBy('applied_at').orderBy('domain').orderBy('version').execute();
    return rows.map((r) => ({
      domain: String(r.domain),
      version: Number(r.version),
      name: String(r.name),
      checksum: String(r.checksum),
      state: r.state as 'applied' | 'running',
      steps_done: Number(r.steps_done),
      applied_at: r.applied_at instanceof Date ? r.applied_at : new Date(Number(r.applied_at)),
      duration_ms: Number(r.duration_ms),
    }));
  }

  #states(history: HistoryRow[]): MigrationState[] {
    const byKey = new Map(history.map((h) => [`${h.domain}/${h.version}`, h]));
    const out: MigrationState[] = [];
    for (const m of this.migrations) {
      const h = byKey.get(`${m.domain}/${m.version}`);
      byKey.delete(`${m.domain}/${m.version}`);
      const checksum = this.#checksums.get(m)!;
      out.push({
        id: migrationId(m),
        domain: m.domain,
        version: m.version,
        name: m.name,
        file: m.file,
        checksum,
        state: !h ? 'pending' : h.checksum !== checksum ? 'edited' : h.state === 'running' ? 'running' : 'applied',
        appliedAt: h ? h.applied_at : null,
        durationMs: h ? h.duration_ms : null,
      });
    }
    for (const h of byKey.values()) {
      out.push({
        id: migrationId(h),
        domain: h.domain,
        version: h.version,
        name: h.name,
        file: null,
        checksum: h.checksum,
        state: 'unknown',
        appliedAt: h.applied_at,
        durationMs: h.duration_ms,
      });
    }
    return out;
  }

  /** Every migration with its state in this database. */
  async status(): Promise<MigrationState[]> {
    return this.#states(await this.#history(this.#engine.reader));
  }

  /** Throws a MigrationError for an edited, unknown or out-of-order migration. */
  #check(states: MigrationState[], history: HistoryRow[]): void {
    for (const s of states) {
      if (s.state === 'edited') {
        const recorded = history.find((h) => h.domain === s.domain && h.version === s.version)!;
        throw new MigrationError(
          `migration ${s.id} (${s.file}) was changed after it was applied to this database: ` +
            `recorded checksum ${recorded.checksum.slice(0, 12)}…, the code now has ${s.checksum.slice(0, 12)}…. ` +
            'Landed migrations are never edited: restore the file and add a new migration instead.',
          { migration: s.id, file: s.file },
        );
      }
      if (s.state === 'unknown') {
        throw new MigrationError(
          `this database has migration ${s.id}, which this build of Coffer does not know: the database is newer than the code (upgrade Coffer)`,
          { migration: s.id },
        );
      }
    }
    const highest = new Map<string, number>();
    for (const s of states) if (s.state !== 'pending') highest.set(s.domain, Math.max(highest.get(s.domain) ?? 0, s.version));
    for (const s of states) {
      if (s.state === 'pending' && (highest.get(s.domain) ?? 0) > s.version) {
        throw new MigrationError(
          `migration ${s.id} (${s.file}) is pending but a later migration of domain ${s.domain} is applied: migrations were reordered`,
          {
            migration: s.id,
            file: s.file,
          },
        );
      }
    }
  }

  /** Verifies the history against the code; returns the migrations still to apply. */
  async verify(): Promise<MigrationState[]> {
    const history = await this.#history(this.#engine.reader);
    const states = this.#states(history);
    this.#check(states, history);
    return states.filter((s) => s.state === 'pending' || s.state === 'running');
  }

  /** The SQL `migrate --dry-run` prints: every pending migration compiled for this dialect. */
  async plan(): Promise<string> {
    const pending = new Set((await this.verify()).map((s) => s.id));
    const d = this.#engine.dialect;
    const parts: string[] = [];
    if (!(await this.#historyExists(this.#engine.reader))) {
      parts.push(
        `-- bootstrap: migration history\n${createTableSteps(d, historyTable, { ifNotExists: true })
          .map((s) => `${s.sql};`)
          .join('\n')}`,
      );
    }
    for (const m of this.migrations) {
      if (!pending.has(migrationId(m))) continue;
      parts.push(
        `-- ${migrationId(m)} (${m.file})\n${this.#steps(m)
          .map((s) => `${s.sql};`)
          .join('\n')}`,
      );
    }
    return parts.length ? `${parts.join('\n\n')}\n` : '-- nothing to apply\n';
  }

  /** Applies every pending migration, once, under a database-wide lock. */
  async apply(events: MigrateEvents = {}): Promise<Migration[]> {
    const d = this.#engine.dialect;
    if (d === 'sqlite') {
      // One IMMEDIATE transaction per migration (DDL is transactional; the write lock is the
      // migration lock), each reported applied only after its commit: a later failure cannot
      // roll back a migration `coffer migrate` already printed as done.
      const applied: Migration[] = [];
      for (;;) {
        const one = await this.#engine.writer.transaction().execute(async (trx) => {
          await this.#bootstrap(trx);
          return this.#applyPending(trx, events, true);
        });
        if (!one.length) return applied;
        for (const x of one) {
          events.onApplied?.(x.m, x.ms);
          applied.push(x.m);
        }
      }
    }
    return this.#engine.writer.connection().execute(async (conn) => {
      await this.#lock(conn, events);
      try {
        if (d === 'postgres') await sql`set statement_timeout = 0`.execute(conn);
        await this.#bootstrap(conn);
        return (await this.#applyPending(conn, events, false)).map((x) => x.m);
      } finally {
        if (d === 'postgres') await sql`reset statement_timeout`.execute(conn).catch(() => {});
        await this.#unlock(conn);
      }
    });
  }

  async #bootstrap(db: Kysely<any>): Promise<void> {
    if (await this.#historyExists(db)) return;
    for (const step of createTableSteps(this.#engine.dialect, historyTable, { ifNotExists: true })) {
      if (this.#engine.dialect === 'mysql' && step.probe?.kind === 'index' && (await this.#probe(db, step.probe))) continue;
      await sql.raw(step.sql).execute(db);
    }
  }

  async #lock(conn: Kysely<any>, events: MigrateEvents): Promise<void> {
    const d = this.#engine.dialect;
    const deadline = Date.now() + LOCK_WAIT_MS;
    let told = false;
    for (;;) {
      const r =
        d === 'postgres'
          ? await sql<{ ok: boolean }>`select pg_try_advisory_lock(${PG_LOCK_KEY}) as ok`.execute(conn)
          : await sql<{ ok: unknown }>`select get_lock(concat('coffer.migrate.', database()), 0) as ok`.execute(conn);
      const ok = r.rows[0]?.ok;
      if (ok === true || Number(ok) === 1) return;
      if (Date.now() > deadline) throw new MigrationError('timed out waiting for the migration lock held by another process');
      if (!told) {
        events.onWaitingForLock?.();
        told = true;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  async #unlock(conn: Kysely<any>): Promise<void> {
    if (this.#engine.dialect === 'postgres') await sql`select pg_advisory_unlock(${PG_LOCK_KEY})`.execute(conn);
    else await sql`select release_lock(concat('coffer.migrate.', database()))`.execute(conn);
  }

  async #probe(db: Kysely<any>, p: Probe): Promise<boolean> {
    const q =
      p.kind === 'table'
        ? sql`select count(*) as n from information_schema.tables where table_schema = database() and table_name = ${p.table}`
        : p.kind === 'index'
          ? sql`select count(*) as n from information_schema.statistics where table_schema = database() and table_name = ${p.table} and index_name = ${p.name}`
          : p.kind === 'column'
            ? sql`select count(*) as n from information_schema.columns where table_schema = database() and table_name = ${p.table} and column_name = ${p.name}`
            : sql`select count(*) as n from information_schema.table_constraints where table_schema = database() and table_name = ${p.table} and constraint_name = ${p.name}`;
    const r = await q.execute(db);
    const exists = Number((r.rows[0] as { n: unknown }).n) > 0;
    return p.absent ? !exists : exists;
  }

  /**
   * Applies the pending migrations. `firstOnly` (SQLite): only the first, inside the caller's
   * transaction, and reported by the caller after its commit; otherwise each is committed here
   * and reported at once.
   */
  async #applyPending(db: Kysely<any>, events: MigrateEvents, firstOnly: boolean): Promise<{ m: Migration; ms: number }[]> {
    // Re-read under the lock: another process may have applied some meanwhile.
    const history = await this.#history(db);
    const states = this.#states(history);
    this.#check(states, history);
    const applied: { m: Migration; ms: number }[] = [];
    for (const m of this.migrations) {
      const st = states.find((s) => s.domain === m.domain && s.version === m.version)!;
      if (st.state === 'applied') continue;
      events.onStart?.(m);
      const started = performance.now();
      const steps = this.#steps(m);
      const checksum = this.#checksums.get(m)!;
      try {
        if (this.#engine.dialect === 'mysql') {
          await this.#applyMysql(db, m, steps, checksum, history);
        } else if (firstOnly) {
          for (const s of steps) await sql.raw(s.sql).execute(db);
          await this.#record(db, m, checksum, steps.length, started);
        } else {
          await db.transaction().execute(async (trx) => {
            for (const s of steps) await sql.raw(s.sql).execute(trx);
            await this.#record(trx, m, checksum, steps.length, started);
          });
        }
      } catch (e) {
        throw new MigrationError(
          `migration ${migrationId(m)} (${m.file}) failed on ${this.#engine.label}: ${(e as Error).message}`,
          { migration: migrationId(m), file: m.file },
          { cause: e },
        );
      }
      const ms = Math.round(performance.now() - started);
      if (firstOnly) return [{ m, ms }];
      events.onApplied?.(m, ms);
      applied.push({ m, ms });
    }
    return applied;
  }

  async #record(db: Kysely<any>, m: Migration, checksum: string, steps: number, started: number): Promise<void> {
    const codec = new TableCodec(this.#engine.dialect, historyTable);
    await db
      .insertInto(HISTORY_TABLE)
      .values(
        codec.encode({
          domain: m.domain,
          version: m.version,
          name: m.name,
          checksum,
          state: 'applied',
          steps_done: steps,
          applied_at: new Date(),
          duration_ms: Math.round(performance.now() - started),
        }),
      )
      .execute();
  }

  /**
   * MySQL DDL commits as it goes, so a migration is journaled step by step: a row in state
   * 'running' with steps_done. A later run resumes after the last recorded step, and skips any
   * step whose effect (table, index, column, check) already exists, which covers a crash
   * between a DDL statement and its journal update.
   */
  async #applyMysql(db: Kysely<any>, m: Migration, steps: Step[], checksum: string, history: HistoryRow[]): Promise<void> {
    const started = performance.now();
    const prior = history.find((h) => h.domain === m.domain && h.version === m.version);
    const t = quote('mysql', HISTORY_TABLE);
    let done = 0;
    if (prior) done = prior.steps_done;
    else {
      await sql`insert into ${sql.raw(t)} (domain, version, name, checksum, state, steps_done, applied_at, duration_ms)
        values (${m.domain}, ${m.version}, ${m.name}, ${checksum}, 'running', 0, ${new Date()}, 0)`.execute(db);
    }
    for (let i = done; i < steps.length; i++) {
      const s = steps[i]!;
      if (!(s.probe && (await this.#probe(db, s.probe)))) await sql.raw(s.sql).execute(db);
      await sql`update ${sql.raw(t)} set steps_done = ${i + 1} where domain = ${m.domain} and version = ${m.version}`.execute(db);
    }
    await sql`update ${sql.raw(t)} set state = 'applied', applied_at = ${new Date()}, duration_ms = ${Math.round(performance.now() - started)}
      where domain = ${m.domain} and version = ${m.version}`.execute(db);
  }
}
