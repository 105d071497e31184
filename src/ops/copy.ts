// `coffer copy --from URL --to URL`: any backend to any backend (SQLite to PostgreSQL is the
// common case), in keyset batches with bounded memory, resumable after an interruption, then
// verified by row counts and content checksums computed the same way on both sides.
//
// Everything that can be checked with the source alone is checked before the target is opened
// (checkSource), so a bad source never creates or marks a target. A copy that fails after that
// removes the SQLite file it created (copyInto); a target that existed before is left marked
// failed, with what happened and what to do (aftermath.ts). The run holds the target's lock
// throughout (lock.ts): a second copy or restore into it is refused.
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { sql } from 'kysely';
import { ConfigError, MigrationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { intoTarget, leftMarkedFailed, markComplete, onTarget, runSignal, type TargetToOpen } from './aftermath.js';
import {
  analyzeTables,
  dataTables,
  estimateRows,
  historyDifferences,
  liveSchema,
  opsDb,
  serialColumn,
  serialNext,
  setSerialNext,
  withSnapshot,
  type LiveSchema,
  type OpsDb,
} from './db.js';
import { InterruptedError, VerificationError } from './errors.js';
import type { TargetLock } from './lock.js';
import { describeMarker, readMarker, setMarkerState } from './marker.js';
import { SilentProgress, type Progress } from './progress.js';
import { clearSeedRows, prepareTarget } from './target.js';
import { compareSums, dbRowSource, digestTables, firstDifference, loadInto, type TablePlan, type TableSum } from './transfer.js';

export const DEFAULT_BATCH_SIZE = 1000;

export interface CopyOptions {
  /** Rows per batch (and per target transaction). */
  batchSize?: number;
  /** Throw away an incomplete copy found in the target and start over. */
  discard?: boolean;
  /** Replace the Coffer tables of a non-empty target. */
  force?: boolean;
  /** Verify counts and checksums afterwards (default true). */
  verify?: boolean;
  signal?: AbortSignal;
  progress?: Progress;
  throttleMs?: number;
}

export interface TableReport {
  table: string;
  rows: number;
  checksum: string | null;
}

export interface CopyReport {
  source: string;
  target: string;
  resumed: boolean;
  rowsCopied: number;
  bytes: number;
  tables: TableReport[];
  verified: boolean;
  elapsedMs: number;
}

/** Identifies one database across runs (so a resume is recognised), without secrets. */
function sourceId(c: Coffer): string {
  const t = c.target;
  if (t.backend === 'sqlite') return t.memory ? `memory:${c.name}` : `sqlite:${resolve(t.path)}`;
  return `${t.backend}://${t.host}:${t.port}/${t.database}`;
}

/**
 * Whether two Coffers reach the same database, asked of the databases themselves: URLs can name
 * one database many ways (localhost and 127.0.0.1, another host name, a symlinked file), and a
 * copy with --force into its own source would drop the source's tables. PostgreSQL: an
 * advisory lock (scoped to one database) taken on the source is busy on the target. MySQL and
 * MariaDB: a named lock (server-wide) that includes the database name. SQLite: the file's
 * device and inode.
 */
async function sameDatabase(source: Coffer, target: Coffer): Promise<boolean> {
  const s = source.target;
  const t = target.target;
  if (s.backend !== t.backend) return false;
  if (s.backend === 'sqlite' && t.backend === 'sqlite') {
    if (s.memory || t.memory) return source === target;
    const [a, b] = await Promise.all([stat(s.path).catch(() => null), stat(t.path).catch(() => null)]);
    return a !== null && b !== null ? a.dev === b.dev && a.ino === b.ino : resolve(s.path) === resolve(t.path);
  }
  const key = randomBytes(6).readUIntBE(0, 6);
  const op = { op: 'copy.sameDatabase' };
  if (s.backend === 'postgres') {
    return source.write(async (tx) => {
      await sql`select pg_advisory_xact_lock(${key}::bigint)`.execute(tx.db);
      return target.write(
        async (tt) => !(await sql<{ got: boolean }>`select pg_try_advisory_xact_lock(${key}::bigint) as got`.execute(tt.db)).rows[0]!.got,
        op,
      );
    }, op);
  }
  const name = `coffer-copy-${key}`;
  return source.write(async (tx) => {
    await sql`select get_lock(concat(database(), ':', ${name}), 0)`.execute(tx.db);
    try {
      return await target.write(
        async (tt) =>
          (await sql<{ holder: unknown }>`select is_used_lock(concat(database(), ':', ${name})) as holder`.execute(tt.db)).rows[0]!
            .holder !== null,
        op,
      );
    } finally {
      await sql`select release_lock(concat(database(), ':', ${name}))`.execute(tx.db);
    }
  }, op);
}

/**
 * Row counts and content checksums of both sides (computed in parallel, each in one snapshot);
 * for every table that differs, the first differing row.
 */
async function verifyPlans(
  src: OpsDb,
  dst: OpsDb,
  plans: TablePlan[],
  opts: { batchSize: number; progress: Progress; signal?: AbortSignal; total: number | null },
): Promise<{ sums: Map<string, TableSum>; problems: string[] }> {
  opts.progress.phase('verify', opts.total === null ? null : opts.total * 2);
  const [a, b] = await Promise.all([
    digestTables(src, plans, { batchSize: opts.batchSize, progress: opts.progress, signal: opts.signal }),
    digestTables(dst, plans, { batchSize: opts.batchSize, progress: opts.progress, signal: opts.signal }),
  ]);
  opts.progress.done();
  const bad = compareSums(a, b, 'the source', 'the target');
  const problems: string[] = [];
  if (bad.length) {
    await withSnapshot(src, (sconn) =>
      withSnapshot(dst, async (tconn) => {
        for (const x of bad) {
          const plan = plans.find((p) => p.table.name === x.table)!;
          const first = await firstDifference(dbRowSource(src, sconn), dst, tconn, plan, {
            batchSize: opts.batchSize,
            referenceName: 'the source',
            targetName: 'the target',
          });
          problems.push(first ? `${x.message}; first difference: ${first}` : x.message);
        }
      }),
    );
  }
  return { sums: a, problems };
}

export interface CompareReport {
  source: string;
  target: string;
  equal: boolean;
  tables: TableReport[];
  problems: string[];
}

/**
 * Compares two databases with the same schema table by table (`coffer copy --verify-only`): row
 * counts, content checksums, and the first differing row of each table that differs.
 */
export async function compareDatabases(
  source: Coffer,
  target: Coffer,
  opts: { batchSize?: number; progress?: Progress; signal?: AbortSignal } = {},
): Promise<CompareReport> {
  const src = opsDb(source);
  const dst = opsDb(target);
  const a = await liveSchema(source);
  const b = await liveSchema(target);
  const diff = historyDifferences(a.applied, b.applied, 'the source', 'the target');
  if (diff.length) throw new MigrationError(`the two databases have different schemas: ${diff.join('; ')}`);
  const plans: TablePlan[] = dataTables(a.schema).map((t) => ({ table: t, columns: t.columns }));
  const totals = await estimateRows(
    src.reader,
    src.dialect,
    plans.map((p) => p.table.name),
  );
  const v = await verifyPlans(src, dst, plans, {
    batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
    progress: opts.progress ?? new SilentProgress(),
    signal: opts.signal,
    total: [...totals.values()].reduce((x, y) => x + y, 0),
  });
  return {
    source: src.describe,
    target: dst.describe,
    equal: v.problems.length === 0,
    tables: plans.map((p) => ({
      table: p.table.name,
      rows: v.sums.get(p.table.name)?.rows ?? 0,
      checksum: v.sums.get(p.table.name)?.checksum ?? null,
    })),
    problems: v.problems,
  };
}

/**
 * Everything copy checks about its source before any target is opened (opening a SQLite path
 * creates the database): that it is a Coffer database, whose migration history this build
 * knows, with no pending migration, and not itself an incomplete copy/restore target. Returns
 * its live schema; nothing is written anywhere.
 */
export async function checkSource(source: Coffer): Promise<LiveSchema> {
  const src = opsDb(source);
  const live = await liveSchema(source);
  if (!live.applied.length)
    throw new ConfigError(
      `source ${src.describe} is not a Coffer database (it has no migration history): check --from; only a database Coffer created (coffer migrate, the service) can be copied`,
      { field: 'from' },
    );
  if (live.pending.length) {
    throw new MigrationError(
      `source ${src.describe} has ${live.pending.length} pending migration(s) (${live.pending.join(', ')}): run \`coffer migrate --db <source>\` first so both sides get the same schema`,
    );
  }
  const srcMarker = await readMarker(src.reader, src.dialect);
  if (srcMarker)
    throw new ConfigError(`source ${src.describe} is itself ${describeMarker(srcMarker)}: finish or discard that first`, { field: 'from' });
  return live;
}

/**
 * Copies `source` into an open database, which existed before. Every check that needs only the
 * source runs first (checkSource), so a bad source leaves the target untouched; a failure after
 * the target was marked leaves it marked failed with the reason (an interruption: marked
 * incomplete, to resume).
 */
export async function copyDatabase(source: Coffer, target: Coffer, opts: CopyOptions = {}): Promise<CopyReport> {
  const live = await checkSource(source);
  const state = { marked: false };
  return onTarget(
    target,
    'copy',
    (lock) => runCopy(source, target, live, opts, false, state, lock),
    () => state.marked,
  );
}

/**
 * `coffer copy`: checks the source (checkSource) before opening the target, since opening a
 * SQLite path creates the database. If the copy then fails, a SQLite file it created is removed
 * with its -wal/-shm and the folders made for it (an interrupted one is kept, marked
 * incomplete, to resume); a target that existed before is left marked failed (copyDatabase).
 */
export async function copyInto(source: Coffer, to: TargetToOpen, opts: CopyOptions = {}): Promise<CopyReport> {
  const live = await checkSource(source);
  const state = { marked: false };
  return intoTarget(
    to,
    'copy',
    (target, created, lock) => runCopy(source, target, live, opts, created, state, lock),
    () => state.marked,
  );
}

/**
 * The part of a copy that needs the target. `created`: the target did not exist before this
 * copy, whose caller removes it on failure; otherwise a failure after marking it (but not an
 * interruption, which resumes) leaves it marked failed, saying why. The copy stops when `lock`
 * is lost (aftermath.ts).
 */
async function runCopy(
  source: Coffer,
  target: Coffer,
  live: LiveSchema,
  opts: CopyOptions,
  created: boolean,
  state: { marked: boolean },
  lock: TargetLock,
): Promise<CopyReport> {
  try {
    return await copyChecked(source, target, live, { ...opts, signal: runSignal(lock, opts.signal) }, state, lock);
  } catch (e) {
    if (e instanceof InterruptedError || !state.marked || created) throw e;
    throw await leftMarkedFailed(opsDb(target), e, e instanceof VerificationError, {
      operation: 'copy',
      lock,
      again: 'resume it',
      differences: 'if the source was written during the copy, stop its writers first',
    });
  }
}

async function copyChecked(
  source: Coffer,
  target: Coffer,
  live: LiveSchema,
  opts: CopyOptions,
  state: { marked: boolean },
  lock: TargetLock,
): Promise<CopyReport> {
  const started = Date.now();
  const progress = opts.progress ?? new SilentProgress();
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const src = opsDb(source);
  const dst = opsDb(target);
  const memory = source.target.backend === 'sqlite' && source.target.memory;
  if (source === target || (!memory && (sourceId(source) === sourceId(target) || (await sameDatabase(source, target))))) {
    throw new ConfigError(`source and target are the same database (${src.describe})`, { field: 'to' });
  }

  const marker = await prepareTarget(target, {
    info: { operation: 'copy', source: src.describe, sourceId: sourceId(source), startedAt: new Date().toISOString(), batchSize },
    discard: opts.discard,
    force: opts.force,
    progress,
    command: 'copy',
  });
  state.marked = true;
  await target.migrator.apply();
  const targetLive = await liveSchema(target);
  const diff = historyDifferences(live.applied, targetLive.applied, 'the source', 'the target');
  if (diff.length) throw new MigrationError(`source and target migration histories differ: ${diff.join('; ')}`);

  const plans: TablePlan[] = dataTables(live.schema).map((t) => ({ table: t, columns: t.columns }));
  await clearSeedRows(dst, plans, marker);
  const totals = await estimateRows(
    src.reader,
    src.dialect,
    plans.map((p) => p.table.name),
  );
  const total = [...totals.values()].reduce((a, b) => a + b, 0);

  progress.phase('copy', total);
  const result = await withSnapshot(src, (conn) =>
    loadInto(dst, plans, dbRowSource(src, conn), marker, {
      batchSize,
      signal: opts.signal,
      progress,
      throttleMs: opts.throttleMs,
      interrupted: (n) =>
        `copy stopped after ${n} more rows: ${dst.describe} is marked incomplete (table coffer_ops_progress); run the same coffer copy again to resume, or add --discard to throw it away`,
    }),
  );
  progress.done();

  for (const p of plans) {
    if (!serialColumn(p.table)) continue;
    const next = await serialNext(src.reader, src.dialect, p.table);
    if (next !== null) await setSerialNext(dst.writer, dst.dialect, p.table, next);
  }
  await analyzeTables(
    dst,
    plans.map((p) => p.table.name),
  );

  let sums: Map<string, TableSum> | null = null;
  if (opts.verify !== false) {
    // Rows another run wrote meanwhile would be taken for differences of this copy (or pass).
    await lock.assertHeld();
    const v = await verifyPlans(src, dst, plans, { batchSize, progress, signal: opts.signal, total }).catch((e: unknown) => {
      if (e instanceof InterruptedError) {
        throw new InterruptedError(
          `copy interrupted while verifying: every row is written, ${dst.describe} stays marked incomplete until verified; run the same coffer copy again to verify it`,
        );
      }
      throw e;
    });
    if (v.problems.length) {
      await lock.assertHeld();
      await setMarkerState(dst.writer, dst.dialect, 'failed', { problems: v.problems });
      // What the failure leaves behind is added by the caller (runCopy, copyInto).
      throw new VerificationError(`copy verification failed: ${v.problems.join('; ')}`, v.problems);
    }
    sums = v.sums;
  }
  await markComplete(dst, lock);
  return {
    source: src.describe,
    target: dst.describe,
    resumed: marker !== null,
    rowsCopied: result.rows,
    bytes: result.bytes,
    tables: plans.map((p) => ({
      table: p.table.name,
      rows: sums?.get(p.table.name)?.rows ?? 0,
      checksum: sums?.get(p.table.name)?.checksum ?? null,
    })),
    verified: sums !== null,
    elapsedMs: Date.now() - started,
  };
}
