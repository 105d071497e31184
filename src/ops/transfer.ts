// Moving rows into a target and proving they arrived: the load loop shared by copy and
// restore (batches written with their progress row in one transaction, so an interrupted load
// resumes exactly), content checksums computed the same way on every backend, and the search
// for the first row that differs when checksums disagree.
import { sql, type Kysely } from 'kysely';
import { mapDriverError } from '../db/driver-errors.js';
import type { ColumnDef, Dialect, TableDef } from '../schema/model.js';
import { fetchByKeys, insertRows, readBatches, serialColumn, withSnapshot, type OpsDb } from './db.js';
import { InterruptedError, throwIfAborted } from './errors.js';
import { recordProgress, type Marker, type TableProgress } from './marker.js';
import type { Progress } from './progress.js';
import { canonicalLine, describeKey, keyFromPortable, keyString, portableKey, TableDigest, type Row } from './rows.js';

/** A table to move: its definition and the columns the source has (all of them, unless the source is an older backup). */
export interface TablePlan {
  table: TableDef;
  columns: ColumnDef[];
}

/** Where rows come from: a database snapshot or a backup file. */
export interface RowSource {
  readonly describe: string;
  /** Decoded rows of a table, in batches, continuing after what `resume` says was written. */
  rows(plan: TablePlan, resume: TableProgress | null, batchSize: number): AsyncIterable<Row[]>;
  /** The rows with these keys, when the source can look rows up (databases can, files cannot). */
  lookup?(plan: TablePlan, keys: Row[]): Promise<Row[]>;
}

/** Rows of a database, read inside the snapshot transaction `conn`. */
export function dbRowSource(db: OpsDb, conn: Kysely<any>): RowSource {
  return {
    describe: db.describe,
    rows: (plan, resume, batchSize) =>
      readBatches(conn, db.dialect, plan.table, plan.columns, {
        batchSize,
        after: resume?.lastKey ? keyFromPortable(plan.table, resume.lastKey) : null,
      }),
    lookup: (plan, keys) => fetchByKeys(conn, db.dialect, plan.table, plan.columns, keys),
  };
}

export interface LoadOptions {
  batchSize: number;
  signal?: AbortSignal;
  progress: Progress;
  /** Pause after each batch (tests slow a copy down to interrupt it). */
  throttleMs?: number;
  /** What an interruption leaves behind, for the message. */
  interrupted: (rowsWritten: number) => string;
}

export interface LoadResult {
  rows: number;
  bytes: number;
  resumedTables: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes one batch and its progress row in one transaction on the target. */
async function writeBatch(target: OpsDb, plan: TablePlan, rows: Row[], progress: TableProgress): Promise<void> {
  const d = target.dialect;
  const serial = serialColumn(plan.table);
  // MySQL turns an explicit 0 in an AUTO_INCREMENT column into a new id unless told not to.
  const zeroId = d === 'mysql' && serial !== undefined && rows.some((r) => r[serial.name] === 0n);
  try {
    await target.writer.transaction().execute(async (trx) => {
      let mode: string | undefined;
      if (zeroId) {
        mode = String((await sql<{ m: string }>`select @@session.sql_mode as m`.execute(trx)).rows[0]?.m ?? '');
        await sql`set session sql_mode = ${`${mode},NO_AUTO_VALUE_ON_ZERO`}`.execute(trx);
      }
      await insertRows(trx, d, plan.table, plan.columns, rows);
      await recordProgress(trx, d, plan.table.name, progress);
      if (mode !== undefined) await sql`set session sql_mode = ${mode}`.execute(trx);
    });
  } catch (e) {
    throw inBatch(mapDriverError(target.backend, e), plan.table, rows);
  }
}

/**
 * A batch's failure, saying which table and which rows (first and last key): a driver's
 * constraint error names neither, and the operator must find the row to fix.
 */
function inBatch(e: unknown, table: TableDef, rows: readonly Row[]): unknown {
  if (!(e instanceof Error) || rows.length === 0) return e;
  const first = describeKey(table, rows[0]!);
  const span = rows.length === 1 ? first : `${first} … ${describeKey(table, rows[rows.length - 1]!)}`;
  e.message = `writing ${table.name} (the batch of ${rows.length} row(s) from ${span}): ${e.message}`;
  return e;
}

/**
 * Loads every planned table from `source` into `target`, in plan (dependency) order, resuming
 * tables the marker says were started and skipping those it says are done.
 */
export async function loadInto(
  target: OpsDb,
  plans: readonly TablePlan[],
  source: RowSource,
  marker: Marker | null,
  opts: LoadOptions,
): Promise<LoadResult> {
  let rowsWritten = 0;
  let bytes = 0;
  const resumedTables: string[] = [];
  for (const plan of plans) {
    const name = plan.table.name;
    const prior = marker?.tables.get(name) ?? null;
    if (prior?.state === 'done') {
      opts.progress.add(prior.rowsDone, 0, name);
      continue;
    }
    if (prior && prior.rowsDone > 0) {
      resumedTables.push(name);
      opts.progress.note(`resuming ${name} after ${prior.rowsDone} rows`);
      opts.progress.add(prior.rowsDone, 0, name);
    }
    const state: TableProgress = { state: 'running', rowsDone: prior?.rowsDone ?? 0, lastKey: prior?.lastKey ?? null };
    for await (const batch of source.rows(plan, prior, opts.batchSize)) {
      if (opts.signal?.aborted) throw new InterruptedError(opts.interrupted(rowsWritten));
      if (batch.length === 0) continue;
      let batchBytes = 0;
      for (const r of batch) batchBytes += Buffer.byteLength(canonicalLine(plan.columns, r));
      state.rowsDone += batch.length;
      state.lastKey = portableKey(plan.table, batch[batch.length - 1]!);
      await writeBatch(target, plan, batch, state);
      rowsWritten += batch.length;
      bytes += batchBytes;
      opts.progress.add(batch.length, batchBytes, name);
      if (opts.throttleMs) await sleep(opts.throttleMs);
    }
    throwIfAborted(opts.signal, () => opts.interrupted(rowsWritten));
    state.state = 'done';
    try {
      await target.writer.transaction().execute((trx) => recordProgress(trx, target.dialect, name, state));
    } catch (e) {
      throw mapDriverError(target.backend, e);
    }
  }
  return { rows: rowsWritten, bytes, resumedTables };
}

// ---------------------------------------------------------------------------------------------
// Checksums and comparison

export interface TableSum {
  rows: number;
  checksum: string;
}

export interface DigestOptions {
  batchSize: number;
  progress?: Progress;
  signal?: AbortSignal;
}

/** Row count and content checksum of each planned table, read on `conn` (a snapshot transaction). */
export async function digestWith(
  conn: Kysely<any>,
  d: Dialect,
  plans: readonly TablePlan[],
  opts: DigestOptions,
): Promise<Map<string, TableSum>> {
  const out = new Map<string, TableSum>();
  for (const plan of plans) {
    const dg = new TableDigest();
    for await (const batch of readBatches(conn, d, plan.table, plan.columns, { batchSize: opts.batchSize })) {
      throwIfAborted(opts.signal, () => 'interrupted while computing checksums; nothing was changed');
      for (const r of batch) dg.add(canonicalLine(plan.columns, r));
      opts.progress?.add(batch.length, 0, plan.table.name);
    }
    out.set(plan.table.name, { rows: dg.rows, checksum: dg.checksum });
  }
  return out;
}

/** Row count and content checksum of each planned table, read in one snapshot. */
export async function digestTables(db: OpsDb, plans: readonly TablePlan[], opts: DigestOptions): Promise<Map<string, TableSum>> {
  return withSnapshot(db, (conn) => digestWith(conn, db.dialect, plans, opts));
}

/** Tables whose counts or checksums differ, with both sides. */
export function compareSums(
  expected: Map<string, TableSum>,
  actual: Map<string, TableSum>,
  expectedName: string,
  actualName: string,
): { table: string; message: string }[] {
  const out: { table: string; message: string }[] = [];
  for (const [t, e] of expected) {
    const a = actual.get(t);
    if (!a) out.push({ table: t, message: `table ${t}: missing on ${actualName}` });
    else if (a.rows !== e.rows)
      out.push({ table: t, message: `table ${t}: ${e.rows} rows on ${expectedName}, ${a.rows} on ${actualName}` });
    else if (a.checksum !== e.checksum)
      out.push({ table: t, message: `table ${t}: same row count (${a.rows}) but the content checksums differ` });
  }
  return out;
}

function differingColumns(columns: readonly ColumnDef[], a: Row, b: Row): string[] {
  return columns.filter((c) => canonicalLine([c], a) !== canonicalLine([c], b)).map((c) => c.name);
}

/**
 * The first row (in the reference's key order) that is missing from the target or differs,
 * then, when the reference can look rows up, the first target row the reference lacks.
 */
export async function firstDifference(
  reference: RowSource,
  target: OpsDb,
  targetConn: Kysely<any>,
  plan: TablePlan,
  opts: { batchSize: number; referenceName: string; targetName: string },
): Promise<string | null> {
  const name = plan.table.name;
  for await (const batch of reference.rows(plan, null, opts.batchSize)) {
    const keys = batch.map((r) => Object.fromEntries(plan.table.primaryKey.map((k) => [k, r[k]])));
    const found = new Map(
      (await fetchByKeys(targetConn, target.dialect, plan.table, plan.columns, keys)).map((r) => [keyString(plan.table, r), r]),
    );
    for (const r of batch) {
      const t = found.get(keyString(plan.table, r));
      if (!t) return `table ${name}: row ${describeKey(plan.table, r)} is on ${opts.referenceName} but missing from ${opts.targetName}`;
      const cols = differingColumns(plan.columns, r, t);
      if (cols.length) return `table ${name}: row ${describeKey(plan.table, r)} differs in column(s) ${cols.join(', ')}`;
    }
  }
  if (!reference.lookup) return null;
  for await (const batch of readBatches(targetConn, target.dialect, plan.table, plan.columns, { batchSize: opts.batchSize })) {
    const keys = batch.map((r) => Object.fromEntries(plan.table.primaryKey.map((k) => [k, r[k]])));
    const found = new Set((await reference.lookup(plan, keys)).map((r) => keyString(plan.table, r)));
    for (const r of batch) {
      if (!found.has(keyString(plan.table, r)))
        return `table ${name}: row ${describeKey(plan.table, r)} is on ${opts.targetName} but not on ${opts.referenceName}`;
    }
  }
  return null;
}
