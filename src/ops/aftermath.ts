// What a copy or restore that fails leaves behind, shared by both. Their checks that need no
// target run before it is opened (opening a SQLite path creates the database); a failure after
// that removes a SQLite file the operation created (with its -wal/-shm and the folders made for
// it) unless it was interrupted once marked (it resumes), and leaves a database that existed
// before marked failed with the reason (marker.ts failureOf, target.ts prepareTarget). Either
// way the error keeps its type (and so the command's exit code) and says what was left.
import { lstatSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Coffer } from '../db/store.js';
import { parseDatabaseUrl } from '../db/url.js';
import type { OpsDb } from './db.js';
import { MARKER_TABLE, setMarkerState } from './marker.js';

export type CopyOrRestore = 'copy' | 'restore';

/** The target of a copy or restore, not opened yet. */
export interface TargetToOpen {
  /** The target database's URL. */
  url: string;
  /** Opens the target without migrating it (a SQLite path that does not exist is created). */
  open(): Promise<Coffer>;
}

/** Adds what a failure left behind, and what to do, to its message; the error keeps its type. */
function withAftermath(e: unknown, aftermath: string | null): unknown {
  if (!aftermath) return e;
  if (e instanceof Error) {
    e.message = `${e.message}; ${aftermath}`;
    return e;
  }
  return new Error(`${String(e)}; ${aftermath}`);
}

interface Created {
  path: string;
  files: string[];
  dirs: string[];
}

/** The files (and folders) opening a SQLite database at `path` would create; null when it exists. */
function sqliteFilesToCreate(path: string): Created | null {
  // lstat: a symbolic link that points nowhere exists, and what it points to is not ours.
  const present = (p: string) => lstatSync(p, { throwIfNoEntry: false }) !== undefined;
  const abs = resolve(path);
  if (present(abs)) return null;
  const files = [abs, `${abs}-wal`, `${abs}-shm`, `${abs}-journal`].filter((f) => !present(f));
  const dirs: string[] = [];
  for (let d = dirname(abs); !present(d) && d !== dirname(d); d = dirname(d)) dirs.push(d);
  return { path: abs, files, dirs };
}

/** Removes what opening the target created; says what was done (or what is left to do). */
function removeCreated(c: Created, operation: CopyOrRestore): string | null {
  if (c.path === 'memory://') return `nothing is left behind (a memory:// database ends with the ${operation})`;
  const left: string[] = [];
  let removed = 0;
  for (const f of c.files) {
    try {
      if (lstatSync(f, { throwIfNoEntry: false }) === undefined) continue;
      rmSync(f, { force: true });
      removed++;
    } catch (e) {
      left.push(`${f} (${(e as Error).message})`);
    }
  }
  let folders = 0;
  for (const d of c.dirs) {
    try {
      rmdirSync(d);
      folders++;
    } catch {
      // Not empty (something else was put there meanwhile) or never made: left as it is.
    }
  }
  if (left.length) return `this ${operation} created ${c.path} but could not remove ${left.join(', ')}: delete it by hand`;
  if (!removed && !folders) return null;
  return `removed ${c.path}${folders ? ` and the folder(s) created for it` : ''}, which this ${operation} had created`;
}

/**
 * Opens the target (every check that needs none has passed) and runs `run` on it; `created`
 * tells it the target did not exist before (a SQLite file or memory://), so a failure must not
 * mark it failed: it is removed here, with its -wal/-shm and the folders made for it, unless
 * `keep(e)` (interrupted after it was marked: kept, to resume with the same command).
 */
export async function intoTarget<T>(
  to: TargetToOpen,
  operation: CopyOrRestore,
  run: (target: Coffer, created: boolean) => Promise<T>,
  keep: (e: unknown) => boolean,
): Promise<T> {
  const t = parseDatabaseUrl(to.url);
  // memory:// is created by opening it, and gone when the operation closes it.
  const fresh = t.backend !== 'sqlite' ? null : t.memory ? { path: 'memory://', files: [], dirs: [] } : sqliteFilesToCreate(t.path);
  let target: Coffer;
  try {
    target = await to.open();
  } catch (e) {
    throw fresh ? withAftermath(e, removeCreated(fresh, operation)) : e;
  }
  try {
    return await run(target, fresh !== null);
  } catch (e) {
    if (!fresh || keep(e)) throw e;
    await target.close();
    throw withAftermath(e, removeCreated(fresh, operation));
  } finally {
    await target.close();
  }
}

export interface FailedTarget {
  operation: CopyOrRestore;
  /** What running the same command again does after an error: "resume it", "start it over". */
  again: string;
  /** Said before --discard after a failed verification, e.g. what to stop first. */
  differences?: string;
}

/**
 * A copy or restore into a database that existed before failed after marking it: it is not
 * removed (the operation did not create it) but left marked failed with the reason (a failed
 * verification has already recorded its problems); the error says so and what to do.
 */
export async function leftMarkedFailed(dst: OpsDb, e: unknown, verification: boolean, f: FailedTarget): Promise<unknown> {
  const db = dst.describe;
  const kept = `${db} existed before this ${f.operation}, so it is not removed`;
  if (verification)
    return withAftermath(
      e,
      `${db} stays marked incomplete as a failed ${f.operation} (table ${MARKER_TABLE}; ${kept}): coffer doctor reports it and nothing should use it; look into the differences${f.differences ? ` (${f.differences})` : ''}, then run the same coffer ${f.operation} with --discard to throw away what was loaded and start over`,
    );
  const reason = e instanceof Error ? e.message : String(e);
  try {
    await setMarkerState(dst.writer, dst.dialect, 'failed', { error: reason, failedAt: new Date().toISOString() });
  } catch (m) {
    return withAftermath(
      e,
      `${db} stays marked incomplete (table ${MARKER_TABLE}; ${kept}; marking it failed did not work either: ${(m as Error).message}): run the same coffer ${f.operation} again once the cause is fixed, or add --discard to throw away what was loaded`,
    );
  }
  return withAftermath(
    e,
    `${db} is left marked as a failed ${f.operation} (table ${MARKER_TABLE}; ${kept}): coffer doctor reports it and nothing should use it; fix the cause and run the same coffer ${f.operation} again to ${f.again}, or add --discard to throw away what was loaded`,
  );
}
