// What a copy or restore that fails leaves behind, shared by both. Their checks that need no
// target run before it is opened (opening a SQLite path creates the database); a failure after
// that removes a SQLite file the operation created (with its -wal/-shm and the folders made for
// it) unless it was interrupted once marked (it resumes), and leaves a database that existed
// before marked failed with the reason (marker.ts failureOf, target.ts prepareTarget). Either
// way the error keeps its type (and so the command's exit code) and says what was left. The
// whole run holds the target's lock (lock.ts), so only the run that created a file removes it.
// A run whose lock is lost part way stops (runSignal), never marks the target complete
// (markComplete), and writes nothing more to it, not even its failure: another run may have it
// now. It fails with a TargetLockLostError saying so (lockLost).
import { lstatSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Coffer } from '../db/store.js';
import { parseDatabaseUrl } from '../db/url.js';
import { describeTarget, opsDb, type OpsDb } from './db.js';
import { InterruptedError, VerificationError } from './errors.js';
import { lockSqliteFile, lockTarget, removeFolders, TargetLockLostError, type LockedOperation, type TargetLock } from './lock.js';
import { dropMarker, MARKER_TABLE, setMarkerState } from './marker.js';

export type CopyOrRestore = LockedOperation;

/** The target of a copy or restore, not opened yet. */
export interface TargetToOpen {
  /** The target database's URL. */
  url: string;
  /** Opens the target without migrating it (a SQLite path that does not exist is created). */
  open(): Promise<Coffer>;
}

/**
 * The signal a run stops on: its own (Ctrl-C), or its target's lock found lost. Listeners get
 * the two merged (AbortSignal.any). `aborted` reads the caller's signal itself each time rather
 * than the merged copy: for a plain AbortSignal the two agree, and a caller's signal that
 * decides on being read (the backup tests' Ctrl-C landing between two batch checks) is obeyed
 * at the same check it would be without a lock.
 */
export function runSignal(lock: TargetLock, own: AbortSignal | undefined): AbortSignal {
  if (!own) return lock.signal;
  const either = AbortSignal.any([own, lock.signal]);
  return new Proxy(either, {
    get(t, p) {
      if (p === 'aborted') return own.aborted || lock.signal.aborted;
      const v: unknown = Reflect.get(t, p, t);
      // Methods run on the signal itself (its internal slots are not the proxy's).
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/**
 * Marks the target complete (drops its marker), once its lock is confirmed still held: after
 * this another run's interference could no longer be told.
 */
export async function markComplete(dst: OpsDb, lock: TargetLock): Promise<void> {
  await lock.assertHeld();
  await dropMarker(dst.writer, dst.dialect);
}

/**
 * The error of a run whose target lock is lost (lock.ts), found now if not before; null while it
 * is held. The target stays as the run left it (marked incomplete, once marked), and is not
 * removed even if this run created it: another run may be using it now.
 */
async function lockLost(
  lock: TargetLock,
  e: unknown,
  operation: CopyOrRestore,
  marked: boolean,
  created: boolean,
): Promise<TargetLockLostError | null> {
  await lock.assertHeld().catch(() => {});
  const lost = lock.lost;
  if (!lost) return null;
  // Stopping for the loss (an interruption) is no news; an error of its own is.
  const also = e === lost || e instanceof InterruptedError ? '' : ` (it had also failed: ${e instanceof Error ? e.message : String(e)})`;
  const again = `check that no other coffer copy or restore into it is running, then run the same coffer ${operation} again`;
  const left = marked
    ? `this ${operation} stopped without marking the target complete: it stays marked incomplete (table ${MARKER_TABLE}), which coffer doctor reports, and nothing should use it: ${again} to resume it${operation === 'restore' ? ' (a pg_dump or mysqldump restore starts over)' : ''}`
    : `this ${operation} stopped before marking the target, so nothing was loaded into it${created ? ` (this ${operation} created it; it is kept, as another run may be using it now)` : ''}: ${again}`;
  return new TargetLockLostError(`${lost.message}${also}; ${left}`, { cause: e });
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
  dirs: readonly string[];
}

/**
 * The files opening a SQLite database at `path` would create, and the folders made for it
 * (by its lock file, lock.ts); null when it exists. Asked while holding the target's lock.
 */
function sqliteFilesToCreate(path: string, dirs: readonly string[]): Created | null {
  // lstat: a symbolic link exists (one that points nowhere was refused by the lock).
  const present = (p: string) => lstatSync(p, { throwIfNoEntry: false }) !== undefined;
  const abs = resolve(path);
  if (present(abs)) return null;
  return { path: abs, files: [abs, `${abs}-wal`, `${abs}-shm`, `${abs}-journal`].filter((f) => !present(f)), dirs };
}

const MEMORY: Created = { path: 'memory://', files: [], dirs: [] };

/**
 * Removes what opening the target created, the files while `lock` is still held (then it is
 * released: its file sits in the innermost folder), then the folders made for it; says what was
 * done, or what is left to do (`failed`: the target was marked failed, for when it stays).
 */
async function removeCreated(c: Created, operation: CopyOrRestore, lock: TargetLock | null, failed: string | null): Promise<string | null> {
  if (c === MEMORY) return `nothing is left behind (a memory:// database ends with the ${operation})`;
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
  await lock?.release();
  const folders = left.length ? 0 : removeFolders(c.dirs);
  if (left.length) return `this ${operation} created ${c.path} but could not remove ${left.join(', ')}: ${failed ?? 'delete it by hand'}`;
  if (!removed && !folders) return null;
  return `removed ${c.path}${folders ? ` and the folder(s) created for it` : ''}, which this ${operation} had created`;
}

/**
 * Opens the target (every check that needs none has passed) and runs `run` on it, holding the
 * target's lock (lock.ts) throughout: a SQLite target's before it is opened, so whether it is
 * new (`created`: a SQLite file or memory://) is decided while no other run can make it. A
 * created target is not marked failed when `run` fails: it is removed here, with its -wal/-shm
 * and the folders made for it, unless interrupted once `marked()` (kept, to resume with the
 * same command). It is marked failed first, saying why, in case it cannot be removed. `run` is
 * given the lock, to confirm before the steps that need it (markComplete) and to stop on (runSignal).
 */
export async function intoTarget<T>(
  to: TargetToOpen,
  operation: CopyOrRestore,
  run: (target: Coffer, created: boolean, lock: TargetLock) => Promise<T>,
  marked: () => boolean,
): Promise<T> {
  const t = parseDatabaseUrl(to.url);
  const fileLock = t.backend === 'sqlite' && !t.memory ? lockSqliteFile(t.path, operation, describeTarget(t)) : null;
  try {
    // memory:// is created by opening it, and gone when the operation closes it.
    const fresh = t.backend !== 'sqlite' ? null : t.memory ? MEMORY : sqliteFilesToCreate(t.path, fileLock!.dirs);
    let target: Coffer;
    try {
      target = await to.open();
    } catch (e) {
      throw fresh ? withAftermath(e, await removeCreated(fresh, operation, fileLock, null)) : e;
    }
    try {
      const lock = fileLock ?? (await lockTarget(target, operation));
      try {
        return await run(target, fresh !== null, lock);
      } catch (e) {
        const lost = await lockLost(lock, e, operation, marked(), fresh !== null);
        if (lost) throw lost;
        if (!fresh || (e instanceof InterruptedError && marked())) throw e;
        // A failed verification has recorded its problems already.
        const failed = !marked() ? undefined : e instanceof VerificationError ? null : await recordFailure(opsDb(target), e);
        const stays =
          failed === undefined
            ? null
            : failed === null
              ? `it is marked as a failed ${operation} (table ${MARKER_TABLE}), which coffer doctor reports; delete it by hand`
              : `it stays marked incomplete (table ${MARKER_TABLE}; marking it failed did not work either: ${failed}); delete it by hand`;
        await target.close();
        throw withAftermath(e, await removeCreated(fresh, operation, fileLock, stays));
      } finally {
        if (lock !== fileLock) await lock.release();
      }
    } finally {
      await target.close();
    }
  } finally {
    await fileLock?.release();
  }
}

/**
 * Runs `run` on a target that is open already (and so existed before), holding its lock
 * (lock.ts) throughout; a second run into it is refused before anything is read or written.
 * `marked()`: the run has marked the target (for what a lost lock leaves, lockLost).
 */
export async function onTarget<T>(
  target: Coffer,
  operation: CopyOrRestore,
  run: (lock: TargetLock) => Promise<T>,
  marked: () => boolean,
): Promise<T> {
  const lock = await lockTarget(target, operation);
  try {
    return await run(lock);
  } catch (e) {
    throw (await lockLost(lock, e, operation, marked(), false)) ?? e;
  } finally {
    await lock.release();
  }
}

/** Marks the target failed with the reason; null when done, else why it could not be. */
async function recordFailure(dst: OpsDb, e: unknown): Promise<string | null> {
  const reason = e instanceof Error ? e.message : String(e);
  try {
    await setMarkerState(dst.writer, dst.dialect, 'failed', { error: reason, failedAt: new Date().toISOString() });
    return null;
  } catch (m) {
    return (m as Error).message;
  }
}

export interface FailedTarget {
  operation: CopyOrRestore;
  /** The run's target lock: once it is lost nothing is written to the target (lockLost). */
  lock: TargetLock;
  /** What running the same command again does after an error: "resume it", "start it over …". */
  again: string;
  /** What --discard does after an error (default: throw away what was loaded). */
  discard?: string;
  /** What the target holds after an error, when that is not simply what was loaded so far. */
  holds?: string;
  /** Said before --discard after a failed verification, e.g. what to stop first. */
  differences?: string;
}

/**
 * A copy or restore into a database that existed before failed after marking it: it is not
 * removed (the operation did not create it) but left marked failed with the reason (a failed
 * verification has already recorded its problems); the error says so and what to do.
 */
export async function leftMarkedFailed(dst: OpsDb, e: unknown, verification: boolean, f: FailedTarget): Promise<unknown> {
  // Another run may have the target now: intoTarget/onTarget say what is left (lockLost).
  await f.lock.assertHeld().catch(() => {});
  if (f.lock.lost) return e;
  const db = dst.describe;
  const kept = `${db} existed before this ${f.operation}, so it is not removed`;
  if (verification)
    return withAftermath(
      e,
      `${db} stays marked incomplete as a failed ${f.operation} (table ${MARKER_TABLE}; ${kept}): coffer doctor reports it and nothing should use it; look into the differences${f.differences ? ` (${f.differences})` : ''}, then run the same coffer ${f.operation} with --discard to throw away what was loaded and start over`,
    );
  const discard = `add --discard to ${f.discard ?? 'throw away what was loaded'}`;
  const holds = f.holds ? `; ${f.holds}` : '';
  const notMarked = await recordFailure(dst, e);
  if (notMarked !== null)
    return withAftermath(
      e,
      `${db} stays marked incomplete (table ${MARKER_TABLE}; ${kept}; marking it failed did not work either: ${notMarked})${holds}: run the same coffer ${f.operation} again once the cause is fixed to ${f.again}, or ${discard}`,
    );
  return withAftermath(
    e,
    `${db} is left marked as a failed ${f.operation} (table ${MARKER_TABLE}; ${kept})${holds}: coffer doctor reports it and nothing should use it; fix the cause and run the same coffer ${f.operation} again to ${f.again}, or ${discard}`,
  );
}
