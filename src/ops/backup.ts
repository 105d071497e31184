// `coffer backup --to FILE`: a consistent snapshot of a live database while the service writes.
//
//   SQLite file   the online backup API, from a connection holding one WAL read snapshot
//   PostgreSQL    pg_dump --snapshot=<exported snapshot> (custom format)
//   MySQL/MariaDB mysqldump --single-transaction, its snapshot lined up with the manifest's
//                 under a momentary FLUSH TABLES WITH READ LOCK
//   otherwise     Coffer's logical format (logical.ts), read in one snapshot transaction
//
// Every backup gets a manifest (FILE.manifest.json: tables, row counts, content checksums,
// computed in the very snapshot the backup holds) that restore verifies against. The backup is
// written to FILE.partial and renamed only when complete, so FILE never exists half-written.
import { closeSync, createWriteStream, existsSync, openSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import Database from 'better-sqlite3';
import { sql, type Kysely } from 'kysely';
import { ConfigError, MigrationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import {
  dataTables,
  estimateRows,
  liveSchema,
  openSqliteFileReadOnly,
  readBatches,
  readHistory,
  historyDifferences,
  serialNext,
  withSnapshot,
  type LiveSchema,
  type OpsDb,
  opsDb,
} from './db.js';
import { fileError, InterruptedError, throwIfAborted } from './errors.js';
import { LOGICAL_FORMAT, LogicalWriter, type LogicalHeader } from './logical.js';
import {
  COFFER_VERSION,
  fileDigest,
  manifestPath,
  newBackupId,
  sqliteHeaderFree,
  type BackupKind,
  type Manifest,
  type ManifestTable,
} from './manifest.js';
import { describeMarker, readMarker } from './marker.js';
import { clientFlavour, mysqlOptionFile, pgEnv, requireTool, findTool, runTool, serverTarget } from './native-tools.js';
import { SilentProgress, type Progress } from './progress.js';
import { canonicalLine, TableDigest } from './rows.js';
import { digestWith, type TablePlan } from './transfer.js';

export type BackupFormat = 'auto' | 'native' | 'logical';

export interface BackupOptions {
  /** auto (default): native where possible, logical otherwise; native: fail rather than fall back. */
  format?: BackupFormat;
  batchSize?: number;
  signal?: AbortSignal;
  progress?: Progress;
  /** Back up even a database marked as an incomplete copy/restore target. */
  force?: boolean;
}

export interface BackupReport {
  file: string;
  manifestFile: string | null;
  kind: BackupKind;
  bytes: number;
  sha256: string | null;
  rows: number;
  tables: ManifestTable[];
  notes: string[];
  elapsedMs: number;
}

/** Native tooling is not usable here (missing tool or privilege); auto mode falls back. */
class NativeUnavailable extends Error {}

interface Ctx {
  coffer: Coffer;
  db: OpsDb;
  live: LiveSchema;
  plans: TablePlan[];
  batchSize: number;
  signal: AbortSignal | undefined;
  progress: Progress;
}

const interrupted = (file: string) =>
  `backup interrupted: nothing was written to ${file} (the partial file was removed); run the backup again`;

async function tableSums(conn: Kysely<any>, ctx: Ctx): Promise<ManifestTable[]> {
  const sums = await digestWith(conn, ctx.db.dialect, ctx.plans, { batchSize: ctx.batchSize, progress: ctx.progress, signal: ctx.signal });
  const out: ManifestTable[] = [];
  for (const p of ctx.plans) {
    const s = sums.get(p.table.name)!;
    const next = await serialNext(conn, ctx.db.dialect, p.table);
    out.push({
      name: p.table.name,
      columns: p.columns.map((c) => c.name),
      rows: s.rows,
      checksum: s.checksum,
      serialNext: next === null ? null : next.toString(),
    });
  }
  return out;
}

async function estimate(ctx: Ctx): Promise<number | null> {
  const m = await estimateRows(
    ctx.db.reader,
    ctx.db.dialect,
    ctx.plans.map((p) => p.table.name),
  ).catch(() => null);
  return m ? [...m.values()].reduce((a, b) => a + b, 0) : null;
}

// ---------------------------------------------------------------------------------------------

async function logicalBackup(ctx: Ctx, path: string, id: string): Promise<{ tables: ManifestTable[]; manifest: Manifest }> {
  const server = await ctx.coffer.engine.serverVersion();
  const header: LogicalHeader = {
    format: LOGICAL_FORMAT,
    version: 1,
    id,
    coffer: COFFER_VERSION,
    createdAt: new Date().toISOString(),
    source: { backend: ctx.db.label, server, describe: ctx.db.describe },
    migrations: ctx.live.applied,
    tables: ctx.plans.map((p) => ({ name: p.table.name, columns: p.columns.map((c) => ({ name: c.name, type: c.type })) })),
  };
  ctx.progress.phase('backup', await estimate(ctx));
  const writer = await LogicalWriter.open(path, false);
  try {
    const tables = await withSnapshot(ctx.db, async (conn) => {
      await writer.line(JSON.stringify(header));
      const out: ManifestTable[] = [];
      for (const p of ctx.plans) {
        await writer.line(JSON.stringify({ table: p.table.name, columns: p.columns.map((c) => c.name) }));
        const dg = new TableDigest();
        for await (const batch of readBatches(conn, ctx.db.dialect, p.table, p.columns, { batchSize: ctx.batchSize })) {
          throwIfAborted(ctx.signal, () => interrupted(path));
          const before = dg.bytes;
          for (const r of batch) {
            const line = canonicalLine(p.columns, r);
            dg.add(line);
            await writer.line(line);
          }
          ctx.progress.add(batch.length, dg.bytes - before, p.table.name);
        }
        const next = await serialNext(conn, ctx.db.dialect, p.table);
        const t: ManifestTable = {
          name: p.table.name,
          columns: p.columns.map((c) => c.name),
          rows: dg.rows,
          checksum: dg.checksum,
          serialNext: next === null ? null : next.toString(),
        };
        await writer.line(JSON.stringify({ end: t.name, rows: t.rows, checksum: t.checksum, serialNext: t.serialNext }));
        out.push(t);
      }
      return out;
    });
    const manifest: Manifest = {
      format: 'coffer-manifest',
      version: 1,
      id,
      kind: 'logical',
      coffer: COFFER_VERSION,
      createdAt: header.createdAt,
      source: header.source,
      migrations: ctx.live.applied,
      tables,
    };
    await writer.line(JSON.stringify({ manifest }));
    await writer.close();
    ctx.progress.done();
    return { tables, manifest };
  } catch (e) {
    writer.abort();
    throw e;
  }
}

async function sqliteBackup(ctx: Ctx, path: string): Promise<ManifestTable[]> {
  const t = ctx.coffer.target;
  if (t.backend !== 'sqlite' || t.memory) throw new NativeUnavailable('memory:// has no file to copy');
  let src: Database.Database;
  try {
    src = new Database(t.path, { readonly: true, fileMustExist: true, timeout: 5000 });
  } catch (e) {
    throw new ConfigError(`cannot open ${t.path} for backup: ${(e as Error).message}`, { path: t.path });
  }
  try {
    // Holding one read transaction pins the WAL snapshot: writers carry on, the copy does not
    // restart, and it shows the database as of this moment.
    src.exec('BEGIN');
    src.prepare('select count(*) from sqlite_schema').get();
    const pageSize = Number(src.pragma('page_size', { simple: true }));
    let started = false;
    let done = 0;
    await src
      .backup(path, {
        progress: ({ totalPages, remainingPages }) => {
          throwIfAborted(ctx.signal, () => interrupted(path));
          if (!started) {
            ctx.progress.phase('backup', totalPages, 'pages');
            started = true;
          }
          const now = totalPages - remainingPages;
          ctx.progress.add(now - done, (now - done) * pageSize);
          done = now;
          return 256;
        },
      })
      .then((r) => {
        // The last step is not reported to the callback.
        ctx.progress.add(r.totalPages - done, (r.totalPages - done) * pageSize);
        return r;
      });
    src.exec('COMMIT');
  } catch (e) {
    if (e instanceof InterruptedError) throw e;
    throw fileError(e, 'cannot write backup', path);
  } finally {
    src.close();
  }
  ctx.progress.done();
  // The copy becomes a self-contained file (rollback journal), checked before it is trusted.
  const b = new Database(path);
  try {
    b.pragma('journal_mode = DELETE');
    const qc = String(b.pragma('quick_check', { simple: true }));
    if (qc !== 'ok') throw new Error(`the copy failed its integrity check: ${qc}`);
  } finally {
    b.close();
  }
  const ro = openSqliteFileReadOnly(path);
  try {
    const history = await readHistory(ro.reader);
    const diff = historyDifferences(ctx.live.applied, history, 'the database', 'its backup');
    if (diff.length) throw new MigrationError(`the migration history changed during the backup (${diff.join('; ')}); run the backup again`);
    ctx.progress.phase('checksum', await estimate(ctx));
    const tables = await withSnapshot(ro, (conn) => tableSums(conn, ctx));
    ctx.progress.done();
    return tables;
  } finally {
    ro.close();
  }
}

/** Keeps reporting a file's growth while a tool writes it. */
function watchSize(path: string, progress: Progress): () => void {
  let last = 0;
  const poll = () => {
    try {
      const n = statSync(path).size;
      progress.add(0, n - last);
      last = n;
    } catch {
      // not there yet
    }
  };
  const timer = setInterval(poll, 500);
  return () => {
    clearInterval(timer);
    poll();
  };
}

async function pgDumpBackup(ctx: Ctx, path: string, native: boolean): Promise<ManifestTable[]> {
  const tool = findTool('pg_dump');
  if (!tool) {
    if (native) requireTool('pg_dump', 'back up with --format logical');
    throw new NativeUnavailable('pg_dump is not installed');
  }
  const env = pgEnv(serverTarget(ctx.coffer.target));
  return withSnapshot(ctx.db, async (conn) => {
    // pg_dump adopts this transaction's snapshot, so the dump and the manifest see the same rows.
    const snap = String((await sql<{ s: string }>`select pg_export_snapshot() as s`.execute(conn)).rows[0]!.s);
    ctx.progress.phase('backup', await estimate(ctx));
    const run = runTool(tool, 'pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--snapshot=${snap}`, `--file=${path}`], env);
    const onAbort = () => run.kill();
    ctx.signal?.addEventListener('abort', onAbort);
    const stopWatch = watchSize(path, ctx.progress);
    try {
      const tables = await tableSums(conn, ctx);
      // Idle from here until pg_dump exits, which can be long (it dumps every table, not only
      // Coffer's): the snapshot's idle timeout would end this session and fail a good backup.
      await sql`set local idle_in_transaction_session_timeout = 0`.execute(conn);
      ctx.progress.note('checksums done; waiting for pg_dump to finish');
      await run.done;
      stopWatch();
      ctx.progress.done();
      return tables;
    } catch (e) {
      run.kill();
      await run.done.catch(() => {});
      throw e;
    } finally {
      stopWatch();
      ctx.signal?.removeEventListener('abort', onAbort);
    }
  });
}

function waitForOutput(stream: NodeJS.ReadableStream, pattern: RegExp, exited: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => finish(new Error(`mysqldump produced no table output within ${ms / 1000}s`)), ms);
    const onData = (d: Buffer) => {
      seen = (seen + d.toString('utf8')).slice(-8192);
      if (pattern.test(seen)) finish();
    };
    const finish = (e?: Error) => {
      clearTimeout(timer);
      stream.off('data', onData);
      if (e) reject(e);
      else resolve();
    };
    stream.on('data', onData);
    exited.then(
      () => finish(),
      (e: Error) => finish(e),
    );
  });
}

async function mysqlDumpBackup(ctx: Ctx, path: string, native: boolean): Promise<ManifestTable[]> {
  const tool = findTool('mysqldump');
  if (!tool) {
    if (native) requireTool('mysqldump', 'back up with --format logical');
    throw new NativeUnavailable('mysqldump is not installed');
  }
  const target = serverTarget(ctx.coffer.target);
  const flavour = await clientFlavour(tool);
  return ctx.db.writer.connection().execute(async (lockConn) => {
    // mysqldump's consistent snapshot cannot be shared, so both snapshots are taken while no
    // transaction can commit: a global read lock held only until mysqldump has started.
    await sql`set session lock_wait_timeout = 30`.execute(lockConn);
    try {
      await sql`flush tables with read lock`.execute(lockConn);
    } catch (e) {
      await sql`set session lock_wait_timeout = default`.execute(lockConn).catch(() => {});
      const errno = (e as { errno?: number }).errno;
      const why =
        errno === 1227 || errno === 1045
          ? 'FLUSH TABLES WITH READ LOCK needs the RELOAD privilege (to line up mysqldump with the manifest)'
          : `FLUSH TABLES WITH READ LOCK failed: ${(e as Error).message}`;
      if (native) throw new ConfigError(`${why}; grant it or back up with --format logical`, {});
      throw new NativeUnavailable(why);
    }
    let locked = true;
    const unlock = async () => {
      if (!locked) return;
      locked = false;
      await sql`unlock tables`.execute(lockConn);
    };
    const opt = await mysqlOptionFile(tool, target);
    try {
      return await withSnapshot(ctx.db, async (conn) => {
        const args = [
          `--defaults-extra-file=${opt.path}`,
          '--single-transaction',
          '--quick',
          '--skip-lock-tables',
          '--hex-blob',
          '--triggers',
          '--routines',
          '--no-tablespaces',
          '--default-character-set=utf8mb4',
          '--skip-dump-date',
          ...(flavour === 'mysql' ? ['--set-gtid-purged=OFF'] : []),
          target.database,
        ];
        ctx.progress.phase('backup', await estimate(ctx));
        const run = runTool(tool, 'mysqldump', args, {}, { stdout: 'pipe', cleanup: opt.cleanup });
        const stdout = run.child.stdout!;
        const writing = pipeline(stdout, createGzip({ level: 6 }), createWriteStream(path)).catch((e: unknown) => {
          throw fileError(e, 'cannot write backup', path);
        });
        const onAbort = () => run.kill();
        ctx.signal?.addEventListener('abort', onAbort);
        const stopWatch = watchSize(path, ctx.progress);
        try {
          await waitForOutput(stdout, /-- Table structure for table|CREATE TABLE/, run.done, 60_000);
          await unlock();
          const tables = await tableSums(conn, ctx);
          ctx.progress.note('checksums done; waiting for mysqldump to finish');
          await Promise.all([run.done, writing]);
          stopWatch();
          ctx.progress.done();
          return tables;
        } catch (e) {
          run.kill();
          await Promise.allSettled([run.done, writing]);
          throw e;
        } finally {
          stopWatch();
          ctx.signal?.removeEventListener('abort', onAbort);
        }
      });
    } finally {
      opt.cleanup();
      await unlock().catch(() => {});
      await sql`set session lock_wait_timeout = default`.execute(lockConn).catch(() => {});
    }
  });
}

// ---------------------------------------------------------------------------------------------

function removeQuietly(p: string): void {
  try {
    rmSync(p, { force: true });
  } catch {
    // best effort
  }
}

/** Backs up `coffer` to `file` (`-`: a logical stream to standard output). */
export async function backupDatabase(coffer: Coffer, file: string, opts: BackupOptions = {}): Promise<BackupReport> {
  const started = Date.now();
  const progress = opts.progress ?? new SilentProgress();
  const format = opts.format ?? 'auto';
  const db = opsDb(coffer);
  const live = await liveSchema(coffer);
  const marker = await readMarker(db.reader, db.dialect);
  if (marker && !opts.force) {
    throw new ConfigError(
      `${db.describe} is ${describeMarker(marker)}, not a complete database: finish or discard it first (or add --force to back it up anyway)`,
      {},
    );
  }
  const notes: string[] = [];
  if (live.pending.length)
    notes.push(
      `${live.pending.length} migration(s) are not applied yet (${live.pending.join(', ')}); the backup holds the schema as it is`,
    );

  // Where to write: FILE.partial renamed at the end, or straight into standard output (`-`), a
  // pipe, a device or a socket. Only what is not a regular file is a stream: an existing regular
  // file is refused wherever it is (/dev/shm, or /dev/stdout redirected to a file), since
  // streaming into it would append a second backup to it.
  const toStdout = file === '-';
  if (toStdout) file = '/dev/stdout';
  let st: Stats | undefined;
  try {
    st = statSync(file);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw fileError(e, 'cannot write backup', file);
  }
  if (!toStdout && st?.isFile())
    throw new ConfigError(
      `backup file ${file} already exists: choose a new name (backups are never overwritten)${/^\/(dev\/stdout|dev\/fd\/|proc\/self\/fd\/)/.test(file) ? '; to write to standard output use --to -' : ''}`,
      { path: file },
    );
  if (st?.isDirectory())
    throw new ConfigError(
      `backup target ${file} is a directory: name a file, e.g. ${file.replace(/\/$/, '')}/coffer-${new Date().toISOString().slice(0, 10)}.backup`,
      { path: file },
    );
  // Standard output may be a regular file (a shell's `>>`): it is appended to, never truncated.
  const stream = toStdout || (st !== undefined && !st.isFile());

  let kind: BackupKind;
  const native = format === 'native';
  const backend = coffer.target.backend;
  if (format === 'logical') kind = 'logical';
  else if (backend === 'sqlite') {
    if (coffer.target.memory) {
      if (native) throw new ConfigError('memory:// has no database file to back up natively: use --format logical', {});
      kind = 'logical';
    } else kind = 'sqlite';
  } else kind = backend === 'postgres' ? 'pg_dump' : 'mysqldump';
  if (stream && kind !== 'logical') {
    if (native)
      throw new ConfigError(`a ${kind} backup needs a regular file (its manifest sits beside it): ${file} is not one`, { path: file });
    kind = 'logical';
  }

  const partial = stream ? file : `${file}.partial`;
  const mpath = manifestPath(file);
  if (!stream) {
    if (existsSync(partial)) {
      notes.push(`removed ${partial} left by an earlier, interrupted backup`);
      removeQuietly(partial);
    }
    try {
      closeSync(openSync(partial, 'wx'));
    } catch (e) {
      throw fileError(e, 'cannot write backup', partial);
    }
  }

  const id = newBackupId();
  const ctx: Ctx = {
    coffer,
    db,
    live,
    plans: dataTables(live.schema).map((t) => ({ table: t, columns: t.columns })),
    batchSize: opts.batchSize ?? 1000,
    signal: opts.signal,
    progress,
  };
  let tables: ManifestTable[];
  try {
    throwIfAborted(opts.signal, () => interrupted(file));
    if (kind === 'sqlite') tables = await sqliteBackup(ctx, partial);
    else if (kind === 'pg_dump' || kind === 'mysqldump') {
      try {
        tables = kind === 'pg_dump' ? await pgDumpBackup(ctx, partial, native) : await mysqlDumpBackup(ctx, partial, native);
      } catch (e) {
        if (!(e instanceof NativeUnavailable)) throw e;
        notes.push(`${e.message}: wrote Coffer's portable logical format instead`);
        progress.note(notes[notes.length - 1]!);
        kind = 'logical';
        removeQuietly(partial);
        tables = (await logicalBackup(ctx, partial, id)).tables;
      }
    } else tables = (await logicalBackup(ctx, partial, id)).tables;
    if (opts.signal?.aborted) throw new InterruptedError(interrupted(file));
  } catch (e) {
    if (!stream) removeQuietly(partial);
    if (e instanceof InterruptedError || (opts.signal?.aborted && !(e instanceof ConfigError)))
      throw new InterruptedError(interrupted(file));
    throw e;
  }

  let bytes = 0;
  let sha256: string | null = null;
  let manifestFile: string | null = null;
  if (!stream) {
    try {
      // A SQLite file also gets a digest that ignores the header fields an open rewrites
      // (`coffer stats --db sqlite:FILE` switches it to WAL), so restore still accepts it.
      progress.note(`computing the SHA-256 of ${partial} for its manifest`);
      const dg = await fileDigest(partial, kind === 'sqlite' ? { headerFree: sqliteHeaderFree } : {}, opts.signal);
      bytes = dg.bytes;
      sha256 = dg.sha256;
      const headerFree = dg.variants.headerFree;
      const manifest: Manifest = {
        format: 'coffer-manifest',
        version: 1,
        id,
        kind,
        coffer: COFFER_VERSION,
        createdAt: new Date(started).toISOString(),
        source: { backend: db.label, server: await coffer.engine.serverVersion(), describe: db.describe },
        migrations: live.applied,
        tables,
        file: { name: file.split('/').pop()!, bytes, sha256, ...(headerFree ? { sha256HeaderFree: headerFree } : {}) },
      };
      // The manifest lands first: a FILE without its manifest is never left behind by a crash.
      writeFileSync(`${mpath}.partial`, `${JSON.stringify(manifest, null, 2)}\n`);
      renameSync(`${mpath}.partial`, mpath);
      renameSync(partial, file);
      manifestFile = mpath;
    } catch (e) {
      removeQuietly(`${mpath}.partial`);
      removeQuietly(partial);
      // Ctrl-C while a large file is digested: an interruption, with nothing left behind.
      if (e instanceof InterruptedError) throw new InterruptedError(interrupted(file));
      throw fileError(e, 'cannot write backup', file);
    }
  }
  return {
    file,
    manifestFile,
    kind,
    bytes,
    sha256,
    rows: tables.reduce((n, t) => n + t.rows, 0),
    tables,
    notes,
    elapsedMs: Date.now() - started,
  };
}
