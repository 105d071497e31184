// `coffer restore --from FILE --to URL`: into an empty database (a non-empty one is refused
// unless forced), then verified against the backup's manifest.
//
//   logical backup      any backend; loaded like a copy, resumable after an interruption
//   SQLite file backup  any backend; read straight from the backup file, resumable
//   pg_dump archive     PostgreSQL only, pg_restore --single-transaction (all or nothing)
//   mysqldump (gzip)    MySQL/MariaDB only, through the mysql client
//
// Everything that can be checked without the target is checked first (checkBackup: the file,
// its manifest, its migration history against this build's, a logical file read through once),
// so a bad backup never creates or marks a target. The target then carries the incomplete
// marker (marker.ts) until the restore verified. A restore that fails after that removes the
// SQLite file it created (restoreInto); a target that existed before is left marked failed,
// with what happened and what to do. The run holds the target's lock throughout (lock.ts): a
// second restore or copy into it is refused.
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { constants as zc, createGunzip, gunzipSync } from 'node:zlib';
import { sql } from 'kysely';
import { ConfigError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { parseDatabaseUrl, type DbTarget } from '../db/url.js';
import { MIGRATIONS } from '../domains/registry.js';
import type { Migration } from '../migrations/migration.js';
import { intoTarget, leftMarkedFailed, markComplete, onTarget, runSignal, type TargetToOpen } from './aftermath.js';
import {
  analyzeTables,
  dataTables,
  describeTarget,
  schemaOfHistory,
  liveSchema,
  openSqliteFileReadOnly,
  opsDb,
  readHistory,
  serialColumn,
  serialNext,
  setSerialNext,
  withSnapshot,
  type OpsDb,
} from './db.js';
import { fileError, InterruptedError, throwIfAborted, VerificationError } from './errors.js';
import type { TargetLock } from './lock.js';
import { LogicalReader, LogicalSource, plansInFileOrder } from './logical.js';
import {
  fileDigest,
  manifestPath,
  plansFromManifest,
  readManifestFile,
  sqliteHeaderBeforeWal,
  sqliteHeaderFree,
  validateManifest,
  type BackupKind,
  type Manifest,
} from './manifest.js';
import { createMarker, describeMarker, MARKER_TABLE, readMarker, setMarkerState, type Marker } from './marker.js';
import { mysqlOptionFile, pgEnv, requireTool, runTool, serverTarget } from './native-tools.js';
import { SilentProgress, type Progress } from './progress.js';
import { clearSeedRows, dropCofferTables, nonEmptyTables, prepareTarget } from './target.js';
import {
  compareSums,
  dbRowSource,
  digestTables,
  firstDifference,
  loadInto,
  type RowSource,
  type TablePlan,
  type TableSum,
} from './transfer.js';

export interface RestoreOptions {
  /** Replace the Coffer tables of a non-empty target. */
  force?: boolean;
  /** Throw away an incomplete copy/restore found in the target, then start over. */
  discard?: boolean;
  /** Verify against the manifest afterwards (default true). */
  verify?: boolean;
  batchSize?: number;
  signal?: AbortSignal;
  progress?: Progress;
  throttleMs?: number;
}

export interface RestoreReport {
  file: string;
  target: string;
  kind: BackupKind;
  resumed: boolean;
  rowsRestored: number;
  tables: { table: string; rows: number; checksum: string }[];
  verified: boolean;
  /**
   * What the restored rows were checked against: the backup's manifest, or (a SQLite file
   * without one beside it) the backup file itself; null when not verified.
   */
  verifiedAgainst: 'manifest' | 'backup file' | null;
  notes: string[];
  elapsedMs: number;
}

/** What kind of backup a file is, from its first bytes. */
export function detectBackupKind(file: string): BackupKind {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw fileError(e, 'cannot read backup', file);
  }
  const head = Buffer.alloc(65536);
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } catch (e) {
    if ((e as { code?: string }).code === 'ESPIPE') {
      throw new ConfigError(
        `${file} is a pipe: restore reads its backup more than once (to verify it), so save the stream to a file first`,
        { path: file },
      );
    }
    throw fileError(e, 'cannot read backup', file);
  } finally {
    closeSync(fd);
  }
  const buf = head.subarray(0, n);
  if (buf.subarray(0, 16).toString('latin1') === 'SQLite format 3\u0000') return 'sqlite';
  if (buf.subarray(0, 5).toString('latin1') === 'PGDMP') return 'pg_dump';
  if (buf[0] === 0x1f && buf[1] === 0x8b) {
    let text = '';
    try {
      text = gunzipSync(buf, { finishFlush: zc.Z_SYNC_FLUSH }).subarray(0, 4096).toString('utf8');
    } catch {
      throw new ConfigError(`${file} is a damaged gzip file`, { path: file });
    }
    if (text.startsWith('{"format":"coffer-logical"')) return 'logical';
    if (/^(\/\*M!999999|-- MySQL dump|-- MariaDB dump)/m.test(text.slice(0, 512))) return 'mysqldump';
  }
  throw new ConfigError(
    `${file} is not a Coffer backup (expected a logical backup, a SQLite file, a pg_dump archive or a gzip'd mysqldump)`,
    { path: file },
  );
}

/** What restore learned about a backup before touching any target (checkBackup). */
export interface CheckedBackup {
  file: string;
  kind: BackupKind;
  /**
   * What the restored rows are verified against: the manifest beside the file or, for a logical
   * backup, the one at its end; null for a SQLite file backup without one.
   */
  manifest: Manifest | null;
  /** The tables to load, in load order, each with the columns the backup holds. */
  plans: TablePlan[];
  /** Recognises a resumed restore of the same backup (marker.ts). */
  sourceId: string;
  /** pg_dump / mysqldump: the objects the dump creates or drops. */
  dumpObjects: DumpObject[];
  /** This build's migrations, which the backup's history was checked against. */
  migrations: readonly Migration[];
  notes: string[];
}

export interface CheckOptions {
  /** This build's migrations (those the target is opened with). */
  migrations: readonly Migration[];
  /** The target as its URL names it: nothing is opened. */
  target: DbTarget;
  /** false: skip the check of a native or SQLite file against its manifest's size and SHA-256. */
  verify?: boolean;
  progress?: Progress;
  signal?: AbortSignal;
}

interface CheckCtx {
  file: string;
  verify: boolean;
  progress: Progress;
  notes: string[];
  signal?: AbortSignal;
}

/**
 * Refuses a backup file whose size or SHA-256 is not what its manifest recorded, before anything
 * is loaded. A SQLite file that differs only in the header fields an open rewrites (journal
 * mode, change counters: any program that opened it, `coffer stats` included, switched it to
 * WAL) holds the same pages, and is accepted.
 */
async function checkFileAgainstManifest(ctx: CheckCtx, manifest: Manifest | null, kind: BackupKind): Promise<void> {
  if (!manifest?.file) return;
  if (!ctx.verify) {
    ctx.notes.push(`${ctx.file} was not checked against its manifest's size and SHA-256 (--no-verify)`);
    return;
  }
  const m = manifest.file;
  ctx.progress.note(`checking ${ctx.file} against its manifest (${m.bytes} bytes)`);
  const sqlite = kind === 'sqlite';
  const dg = await fileDigest(
    ctx.file,
    sqlite ? (m.sha256HeaderFree ? { headerFree: sqliteHeaderFree } : { beforeWal: sqliteHeaderBeforeWal }) : {},
    ctx.signal,
  );
  if (dg.bytes === m.bytes) {
    if (dg.sha256 === m.sha256) return;
    const same = m.sha256HeaderFree ? dg.variants.headerFree === m.sha256HeaderFree : dg.variants.beforeWal === m.sha256;
    if (sqlite && same) {
      ctx.notes.push(
        `${ctx.file} differs from its manifest only in the SQLite header's journal mode and change counter (a program that opened it switched it to WAL); its pages match the manifest`,
      );
      return;
    }
  }
  throw new ConfigError(
    `${ctx.file} does not match its manifest (${dg.bytes === m.bytes ? 'its SHA-256 differs' : `${dg.bytes} bytes, the manifest says ${m.bytes}`}): the backup was changed or replaced after it was taken; restore an intact copy of it or another backup (to restore this file as it is, unchecked, add --no-verify)`,
    { path: ctx.file },
  );
}

/** A logical backup: its header against this build, then the whole file read through once. */
async function checkLogical(
  ctx: CheckCtx,
  sidecar: Manifest | null,
  opts: CheckOptions,
): Promise<Omit<CheckedBackup, 'file' | 'kind' | 'migrations' | 'notes'>> {
  const reader = await LogicalReader.open(ctx.file);
  try {
    const header = reader.header;
    if (sidecar && sidecar.id !== header.id)
      throw new ConfigError(`${manifestPath(ctx.file)} belongs to another backup (id ${sidecar.id}, the file has ${header.id})`, {});
    const shape = {
      migrations: header.migrations,
      tables: header.tables.map((t) => ({ name: t.name, columns: t.columns.map((c) => c.name), rows: 0, checksum: '', serialNext: null })),
    };
    // A history this build does not know (a newer Coffer's backup, an edited migration) is
    // refused here, before any target exists.
    const plans = plansInFileOrder(plansFromManifest(shape, opts.migrations, ctx.file).plans, header, ctx.file);
    for (const p of plans) {
      const h = header.tables.find((t) => t.name === p.table.name)!;
      for (const c of h.columns) {
        const mine = p.columns.find((x) => x.name === c.name)!;
        if (JSON.stringify(mine.type) !== JSON.stringify(c.type))
          throw new ConfigError(
            `${ctx.file}: ${p.table.name}.${c.name} is ${c.type.kind} in the backup but ${mine.type.kind} in this build`,
            {},
          );
      }
    }
    // Every section in the header's order, each matching its end record, and the manifest at
    // the end: a damaged, cut or reordered file is refused now, not part way through the load.
    ctx.progress.phase('check', sidecar ? sidecar.tables.reduce((n, t) => n + t.rows, 0) : null);
    const manifest = validateManifest(
      await new LogicalSource(reader).check({
        signal: opts.signal,
        progress: (rows, bytes, table) => ctx.progress.add(rows, bytes, table),
      }),
      ctx.file,
    );
    ctx.progress.done();
    return { manifest, plans, sourceId: header.id, dumpObjects: [] };
  } finally {
    reader.close();
  }
}

/** A SQLite file backup: the file against its manifest, its history against the manifest and this build. */
async function checkSqliteFile(
  ctx: CheckCtx,
  sidecar: Manifest | null,
  opts: CheckOptions,
): Promise<Omit<CheckedBackup, 'file' | 'kind' | 'migrations' | 'notes'>> {
  // As for the other native kinds: a file that is not the one the manifest describes is refused
  // before the target is touched (verifying after the load could not name the row that differs).
  await checkFileAgainstManifest(ctx, sidecar, 'sqlite');
  const ro = openSqliteFileReadOnly(ctx.file);
  try {
    const history = await readHistory(ro.reader).catch(() => {
      throw new ConfigError(`${ctx.file} is a SQLite database but not a Coffer one (it has no migration history)`, { path: ctx.file });
    });
    if (sidecar) {
      const a = JSON.stringify(sidecar.migrations.map((m) => [m.domain, m.version, m.checksum]).sort());
      const b = JSON.stringify(history.map((m) => [m.domain, m.version, m.checksum]).sort());
      if (a !== b) throw new ConfigError(`${manifestPath(ctx.file)} does not describe ${ctx.file} (their migration histories differ)`, {});
    }
    const plans: TablePlan[] = sidecar
      ? plansFromManifest(sidecar, opts.migrations, ctx.file).plans
      : dataTables(schemaOfHistory(opts.migrations, history, ctx.file).schema).map((t) => ({ table: t, columns: t.columns }));
    return { manifest: sidecar, plans, sourceId: sidecar?.id ?? `sqlite-file:${ctx.file}`, dumpObjects: [] };
  } finally {
    ro.close();
  }
}

const BACKEND_NAME = { sqlite: 'SQLite', postgres: 'PostgreSQL', mysql: 'MySQL/MariaDB' } as const;

/** A pg_dump / mysqldump backup: the target's backend, the tool, the manifest and the file. */
async function checkNative(
  ctx: CheckCtx,
  kind: 'pg_dump' | 'mysqldump',
  sidecar: Manifest | null,
  opts: CheckOptions,
): Promise<Omit<CheckedBackup, 'file' | 'kind' | 'migrations' | 'notes'>> {
  const want = kind === 'pg_dump' ? 'postgres' : 'mysql';
  const t = opts.target;
  if (t.backend !== want) {
    const is = t.backend === 'sqlite' && t.memory ? 'an in-memory database' : `a ${BACKEND_NAME[t.backend]} database`;
    throw new ConfigError(
      `${ctx.file} is a ${kind} backup: it restores only into ${BACKEND_NAME[want]}, and ${describeTarget(t)} is ${is}; to move between backends back up with --format logical, or use coffer copy`,
      { field: 'to' },
    );
  }
  requireTool(kind === 'pg_dump' ? 'pg_restore' : 'mysql', 'restore from a --format logical backup');
  if (!sidecar) {
    if (ctx.verify) {
      throw new ConfigError(
        `${manifestPath(ctx.file)} is missing: a ${kind} restore needs it (to check the file, the target and the migration history); put it beside the backup`,
        { path: manifestPath(ctx.file) },
      );
    }
    throw new ConfigError(
      `${manifestPath(ctx.file)} is missing: a native restore needs it to check the target and the migration history`,
      {},
    );
  }
  const { plans } = plansFromManifest(sidecar, opts.migrations, ctx.file);
  await checkFileAgainstManifest(ctx, sidecar, kind);
  return { manifest: sidecar, plans, sourceId: sidecar.id, dumpObjects: await objectsInDump(kind, ctx.file, ctx.signal) };
}

/**
 * Everything a restore checks before it opens (and so perhaps creates) its target: the file
 * and its kind, its manifest, its migration history against this build's migrations, a native
 * backup's backend and tool, a native or SQLite file against its manifest's size and SHA-256,
 * and a logical backup read through once (sections in its header's order, checksums, manifest).
 * Throws what is wrong; nothing is written anywhere.
 */
export async function checkBackup(file: string, opts: CheckOptions): Promise<CheckedBackup> {
  const { kind, sidecar } = inspectBackup(file);
  const ctx: CheckCtx = {
    file,
    verify: opts.verify !== false,
    progress: opts.progress ?? new SilentProgress(),
    notes: [],
    signal: opts.signal,
  };
  const interrupted = () => new InterruptedError(`restore interrupted while checking ${file}: nothing was written to the target`);
  let r: Awaited<ReturnType<typeof checkLogical>>;
  try {
    r =
      kind === 'logical'
        ? await checkLogical(ctx, sidecar, opts)
        : kind === 'sqlite'
          ? await checkSqliteFile(ctx, sidecar, opts)
          : await checkNative(ctx, kind, sidecar, opts);
  } catch (e) {
    // Ctrl-C cuts a read or a tool short: what that makes of the file (a digest of part of it,
    // a killed pg_restore --list) is no finding about the backup.
    if (opts.signal?.aborted) throw interrupted();
    throw e;
  }
  if (opts.signal?.aborted) throw interrupted();
  return { file, kind, migrations: opts.migrations, notes: ctx.notes, ...r };
}

interface Ctx {
  file: string;
  checked: CheckedBackup;
  target: Coffer;
  dst: OpsDb;
  /** The run's options, with a signal that also stops it when `lock` is lost (runSignal). */
  opts: RestoreOptions;
  /** The target's lock: confirmed before verifying and before marking the target complete. */
  lock: TargetLock;
  progress: Progress;
  batchSize: number;
  notes: string[];
  /** Set once this restore marked the target (created or resumed its marker). */
  marked: boolean;
}

const interruptedMsg = (ctx: Ctx) => (n: number) =>
  `restore stopped after ${n} more rows: ${ctx.dst.describe} is marked incomplete (table coffer_ops_progress); run the same coffer restore again to resume, or add --discard to throw it away`;

/** Compares the target with the manifest; on a mismatch names the first differing row when `reference` can be read. */
async function verifyAgainst(
  ctx: Ctx,
  plans: TablePlan[],
  expected: Map<string, TableSum>,
  reference: (() => Promise<{ source: RowSource; close(): void }>) | null,
): Promise<Map<string, TableSum>> {
  const total = [...expected.values()].reduce((n, t) => n + t.rows, 0);
  // Rows another run wrote meanwhile would be taken for differences of this restore (or pass).
  await ctx.lock.assertHeld();
  ctx.progress.phase('verify', total);
  const actual = await digestTables(ctx.dst, plans, { batchSize: ctx.batchSize, progress: ctx.progress, signal: ctx.opts.signal }).catch(
    (e: unknown) => {
      if (e instanceof InterruptedError) {
        throw new InterruptedError(
          `restore interrupted while verifying: ${ctx.dst.describe} stays marked incomplete until verified; run the same coffer restore again`,
        );
      }
      throw e;
    },
  );
  ctx.progress.done();
  const bad = compareSums(expected, actual, 'the backup', 'the restored database');
  if (!bad.length) return actual;
  const problems: string[] = [];
  for (const x of bad) {
    if (!reference) {
      problems.push(x.message);
      continue;
    }
    const plan = plans.find((p) => p.table.name === x.table)!;
    try {
      // A fresh reference per table: the search stops part way through a table, and a logical
      // backup is read front to back, so a shared reader would be left inside the last table.
      const ref = await reference();
      try {
        const first = await withSnapshot(ctx.dst, (conn) =>
          firstDifference(ref.source, ctx.dst, conn, plan, {
            batchSize: ctx.batchSize,
            referenceName: 'the backup',
            targetName: 'the restored database',
          }),
        );
        problems.push(first ? `${x.message}; first difference: ${first}` : x.message);
      } finally {
        ref.close();
      }
    } catch (e) {
      // The tables were found to differ: a failed search for the row must not hide that, nor
      // leave the marker saying the restore is still running.
      problems.push(`${x.message} (the first differing row could not be found: ${(e as Error).message})`);
    }
  }
  await ctx.lock.assertHeld();
  await setMarkerState(ctx.dst.writer, ctx.dst.dialect, 'failed', { problems });
  // What the failure leaves behind is added by the caller (failedRestore, restoreInto).
  throw new VerificationError(`restore verification failed: ${problems.join('; ')}`, problems);
}

function sumsOf(manifest: Pick<Manifest, 'tables'>): Map<string, TableSum> {
  return new Map(manifest.tables.map((t) => [t.name, { rows: t.rows, checksum: t.checksum }]));
}

async function fixSerials(ctx: Ctx, plans: TablePlan[], next: (table: string) => Promise<bigint | null> | bigint | null): Promise<void> {
  for (const p of plans) {
    if (!serialColumn(p.table)) continue;
    const n = await next(p.table.name);
    if (n !== null) await setSerialNext(ctx.dst.writer, ctx.dst.dialect, p.table, n);
  }
}

/** Checks the target (empty, or this restore to resume) and marks it incomplete. */
async function markTarget(ctx: Ctx): Promise<Marker | null> {
  const marker = await prepareTarget(ctx.target, {
    info: {
      operation: 'restore',
      source: ctx.file,
      sourceId: ctx.checked.sourceId,
      startedAt: new Date().toISOString(),
      kind: ctx.checked.kind,
    },
    discard: ctx.opts.discard,
    force: ctx.opts.force,
    progress: ctx.progress,
    command: 'restore',
  });
  ctx.marked = true;
  return marker;
}

type Restored = Omit<RestoreReport, 'notes' | 'elapsedMs' | 'file' | 'target' | 'kind'>;

async function restoreLogical(ctx: Ctx): Promise<Restored> {
  const { plans } = ctx.checked;
  const marker = await markTarget(ctx);
  await ctx.target.migrator.apply();
  await clearSeedRows(ctx.dst, plans, marker);
  ctx.progress.phase(
    'restore',
    ctx.checked.manifest!.tables.reduce((n, t) => n + t.rows, 0),
  );
  const reader = await LogicalReader.open(ctx.file);
  let rows: number;
  let manifest: Manifest;
  try {
    if (reader.header.id !== ctx.checked.sourceId)
      throw new ConfigError(`${ctx.file} was replaced while it was being restored (its id is now ${reader.header.id})`, { path: ctx.file });
    // The file was read through before (checkBackup); each section is checked again as it loads.
    const source = new LogicalSource(reader);
    const r = await loadInto(ctx.dst, plans, source, marker, {
      batchSize: ctx.batchSize,
      signal: ctx.opts.signal,
      progress: ctx.progress,
      throttleMs: ctx.opts.throttleMs,
      interrupted: interruptedMsg(ctx),
    });
    rows = r.rows;
    manifest = validateManifest(await source.finish(), ctx.file);
    ctx.progress.done();
  } finally {
    reader.close();
  }
  const byName = new Map(manifest.tables.map((t) => [t.name, t]));
  await fixSerials(ctx, plans, (t) => (byName.get(t)?.serialNext ? BigInt(byName.get(t)!.serialNext!) : null));
  await analyzeTables(
    ctx.dst,
    plans.map((p) => p.table.name),
  );
  let verified = false;
  if (ctx.opts.verify !== false) {
    await verifyAgainst(ctx, plans, sumsOf(manifest), async () => {
      const src = new LogicalSource(await LogicalReader.open(ctx.file));
      return { source: src, close: () => src.close() };
    });
    verified = true;
  }
  await markComplete(ctx.dst, ctx.lock);
  return {
    resumed: marker !== null,
    rowsRestored: rows,
    tables: manifest.tables.map((t) => ({ table: t.name, rows: t.rows, checksum: t.checksum })),
    verified,
    verifiedAgainst: verified ? 'manifest' : null,
  };
}

async function restoreSqliteFile(ctx: Ctx): Promise<Restored> {
  const { plans, manifest } = ctx.checked;
  const ro = openSqliteFileReadOnly(ctx.file);
  try {
    const marker = await markTarget(ctx);
    await ctx.target.migrator.apply();
    await clearSeedRows(ctx.dst, plans, marker);
    ctx.progress.phase('restore', manifest ? manifest.tables.reduce((n, t) => n + t.rows, 0) : null);
    const r = await withSnapshot(ro, (conn) =>
      loadInto(ctx.dst, plans, dbRowSource(ro, conn), marker, {
        batchSize: ctx.batchSize,
        signal: ctx.opts.signal,
        progress: ctx.progress,
        throttleMs: ctx.opts.throttleMs,
        interrupted: interruptedMsg(ctx),
      }),
    );
    ctx.progress.done();
    const byName = new Map((manifest?.tables ?? []).map((t) => [t.name, t]));
    await fixSerials(ctx, plans, async (t) => {
      const m = byName.get(t)?.serialNext;
      return m ? BigInt(m) : serialNext(ro.reader, 'sqlite', plans.find((p) => p.table.name === t)!.table);
    });
    let verified = false;
    let sums: Map<string, TableSum> | null = manifest ? sumsOf(manifest) : null;
    if (ctx.opts.verify !== false) {
      // Without a manifest the backup file itself is the reference.
      sums ??= await digestTables(ro, plans, { batchSize: ctx.batchSize });
      // The backup file does not change: it is read directly, without a snapshot.
      sums = await verifyAgainst(ctx, plans, sums, async () => ({ source: dbRowSource(ro, ro.reader), close: () => {} }));
      verified = true;
    }
    await markComplete(ctx.dst, ctx.lock);
    return {
      resumed: marker !== null,
      rowsRestored: r.rows,
      verifiedAgainst: verified ? (manifest ? 'manifest' : 'backup file') : null,
      tables: plans.map((p) => ({
        table: p.table.name,
        rows: sums?.get(p.table.name)?.rows ?? 0,
        checksum: sums?.get(p.table.name)?.checksum ?? '',
      })),
      verified,
    };
  } finally {
    ro.close();
  }
}

/**
 * An object a native dump creates (or, pg_restore --clean and mysqldump's DROP … IF EXISTS,
 * drops first). `schema` is null on MySQL (the dump names no database) and for a PostgreSQL
 * schema itself; `table` is the table an attached object (constraint, trigger, …) is on.
 */
export interface DumpObject {
  kind: string;
  schema: string | null;
  name: string;
  table?: string;
}

/** pg_restore --list entry kinds (longest first, so "TABLE DATA" is not read as "TABLE"). */
const PG_KINDS = [
  'MATERIALIZED VIEW DATA',
  'PUBLICATION TABLES IN SCHEMA',
  'SEQUENCE OWNED BY',
  'MATERIALIZED VIEW',
  'PUBLICATION TABLE',
  'CHECK CONSTRAINT',
  'FOREIGN TABLE',
  'EVENT TRIGGER',
  'FK CONSTRAINT',
  'ROW SECURITY',
  'SEQUENCE SET',
  'INDEX ATTACH',
  'TABLE ATTACH',
  'DEFAULT ACL',
  'SHELL TYPE',
  'TABLE DATA',
  'CONSTRAINT',
  'EXTENSION',
  'PROCEDURE',
  'AGGREGATE',
  'FUNCTION',
  'SEQUENCE',
  'TRIGGER',
  'DEFAULT',
  'COMMENT',
  'DOMAIN',
  'POLICY',
  'SCHEMA',
  'INDEX',
  'TABLE',
  'VIEW',
  'TYPE',
  'RULE',
  'ACL',
];

/** Kinds that name a relation (pg_class): tables, views, sequences, indexes. */
const PG_RELATION_KINDS = new Set(['TABLE', 'VIEW', 'MATERIALIZED VIEW', 'SEQUENCE', 'INDEX', 'FOREIGN TABLE']);
/** Kinds attached to a table, whose tag is "TABLE NAME": they alter that table. */
const PG_ATTACHED_KINDS = new Set([
  'CONSTRAINT',
  'FK CONSTRAINT',
  'CHECK CONSTRAINT',
  'TRIGGER',
  'RULE',
  'POLICY',
  'DEFAULT',
  'ROW SECURITY',
]);

/** One pg_restore --list line ("ID; TABLEOID OID KIND SCHEMA TAG OWNER"), or null for a comment. */
function pgListEntry(line: string): DumpObject | null {
  const m = /^\d+; \d+ \d+ (.+)$/.exec(line);
  if (!m) return null;
  const rest = m[1]!;
  const kind = PG_KINDS.find((k) => rest.startsWith(`${k} `));
  if (!kind) return null;
  const words = rest.slice(kind.length + 1).split(' ');
  const schema = words[0]!;
  // The owner is the last word (pg_dump records it even with --no-owner); the tag may hold spaces.
  const tag = (words.length > 2 ? words.slice(1, -1) : words.slice(1)).join(' ');
  if (kind === 'SCHEMA') return { kind, schema: null, name: tag };
  if (PG_ATTACHED_KINDS.has(kind)) {
    const sp = tag.indexOf(' ');
    return { kind, schema: schema === '-' ? null : schema, name: tag, table: sp > 0 ? tag.slice(0, sp) : tag };
  }
  return { kind, schema: schema === '-' ? null : schema, name: tag };
}

const MY_Q = '`((?:[^`]|``)+)`';
const MY_VIEW_HEADER = new RegExp(`^-- (?:Temporary (?:table|view) structure|Final view structure) for view ${MY_Q}`);
const MY_DROP = new RegExp(`^(?:/\\*!\\d+ )?DROP (TABLE|VIEW|PROCEDURE|FUNCTION|EVENT|TRIGGER) IF EXISTS ${MY_Q}`);
const MY_CREATE_TABLE = new RegExp(`^(?:/\\*!\\d+ )?CREATE TABLE ${MY_Q}`);
const MY_TRIGGER = new RegExp(`/\\*!\\d+ TRIGGER ${MY_Q} \\w+ \\w+ ON ${MY_Q}`);
const MY_ROUTINE = new RegExp(`^CREATE\\b.*?\\b(PROCEDURE|FUNCTION|EVENT) ${MY_Q}`);

/** The objects a mysqldump file creates or drops: tables, views, triggers, routines, events. */
function mysqlDumpObject(line: string, out: Map<string, DumpObject>): void {
  if (line.startsWith('INSERT INTO ')) return;
  const name = (s: string) => s.replace(/``/g, '`');
  const add = (kind: string, n: string, table?: string) => {
    const key = `${kind === 'view' ? 'table' : kind}:${n}`;
    const had = out.get(key);
    // A view is dumped first as a stand-in table, then as the view: it is a view.
    if (!had || (kind === 'view' && had.kind === 'table')) out.set(key, { kind, schema: null, name: n, ...(table ? { table } : {}) });
  };
  let m = MY_VIEW_HEADER.exec(line);
  if (m) return add('view', name(m[1]!));
  m = MY_DROP.exec(line);
  if (m) return add(m[1]!.toLowerCase(), name(m[2]!));
  m = MY_CREATE_TABLE.exec(line);
  if (m) return add('table', name(m[1]!));
  m = MY_TRIGGER.exec(line);
  if (m) return add('trigger', name(m[1]!), name(m[2]!));
  m = MY_ROUTINE.exec(line);
  if (m) return add(m[1]!.toLowerCase(), name(m[2]!));
}

/** The objects a native dump creates or drops (pg_restore --list, or the mysqldump statements). */
async function objectsInDump(kind: 'pg_dump' | 'mysqldump', file: string, signal?: AbortSignal): Promise<DumpObject[]> {
  const stopped = () => `interrupted while listing the objects of ${file}`;
  throwIfAborted(signal, stopped);
  if (kind === 'pg_dump') {
    const tool = requireTool('pg_restore', 'restore from a --format logical backup');
    const run = runTool(tool, 'pg_restore', ['--list', file], {}, { stdout: 'pipe' });
    const onAbort = () => run.kill();
    signal?.addEventListener('abort', onAbort);
    let out = '';
    run.child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    try {
      await run.done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    throwIfAborted(signal, stopped);
    return out
      .split('\n')
      .map(pgListEntry)
      .filter((x): x is DumpObject => x !== null);
  }
  const found = new Map<string, DumpObject>();
  const input = createReadStream(file);
  const lines = createInterface({ input: input.pipe(createGunzip()), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      throwIfAborted(signal, stopped);
      mysqlDumpObject(line, found);
    }
  } finally {
    input.destroy();
  }
  return [...found.values()];
}

const SYSTEM_SCHEMAS = sql`n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'`;

/**
 * The objects of the dump that already exist in the target and are not Coffer's, as
 * "KIND NAME" (schema-qualified outside the target's current schema). Coffer's own objects are
 * its tables (and the marker) in the target's current schema with their indexes, sequences,
 * constraints and triggers, and (PostgreSQL) the coffer_* functions its migrations create.
 */
async function foreignObjectsInTheWay(db: OpsDb, objects: readonly DumpObject[], cofferTables: ReadonlySet<string>): Promise<string[]> {
  const w = db.writer;
  const out: string[] = [];
  if (db.dialect === 'postgres') {
    const cur = String((await sql<{ s: string }>`select current_schema() as s`.execute(w)).rows[0]!.s);
    const key = (schema: string | null, name: string) => `${schema ?? ''}\u0000${name}`;
    const rels = new Map<string, { kind: string; ownerSchema: string | null; ownerTable: string | null }>();
    for (const r of (
      await sql<{ s: string; r: string; k: string; os: string | null; ot: string | null }>`
        select n.nspname as s, c.relname as r, c.relkind as k,
               coalesce(tin.nspname, tdn.nspname) as os, coalesce(ti.relname, td.relname) as ot
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        left join pg_index i on i.indexrelid = c.oid
        left join pg_class ti on ti.oid = i.indrelid
        left join pg_namespace tin on tin.oid = ti.relnamespace
        left join pg_depend d on c.relkind = 'S' and d.classid = 'pg_class'::regclass and d.objid = c.oid
          and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
        left join pg_class td on td.oid = d.refobjid
        left join pg_namespace tdn on tdn.oid = td.relnamespace
        where ${SYSTEM_SCHEMAS}`.execute(w)
    ).rows)
      rels.set(key(r.s, r.r), { kind: r.k, ownerSchema: r.os, ownerTable: r.ot });
    const names = async (q: ReturnType<typeof sql<{ s: string | null; r: string }>>) =>
      new Set((await q.execute(w)).rows.map((r) => key(r.s, r.r)));
    const procs = await names(
      sql`select n.nspname as s, p.proname as r from pg_proc p join pg_namespace n on n.oid = p.pronamespace where ${SYSTEM_SCHEMAS}`,
    );
    const types = await names(
      sql`select n.nspname as s, t.typname as r from pg_type t join pg_namespace n on n.oid = t.typnamespace where ${SYSTEM_SCHEMAS}`,
    );
    const schemas = await names(sql`select null as s, n.nspname as r from pg_namespace n where ${SYSTEM_SCHEMAS}`);
    const extensions = await names(sql`select null as s, extname as r from pg_extension`);
    const isCofferTable = (schema: string | null, name: string | null) => schema === cur && name !== null && cofferTables.has(name);
    const inDump = new Set(objects.filter((o) => PG_RELATION_KINDS.has(o.kind)).map((o) => key(o.schema, o.name)));
    const label = (o: DumpObject, name = o.name) => `${o.kind.toLowerCase()} ${o.schema && o.schema !== cur ? `${o.schema}.` : ''}${name}`;
    for (const o of objects) {
      if (o.kind === 'SCHEMA') {
        if (o.name !== cur && schemas.has(key(null, o.name))) out.push(`schema ${o.name}`);
      } else if (PG_RELATION_KINDS.has(o.kind)) {
        const r = rels.get(key(o.schema, o.name));
        if (r && !(isCofferTable(o.schema, o.name) && 'rp'.includes(r.kind)) && !isCofferTable(r.ownerSchema, r.ownerTable))
          out.push(label(o));
      } else if (PG_ATTACHED_KINDS.has(o.kind)) {
        // On a table the dump itself creates, that table's own entry decides.
        if (o.table && !inDump.has(key(o.schema, o.table)) && rels.has(key(o.schema, o.table)) && !isCofferTable(o.schema, o.table))
          out.push(label(o, o.name.replace(' ', '.')));
      } else if (o.kind === 'FUNCTION' || o.kind === 'PROCEDURE' || o.kind === 'AGGREGATE') {
        const proname = o.name.replace(/\(.*$/, '');
        if (procs.has(key(o.schema, proname)) && !(o.schema === cur && proname.startsWith('coffer_'))) out.push(label(o));
      } else if (o.kind === 'TYPE' || o.kind === 'DOMAIN' || o.kind === 'SHELL TYPE') {
        if (types.has(key(o.schema, o.name)) && !isCofferTable(o.schema, o.name)) out.push(label(o));
      } else if (o.kind === 'EXTENSION') {
        // plpgsql is in every database (older pg_dump versions list it).
        if (o.name !== 'plpgsql' && extensions.has(key(null, o.name))) out.push(`extension ${o.name}`);
      }
    }
    return out;
  }
  if (db.dialect !== 'mysql') return out;
  const tables = new Map(
    (
      await sql<{
        n: string;
        t: string;
      }>`select table_name as n, table_type as t from information_schema.tables where table_schema = database()`.execute(w)
    ).rows.map((r) => [String(r.n), String(r.t)]),
  );
  const routines = new Set(
    (
      await sql<{
        n: string;
        t: string;
      }>`select routine_name as n, routine_type as t from information_schema.routines where routine_schema = database()`.execute(w)
    ).rows.map((r) => `${String(r.t).toLowerCase()}:${String(r.n)}`),
  );
  const triggers = new Map(
    (
      await sql<{
        n: string;
        t: string;
      }>`select trigger_name as n, event_object_table as t from information_schema.triggers where trigger_schema = database()`.execute(w)
    ).rows.map((r) => [String(r.n), String(r.t)]),
  );
  const events = new Set(
    (await sql<{ n: string }>`select event_name as n from information_schema.events where event_schema = database()`.execute(w)).rows.map(
      (r) => String(r.n),
    ),
  );
  for (const o of objects) {
    if (o.kind === 'table' || o.kind === 'view') {
      // Tables and views share one namespace: what is lost is what the target has.
      const t = tables.get(o.name);
      if (t !== undefined && !(t === 'BASE TABLE' && cofferTables.has(o.name))) out.push(`${t === 'VIEW' ? 'view' : 'table'} ${o.name}`);
    } else if (o.kind === 'procedure' || o.kind === 'function') {
      if (routines.has(`${o.kind}:${o.name}`)) out.push(`${o.kind} ${o.name}`);
    } else if (o.kind === 'trigger') {
      const on = triggers.get(o.name);
      if (on !== undefined && !cofferTables.has(on)) out.push(`trigger ${o.name}`);
    } else if (o.kind === 'event') {
      if (events.has(o.name)) out.push(`event ${o.name}`);
    }
  }
  return out;
}

/**
 * Target checks for a native restore: a history this build knows, empty (or forced), no object
 * of another application in the way; then marked.
 */
async function prepareNative(ctx: Ctx, manifest: Manifest, operationKind: 'pg_dump' | 'mysqldump'): Promise<void> {
  const db = ctx.dst;
  // As the logical path (prepareTarget): a target whose history this build cannot apply on top
  // of (a newer Coffer's migrations, an edited one) is refused before anything is read or dropped.
  await ctx.target.migrator.verify();
  const marker: Marker | null = await readMarker(db.writer, db.dialect);
  let busy: { table: string; rows: bigint }[] = [];
  if (marker) {
    const same = marker.info.operation === 'restore-native' && marker.info.sourceId === manifest.id;
    if (!ctx.opts.discard && !same) {
      throw new ConfigError(`target ${db.describe} holds ${describeMarker(marker)}: add --discard to throw it away`, { field: 'to' });
    }
  } else {
    busy = await nonEmptyTables(db, ctx.target.schema, ctx.target.migrator.migrations);
    if (busy.length && !ctx.opts.force) {
      throw new ConfigError(
        `target ${db.describe} is not empty (${busy
          .slice(0, 3)
          .map((b) => `${b.table}: ${b.rows} rows`)
          .join(', ')}): restore needs an empty database; add --force to replace its Coffer tables`,
        { field: 'to' },
      );
    }
  }
  // The dump replaces every object it contains (pg_restore --clean drops each first, in any
  // schema; mysqldump writes DROP TABLE / DROP VIEW / DROP PROCEDURE … IF EXISTS): an object of
  // another application with the same name must never be dropped, replaced or altered. A run
  // that starts over the same restore checked this when it began (what it left is the dump's).
  const sameRun = marker !== null && marker.info.operation === 'restore-native' && marker.info.sourceId === manifest.id;
  if (!sameRun) {
    const coffer = new Set([...ctx.target.schema.tables.keys(), MARKER_TABLE]);
    const clash = await foreignObjectsInTheWay(db, ctx.checked.dumpObjects, coffer);
    if (clash.length) {
      const tablesOnly = clash.every((c) => c.startsWith('table '));
      const shown = clash.slice(0, 5).map((c) => (tablesOnly ? c.slice('table '.length) : c));
      const list = `${shown.join(', ')}${clash.length > 5 ? ` and ${clash.length - 5} more` : ''}`;
      throw new ConfigError(
        `target ${db.describe} has ${tablesOnly ? `table(s) ${list}` : `${clash.length} object(s) of another application (${list})`} that the backup would replace: restore into another database`,
        { field: 'to' },
      );
    }
  }
  // Coffer's own tables go first: empty ones (a freshly migrated database) would collide with
  // the dump's, and an interrupted native restore cannot resume, only start over.
  const dropped = await dropCofferTables(db, ctx.target.schema);
  if (marker) {
    const same = marker.info.operation === 'restore-native' && marker.info.sourceId === manifest.id;
    ctx.progress.note(
      same && !ctx.opts.discard
        ? `starting the ${marker.state === 'failed' ? 'failed' : 'interrupted'} restore from ${ctx.file} over (a native restore cannot resume)`
        : `discarded ${describeMarker(marker)}`,
    );
  } else if (dropped.length) {
    ctx.progress.note(
      `${busy.length ? '--force: ' : ''}dropped ${dropped.length} ${busy.length ? '' : 'empty '}Coffer table(s) so the ${operationKind} can create them`,
    );
  }
  await createMarker(db, {
    operation: 'restore-native',
    source: ctx.file,
    sourceId: manifest.id,
    startedAt: new Date().toISOString(),
    kind: operationKind,
  });
  ctx.marked = true;
}

async function restoreNative(ctx: Ctx, kind: 'pg_dump' | 'mysqldump'): Promise<Restored> {
  const { plans } = ctx.checked;
  const manifest = ctx.checked.manifest!;
  const tool = requireTool(kind === 'pg_dump' ? 'pg_restore' : 'mysql', 'restore from a --format logical backup');
  await prepareNative(ctx, manifest, kind);
  const t = serverTarget(ctx.target.target);
  // pg_restore and mysql report no progress of their own; the bar shows time, then the rows.
  ctx.progress.phase('restore', null);
  let run;
  let feeding: Promise<void> = Promise.resolve();
  let cleanup = () => {};
  if (kind === 'pg_dump') {
    // --clean --if-exists: objects outside tables that migrations created (trigger functions)
    // may already exist in a freshly migrated database; the dump brings its own.
    run = runTool(
      tool,
      'pg_restore',
      [
        '--single-transaction',
        '--exit-on-error',
        '--no-owner',
        '--no-privileges',
        '--clean',
        '--if-exists',
        `--dbname=${t.database}`,
        ctx.file,
      ],
      pgEnv(t),
    );
  } else {
    const opt = await mysqlOptionFile(tool, t);
    cleanup = opt.cleanup;
    run = runTool(
      tool,
      'mysql',
      [`--defaults-extra-file=${opt.path}`, '--default-character-set=utf8mb4', '--binary-mode', t.database],
      {},
      { stdin: 'pipe', cleanup: opt.cleanup },
    );
    feeding = pipeline(createReadStream(ctx.file), createGunzip(), run.child.stdin!).catch((e: unknown) => {
      throw fileError(e, 'cannot read backup', ctx.file);
    });
  }
  const r = run;
  const onAbort = () => r.kill();
  ctx.opts.signal?.addEventListener('abort', onAbort);
  try {
    await Promise.all([r.done, feeding]);
  } catch (e) {
    r.kill();
    await Promise.allSettled([r.done, feeding]);
    if (ctx.opts.signal?.aborted) {
      throw new InterruptedError(
        `restore interrupted: ${ctx.dst.describe} is marked incomplete (table coffer_ops_progress)${kind === 'pg_dump' ? ' and holds none of the backup (pg_restore rolled back)' : ''}; run the same coffer restore again to start over, or add --discard`,
      );
    }
    throw e;
  } finally {
    cleanup();
    ctx.opts.signal?.removeEventListener('abort', onAbort);
  }
  ctx.progress.add(
    manifest.tables.reduce((n, x) => n + x.rows, 0),
    manifest.file?.bytes ?? 0,
  );
  ctx.progress.done();
  await analyzeTables(
    ctx.dst,
    plans.map((p) => p.table.name),
  );
  let verified = false;
  if (ctx.opts.verify !== false) {
    await verifyAgainst(ctx, plans, sumsOf(manifest), null);
    verified = true;
  }
  await markComplete(ctx.dst, ctx.lock);
  const live = await liveSchema(ctx.target);
  if (live.pending.length)
    ctx.notes.push(
      `${live.pending.length} migration(s) of this build are not in the backup (${live.pending.join(', ')}): the service applies them on start, or run coffer migrate`,
    );
  return {
    resumed: false,
    rowsRestored: manifest.tables.reduce((n, x) => n + x.rows, 0),
    tables: manifest.tables.map((x) => ({ table: x.name, rows: x.rows, checksum: x.checksum })),
    verified,
    verifiedAgainst: verified ? 'manifest' : null,
  };
}

/**
 * Reads what a restore needs to know about a backup before any target is touched: its kind and
 * its sidecar manifest (null when there is none). Throws a ConfigError for a missing or
 * unreadable file, one that is not a Coffer backup, or a manifest of another kind.
 */
export function inspectBackup(file: string, kind = detectBackupKind(file)): { kind: BackupKind; sidecar: Manifest | null } {
  const sidecar = readManifestFile(file);
  if (sidecar && sidecar.kind !== kind)
    throw new ConfigError(`${manifestPath(file)} describes a ${sidecar.kind} backup but ${file} is a ${kind} backup`, {});
  return { kind, sidecar };
}

/**
 * A restore into a target that existed before it failed after marking it: left marked failed,
 * saying why (aftermath.ts); the error says so.
 */
function failedRestore(ctx: Ctx, e: unknown): Promise<unknown> {
  const kind = ctx.checked.kind;
  // A native restore does not resume: run again, it drops what the last run left and starts over.
  const native = {
    again: 'start it over (a native restore cannot resume)',
    discard: 'restore another backup into it instead',
  };
  return leftMarkedFailed(
    ctx.dst,
    e,
    e instanceof VerificationError,
    kind === 'pg_dump'
      ? { operation: 'restore', lock: ctx.lock, ...native, holds: 'it holds none of the backup (pg_restore rolled back)' }
      : kind === 'mysqldump'
        ? {
            operation: 'restore',
            lock: ctx.lock,
            ...native,
            holds: 'it may hold part of the backup (the mysql client stops at the failing statement)',
          }
        : { operation: 'restore', lock: ctx.lock, again: 'resume it' },
  );
}

/**
 * `created`: the target did not exist before this restore, whose caller removes it on failure.
 * The restore stops when `lock` is lost (aftermath.ts).
 */
async function runRestore(
  file: string,
  target: Coffer,
  opts: RestoreOptions,
  checked: CheckedBackup,
  created: boolean,
  lock: TargetLock,
  ctxOut: { ctx?: Ctx },
): Promise<RestoreReport> {
  const started = Date.now();
  if (checked.file !== file || checked.migrations !== target.migrator.migrations)
    throw new Error(`internal: ${file} was checked for another restore (another file or another build's migrations)`);
  const ctx: Ctx = {
    file,
    checked,
    target,
    dst: opsDb(target),
    opts: { ...opts, signal: runSignal(lock, opts.signal) },
    lock,
    progress: opts.progress ?? new SilentProgress(),
    batchSize: opts.batchSize ?? 1000,
    notes: [...checked.notes],
    marked: false,
  };
  ctxOut.ctx = ctx;
  let r: Restored;
  try {
    if (checked.kind === 'logical') r = await restoreLogical(ctx);
    else if (checked.kind === 'sqlite') r = await restoreSqliteFile(ctx);
    else r = await restoreNative(ctx, checked.kind);
  } catch (e) {
    // An interrupted restore stays marked running (it resumes); one that did not get as far as
    // marking the target changed nothing; a created target is removed by restoreInto. An error
    // is never turned into an interruption: after the check, nothing fails because of Ctrl-C
    // (the load stops between batches), so an error that comes with one is still the error.
    if (e instanceof InterruptedError || !ctx.marked || created) throw e;
    throw await failedRestore(ctx, e);
  }
  return { file, target: ctx.dst.describe, kind: checked.kind, ...r, notes: ctx.notes, elapsedMs: Date.now() - started };
}

/**
 * Restores `file` into an open database, which existed before: a failure after the target was
 * marked leaves it marked failed (an interruption: marked incomplete, to resume). Every check
 * that needs no target runs first (checkBackup), so a bad backup leaves the target untouched.
 */
export async function restoreDatabase(file: string, target: Coffer, opts: RestoreOptions = {}): Promise<RestoreReport> {
  const checked = await checkBackup(file, {
    migrations: target.migrator.migrations,
    target: target.target,
    verify: opts.verify,
    progress: opts.progress,
    signal: opts.signal,
  });
  const out: { ctx?: Ctx } = {};
  return onTarget(
    target,
    'restore',
    (lock) => runRestore(file, target, opts, checked, false, lock, out),
    () => out.ctx?.marked === true,
  );
}

export interface RestoreTarget extends TargetToOpen {
  /** The migrations it is opened with (default: this build's). */
  migrations?: readonly Migration[];
}

/**
 * `coffer restore`: checks the backup (checkBackup) before opening the target, since opening a
 * SQLite path creates the database. If the restore then fails, a SQLite file it created is
 * removed with its -wal/-shm (an interrupted one is kept, marked incomplete, to resume); a
 * target that existed before is left marked failed (restoreDatabase).
 */
export async function restoreInto(file: string, to: RestoreTarget, opts: RestoreOptions = {}): Promise<RestoreReport> {
  const t = parseDatabaseUrl(to.url);
  const checked = await checkBackup(file, {
    migrations: to.migrations ?? MIGRATIONS,
    target: t,
    verify: opts.verify,
    progress: opts.progress,
    signal: opts.signal,
  });
  const out: { ctx?: Ctx } = {};
  return intoTarget(
    to,
    'restore',
    (target, created, lock) => runRestore(file, target, opts, checked, created, lock, out),
    () => out.ctx?.marked === true,
  );
}
