// One copy or restore at a time into a target. Each run holds an exclusive lock on its target
// for as long as it runs, taken before anything about the target is decided (whether a SQLite
// file is new, whether an incomplete marker is someone else's run to resume): a second run into
// the same target is refused up front (ConfigError, exit 2) naming the run that holds it, and
// touches nothing. The lock per backend, all of it here:
//
//   SQLite file    a lock file beside the database (DB.coffer-lock, beside the real file when
//                  the path is a symbolic link), created with O_EXCL and holding the owner's
//                  pid, host and start; one whose pid is gone on this host is stale and taken
//                  over. Its folders are created first, and reported as created.
//   PostgreSQL     a session advisory lock (pg_try_advisory_lock, scoped to the database) on a
//                  connection of its own, named by its application_name
//   MySQL/MariaDB  GET_LOCK on a connection of its own, named after the database (the names
//                  are server-wide)
//   memory://      none: each one is private to the process that opened it
//
// A lock can be lost while the run goes on: the server ends the lock's connection (a restart,
// pg_terminate_backend, KILL, wait_timeout, a network drop) and with it the lock, or someone
// deletes the lock file (or another run replaces it). So a held lock is checked every few
// seconds (a round trip on its own connection, the lock file read back), and once more before
// each step another run's interference would make undetectable (assertHeld: verifying, and
// marking the target complete). A loss stops the run (`signal`) and is final (`lost`): the
// run fails and leaves the target marked incomplete (aftermath.ts), never complete.
import { createHash, randomBytes } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { ConfigError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { describeCoffer } from './db.js';
import { fileError } from './errors.js';

export type LockedOperation = 'copy' | 'restore';

/**
 * The lock a run held on its target was lost part way: another run may have the target now, so
 * this one must not finish it. A failed run (exit 1); aftermath.ts says what is left.
 */
export class TargetLockLostError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TargetLockLostError';
  }
}

export interface TargetLock {
  /** Folders made for a SQLite target's lock file (so for the database too), deepest first. */
  readonly dirs: readonly string[];
  /** Why the lock was found lost (for good: it is never taken back); null while held. */
  readonly lost: TargetLockLostError | null;
  /** Aborted, with `lost` as its reason, once the lock is found lost: the run stops at its next batch. */
  readonly signal: AbortSignal;
  /**
   * Confirms with one round trip on the lock's own connection (SQLite: reading the lock file
   * back) that the lock is still this run's; throws `lost` when it is not.
   */
  assertHeld(): Promise<void>;
  /** Gives the lock up; safe to call more than once. */
  release(): Promise<void>;
}

const NO_LOCK: TargetLock = {
  dirs: [],
  lost: null,
  signal: new AbortController().signal,
  assertHeld: async () => {},
  release: async () => {},
};

/** How often a held lock is checked while the run goes on (env COFFER_LOCK_CHECK_MS overrides it). */
const CHECK_MS = 5_000;

function checkEvery(): number {
  const env = Number(process.env.COFFER_LOCK_CHECK_MS);
  return Number.isFinite(env) && env > 0 ? env : CHECK_MS;
}

/**
 * What every lock does once taken: `probe` (one round trip) says why the lock is no longer this
 * run's, or null; it runs every checkEvery() ms (the next one once the last answered), and on
 * assertHeld(). The first loss found sticks, aborts `signal` and calls `free` (which gives up
 * what is left of the lock: its connection), as release() does.
 */
class HeldLock implements TargetLock {
  readonly dirs: readonly string[];
  #lost: TargetLockLostError | null = null;
  #released = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #abort = new AbortController();
  readonly #what: string;
  readonly #operation: LockedOperation;
  readonly #probe: () => Promise<string | null>;
  readonly #free: () => Promise<void>;
  readonly #every = checkEvery();

  constructor(
    dirs: readonly string[],
    operation: LockedOperation,
    what: string,
    probe: () => Promise<string | null>,
    free: () => Promise<void>,
  ) {
    this.dirs = dirs;
    this.#operation = operation;
    this.#what = what;
    this.#probe = probe;
    this.#free = free;
    this.#schedule();
  }

  get lost(): TargetLockLostError | null {
    return this.#lost;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  #schedule(): void {
    if (this.#lost || this.#released) return;
    // unref: a forgotten lock must not keep the process alive (the lock file goes on exit).
    this.#timer = setTimeout(() => void this.#check().then(() => this.#schedule()), this.#every).unref();
  }

  async #check(): Promise<void> {
    if (this.#lost || this.#released) return;
    let why: string | null;
    try {
      why = await this.#probe();
    } catch (e) {
      why = `it could not be checked (${(e as Error).message})`;
    }
    if (why === null || this.#lost || this.#released) return;
    this.#lost = new TargetLockLostError(
      `this ${this.#operation} lost its lock on ${this.#what}: ${why}; another coffer copy or restore may have taken the target since`,
    );
    clearTimeout(this.#timer);
    this.#abort.abort(this.#lost);
    void this.#free();
  }

  async assertHeld(): Promise<void> {
    await this.#check();
    if (this.#lost) throw this.#lost;
  }

  async release(): Promise<void> {
    this.#released = true;
    clearTimeout(this.#timer);
    await this.#free();
  }
}

/** Who holds a SQLite target's lock file (its JSON content). */
interface Owner {
  operation: string;
  pid: number;
  host: string;
  startedAt: string;
  token: string;
}

const lockFileOf = (realPath: string) => `${realPath}.coffer-lock`;

/** The lock of an open target (copyDatabase, restoreDatabase, and server targets of intoTarget). */
export async function lockTarget(target: Coffer, operation: LockedOperation): Promise<TargetLock> {
  const t = target.target;
  if (t.backend === 'sqlite') return t.memory ? NO_LOCK : lockSqliteFile(t.path, operation, describeCoffer(target));
  return lockServerDatabase(target, operation);
}

/**
 * A SQLite path that is a symbolic link to nothing: opening it would create the file at the
 * link's destination, which is not the path the operator named. Refused before anything is made.
 */
function refuseDanglingLink(abs: string, describe: string, operation: LockedOperation): void {
  const l = lstatSync(abs, { throwIfNoEntry: false });
  if (!l?.isSymbolicLink()) return;
  try {
    statSync(abs);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code !== 'ENOENT' && code !== 'ELOOP') throw fileError(e, `cannot ${operation} into`, abs);
    throw new ConfigError(
      `target ${describe} is a symbolic link to ${readlinkSync(abs)}, which ${code === 'ELOOP' ? 'is a loop of links' : 'does not exist'}: ${operation} does not create a database through a link; name the database's real path in --to, or remove the link`,
      { field: 'to', path: abs },
    );
  }
}

/** Makes the folders `dir` needs; returns those it made, deepest first. */
function makeFolders(dir: string, operation: LockedOperation): string[] {
  let first: string | undefined;
  try {
    first = mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fileError(e, `cannot create the folder for the ${operation} target`, dir);
  }
  if (first === undefined) return [];
  const out: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    out.push(d);
    if (d === first || d === dirname(d)) return out;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, as another user's process.
    return (e as { code?: string }).code === 'EPERM';
  }
}

function parseOwner(text: string): Owner | null {
  try {
    const o = JSON.parse(text) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? (o as Owner) : null;
  } catch {
    return null;
  }
}

/**
 * Removes a stale lock file whose content is `stale`, atomically against another run doing the
 * same (rename it aside, then check it was that one). False when it was not (someone else's).
 */
function takeOver(file: string, stale: string): boolean {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(file, aside);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return true;
    throw fileError(e, 'cannot take over the stale lock file', file);
  }
  const moved = readFileSync(aside, 'utf8');
  if (moved !== stale) {
    // Another run took it over first and this was its fresh lock: put it back.
    try {
      renameSync(aside, file);
    } catch {
      rmSync(aside, { force: true });
    }
    return false;
  }
  rmSync(aside, { force: true });
  return true;
}

function refusal(describe: string, file: string, owner: Owner | null): ConfigError {
  if (!owner)
    return new ConfigError(
      `target ${describe} is in use by another coffer copy or restore (lock file ${file}, whose owner cannot be read: it is being written, or is damaged); nothing was changed: wait for that run to finish, or if none is running delete ${file}`,
      { field: 'to', path: file },
    );
  const local = owner.host === hostname();
  return new ConfigError(
    `target ${describe} is in use by another coffer ${owner.operation} (pid ${owner.pid} on ${owner.host}, started ${owner.startedAt}; lock file ${file}); nothing was changed: wait for it to finish, then run this again${local ? '' : `; if that run is gone (it ran on another machine, so this one cannot tell), delete ${file}`}`,
    { field: 'to', path: file },
  );
}

/**
 * Takes the lock file of the SQLite database at `path`, creating its folders first (reported in
 * `dirs`). Refuses a path that is a dangling symbolic link, and a lock another live run holds;
 * takes over one whose pid is gone on this host.
 */
export function lockSqliteFile(path: string, operation: LockedOperation, describe: string): TargetLock {
  const abs = resolve(path);
  refuseDanglingLink(abs, describe, operation);
  const dirs: string[] = [];
  const me: Owner = {
    operation,
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    token: randomBytes(8).toString('hex'),
  };
  const text = JSON.stringify(me);
  let file = '';
  try {
    for (let attempt = 0; ; attempt++) {
      dirs.push(...makeFolders(dirname(abs), operation).filter((d) => !dirs.includes(d)));
      // Beside the real file, so a symbolic link and its destination share one lock.
      const real = lstatSync(abs, { throwIfNoEntry: false }) ? realpathSync(abs) : join(realpathSync(dirname(abs)), basename(abs));
      file = lockFileOf(real);
      try {
        writeFileSync(file, text, { flag: 'wx' });
        break;
      } catch (e) {
        const code = (e as { code?: string }).code;
        // ENOENT: a run that just finished removed the folders it had made; make them again.
        if (code === 'ENOENT' && attempt < 5) continue;
        if (code !== 'EEXIST') throw fileError(e, 'cannot create the lock file', file);
      }
      let held: string;
      try {
        held = readFileSync(file, 'utf8');
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT' && attempt < 5) continue; // released meanwhile
        throw fileError(e, 'cannot read the lock file', file);
      }
      const owner = parseOwner(held);
      const stale = owner !== null && owner.host === me.host && owner.pid !== process.pid && !alive(owner.pid);
      if (stale && attempt < 5 && takeOver(file, held)) continue;
      throw refusal(describe, file, owner);
    }
  } catch (e) {
    // Refused or failed: the folders made for the lock file go again (if still empty).
    removeFolders(dirs);
    throw e;
  }
  const lockFile = file;
  let released = false;
  const releaseSync = () => {
    if (released) return;
    released = true;
    process.off('exit', releaseSync);
    try {
      if (readFileSync(lockFile, 'utf8') === text) rmSync(lockFile, { force: true });
    } catch {
      // Gone already.
    }
  };
  // A second Ctrl-C exits at once (process.exit): the lock file goes with the process.
  process.on('exit', releaseSync);
  return new HeldLock(
    dirs,
    operation,
    `target ${describe} (its lock file ${lockFile})`,
    async () => lockFileChanged(lockFile, text),
    async () => releaseSync(),
  );
}

/** Why the lock file no longer holds `mine` (this run's owner line), or null while it does. */
function lockFileChanged(file: string, mine: string): string | null {
  let now: string;
  try {
    now = readFileSync(file, 'utf8');
  } catch (e) {
    return (e as { code?: string }).code === 'ENOENT'
      ? 'the lock file was deleted'
      : `the lock file cannot be read back (${(e as Error).message})`;
  }
  if (now === mine) return null;
  const o = parseOwner(now);
  return o
    ? `the lock file now names another coffer ${o.operation} (pid ${o.pid} on ${o.host}, started ${o.startedAt})`
    : 'the lock file was overwritten';
}

/** Removes the given folders (deepest first) where they are empty; the others stay. */
export function removeFolders(dirs: readonly string[]): number {
  let n = 0;
  for (const d of dirs) {
    try {
      rmdirSync(d);
      n++;
    } catch {
      // Not empty (something else was put there meanwhile) or gone: left as it is.
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL and MySQL/MariaDB

/** The advisory lock's two keys (the migration lock uses the one-key form: another space). */
const PG_KEYS = [0x436f6666, 0x6f707321] as const;
/** The advisory lock's row in pg_locks (`l`), granted to whichever session holds it. */
const PG_LOCK_ROW = sql`l.locktype = 'advisory' and l.granted and l.objsubid = 2
        and l.classid = ${PG_KEYS[0]}::int::oid and l.objid = ${PG_KEYS[1]}::int::oid
        and l.database = (select oid from pg_database where datname = current_database())`;

/** MySQL lock names are server-wide and at most 64 characters. */
function mysqlLockName(database: string): string {
  const name = `coffer.ops.${database}`;
  return name.length <= 64 ? name : `coffer.ops.${createHash('sha256').update(database).digest('hex').slice(0, 40)}`;
}

/** Takes the lock on `conn` (null), or says who holds it. `name`: the MySQL lock's (mysqlLockName). */
async function tryServerLock(conn: Kysely<any>, d: 'postgres' | 'mysql', operation: LockedOperation, name: string): Promise<string | null> {
  const me = `coffer ${operation} pid ${process.pid} on ${hostname()}`;
  if (d === 'postgres') {
    // Named, so a refused run can say who holds it (application_name is at most 63 bytes).
    await sql`select set_config('application_name', ${me.slice(0, 63)}, false)`.execute(conn);
    const r = await sql<{ got: boolean }>`select pg_try_advisory_lock(${PG_KEYS[0]}::int, ${PG_KEYS[1]}::int) as got`.execute(conn);
    if (r.rows[0]?.got) return null;
    await sql`reset application_name`.execute(conn);
    const h = await sql<{ pid: number; app: string | null; addr: string | null; since: Date | null }>`
      select a.pid, a.application_name as app, host(a.client_addr) as addr, a.backend_start as since
      from pg_locks l left join pg_stat_activity a on a.pid = l.pid
      where ${PG_LOCK_ROW}`.execute(conn);
    const x = h.rows[0];
    if (!x) return 'another session (it ended just now: run this again)';
    const since = x.since ? `, connected since ${new Date(x.since).toISOString()}` : '';
    return `${x.app?.startsWith('coffer ') ? x.app : `server process ${x.pid}${x.app ? ` (${x.app})` : ''}`}${x.addr ? ` from ${x.addr}` : ''}${since}`;
  }
  const r = await sql<{ got: unknown }>`select get_lock(${name}, 0) as got`.execute(conn);
  if (Number(r.rows[0]?.got) === 1) return null;
  const id = (await sql<{ id: unknown }>`select is_used_lock(${name}) as id`.execute(conn)).rows[0]?.id;
  if (id === null || id === undefined) return 'another session (it ended just now: run this again)';
  // The process list shows other accounts' sessions only with the PROCESS privilege.
  const p = await sql<{ user: string; host: string }>`select user, host from information_schema.processlist where id = ${String(id)}`
    .execute(conn)
    .catch(() => ({ rows: [] as { user: string; host: string }[] }));
  const who = p.rows[0] ? ` (${p.rows[0].user}@${p.rows[0].host})` : '';
  return `connection ${String(id)}${who}`;
}

/**
 * Whether this connection still holds the lock. Not by taking it again: a session advisory lock
 * is re-entrant (taking it again succeeds for its holder, and would need two unlocks), and
 * GET_LOCK on a connection that has lost it would simply take it anew.
 */
async function holdsServerLock(conn: Kysely<any>, d: 'postgres' | 'mysql', name: string): Promise<boolean> {
  if (d === 'postgres') {
    const r = await sql<{ n: number }>`select count(*)::int as n from pg_locks l where ${PG_LOCK_ROW} and l.pid = pg_backend_pid()`.execute(
      conn,
    );
    return r.rows[0]?.n === 1;
  }
  const r = await sql<{ mine: unknown }>`select is_used_lock(${name}) = connection_id() as mine`.execute(conn);
  return Number(r.rows[0]?.mine) === 1;
}

async function unlockServer(conn: Kysely<any>, d: 'postgres' | 'mysql', name: string): Promise<void> {
  if (d === 'postgres') {
    await sql`select pg_advisory_unlock(${PG_KEYS[0]}::int, ${PG_KEYS[1]}::int)`.execute(conn);
    await sql`reset application_name`.execute(conn);
  } else {
    await sql`select release_lock(${name})`.execute(conn);
  }
}

/**
 * The server lock of a PostgreSQL or MySQL/MariaDB target, held on a connection of its own until
 * released or found lost; the checks (HeldLock) run on that connection, and keep it from being
 * ended as idle (MySQL's wait_timeout).
 */
async function lockServerDatabase(target: Coffer, operation: LockedOperation): Promise<TargetLock> {
  const d = target.dialect === 'postgres' ? 'postgres' : 'mysql';
  let end!: () => void;
  const ended = new Promise<void>((r) => (end = r));
  let taken!: (v: { holder: string | null; conn: Kysely<any>; name: string }) => void;
  let failed!: (e: unknown) => void;
  const outcome = new Promise<{ holder: string | null; conn: Kysely<any>; name: string }>((res, rej) => {
    taken = res;
    failed = rej;
  });
  const held = target.engine.writer
    .connection()
    .execute(async (conn) => {
      const name = d === 'mysql' ? mysqlLockName((await sql<{ db: string }>`select database() as db`.execute(conn)).rows[0]!.db) : '';
      const holder = await tryServerLock(conn, d, operation, name);
      taken({ holder, conn, name });
      if (holder !== null) return;
      try {
        await ended;
      } finally {
        // Lost: the connection is gone (this fails), or it no longer holds the lock (a no-op).
        await unlockServer(conn, d, name);
      }
    })
    // Once the lock is taken a failure here is its connection failing: the checks report that.
    .catch((e: unknown) => failed(e));
  const { holder, conn, name } = await outcome;
  if (holder !== null) {
    await held;
    throw new ConfigError(
      `target ${describeCoffer(target)} is in use by another coffer copy or restore (it holds the ${d === 'postgres' ? 'advisory' : 'named'} lock: ${holder}); nothing was changed: wait for it to finish, then run this again`,
      { field: 'to' },
    );
  }
  const kind = d === 'postgres' ? 'advisory lock' : `named lock ${name}`;
  return new HeldLock(
    [],
    operation,
    `target ${describeCoffer(target)} (the ${kind} held on a connection of its own)`,
    async () => {
      try {
        return (await holdsServerLock(conn, d, name)) ? null : `its connection is open but no longer holds the ${kind}`;
      } catch (e) {
        // The server ended the session (and so released the lock), or the network dropped.
        return `its connection to the server failed (${(e as Error).message}), and the server releases the lock with it`;
      }
    },
    async () => {
      end();
      await held;
    },
  );
}
