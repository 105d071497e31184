// A copy or restore whose target lock is lost part way (lock.ts, aftermath.ts): the server ends
// the lock's session (pg_terminate_backend, KILL), or the lock file is deleted or taken over by
// another run. The run fails naming the lost lock (exit 1), the target is never marked complete
// (doctor reports it incomplete), and the same command run again resumes it to a verified result.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { exitCodeFor } from '../cli/main.js';
import { Coffer } from '../db/store.js';
import { parseDatabaseUrl } from '../db/url.js';
import { dumpAll, fillEveryTable } from '../../test/fixtures/fill.js';
import { leftoverLockFile, Pool } from '../../test/fixtures/ops-helpers.js';
import { ALL_BACKENDS, skipReason, type BackendName } from '../../test/harness.js';
import { backupDatabase } from './backup.js';
import { copyInto } from './copy.js';
import { describeCoffer } from './db.js';
import { runDoctor } from './doctor.js';
import { lockTarget, TargetLockLostError } from './lock.js';
import { readMarker } from './marker.js';
import { SilentProgress } from './progress.js';
import { restoreDatabase } from './restore.js';

const NO_LOCK = 'memory:// has no lock: a memory database is private to the process that opened it, so there is none to lose';
const skipOf = (b: BackendName) => (b === 'memory' ? NO_LOCK : skipReason(b));

const ROWS = 40;
const BATCH = 4;
/** Slow enough that the lock is lost (and that loss acted on) while rows are still being loaded. */
const THROTTLE_MS = 60;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Runs `fn` with the lock checked every `ms` (COFFER_LOCK_CHECK_MS), as lock.ts reads it when a lock is taken. */
async function checkingEvery<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const before = process.env.COFFER_LOCK_CHECK_MS;
  process.env.COFFER_LOCK_CHECK_MS = String(ms);
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.COFFER_LOCK_CHECK_MS;
    else process.env.COFFER_LOCK_CHECK_MS = before;
  }
}
/** Long enough that only assertHeld (before verifying, before marking complete) can find the loss. */
const NEVER = 3_600_000;

/** The advisory lock's row in pg_locks, as lock.ts takes it. */
const PG_LOCK_ROW = sql`l.locktype = 'advisory' and l.granted and l.objsubid = 2
  and l.classid = ${0x436f6666}::int::oid and l.objid = ${0x6f707321}::int::oid
  and l.database = (select oid from pg_database where datname = current_database())`;

async function until(what: string, done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await done()); i++) {
    assert.ok(i < 400, `timed out waiting until ${what}`);
    await sleep(25);
  }
}

/**
 * Takes the target's lock away from the run holding it, as happens in production: PostgreSQL
 * and MySQL end its session (pg_terminate_backend, KILL), and the server releases the lock with
 * it (waited for); a SQLite lock file is deleted by hand, or taken over by another run (which
 * is gone by now, so the next run takes it over in turn).
 */
async function loseLock(pool: Pool, b: BackendName, url: string, how: 'delete' | 'take' = 'delete'): Promise<void> {
  const t = parseDatabaseUrl(url);
  if (t.backend === 'sqlite') {
    const file = `${t.path}.coffer-lock`;
    assert.ok(existsSync(file), 'the run holds its lock file');
    if (how === 'delete') rmSync(file);
    else leftoverLockFile(t.path);
    return;
  }
  const admin = await pool.open(url, { migrate: 'skip' });
  const db = admin.engine.writer;
  if (b === 'postgres') {
    const r = await sql<{ pid: number }>`select l.pid from pg_locks l where ${PG_LOCK_ROW}`.execute(db);
    assert.equal(r.rows.length, 1, 'the run holds the advisory lock');
    await sql`select pg_terminate_backend(${r.rows[0]!.pid}::int)`.execute(db);
    await until('the server released the advisory lock', async () => {
      const n = await sql<{ n: number }>`select count(*)::int as n from pg_locks l where ${PG_LOCK_ROW}`.execute(db);
      return n.rows[0]!.n === 0;
    });
    return;
  }
  const name = `coffer.ops.${t.backend === 'mysql' ? t.database : ''}`;
  const id = (await sql<{ id: unknown }>`select is_used_lock(${name}) as id`.execute(db)).rows[0]?.id;
  assert.ok(id !== null && id !== undefined, 'the run holds the named lock');
  await sql.raw(`kill ${Number(id)}`).execute(db);
  await until('the server released the named lock', async () => {
    const r = await sql<{ id: unknown }>`select is_used_lock(${name}) as id`.execute(db);
    return r.rows[0]?.id === null;
  });
}

/** Progress that loses the lock (once) when the first batch of the load has been written, and records the phases. */
class LoseLockDuringLoad extends SilentProgress {
  readonly phases: string[] = [];
  losing: Promise<void> | null = null;
  constructor(readonly lose: () => Promise<void>) {
    super();
  }
  override phase(name: string, totalRows: number | null, unit?: string): void {
    super.phase(name, totalRows, unit);
    this.phases.push(name);
  }
  override add(rows: number, bytes: number, table?: string): void {
    super.add(rows, bytes, table);
    const p = this.snapshot().phase;
    if (!this.losing && (p === 'copy' || p === 'restore')) this.losing = this.lose();
  }
}

/** A memory:// source of ROWS counters: ROWS / BATCH batches to load. */
async function counters(pool: Pool): Promise<Coffer> {
  const s = await pool.open('memory://');
  await s.write(async (tx) => {
    for (let i = 0; i < ROWS; i++) await tx.insert('fx_counters', { name: `c${String(i).padStart(3, '0')}`, value: BigInt(i) });
  });
  return s;
}

/** Checks the target is marked incomplete, as doctor says; returns how many counters it loaded. */
async function leftIncomplete(pool: Pool, url: string, operation: 'copy' | 'restore'): Promise<number> {
  const target = await pool.open(url, { migrate: 'skip' });
  const marker = await readMarker(target.engine.reader, target.dialect);
  assert.ok(marker, 'the target is still marked incomplete');
  assert.equal(marker.state, 'running', 'and not marked failed either: another run may have it');
  const doctor = await runDoctor(target, { only: ['incomplete'] });
  const [finding] = doctor.findings.filter((f) => f.check === 'incomplete');
  assert.equal(finding?.severity, 'error');
  assert.match(finding.message, new RegExp(`^this database is an incomplete ${operation} from `));
  return marker.tables.get('fx_counters')?.rowsDone ?? 0;
}

const lostMessage = (operation: 'copy' | 'restore', db: string) =>
  new RegExp(
    `^this ${operation} lost its lock on target ${esc(db)} \\(.*\\): .*; another coffer copy or restore may have taken the target since; this ${operation} stopped without marking the target complete: it stays marked incomplete \\(table coffer_ops_progress\\), which coffer doctor reports, and nothing should use it: check that no other coffer copy or restore into it is running, then run the same coffer ${operation} again to resume it`,
  );

describe('a copy or restore that loses its target lock part way', () => {
  const pool = new Pool();
  const dir = mkdtempSync(join(tmpdir(), 'coffer-lock-test-'));
  after(async () => {
    await pool.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const b of ALL_BACKENDS) {
    test(
      `${b}: assertHeld passes while the lock is held; once lost it throws, the lock says so, its signal aborts, and release still works`,
      { skip: skipOf(b) },
      async () => {
        const { coffer: target, db } = await pool.emptyTarget(b);
        const lock = pool.track(await checkingEvery(NEVER, () => lockTarget(target, 'copy')));
        await lock.assertHeld();
        await lock.assertHeld();
        assert.equal(lock.lost as unknown, null);
        assert.equal(lock.signal.aborted, false);
        await loseLock(pool, b, db.url);
        await assert.rejects(lock.assertHeld(), (e: unknown) => {
          assert.ok(e instanceof TargetLockLostError, String(e));
          assert.match(e.message, new RegExp(`^this copy lost its lock on target ${esc(describeCoffer(target))}`));
          assert.match(
            e.message,
            b === 'sqlite'
              ? /\(its lock file .*\.coffer-lock\): the lock file was deleted; /
              : /held on a connection of its own\): its connection to the server failed \(.*\), and the server releases the lock with it; /,
          );
          return true;
        });
        assert.ok(lock.lost instanceof TargetLockLostError);
        assert.equal(lock.signal.aborted, true);
        assert.equal(lock.signal.reason, lock.lost);
        await lock.release();
        // The lock is free again: the next run takes it.
        const next = await lockTarget(target, 'restore');
        await next.assertHeld();
        await next.release();
      },
    );
  }

  for (const b of ALL_BACKENDS) {
    test(
      `${b}: checked every few seconds, a lost lock is found without assertHeld, and stops the run at its next batch`,
      { skip: skipOf(b) },
      async () => {
        const source = await counters(pool);
        const { db } = await pool.emptyTarget(b);
        const into = { url: db.url, open: () => pool.open(db.url, { migrate: 'skip' }) };
        const progress = new LoseLockDuringLoad(() => loseLock(pool, b, db.url));
        const err = await checkingEvery(20, () =>
          copyInto(source, into, { batchSize: BATCH, throttleMs: THROTTLE_MS, progress }).then(
            () => assert.fail('the copy finished without its lock'),
            (e: unknown) => e,
          ),
        );
        await progress.losing;
        assert.ok(err instanceof TargetLockLostError, String(err));
        assert.match(err.message, lostMessage('copy', describeCoffer(await into.open())));
        assert.doesNotMatch(err.message, /it had also failed/, 'stopping for the loss is not another failure');
        assert.equal(exitCodeFor(err), 1, 'exit 1, as a failed run');
        assert.deepEqual(progress.phases, ['copy'], 'it stopped while loading, before verifying');
        const done = await leftIncomplete(pool, db.url, 'copy');
        assert.ok(done < ROWS, `it stopped part way (${done} of ${ROWS} rows loaded)`);
        // Run again: it resumes where this one stopped, and verifies.
        const r = await copyInto(source, into, { batchSize: BATCH });
        assert.equal(r.resumed, true);
        assert.equal(r.verified, true);
        assert.deepEqual(await dumpAll(await into.open()), await dumpAll(source));
      },
    );
  }

  for (const b of ALL_BACKENDS) {
    test(
      `${b}: coffer copy whose lock is lost while loading is refused before verifying; the target stays marked incomplete, and the same copy resumes it`,
      { skip: skipOf(b) },
      async () => {
        const source = await counters(pool);
        // A new SQLite file: created by this copy, and kept (another run may be using it now).
        const url = b === 'sqlite' ? `sqlite:${join(dir, `${b}-copy`, 'target.db')}` : (await pool.database(b)).url;
        const into = { url, open: () => pool.open(url, { migrate: 'skip' }) };
        const progress = new LoseLockDuringLoad(() => loseLock(pool, b, url));
        const err = await checkingEvery(NEVER, () =>
          copyInto(source, into, { batchSize: BATCH, throttleMs: THROTTLE_MS, progress }).then(
            () => assert.fail('the copy finished without its lock'),
            (e: unknown) => e,
          ),
        );
        await progress.losing;
        assert.ok(err instanceof TargetLockLostError, String(err));
        assert.match(err.message, lostMessage('copy', describeCoffer(await into.open())));
        assert.equal(exitCodeFor(err), 1);
        assert.ok(!progress.phases.includes('verify'), `not verified: ${progress.phases.join(', ')}`);
        assert.equal(await leftIncomplete(pool, url, 'copy'), ROWS, 'every row was loaded, but the target is not complete');
        const r = await copyInto(source, into, { batchSize: BATCH });
        assert.equal(r.resumed, true);
        assert.equal(r.verified, true);
        assert.deepEqual(await dumpAll(await into.open()), await dumpAll(source));
      },
    );
  }

  for (const b of ALL_BACKENDS) {
    test(
      `${b}: coffer restore (without verifying) whose lock is lost is refused before marking the target complete; it stays marked incomplete, and the same restore resumes it`,
      { skip: skipOf(b) },
      async () => {
        const source = await counters(pool);
        const file = join(dir, `${b}-restore.backup`);
        await backupDatabase(source, file, { format: 'logical' });
        const { coffer: target, db } = await pool.emptyTarget(b);
        // SQLite: the lock file taken over by another run (gone by now, so the next run takes it over).
        const progress = new LoseLockDuringLoad(() => loseLock(pool, b, db.url, 'take'));
        const err = await checkingEvery(NEVER, () =>
          restoreDatabase(file, target, { batchSize: BATCH, throttleMs: THROTTLE_MS, progress, verify: false }).then(
            () => assert.fail('the restore finished without its lock'),
            (e: unknown) => e,
          ),
        );
        await progress.losing;
        assert.ok(err instanceof TargetLockLostError, String(err));
        assert.match(err.message, lostMessage('restore', describeCoffer(target)));
        if (b === 'sqlite') assert.match(err.message, /: the lock file now names another coffer restore \(pid \d+ on /);
        assert.equal(exitCodeFor(err), 1);
        assert.equal(await leftIncomplete(pool, db.url, 'restore'), ROWS, 'every row was loaded, but the target is not complete');
        const r = await restoreDatabase(file, target, { batchSize: BATCH });
        assert.equal(r.resumed, true);
        assert.equal(r.verified, true);
        assert.deepEqual(await dumpAll(target), await dumpAll(source));
        assert.equal(await readMarker(target.engine.reader, target.dialect), null);
      },
    );
  }

  test('on the command line: coffer copy whose lock file is deleted part way prints the loss on one line and exits 1; run again, it resumes', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const sourceUrl = `sqlite:${join(dir, 'cli-source.db')}`;
    const c = await Coffer.open({ url: sourceUrl });
    try {
      await fillEveryTable(c, { rowsPerTable: 10, exclude: ['audit_log', 'audit_head'] });
    } finally {
      await c.close();
    }
    const path = join(dir, 'cli-target.db');
    const run = (env: Record<string, string>) => {
      const child = spawn(
        process.execPath,
        [join(root, 'bin/coffer.js'), 'copy', '--from', sourceUrl, '--to', `sqlite:${path}`, '--batch-size', '5'],
        { cwd: root, env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '', ...env } },
      );
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.stdout.resume();
      const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
      return { done, stderr: () => stderr };
    };
    const first = run({ COFFER_OPS_THROTTLE_MS: '40', COFFER_PROGRESS_INTERVAL_MS: '50', COFFER_LOCK_CHECK_MS: '50' });
    let exited = false;
    void first.done.then(() => (exited = true));
    await until('the copy is loading', async () => exited || /^copy: [1-9]/m.test(first.stderr()));
    assert.equal(exited, false, first.stderr());
    rmSync(`${path}.coffer-lock`);
    assert.equal(await first.done, 1, first.stderr());
    const errors = first
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('coffer: error:'));
    assert.equal(errors.length, 1, first.stderr());
    assert.match(
      errors[0]!,
      /^coffer: error: this copy lost its lock on target sqlite:.*: the lock file was deleted; .*run the same coffer copy again to resume it$/,
    );
    const again = run({});
    assert.equal(await again.done, 0, again.stderr());
    assert.match(again.stderr(), /resuming an incomplete copy/);
  });
});
