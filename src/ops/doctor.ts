// `coffer doctor`: is this database healthy, and if not, what to do. Every finding carries a
// remedy; errors and warnings make the command exit 1.
//
//   migrations   drift: pending, edited, unknown or half-applied migrations
//   incomplete   an interrupted copy/restore left this database marked incomplete
//   schema       parity of the live tables with the applied migrations: by name with the logical
//                schema, by definition with the same migrations run on a scratch database; what
//                the account cannot see (MariaDB hides constraints and triggers) is a warning
//   integrity    SQLite integrity_check; invalid PostgreSQL indexes; MySQL CHECK TABLE
//   foreign-keys orphaned rows for every foreign key of the logical schema (all backends),
//                plus SQLite's own foreign_key_check
//   indexes      PostgreSQL indexes never scanned (pg_stat_user_indexes)
//   upkeep       PostgreSQL tables whose planner statistics are stale or that hold more dead
//                row versions than live ones; autovacuum (or InnoDB's statistics recalculation) off
//   queries      long-running statements and transactions left open (PostgreSQL, MySQL)
//   locks        sessions waiting for a lock, and who blocks them (PostgreSQL, MySQL)
//   <domain>     the checks domains register in src/ops/registry.ts (audit chain, …)
import { sql, type Kysely } from 'kysely';
import { toBigInt } from '../db/codec.js';
import { ConfigError } from '../db/errors.js';
import { mapDriverError } from '../db/driver-errors.js';
import type { Coffer } from '../db/store.js';
import { diffDefinitions, diffFacts, expectedFacts, quote } from '../schema/compile.js';
import { introspect, readLiveDefinitions, visibility, type LiveDefinitions, type LockedTable, type Unseen } from '../schema/introspect.js';
import type { Schema, TableDef } from '../schema/model.js';
import { referenceDefinitions, ScratchUnavailableError, type Reference, type Scratch } from '../schema/reference.js';
import { dataTables, listTables, liveSchema, opsDb, type LiveSchema, type OpsDb } from './db.js';
import type { DoctorCheck, Finding, Severity } from './hooks.js';
import { describeMarker, failureOf, MARKER_TABLE, readMarker } from './marker.js';
import { DOCTOR_CHECKS } from './registry.js';

export interface DoctorFinding extends Finding {
  check: string;
}

export interface DoctorReport {
  backend: string;
  database: string;
  server: string;
  ok: boolean;
  counts: Record<Severity, number>;
  findings: DoctorFinding[];
}

export interface DoctorOptions {
  /** Domain checks (default: the registry's). */
  checks?: readonly DoctorCheck[];
  /** Run only these checks (built-in or domain names). */
  only?: readonly string[];
  /** A statement running longer than this is reported (default 60). */
  longQuerySeconds?: number;
  /** The time checks judge ages against (default: now). */
  now?: Date;
  /** Told when the schema check's scratch database exists (MySQL/MariaDB) and when it is gone: see dropScratchOnSignal. */
  onScratch?: (scratch: Scratch | undefined) => void;
}

/**
 * For the CLI: while the schema check's scratch database exists (MySQL/MariaDB, a second or
 * two), Ctrl-C or SIGTERM drops it before the process exits 130, instead of leaving
 * `coffer_doctor_…` behind; a second signal exits at once, naming what to drop. Outside that
 * phase signals keep their default effect (doctor changes nothing it would need to undo).
 */
export function dropScratchOnSignal(write: (s: string) => void = (s) => void process.stderr.write(s)): (s: Scratch | undefined) => void {
  let current: Scratch | undefined;
  let dropping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    const scratch = current;
    if (!scratch) process.exit(130);
    const by = `DROP DATABASE \`${scratch.name}\``;
    if (dropping) {
      write(`coffer: stopping now; the scratch database ${scratch.name} may be left behind: ${by}\n`);
      process.exit(130);
    }
    dropping = true;
    write(`\ncoffer: ${sig}: dropping the scratch database ${scratch.name} before stopping (repeat to stop at once)\n`);
    scratch.drop().then(
      () => process.exit(130),
      (e: unknown) => {
        write(`coffer: the scratch database ${scratch.name} could not be dropped (${(e as Error).message}): ${by}\n`);
        process.exit(130);
      },
    );
  };
  return (s) => {
    if (s && !current) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    } else if (!s && current && !dropping) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (!dropping) current = s;
  };
}

export const BUILTIN_CHECKS = [
  'migrations',
  'incomplete',
  'schema',
  'integrity',
  'foreign-keys',
  'indexes',
  'upkeep',
  'queries',
  'locks',
] as const;

const str = (v: unknown) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v ?? ''));
const excerpt = (q: unknown) => str(q).replace(/\s+/g, ' ').trim().slice(0, 120);

async function migrationsCheck(coffer: Coffer): Promise<Finding[]> {
  const states = await coffer.migrator.status();
  const out: Finding[] = [];
  for (const s of states) {
    if (s.state === 'edited')
      out.push({
        severity: 'error',
        message: `migration ${s.id} (${s.file}) was changed after it was applied`,
        remedy: 'restore the file as it was when applied and add a new migration for the change; Coffer refuses to start until then',
      });
    if (s.state === 'unknown')
      out.push({
        severity: 'error',
        message: `the database has migration ${s.id}, which this build does not know`,
        remedy: 'run the Coffer version that applied it (upgrade), never an older one',
      });
    if (s.state === 'running')
      out.push({
        severity: 'error',
        message: `migration ${s.id} stopped part-way (MySQL DDL is not transactional)`,
        remedy: 'fix what made it fail, then run coffer migrate: it resumes after the last completed step',
      });
  }
  const pending = states.filter((s) => s.state === 'pending');
  if (pending.length)
    out.push({
      severity: 'warning',
      message: `${pending.length} migration(s) pending: ${pending.map((p) => p.id).join(', ')}`,
      remedy: 'run coffer migrate (the service also applies them when it starts)',
    });
  if (!out.length) out.push({ severity: 'ok', message: `${states.length} migration(s) applied, none pending` });
  return out;
}

async function incompleteCheck(db: OpsDb): Promise<Finding[]> {
  const m = await readMarker(db.reader, db.dialect);
  if (!m) return [{ severity: 'ok', message: 'no interrupted copy or restore' }];
  const command = `coffer ${m.info.operation === 'copy' ? 'copy' : 'restore'}`;
  const meanwhile = 'do not point the service at it meanwhile';
  // A failed verification cannot be resumed (prepareTarget refuses it): only --discard moves on.
  const failure = failureOf(m);
  if (failure && !failure.resumable)
    return [
      {
        severity: 'error',
        message: `this database is ${describeMarker(m)}`,
        remedy: `run the same ${command} again with --discard to throw it away and start over (it cannot be resumed); ${meanwhile}`,
      },
    ];
  // A native restore (pg_restore, the mysql client) never resumes: run again with the same
  // backup, it drops what was loaded and loads the whole backup once more (prepareNative).
  const tool =
    m.info.kind === 'mysqldump' ? 'the mysql client' : m.info.kind === 'pg_dump' ? 'pg_restore' : 'pg_restore or the mysql client';
  const again =
    m.info.operation === 'restore-native'
      ? `run the same ${command} again to start it over${failure ? ' once the cause is fixed' : ''} (a restore of a native backup through ${tool} cannot resume: it drops what was loaded and loads the whole backup again), or with --discard to throw it away (needed to restore another backup into it)`
      : `run the same ${command} again to resume it${failure ? ' once the cause is fixed' : ''}, or again with --discard to throw it away`;
  return [{ severity: 'error', message: `this database is ${describeMarker(m)}`, remedy: `${again}; ${meanwhile}` }];
}

/**
 * Parity of the live tables with this build's migrations, in two steps. By name against the
 * logical schema: tables, columns, types, nullability, keys, indexes, CHECKs and triggers exist
 * as declared. By definition against a reference (src/schema/reference.ts): the applied
 * migrations run on a scratch database of the same engine (in memory for SQLite, a schema
 * rolled back on PostgreSQL, a dropped scratch database on MySQL), and both introspected the
 * same way, so a CHECK rebuilt as `CHECK (1)` under its old name, a changed or dropped default,
 * a table rebuilt without STRICT, a partial index or a disabled trigger shows. The engine
 * renders both sides, which is the only exact way to compare what each engine rewrites. The
 * operator's tables are only read, and only Coffer's: a Coffer table another session keeps
 * locked is waited for briefly, then a warning names it and who holds the lock while the rest is
 * compared (readLiveDefinitions). What the catalogue hides from this account (visibility in
 * src/schema/introspect.ts tells hidden from absent) is neither missing nor matching: a warning
 * names it and the grant that would show it. On MySQL/MariaDB a scratch database an earlier
 * doctor left behind (killed outright) is a warning naming the DROP to run.
 */
async function schemaCheck(coffer: Coffer, db: OpsDb, live: LiveSchema, opts: DoctorOptions): Promise<Finding[]> {
  const facts = await introspect(db.reader, db.dialect);
  delete facts[MARKER_TABLE];
  const expected = expectedFacts(db.dialect, live.schema);
  const applied = coffer.migrator.migrations.filter((m) => live.applied.some((a) => a.domain === m.domain && a.version === m.version));
  // Definitions of Coffer's tables only: another application's tables are not read (nor locked).
  const tables = Object.keys(expected).filter((t) => facts[t]);
  let read: LiveDefinitions | undefined;
  let reference: Reference | undefined;
  let unavailable: string | undefined;
  let scratchFailed = false;
  try {
    read = await readLiveDefinitions(db.reader, db.dialect, tables, DEFINITIONS_LOCK_WAIT_MS);
    reference = await referenceDefinitions(coffer.engine, applied, read.definitions, { onScratch: opts.onScratch });
  } catch (e) {
    // Names were read; the findings by name stand whatever stopped the comparison of definitions.
    scratchFailed = e instanceof ScratchUnavailableError;
    unavailable =
      e instanceof ScratchUnavailableError
        ? e.message
        : `${read ? 'the comparison failed' : "this database's definitions could not be read"}: ${(mapDriverError(db.backend, e) as Error).message}`;
    reference = undefined;
  }
  const mine = reference ? read?.definitions : undefined;
  // What this account cannot see is neither missing nor matching: a warning says it was not
  // checked. Hidden definitions matter only when definitions were compared.
  const seen = await visibility(db.reader, db.dialect, expected, facts, mine);
  const diffs = diffFacts(expected, facts, seen.hidden);
  const unexpected = diffs.filter((d) => d.startsWith('unexpected table '));
  const real = diffs.filter((d) => !d.startsWith('unexpected table '));
  if (reference) real.push(...diffDefinitions(reference.expected, reference.live));
  const out: Finding[] = real.map((d) => ({
    severity: 'error' as const,
    message: `schema differs from the migrations: ${d}`,
    remedy: `the database was changed outside Coffer's migrations: compare with schema/${db.dialect}.sql and put the definition back (or restore from a backup); change schemas only through new migrations`,
  }));
  if (unavailable !== undefined)
    out.push({
      severity: 'warning',
      message: `${NOT_COMPARED}: ${unavailable}`,
      remedy: !scratchFailed
        ? 'fix the cause and run coffer doctor --check schema again'
        : db.dialect === 'postgres'
          ? 'run coffer doctor as the database owner, or GRANT CREATE ON DATABASE to its account (the scratch schema is never committed)'
          : db.dialect === 'mysql'
            ? 'GRANT ALL ON `coffer\\_doctor\\_%`.* to the account coffer doctor runs as (it creates and drops a scratch database coffer_doctor_…), or run it as an account that may'
            : 'fix the cause and run coffer doctor again',
    });
  const locked = reference ? (read?.locked ?? []) : [];
  for (const l of locked) out.push(lockedFinding(l));
  for (const u of seen.unseen) out.push(unseenFinding(u));
  if (reference?.leftover)
    out.push({
      severity: 'warning',
      message: `the scratch database ${reference.leftover.name} could not be dropped: ${reference.leftover.reason}`,
      remedy: `drop it by hand: DROP DATABASE \`${reference.leftover.name}\``,
    });
  if (db.dialect === 'mysql') out.push(...(await leftoverScratches(db, (opts.now ?? new Date()).getTime())));
  if (unexpected.length) {
    out.push({
      severity: 'info',
      message: `${unexpected.length} table(s) Coffer does not define: ${unexpected.map((u) => u.slice('unexpected table '.length)).join(', ')}`,
      remedy: 'fine if another application shares this database; Coffer ignores them',
    });
  }
  if (!real.length) {
    const partly = seen.unseen.length ? ', as far as this account can see (the warnings say what it cannot)' : '';
    const except = locked.length ? ` except those of ${locked.map((l) => l.table).join(', ')} (locked, see the warning)` : '';
    out.push({
      severity: 'ok',
      message: reference
        ? `${live.schema.tables.size} table(s) match the migrations, definitions included${except} (compared with ${reference.where})${partly}`
        : `${live.schema.tables.size} table(s) match the logical schema by name${partly}`,
    });
  }
  return out;
}

/**
 * How long the schema check waits for a lock on one of Coffer's tables before leaving its
 * definitions out (readLiveDefinitions); the connection's own lock_timeout is 10 s by default.
 */
export const DEFINITIONS_LOCK_WAIT_MS = 1500;

/** What a schema check that could read names only leaves out (the scratch or a table's lock missing). */
const NOT_COMPARED =
  'CHECK expressions, defaults, index, trigger and foreign key definitions and table options were not compared (only names were)';

function lockedFinding(l: LockedTable): Finding {
  const holders = l.blockers.filter((b) => b.granted);
  const who = (b: LockedTable['blockers'][number]) =>
    `session ${b.pid}${b.application ? ` (${b.application})` : ''}${b.query ? `: ${b.query}` : ''}`;
  const by = holders.length
    ? `held by ${holders.map(who).join('; ')}`
    : l.blockers.length
      ? `queued for by ${l.blockers.map(who).join('; ')}`
      : 'released since';
  const pids = (holders.length ? holders : l.blockers).map((b) => b.pid);
  return {
    severity: 'warning',
    message: `${l.table}: ${NOT_COMPARED}: the table stayed locked for ${DEFINITIONS_LOCK_WAIT_MS / 1000} s (ACCESS EXCLUSIVE, ${by})`,
    remedy: `run coffer doctor --check schema again once the lock is gone${pids.length ? ` (coffer doctor --check queries locks shows what session ${pids.join(', ')} is doing)` : ''}; coffer maintain --full (VACUUM FULL) and ALTER TABLE hold such a lock until they finish`,
    details: { table: l.table, blockers: l.blockers },
  };
}

/** A scratch database name scratchName() made: coffer_doctor_<Date.now() in base 36>_<8 hex>. */
const SCRATCH_NAME = /^coffer_doctor_([0-9a-z]+)_[0-9a-f]{8}$/;
/** A scratch database older than this is a leftover: building one takes seconds. */
export const SCRATCH_STALE_MS = 10 * 60_000;

/**
 * Scratch databases (MySQL/MariaDB) a doctor run left behind: killed before it dropped its
 * scratch. Named, never dropped here: a younger one may belong to a doctor running now.
 */
async function leftoverScratches(db: OpsDb, now: number): Promise<Finding[]> {
  const r = await sql<{ name: unknown }>`select schema_name as name from information_schema.schemata
    where schema_name like ${'coffer\\_doctor\\_%'}`.execute(db.reader);
  const stale: { name: string; created: Date }[] = [];
  for (const row of r.rows) {
    const name = str(row.name);
    const m = SCRATCH_NAME.exec(name);
    const created = m ? parseInt(m[1]!, 36) : NaN;
    if (Number.isFinite(created) && now - created > SCRATCH_STALE_MS) stale.push({ name, created: new Date(created) });
  }
  return stale.map(({ name, created }) => ({
    severity: 'warning' as const,
    message: `the scratch database ${name} (made ${created.toISOString()}, ${Math.round((now - created.getTime()) / 60_000)} min ago) was left behind by a coffer doctor stopped before it could drop it`,
    remedy: `drop it: DROP DATABASE \`${name}\` (doctor never drops another run's scratch database: one may be running)`,
    details: { database: name, createdAt: created.toISOString() },
  }));
}

const listed = (xs: readonly string[]) =>
  `${xs.slice(0, 8).join(', ')}${xs.length > 8 ? `, and ${xs.length - 8} more (--json lists all)` : ''}`;

/** A kind of object this account cannot see: not checked, which is a warning (never "missing", never a pass). */
function unseenFinding(u: Unseen): Finding {
  const objects = u.names.length ? `${u.what} ${listed(u.names)}` : `${u.what} of ${u.tables.length} table(s) (${listed(u.tables)})`;
  return {
    severity: 'warning',
    message: `not checked, this account cannot see them: ${objects}; ${u.why}`,
    remedy: `${u.grant}; or run coffer doctor as an account that can see them (the one that runs migrations)`,
    details: { tables: u.tables, ...(u.names.length ? { names: u.names } : {}) },
  };
}

async function integrityCheck(db: OpsDb, tables: readonly string[]): Promise<Finding[]> {
  const remedy =
    'restore the last good backup (coffer restore) into a new database and copy it into place; find the cause first (disk, file system: on Btrfs disable copy-on-write for the data folder)';
  if (db.dialect === 'sqlite') {
    const r = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(db.reader);
    const msgs = r.rows.map((x) => str(Object.values(x)[0]));
    if (msgs.length === 1 && msgs[0] === 'ok') return [{ severity: 'ok', message: 'PRAGMA integrity_check: ok' }];
    return msgs.slice(0, 10).map((m) => ({ severity: 'error' as const, message: `PRAGMA integrity_check: ${m}`, remedy }));
  }
  if (db.dialect === 'postgres') {
    const r = await sql<{
      name: string;
      t: string;
    }>`select i.relname as name, c.relname as t from pg_index x join pg_class i on i.oid = x.indexrelid
        join pg_class c on c.oid = x.indrelid join pg_namespace s on s.oid = c.relnamespace
        where s.nspname = current_schema() and (not x.indisvalid or not x.indisready)`.execute(db.reader);
    if (!r.rows.length) return [{ severity: 'ok', message: 'every index is valid' }];
    return r.rows.map((x) => ({
      severity: 'error' as const,
      message: `index ${x.name} on ${x.t} is invalid (a failed CREATE/REINDEX CONCURRENTLY)`,
      remedy: `REINDEX INDEX CONCURRENTLY ${x.name}`,
    }));
  }
  const out: Finding[] = [];
  for (const t of tables) {
    const r = await sql.raw(`CHECK TABLE ${quote('mysql', t)} QUICK`).execute(db.reader);
    for (const row of r.rows as Record<string, unknown>[]) {
      const type = str(row.Msg_type ?? row.msg_type).toLowerCase();
      const text = str(row.Msg_text ?? row.msg_text);
      if (type === 'error' || (type === 'status' && !/^ok$/i.test(text)))
        out.push({ severity: 'error', message: `CHECK TABLE ${t}: ${text}`, remedy: `${remedy}; or OPTIMIZE TABLE ${t} to rebuild it` });
      else if (type === 'warning')
        out.push({
          severity: 'warning',
          message: `CHECK TABLE ${t}: ${text}`,
          remedy: `look into it; OPTIMIZE TABLE ${t} rebuilds the table`,
        });
    }
  }
  if (!out.length) out.push({ severity: 'ok', message: `CHECK TABLE: ${tables.length} table(s) ok` });
  return out;
}

/** Rows whose foreign key points at nothing: possible after an import with checks off, or on a damaged file. */
async function foreignKeyCheck(db: OpsDb, tables: readonly TableDef[], present: ReadonlySet<string>): Promise<Finding[]> {
  const out: Finding[] = [];
  const d = db.dialect;
  let fks = 0;
  for (const t of tables) {
    for (const fk of t.foreignKeys) {
      if (!present.has(t.name) || !present.has(fk.refTable)) continue;
      fks++;
      const c = (x: string) => `c.${quote(d, x)}`;
      const p = (x: string) => `p.${quote(d, x)}`;
      const q = `SELECT COUNT(*) AS n FROM ${quote(d, t.name)} c WHERE ${fk.columns.map((x) => `${c(x)} IS NOT NULL`).join(' AND ')}
        AND NOT EXISTS (SELECT 1 FROM ${quote(d, fk.refTable)} p WHERE ${fk.columns.map((x, i) => `${p(fk.refColumns[i]!)} = ${c(x)}`).join(' AND ')})`;
      const n = toBigInt(((await sql.raw(q).execute(db.reader)).rows[0] as { n: unknown } | undefined)?.n);
      if (n > 0n) {
        out.push({
          severity: 'error',
          message: `${n} row(s) of ${t.name} reference missing ${fk.refTable} rows (foreign key ${fk.name})`,
          remedy: `find them with: SELECT * FROM ${t.name} c WHERE NOT EXISTS (SELECT 1 FROM ${fk.refTable} p WHERE ${fk.columns.map((x, i) => `p.${fk.refColumns[i]} = c.${x}`).join(' AND ')}); restore the missing parents from a backup, or remove the orphans`,
        });
      }
    }
  }
  if (d === 'sqlite') {
    const r = await sql<{ table: string; parent: string }>`pragma foreign_key_check`.execute(db.reader);
    const byTable = new Map<string, number>();
    for (const row of r.rows)
      byTable.set(`${str(row.table)} → ${str(row.parent)}`, (byTable.get(`${str(row.table)} → ${str(row.parent)}`) ?? 0) + 1);
    for (const [k, n] of byTable) {
      if (!out.some((f) => f.message.includes(k.split(' → ')[0]!)))
        out.push({
          severity: 'error',
          message: `PRAGMA foreign_key_check: ${n} violation(s) ${k}`,
          remedy: 'restore the missing parent rows from a backup, or remove the orphans',
        });
    }
  }
  if (!out.length) out.push({ severity: 'ok', message: `${fks} foreign key(s): no orphaned rows` });
  return out;
}

async function unusedIndexesCheck(db: OpsDb, tables: readonly string[]): Promise<Finding[]> {
  if (db.dialect !== 'postgres') return [{ severity: 'info', message: `index usage statistics are not available on ${db.label}` }];
  if (!tables.length) return [{ severity: 'ok', message: 'no Coffer table to look at' }];
  // Coffer's tables only (another application's indexes are not ours to judge), and the size
  // from the catalogue (relpages, as of the last VACUUM/ANALYZE): pg_relation_size locks the
  // index, so a table under VACUUM FULL or LOCK TABLE stalled this check for the lock timeout.
  const r = await sql<{
    name: string;
    t: string;
    bytes: unknown;
    reset: unknown;
  }>`select s.indexrelname as name, s.relname as t, c.relpages::bigint * current_setting('block_size')::bigint as bytes,
        (select stats_reset from pg_stat_database where datname = current_database()) as reset
      from pg_stat_user_indexes s join pg_index x on x.indexrelid = s.indexrelid join pg_class c on c.oid = s.indexrelid
      where s.schemaname = current_schema() and s.relname in (${sql.join(tables)})
        and s.idx_scan = 0 and not x.indisunique and not x.indisprimary
      order by c.relpages desc, s.indexrelname`.execute(db.reader);
  if (!r.rows.length) return [{ severity: 'ok', message: 'every non-unique index has been used' }];
  const since = r.rows[0]?.reset
    ? ` since statistics were reset on ${new Date(str(r.rows[0].reset)).toISOString().slice(0, 10)}`
    : ' since statistics began';
  const list = r.rows.map((x) => `${x.name} (${x.t}, ${Number(toBigInt(x.bytes))} bytes)`);
  return [
    {
      severity: 'info',
      message: `${r.rows.length} non-unique index(es) never used${since}: ${listed(list)}`,
      remedy:
        'judge over a representative period (month-end jobs, rare API calls); an index that stays unused can be dropped with a new migration',
      details: { indexes: r.rows.map((x) => ({ index: x.name, table: x.t, bytes: Number(toBigInt(x.bytes)) })) },
    },
  ];
}

// A table is flagged once it changed by half its size since the last ANALYZE, or holds more dead
// row versions than live ones, and by at least this many rows: autovacuum's own triggers (10 %
// and 20 % plus 50 rows) fire long before, so a flagged table is one nothing maintains. Stale
// statistics are not cosmetic: the planner keeps the plans it made for a nearly empty table
// (the benchmarks saw every settlement slow from 6.9 to 13.9 ms over 4,000 of them).
const UPKEEP_MIN_ROWS = 1000;

async function upkeepCheck(db: OpsDb, tables: readonly string[]): Promise<Finding[]> {
  const remedy = 'run coffer maintain (VACUUM (ANALYZE) per table) now; keep autovacuum on, or schedule coffer maintain';
  if (db.dialect === 'sqlite')
    return [{ severity: 'info', message: 'SQLite keeps no statistics Coffer relies on; coffer maintain runs PRAGMA optimize and VACUUM' }];
  if (db.dialect === 'mysql') {
    const r = await sql<{ v: unknown }>`select @@innodb_stats_auto_recalc as v`.execute(db.reader);
    if (str(r.rows[0]?.v) === '0' || str(r.rows[0]?.v).toUpperCase() === 'OFF')
      return [
        {
          severity: 'info',
          message: 'innodb_stats_auto_recalc is off: table statistics change only when coffer maintain runs ANALYZE TABLE',
          remedy: 'set innodb_stats_auto_recalc = ON, or schedule coffer maintain',
        },
      ];
    return [{ severity: 'ok', message: 'InnoDB recalculates table statistics itself (innodb_stats_auto_recalc)' }];
  }
  const setting = await sql<{ v: unknown }>`select current_setting('autovacuum') as v`.execute(db.reader);
  const autovacuum = str(setting.rows[0]?.v) === 'on';
  const r = await sql<{
    t: string;
    live: unknown;
    dead: unknown;
    mods: unknown;
    analyzed: unknown;
    off: unknown;
  }>`select s.relname as t, s.n_live_tup as live, s.n_dead_tup as dead, s.n_mod_since_analyze as mods,
        greatest(s.last_analyze, s.last_autoanalyze) as analyzed,
        coalesce(c.reloptions @> array['autovacuum_enabled=false'], false) as off
      from pg_stat_user_tables s join pg_class c on c.oid = s.relid
      where s.schemaname = current_schema()
      order by s.relname`.execute(db.reader);
  const wanted = new Set(tables);
  const out: Finding[] = [];
  if (!autovacuum)
    out.push({
      severity: 'info',
      message: 'autovacuum is off on this server: only coffer maintain keeps planner statistics current and clears dead rows',
      remedy: 'turn autovacuum on (postgresql.conf), or run coffer maintain on a schedule',
    });
  for (const x of r.rows) {
    if (!wanted.has(x.t)) continue;
    const live = Number(toBigInt(x.live));
    const dead = Number(toBigInt(x.dead));
    const mods = Number(toBigInt(x.mods));
    const why: string[] = [];
    if (mods >= UPKEEP_MIN_ROWS && mods > live / 2)
      why.push(
        `${mods} rows changed since ${x.analyzed ? `its last ANALYZE (${new Date(str(x.analyzed)).toISOString()})` : 'it was created, never analyzed'}`,
      );
    if (dead >= UPKEEP_MIN_ROWS && dead > live) why.push(`${dead} dead row versions against ${live} live`);
    const off = x.off === true ? ' (autovacuum_enabled=false on this table)' : '';
    if (why.length)
      out.push({
        severity: 'warning',
        message: `${x.t}: ${why.join('; ')}${off}`,
        remedy,
        details: { table: x.t, live, dead, modifiedSinceAnalyze: mods },
      });
    else if (off)
      out.push({
        severity: 'info',
        message: `${x.t}: autovacuum is disabled for this table (autovacuum_enabled=false)`,
        remedy: 'make sure coffer maintain runs on a schedule',
      });
  }
  if (!out.some((f) => f.severity === 'warning'))
    out.push({ severity: 'ok', message: `planner statistics and dead rows of ${wanted.size} table(s) are kept up` });
  return out;
}

async function queriesCheck(db: OpsDb, seconds: number): Promise<Finding[]> {
  const out: Finding[] = [];
  if (db.dialect === 'postgres') {
    const r = await sql<{
      pid: number;
      state: string;
      age: unknown;
      q: string;
      app: string;
    }>`select pid, state, extract(epoch from now() - coalesce(case when state = 'active' then query_start else xact_start end, now()))::bigint as age,
          query as q, application_name as app
        from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and state <> 'idle'
          and coalesce(case when state = 'active' then query_start else xact_start end, now()) < now() - make_interval(secs => ${seconds})`.execute(
      db.reader,
    );
    for (const x of r.rows) {
      const idle = str(x.state).startsWith('idle in transaction');
      out.push({
        severity: 'warning',
        message: idle
          ? `session ${x.pid} (${x.app || 'unknown application'}) has held a transaction open for ${toBigInt(x.age)} s without running anything`
          : `session ${x.pid} (${x.app || 'unknown application'}) has been running one statement for ${toBigInt(x.age)} s: ${excerpt(x.q)}`,
        remedy: idle
          ? `find the client that forgot to commit; end it with SELECT pg_terminate_backend(${x.pid})`
          : `if it should not take that long: SELECT pg_cancel_backend(${x.pid}); then look at its plan (EXPLAIN)`,
      });
    }
  } else if (db.dialect === 'mysql') {
    const r = await sql<{
      id: unknown;
      t: unknown;
      command: string;
      state: string;
      q: unknown;
    }>`select id, time as t, command, state, info as q from information_schema.processlist
        where db = database() and id <> connection_id() and command not in ('Sleep', 'Daemon', 'Binlog Dump') and time >= ${seconds}`.execute(
      db.reader,
    );
    for (const x of r.rows)
      out.push({
        severity: 'warning',
        message: `connection ${toBigInt(x.id)} has been in "${x.command}${x.state ? `: ${x.state}` : ''}" for ${toBigInt(x.t)} s: ${excerpt(x.q)}`,
        remedy: `if it should not take that long: KILL QUERY ${toBigInt(x.id)}`,
      });
    const trx = await sql<{
      id: unknown;
      age: unknown;
    }>`select trx_mysql_thread_id as id, timestampdiff(second, trx_started, now()) as age from information_schema.innodb_trx
        where timestampdiff(second, trx_started, now()) >= ${seconds} and trx_mysql_thread_id <> connection_id()`
      .execute(db.reader)
      .catch(() => ({ rows: [] as { id: unknown; age: unknown }[] }));
    for (const x of trx.rows) {
      if (!out.some((f) => f.message.startsWith(`connection ${toBigInt(x.id)} `)))
        out.push({
          severity: 'warning',
          message: `connection ${toBigInt(x.id)} has held a transaction open for ${toBigInt(x.age)} s`,
          remedy: `find the client that forgot to commit; end it with KILL ${toBigInt(x.id)}`,
        });
    }
  } else return [{ severity: 'info', message: 'SQLite has no server sessions to inspect' }];
  if (!out.length) out.push({ severity: 'ok', message: `no statement or transaction older than ${seconds} s` });
  return out;
}

type LockWait = { waiting: unknown; blocking: unknown; age: unknown; q: unknown };

/** Who waits on whom: MariaDB still has information_schema.innodb_lock_waits, MySQL 8 moved it to performance_schema. */
async function mysqlLockWaits(db: Kysely<any>, mariadb: boolean): Promise<LockWait[]> {
  const waits = mariadb
    ? sql`information_schema.innodb_lock_waits w join information_schema.innodb_trx r on r.trx_id = w.requesting_trx_id
        join information_schema.innodb_trx b on b.trx_id = w.blocking_trx_id`
    : sql`performance_schema.data_lock_waits w join information_schema.innodb_trx r on r.trx_id = w.requesting_engine_transaction_id
        join information_schema.innodb_trx b on b.trx_id = w.blocking_engine_transaction_id`;
  return (
    await sql<LockWait>`select r.trx_mysql_thread_id as waiting, b.trx_mysql_thread_id as blocking,
        timestampdiff(second, r.trx_wait_started, now()) as age, r.trx_query as q
      from ${waits}`.execute(db)
  ).rows;
}

async function locksCheck(db: OpsDb): Promise<Finding[]> {
  const out: Finding[] = [];
  if (db.dialect === 'postgres') {
    const r = await sql<{
      pid: number;
      blockers: unknown;
      age: unknown;
      q: string;
      ev: string;
    }>`select pid, pg_blocking_pids(pid) as blockers, wait_event_type as ev,
          extract(epoch from now() - state_change)::bigint as age, query as q
        from pg_stat_activity where datname = current_database() and cardinality(pg_blocking_pids(pid)) > 0`.execute(db.reader);
    for (const x of r.rows) {
      const blockers = Array.isArray(x.blockers) ? x.blockers.join(', ') : str(x.blockers);
      out.push({
        severity: 'warning',
        message: `session ${x.pid} has waited ${toBigInt(x.age)} s for a ${x.ev ?? ''} lock held by session(s) ${blockers}: ${excerpt(x.q)}`,
        remedy: `see what ${blockers} is doing (coffer doctor --check queries); end it with SELECT pg_terminate_backend(<pid>) if it is stuck`,
      });
    }
  } else if (db.dialect === 'mysql') {
    let rows: Awaited<ReturnType<typeof mysqlLockWaits>>;
    try {
      rows = await mysqlLockWaits(db.reader, db.mariadb);
    } catch (e) {
      return [
        {
          severity: 'info',
          message: `lock waits are not visible (${(mapDriverError('mysql', e) as Error).message})`,
          remedy: 'grant PROCESS (and on MySQL 8 SELECT on performance_schema) to see them',
        },
      ];
    }
    for (const x of rows)
      out.push({
        severity: 'warning',
        message: `connection ${toBigInt(x.waiting)} has waited ${toBigInt(x.age)} s for a row lock held by connection ${toBigInt(x.blocking)}: ${excerpt(x.q)}`,
        remedy: `see what connection ${toBigInt(x.blocking)} is doing; KILL ${toBigInt(x.blocking)} if it is stuck`,
      });
  } else
    return [
      { severity: 'info', message: 'SQLite has one writer; a waiting writer shows up as busy retries (coffer_transaction_retries_total)' },
    ];
  if (!out.length) out.push({ severity: 'ok', message: 'no session is waiting for a lock' });
  return out;
}

/** Which of a hook's requirements ("table" or "table.column") this database and build lack. */
export function missingRequirements(requires: readonly string[], schema: Schema, present: ReadonlySet<string>): string[] {
  return requires.filter((r) => {
    const [t, col] = r.split('.') as [string, string | undefined];
    const def = schema.tables.get(t);
    if (!def || !present.has(t)) return true;
    return col !== undefined && !def.columns.some((c) => c.name === col);
  });
}

export async function runDoctor(coffer: Coffer, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const db = opsDb(coffer);
  const domainChecks = opts.checks ?? DOCTOR_CHECKS;
  const known = new Set<string>([...BUILTIN_CHECKS, ...domainChecks.map((c) => c.name)]);
  for (const o of opts.only ?? [])
    if (!known.has(o)) throw new ConfigError(`unknown check ${o} (known: ${[...known].join(', ')})`, { field: 'check' });
  const wanted = (name: string) => !opts.only?.length || opts.only.includes(name);
  const findings: DoctorFinding[] = [];
  const run = async (check: string, fn: () => Promise<Finding[]>) => {
    if (!wanted(check)) return;
    try {
      for (const f of await fn()) findings.push({ check, ...f });
    } catch (e) {
      const m = mapDriverError(db.backend, e) as Error;
      findings.push({
        check,
        severity: 'error',
        message: `the check could not run: ${m.message}`,
        remedy: 'fix the cause (permissions, connectivity) and run coffer doctor again',
      });
    }
  };
  const present = await listTables(db.reader, db.dialect);
  let schema: Schema = coffer.schema;
  await run('migrations', () => migrationsCheck(coffer));
  await run('incomplete', () => incompleteCheck(db));
  let live: LiveSchema | undefined;
  try {
    live = await liveSchema(coffer);
    schema = live.schema;
  } catch {
    live = undefined;
  }
  if (live) await run('schema', () => schemaCheck(coffer, db, live, opts));
  const coffered = [...schema.tables.keys()].filter((t) => present.has(t));
  await run('integrity', () => integrityCheck(db, coffered));
  await run('foreign-keys', () => foreignKeyCheck(db, dataTables(schema), present));
  await run('indexes', () => unusedIndexesCheck(db, coffered));
  await run('upkeep', () => upkeepCheck(db, coffered));
  await run('queries', () => queriesCheck(db, opts.longQuerySeconds ?? 60));
  await run('locks', () => locksCheck(db));
  for (const check of domainChecks) {
    const missing = missingRequirements(check.requires, coffer.schema, present);
    await run(check.name, async () => {
      if (missing.length)
        return [{ severity: 'info', message: `skipped: needs ${missing.join(', ')}, which this database does not have yet` }];
      const got = await check.run({ coffer, dialect: db.dialect, now: opts.now ?? new Date(), tables: present });
      return got.length ? got : [{ severity: 'ok', message: check.describe }];
    });
  }
  const counts: Record<Severity, number> = { ok: 0, info: 0, warning: 0, error: 0 };
  for (const f of findings) counts[f.severity]++;
  return {
    backend: db.label,
    database: db.describe,
    server: await coffer.engine.serverVersion(),
    ok: counts.error === 0 && counts.warning === 0,
    counts,
    findings,
  };
}
