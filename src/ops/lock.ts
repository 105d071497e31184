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

export interface TargetLock {
  /** Folders made for a SQLite target's lock file (so for the database too), deepest first. */
  readonly dirs: readonly string[];
  /** Gives the lock up; safe to call more than once. */
  release(): Promise<void>;
}

const NO_LOCK: TargetLock = { dirs: [], release: async () => {} };

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
  return { dirs, release: async () => releaseSync() };
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
/** How often the idle lock connection says something (MySQL's wait_timeout ends a silent one). */
const KEEPALIVE_MS = 60_000;

/** MySQL lock names are server-wide and at most 64 characters. */
function mysqlLockName(database: string): string {
  const name = `coffer.ops.${database}`;
  return name.length <= 64 ? name : `coffer.ops.${createHash('sha256').update(database).digest('hex').slice(0, 40)}`;
}

async function tryServerLock(conn: Kysely<any>, d: 'postgres' | 'mysql', operation: LockedOperation): Promise<string | null> {
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
      where l.locktype = 'advisory' and l.granted and l.objsubid = 2
        and l.classid = ${PG_KEYS[0]}::int::oid and l.objid = ${PG_KEYS[1]}::int::oid
        and l.database = (select oid from pg_database where datname = current_database())`.execute(conn);
    const x = h.rows[0];
    if (!x) return 'another session (it ended just now: run this again)';
    const since = x.since ? `, connected since ${new Date(x.since).toISOString()}` : '';
    return `${x.app?.startsWith('coffer ') ? x.app : `server process ${x.pid}${x.app ? ` (${x.app})` : ''}`}${x.addr ? ` from ${x.addr}` : ''}${since}`;
  }
  const db = (await sql<{ db: string }>`select database() as db`.execute(conn)).rows[0]!.db;
  const name = mysqlLockName(db);
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

async function unlockServer(conn: Kysely<any>, d: 'postgres' | 'mysql'): Promise<void> {
  if (d === 'postgres') {
    await sql`select pg_advisory_unlock(${PG_KEYS[0]}::int, ${PG_KEYS[1]}::int)`.execute(conn);
    await sql`reset application_name`.execute(conn);
  } else {
    const db = (await sql<{ db: string }>`select database() as db`.execute(conn)).rows[0]!.db;
    await sql`select release_lock(${mysqlLockName(db)})`.execute(conn);
  }
}

/** The server lock of a PostgreSQL or MySQL/MariaDB target, held on a connection of its own until released. */
async function lockServerDatabase(target: Coffer, operation: LockedOperation): Promise<TargetLock> {
  const d = target.dialect === 'postgres' ? 'postgres' : 'mysql';
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let taken!: (holder: string | null) => void;
  let failed!: (e: unknown) => void;
  const outcome = new Promise<string | null>((res, rej) => {
    taken = res;
    failed = rej;
  });
  const held = target.engine.writer
    .connection()
    .execute(async (conn) => {
      const holder = await tryServerLock(conn, d, operation);
      taken(holder);
      if (holder !== null) return;
      try {
        for (let done = false; !done;) {
          let timer: NodeJS.Timeout | undefined;
          done = await Promise.race([
            released.then(() => true),
            new Promise<boolean>((r) => (timer = setTimeout(() => r(false), KEEPALIVE_MS))),
          ]);
          clearTimeout(timer);
          if (!done) await sql`select 1`.execute(conn);
        }
      } finally {
        await unlockServer(conn, d);
      }
    })
    .catch((e: unknown) => failed(e));
  const holder = await outcome;
  if (holder !== null) {
    await held;
    throw new ConfigError(
      `target ${describeCoffer(target)} is in use by another coffer copy or restore (it holds the ${d === 'postgres' ? 'advisory' : 'named'} lock: ${holder}); nothing was changed: wait for it to finish, then run this again`,
      { field: 'to' },
    );
  }
  return {
    dirs: [],
    release: async () => {
      release();
      await held;
    },
  };
}
