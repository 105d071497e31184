// `coffer copy --from URL --to URL`: any backend to any backend (SQLite to PostgreSQL is the
// common case), in keyset batches with bounded memory, resumable after an interruption, then
// verified by row counts and content checksums computed the same way on both sides.
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { sql } from 'kysely';
import { ConfigError, MigrationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
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
  type OpsDb,
} from './db.js';
import { InterruptedError, VerificationError } from './errors.js';
import { describeMarker, dropMarker, readMarker, setMarkerState } from './marker.js';
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

export async function copyDatabase(source: Coffer, target: Coffer, opts: CopyOptions = {}): Promise<CopyReport> {
  const started = Date.now();
  const progress = opts.progress ?? new SilentProgress();
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const src = opsDb(source);
  const dst = opsDb(target);
  const memory = source.target.backend === 'sqlite' && source.target.memory;
  if (source === target || (!memory && (sourceId(source) === sourceId(target) || (await sameDatabase(source, target))))) {
    throw new ConfigError(`source and target are the same database (${src.describe})`, { field: 'to' });
  }

  const live = await liveSchema(source);
  if (live.pending.length) {
    throw new MigrationError(
      `source ${src.describe} has ${live.pending.length} pending migration(s) (${live.pending.join(', ')}): run \`coffer migrate --db <source>\` first so both sides get the same schema`,
    );
  }
  const srcMarker = await readMarker(src.reader, src.dialect);
  if (srcMarker)
    throw new ConfigError(`source ${src.describe} is itself ${describeMarker(srcMarker)}: finish or discard that first`, { field: 'from' });

  const marker = await prepareTarget(target, {
    info: { operation: 'copy', source: src.describe, sourceId: sourceId(source), startedAt: new Date().toISOString(), batchSize },
    discard: opts.discard,
    force: opts.force,
    progress,
    command: 'copy',
  });
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
    const v = await verifyPlans(src, dst, plans, { batchSize, progress, signal: opts.signal, total }).catch((e: unknown) => {
      if (e instanceof InterruptedError) {
        throw new InterruptedError(
          `copy interrupted while verifying: every row is written, ${dst.describe} stays marked incomplete until verified; run the same coffer copy again to verify it`,
        );
      }
      throw e;
    });
    if (v.problems.length) {
      await setMarkerState(dst.writer, dst.dialect, 'failed', { problems: v.problems });
      throw new VerificationError(
        `copy verification failed (${dst.describe} stays marked incomplete; if the source was written during the copy, stop its writers and copy again with --discard): ${v.problems.join('; ')}`,
        v.problems,
      );
    }
    sums = v.sums;
  }
  await dropMarker(dst.writer, dst.dialect);
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
