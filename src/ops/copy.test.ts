// `coffer copy` across every pair of available backends, with every domain's tables filled with
// extreme values; resumption after an interruption; refusals; and verification that catches a
// difference and names the table and the first differing key.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { ConfigError, MigrationError, UniqueViolationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { verifyAuditLog } from '../domains/audit/verify.js';
import { HISTORY_TABLE } from '../migrations/history.js';
import { defineMigration } from '../migrations/migration.js';
import { c, createTable } from '../schema/builder.js';
import { compileOperation } from '../schema/compile.js';
import { fixtureProblems, OPS_MIGRATIONS } from '../../test/fixtures/ops-fixture.js';
import {
  AVAILABLE,
  dumpAll,
  filledSource,
  heldBy,
  holdTargetLock,
  leftoverLockFile,
  Pool,
  type FilledSource,
} from '../../test/fixtures/ops-helpers.js';
import { ALL_BACKENDS, skipReason, type BackendName } from '../../test/harness.js';
import { compareDatabases, copyDatabase, copyInto } from './copy.js';
import { describeCoffer, listTables, opsDb, pageQuery, serialNext } from './db.js';
import { runDoctor } from './doctor.js';
import { InterruptedError, VerificationError } from './errors.js';
import { createMarker, readMarker } from './marker.js';
import { SilentProgress } from './progress.js';

/** Progress that calls `fn` once, when `rows` rows have been counted. */
class Trigger extends SilentProgress {
  #fired = false;
  constructor(
    readonly rows: number,
    readonly fn: () => void,
  ) {
    super();
  }
  override add(rows: number, bytes: number, table?: string): void {
    super.add(rows, bytes, table);
    if (!this.#fired && this.snapshot().phase === 'copy' && this.snapshot().rows >= this.rows) {
      this.#fired = true;
      this.fn();
    }
  }
}

async function assertUsable(target: Coffer, source: FilledSource): Promise<void> {
  // Everything compares equal, decoded, table by table (independently of the checksums).
  assert.deepEqual(await dumpAll(target), source.dump);
  // The domains' own invariants hold on the copy.
  assert.deepEqual(await target.read((tx) => fixtureProblems(tx)), []);
  const audit = await verifyAuditLog(target);
  assert.equal(audit.ok, true, JSON.stringify(audit.firstBad));
  assert.equal(audit.verified, 4n);
  // Serial ids continue where the source's would: no id is handed out twice.
  const table = target.schema.tables.get('fx_accounts')!;
  const expected = await serialNext(source.coffer.engine.reader, source.coffer.dialect, table);
  const id = await target.write((tx) =>
    tx.insertReturningId('fx_accounts', { name: `after-copy-${Math.random()}`, hash: 'e'.repeat(64), created_at: new Date() }),
  );
  assert.equal(id, expected);
  // The loaded tables have planner statistics (ANALYZE), not the empty ones of a bulk load.
  if (target.dialect === 'postgres') {
    const r = await sql<{
      n: number;
    }>`select count(*)::int as n from pg_stat_user_tables where relname = 'fx_accounts' and last_analyze is not null`.execute(
      target.engine.reader,
    );
    assert.equal(r.rows[0]!.n, 1, 'fx_accounts was not analyzed after the copy');
  }
}

describe('copy between every pair of backends', () => {
  const pool = new Pool();
  const sources = new Map<BackendName, FilledSource>();
  before(async () => {
    for (const s of await Promise.all(AVAILABLE.map((b) => filledSource(pool, b)))) sources.set(s.backend, s);
  });
  after(() => pool.cleanup());

  test("the sources hold every domain's tables with extreme values", () => {
    for (const s of sources.values()) {
      const all = Object.values(s.dump).flat().join('\n');
      for (const needle of [
        '115792089237316195423570985008687907853269984665640564039457584007913129639935n',
        '-9223372036854775808n',
        '9223372036854775807n',
        '-2147483648',
        '𝄞',
        '0x0000ff00',
        '9999-12-31T23:59:59.999Z',
        '1900-02-28T12:34:56.78',
      ]) {
        assert.ok(all.includes(needle), `${s.backend} source lacks ${needle}`);
      }
      const empty = Object.entries(s.dump)
        .filter(([t, rows]) => rows.length === 0 && t !== 'coffer_migrations')
        .map(([t]) => t);
      // Only tables whose domain CHECKs no generic value satisfies may stay empty.
      for (const t of empty) assert.ok(t in s.fill.skipped, `${s.backend}: ${t} is empty without a recorded reason`);
      assert.ok(Object.keys(s.dump).length >= 30, "every domain's tables are present");
    }
  });

  // Pairs run six at a time: most of their time is the target server applying migrations.
  describe('every pair', { concurrency: 6 }, () => {
    for (const from of ALL_BACKENDS) {
      for (const to of ALL_BACKENDS) {
        const skip = skipReason(from) ?? skipReason(to);
        test(`${from} → ${to}: every row arrives exactly and verifies`, skip ? { skip } : {}, async () => {
          const source = sources.get(from)!;
          const { coffer: target } = await pool.emptyTarget(to);
          const report = await copyDatabase(source.coffer, target, { batchSize: 4 });
          assert.equal(report.verified, true);
          assert.equal(report.resumed, false);
          assert.equal(
            report.rowsCopied,
            Object.entries(source.dump)
              .filter(([t]) => t !== 'coffer_migrations')
              .reduce((n, [, r]) => n + r.length, 0),
          );
          assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'the incomplete marker is gone');
          await assertUsable(target, source);
        });
      }
    }
  });

  for (const to of AVAILABLE.filter((b) => b !== 'memory')) {
    test(`an interrupted copy into ${to} is marked incomplete and resumes to a verified result`, async () => {
      const source = sources.get(AVAILABLE.includes('sqlite') ? 'sqlite' : AVAILABLE[0]!)!;
      const { coffer: target } = await pool.emptyTarget(to);
      const ac = new AbortController();
      await assert.rejects(
        copyDatabase(source.coffer, target, { batchSize: 3, signal: ac.signal, progress: new Trigger(40, () => ac.abort()) }),
        (e: unknown) => e instanceof InterruptedError && /marked incomplete/.test(e.message) && /resume/.test(e.message),
      );
      const marker = await readMarker(target.engine.reader, target.dialect);
      assert.ok(marker, 'the target is marked incomplete');
      assert.equal(marker.state, 'running');
      const done = [...marker.tables.values()].reduce((n, t) => n + t.rowsDone, 0);
      assert.ok(done >= 40 && done < 250, `stopped part-way (${done} rows)`);
      // A copy from another source is refused rather than mixed in.
      const other = sources.get(AVAILABLE.find((b) => b !== source.backend) ?? source.backend)!;
      if (other !== source)
        await assert.rejects(
          copyDatabase(other.coffer, target),
          (e: unknown) => e instanceof ConfigError && /incomplete copy/.test(e.message),
        );
      const progress = new SilentProgress();
      const report = await copyDatabase(source.coffer, target, { batchSize: 3, progress });
      assert.equal(report.resumed, true);
      assert.ok(progress.notes.some((n) => /^resuming/.test(n)));
      assert.ok(report.rowsCopied < 250 && report.rowsCopied > 0, 'only the rest was copied');
      await assertUsable(target, source);
    });
  }

  test(
    'writes to the source during a copy fail verification, naming the table and the first differing key',
    { skip: skipReason('sqlite') },
    async () => {
      const db = await pool.database('sqlite');
      const src = await pool.open(db.url);
      for (let i = 0; i < 30; i++)
        await src.write((tx) => tx.insert('fx_counters', { name: `c${String(i).padStart(2, '0')}`, value: BigInt(i) }));
      const { coffer: target } = await pool.emptyTarget(AVAILABLE.includes('postgres') ? 'postgres' : 'sqlite');
      let late: Promise<void> | undefined;
      const progress = new Trigger(5, () => {
        late = src.write((tx) => tx.insert('fx_counters', { name: 'c15-late', value: 99n })).then(() => undefined);
      });
      await assert.rejects(copyDatabase(src, target, { batchSize: 5, throttleMs: 20, progress }), (e: unknown) => {
        assert.ok(e instanceof VerificationError, String(e));
        assert.match(e.message, /table fx_counters: 30 rows on the source, 31 on|table fx_counters: 31 rows on the source, 30 on/);
        assert.match(e.message, /first difference: table fx_counters: row name="c15-late" is on the source but missing from the target/);
        return true;
      });
      await late;
      const marker = await readMarker(target.engine.reader, target.dialect);
      assert.equal(marker?.state, 'failed');
      await assert.rejects(
        copyDatabase(src, target),
        (e: unknown) => e instanceof ConfigError && /verification failed/.test(e.message) && /--discard/.test(e.message),
      );
      const again = await copyDatabase(src, target, { discard: true });
      assert.equal(again.verified, true);
    },
  );

  test('compare (copy --verify-only) names the table, the key and the columns that differ', async () => {
    const source = sources.get(AVAILABLE.includes('postgres') ? 'postgres' : 'sqlite')!;
    const { coffer: target } = await pool.emptyTarget(AVAILABLE.includes('mysql') ? 'mysql' : 'sqlite');
    await copyDatabase(source.coffer, target);
    assert.equal((await compareDatabases(source.coffer, target)).equal, true);
    const row = await target.read((tx) =>
      tx.db.selectFrom('fxo_balances').select(['owner', 'token_id']).orderBy('owner').limit(1).executeTakeFirstOrThrow(),
    );
    await target.write((tx) =>
      tx.db
        .updateTable('fxo_balances')
        .set({ memo: 'tampered' })
        .where('owner', '=', row.owner)
        .where('token_id', '=', row.token_id)
        .execute(),
    );
    const r = await compareDatabases(source.coffer, target);
    assert.equal(r.equal, false);
    assert.equal(r.problems.length, 1);
    assert.match(
      r.problems[0]!,
      /^table fxo_balances: same row count \(\d+\) but the content checksums differ; first difference: table fxo_balances: row owner=".*", token_id=\d+ differs in column\(s\) memo$/,
    );
  });

  test('refuses a non-empty target unless forced, and a source with pending migrations', async () => {
    const source = sources.get(AVAILABLE[0]!)!;
    const { coffer: target } = await pool.emptyTarget(AVAILABLE.includes('sqlite') ? 'sqlite' : AVAILABLE[0]!);
    await target.migrator.apply();
    // Migration seed rows (the audit head) do not make a database "non-empty".
    await copyDatabase(source.coffer, target);
    const busy = await pool.emptyTarget(AVAILABLE.includes('sqlite') ? 'sqlite' : AVAILABLE[0]!);
    await busy.coffer.migrator.apply();
    await busy.coffer.write((tx) => tx.insert('fx_counters', { name: 'already-here', value: 1n }));
    await assert.rejects(
      copyDatabase(source.coffer, busy.coffer),
      (e: unknown) => e instanceof ConfigError && /is not empty \(fx_counters: 1 rows\)/.test(e.message) && /--force/.test(e.message),
    );
    const forced = await copyDatabase(source.coffer, busy.coffer, { force: true });
    assert.equal(forced.verified, true);
    assert.deepEqual(await dumpAll(busy.coffer), source.dump);

    const extra = defineMigration(import.meta.url, {
      domain: 'fixture_extra',
      version: 1,
      name: 'extra',
      ops: [createTable('fxx_later', { domain: 'fixture_extra', columns: { id: c.int() }, primaryKey: ['id'] })],
    });
    const pendingDb = await pool.database('sqlite');
    const behind = await pool.open(pendingDb.url);
    const ahead = await pool.open(pendingDb.url, { migrations: [...OPS_MIGRATIONS, extra], migrate: 'skip' });
    const { coffer: t2 } = await pool.emptyTarget('sqlite');
    void behind;
    await assert.rejects(
      copyDatabase(ahead, t2),
      (e: unknown) => e instanceof MigrationError && /pending migration/.test(e.message) && /fixture_extra\/0001_extra/.test(e.message),
    );
    // A target that has a migration this build does not know is refused by the migrator.
    const t3db = await pool.database('sqlite');
    await pool.open(t3db.url, { migrations: [...OPS_MIGRATIONS, extra] });
    const t3 = await pool.open(t3db.url, { migrate: 'skip' });
    await assert.rejects(copyDatabase(source.coffer, t3), (e: unknown) => e instanceof MigrationError || e instanceof ConfigError);
  });

  test('a keyset page seeks the primary key past the last row instead of re-reading the rows before it', async () => {
    // chain_transactions is keyed (chain_id, tx_hash) with one chain_id for every row: a page
    // condition the index can only use on chain_id makes a 1M-row copy or verify quadratic.
    for (const s of sources.values()) {
      const table = s.coffer.schema.tables.get('chain_transactions')!;
      const columns = [...table.columns.values()];
      const after = { chain_id: 'chain-a', tx_hash: 'ab'.repeat(32) };
      const q = pageQuery(s.coffer.engine.reader, s.coffer.dialect, table, columns, after, 1000).compile();
      const plan = await s.coffer.engine.reader.connection().execute(async (conn) => {
        const run = async (text: string) =>
          (await conn.executeQuery({ ...q, sql: text, parameters: q.parameters })).rows.map((r) =>
            JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
          );
        if (s.coffer.dialect === 'postgres') {
          // A table of a few rows is cheapest to sort; the question is what the index can do.
          await conn.executeQuery(sql`set enable_seqscan = off`.compile(s.coffer.engine.reader));
          await conn.executeQuery(sql`set enable_bitmapscan = off`.compile(s.coffer.engine.reader));
          try {
            return JSON.stringify(await run(`explain ${q.sql}`));
          } finally {
            await conn.executeQuery(sql`reset enable_seqscan`.compile(s.coffer.engine.reader));
            await conn.executeQuery(sql`reset enable_bitmapscan`.compile(s.coffer.engine.reader));
          }
        }
        return JSON.stringify(await run(`explain ${s.coffer.dialect === 'sqlite' ? 'query plan ' : ''}${q.sql}`));
      });
      if (s.coffer.dialect === 'postgres')
        assert.match(plan, /Index Cond: \(ROW\(\(?chain_id\)?(::text)?, \(?tx_hash\)?(::text)?\) > ROW\(/, `${s.backend}: ${plan}`);
      else if (s.coffer.dialect === 'sqlite') assert.match(plan, /\(chain_id,tx_hash\)>\(\?,\?\)/, `${s.backend}: ${plan}`);
      else {
        // A range on the primary key over both key columns (a range on chain_id alone is shorter).
        const m = /range.*PRIMARY.*key_len[^0-9]*([0-9]+)/.exec(plan);
        assert.ok(m, `${s.backend}: ${plan}`);
        const chainIdBytes = 64 * 4 + 2; // VARCHAR(64), up to 4 bytes a character, 2 length bytes
        assert.ok(Number(m[1]) > chainIdBytes, `${s.backend}: the range covers chain_id only: ${plan}`);
      }
    }
  });

  test('refuses to copy a database onto itself', async () => {
    const s = sources.get(AVAILABLE[0]!)!;
    await assert.rejects(copyDatabase(s.coffer, s.coffer), (e: unknown) => e instanceof ConfigError && /same database/.test(e.message));
    assert.equal(opsDb(s.coffer).label, AVAILABLE[0]);
  });

  test('refuses to copy a database onto itself reached by another URL, even with --force (the source would be dropped)', async () => {
    for (const [backend, s] of sources) {
      const url = s.coffer.target.url;
      let alias: string | undefined;
      if (backend === 'postgres' || backend === 'mysql') alias = url.replace('127.0.0.1', 'localhost');
      if (backend === 'sqlite') {
        const { symlinkSync } = await import('node:fs');
        const path = (s.coffer.target as { path: string }).path;
        const link = `${path}.alias-${process.pid}.db`;
        symlinkSync(path, link);
        alias = `sqlite:${link}`;
      }
      if (!alias || alias === url) continue;
      const other = await pool.open(alias, { migrate: 'skip' });
      const before = await dumpAll(s.coffer);
      await assert.rejects(
        copyDatabase(s.coffer, other, { force: true }),
        (e: unknown) => e instanceof ConfigError && /same database/.test(e.message),
        `${backend}: ${alias}`,
      );
      assert.deepEqual(await dumpAll(s.coffer), before, `${backend}: the source is untouched`);
    }
  });
});

/**
 * A source the target refuses part way: fx_accounts lost its unique index on name (a damaged
 * or hand-edited database), and its last row repeats an earlier name. With batches of 4 the
 * first 8 rows load; the batch holding the repeat fails on the target. fix() deletes it.
 */
async function duplicateNameSource(pool: Pool, b: BackendName): Promise<{ coffer: Coffer; fix(): Promise<void> }> {
  const coffer = await pool.open((await pool.database(b)).url);
  const account = (i: number, name = `account-${i}`) =>
    coffer.write((tx) => tx.insertReturningId('fx_accounts', { name, hash: i.toString(16).padStart(64, '0'), created_at: new Date() }));
  for (let i = 0; i < 10; i++) await account(i);
  for (const step of compileOperation(coffer.dialect, { op: 'dropIndex', table: 'fx_accounts', name: 'uq_fx_accounts_name' }))
    await sql.raw(step.sql).execute(coffer.engine.writer);
  const repeat = await account(10, 'account-3');
  return { coffer, fix: () => coffer.write((tx) => tx.db.deleteFrom('fx_accounts').where('id', '=', repeat).execute()).then(() => {}) };
}

describe('a copy checks its source before it opens the target, and a failure leaves no new database behind', { concurrency: 6 }, () => {
  const pool = new Pool();
  const dir = mkdtempSync(join(tmpdir(), 'coffer-copy-test-'));
  let n = 0;
  after(async () => {
    await pool.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A target copyInto opens itself: a SQLite path in folders that do not exist yet, an empty server database, or memory://. */
  async function targetToOpen(to: BackendName) {
    const folder = join(dir, `${++n}-new`);
    const path = to === 'sqlite' ? join(folder, 'sub', 'copy.db') : null;
    const url = path ? `sqlite:${path}` : (await pool.database(to)).url;
    let opened = 0;
    const into = {
      url,
      open: () => {
        opened++;
        return pool.open(url, { migrate: 'skip' });
      },
    };
    return { url, folder, path, into, opened: () => opened };
  }

  // Sources copy must refuse, made once per backend: every check on them needs no target.
  const refused = new Map<BackendName, Promise<[Coffer, (e: unknown) => boolean][]>>();
  const sourcesToRefuse = (from: BackendName) => {
    let p = refused.get(from);
    if (!p) {
      p = (async () => {
        const empty = (await pool.emptyTarget(from)).coffer;
        // A database a newer Coffer migrated: its history has a migration this build does not know.
        const newer = await pool.open((await pool.database(from)).url);
        await newer.write((tx) =>
          tx.insert(HISTORY_TABLE, {
            domain: 'fixture_future',
            version: 1,
            name: 'from_the_future',
            checksum: 'ab'.repeat(32),
            state: 'applied',
            applied_at: new Date(),
          }),
        );
        const marked = await pool.open((await pool.database(from)).url);
        await createMarker(opsDb(marked), {
          operation: 'restore',
          source: 'elsewhere.backup',
          sourceId: 'elsewhere',
          startedAt: new Date().toISOString(),
        });
        return [
          [
            empty,
            (e: unknown) =>
              e instanceof ConfigError &&
              e.message.startsWith(`source ${describeCoffer(empty)} is not a Coffer database (it has no migration history): check --from`),
          ],
          [
            newer,
            (e: unknown) =>
              e instanceof MigrationError &&
              e.message.includes('migration history does not match this build of Coffer (fixture_future/0001_from_the_future is unknown)'),
          ],
          [
            marked,
            (e: unknown) =>
              e instanceof ConfigError &&
              e.message.startsWith(`source ${describeCoffer(marked)} is itself an incomplete restore from elsewhere.backup`) &&
              e.message.endsWith(': finish or discard that first'),
          ],
        ];
      })();
      refused.set(from, p);
    }
    return p;
  };

  // The target refuses a row of these part way (shared: the failing copies only read them).
  const failing = new Map<BackendName, ReturnType<typeof duplicateNameSource>>();
  const failingSource = (from: BackendName) => {
    if (!failing.has(from)) failing.set(from, duplicateNameSource(pool, from));
    return failing.get(from)!;
  };

  for (const from of ALL_BACKENDS) {
    for (const to of ALL_BACKENDS) {
      const skip = skipReason(from) ?? skipReason(to);
      test(
        `${from} → ${to}: a source copy cannot start from is refused before the target is opened, and nothing is created`,
        skip ? { skip } : {},
        async () => {
          const t = await targetToOpen(to);
          for (const [source, expected] of await sourcesToRefuse(from)) await assert.rejects(copyInto(source, t.into), expected);
          assert.equal(t.opened(), 0, 'the target was not opened');
          if (t.path) assert.equal(existsSync(t.folder), false, 'no SQLite file (or folder) was created');
          else if (to !== 'memory') {
            const target = await pool.open(t.url, { migrate: 'skip' });
            assert.deepEqual([...(await listTables(target.engine.reader, target.dialect))], [], 'nothing was written to the target');
          }
        },
      );
    }
  }

  for (const to of ALL_BACKENDS) {
    test(
      `into ${to}: a copy into a target whose lock another run holds is refused up front, naming that run, and touches nothing; released, the copy runs`,
      skipReason(to) ? { skip: skipReason(to) } : {},
      async () => {
        const source = await pool.open('memory://');
        await source.write((tx) => tx.insert('fx_counters', { name: 'c1', value: 1n }));
        const t = await targetToOpen(to);
        const lockFile = t.path ? `${t.path}.coffer-lock` : undefined;
        let other = await holdTargetLock(pool, t.url, 'restore');
        if (to === 'memory') {
          // A memory:// database is private to the Coffer that opened it: there is nothing to share, or lock.
          assert.equal((await copyInto(source, t.into)).verified, true);
          return;
        }
        const refused = (e: unknown) => e instanceof ConfigError && heldBy(to, 'restore', lockFile).test(e.message);
        await assert.rejects(copyInto(source, t.into), refused);
        if (t.path) {
          assert.equal(t.opened(), 0, 'the target was not opened');
          assert.equal(existsSync(t.path), false, 'no database was created');
          assert.ok(existsSync(lockFile!), "the other run's lock file stays");
        } else {
          const target = await pool.open(t.url, { migrate: 'skip' });
          assert.deepEqual([...(await listTables(target.engine.reader, target.dialect))], [], 'nothing was written to the target');
        }
        await other.release();
        assert.equal((await copyInto(source, t.into)).verified, true);
        if (lockFile) assert.equal(existsSync(lockFile), false, 'the lock goes with the run');
        // A copy into the open target (copyDatabase) takes the same lock.
        const target = await pool.open(t.url, { migrate: 'skip' });
        const before = await dumpAll(target);
        other = await holdTargetLock(pool, t.url, 'restore');
        await assert.rejects(copyDatabase(source, target, { discard: true, force: true }), refused);
        assert.deepEqual(await dumpAll(target), before, 'the target is untouched');
        await other.release();
      },
    );
  }

  test('a SQLite lock file left by a run that is gone (its pid no longer runs on this host) is taken over; one from another host is refused, naming the file to delete', async () => {
    const source = await pool.open('memory://');
    const t = await targetToOpen('sqlite');
    mkdirSync(dirname(t.path!), { recursive: true });
    const file = leftoverLockFile(t.path!, 'elsewhere.example');
    await assert.rejects(
      copyInto(source, t.into),
      (e: unknown) =>
        e instanceof ConfigError &&
        /is in use by another coffer restore \(pid \d+ on elsewhere\.example, started 2026-01-01T00:00:00\.000Z; lock file /.test(
          e.message,
        ) &&
        e.message.endsWith(`; if that run is gone (it ran on another machine, so this one cannot tell), delete ${file}`),
    );
    assert.equal(existsSync(t.path!), false, 'no database was created');
    leftoverLockFile(t.path!);
    assert.equal((await copyInto(source, t.into)).verified, true);
    assert.equal(existsSync(file), false, 'the stale lock file was taken over, then released');
  });

  for (const from of ALL_BACKENDS) {
    for (const to of ALL_BACKENDS) {
      const skip = skipReason(from) ?? skipReason(to);
      test(
        `${from} → ${to}: a copy failing part way into a target it opened removes a SQLite file it created (with -wal/-shm and folders); an existing database is kept, marked failed`,
        skip ? { skip } : {},
        async () => {
          const source = await failingSource(from);
          const t = await targetToOpen(to);
          await assert.rejects(copyInto(source.coffer, t.into, { batchSize: 4 }), (e: unknown) => {
            assert.ok(e instanceof UniqueViolationError, String(e));
            if (t.path)
              assert.ok(e.message.endsWith(`; removed ${t.path} and the folder(s) created for it, which this copy had created`), e.message);
            else if (to === 'memory')
              assert.ok(e.message.endsWith('; nothing is left behind (a memory:// database ends with the copy)'), e.message);
            else
              assert.match(
                e.message,
                / is left marked as a failed copy \(table coffer_ops_progress; .* existed before this copy, so it is not removed\)/,
              );
            return true;
          });
          assert.equal(t.opened(), 1);
          if (t.path) {
            for (const f of [t.path, `${t.path}-wal`, `${t.path}-shm`]) assert.equal(existsSync(f), false, `${f} was removed`);
            assert.equal(existsSync(t.folder), false, 'and the folders made for it');
          } else if (to !== 'memory') {
            const target = await pool.open(t.url, { migrate: 'skip' });
            const marker = (await readMarker(target.engine.reader, target.dialect))!;
            assert.equal(marker.state, 'failed');
            assert.equal(marker.tables.get('fx_accounts')?.rowsDone, 8, 'the batches before the refused row were loaded');
          }
        },
      );
    }
  }

  for (const from of ALL_BACKENDS) {
    for (const to of ALL_BACKENDS) {
      const skip = skipReason(from) ?? skipReason(to);
      test(
        `${from} → ${to}: a copy failing part way into a database that existed before leaves it marked failed with the reason, doctor says so, and it resumes once the cause is fixed`,
        skip ? { skip } : {},
        async () => {
          const source = await duplicateNameSource(pool, from);
          const { coffer: target } = await pool.emptyTarget(to);
          const db = describeCoffer(target);
          let message = '';
          await assert.rejects(copyDatabase(source.coffer, target, { batchSize: 4 }), (e: unknown) => {
            message = (e as Error).message;
            assert.ok(e instanceof UniqueViolationError, message);
            // The table and the rows of the refused batch, which the driver's error does not name.
            assert.ok(message.startsWith('writing fx_accounts (the batch of 3 row(s) from id=9 … id=11): '), message);
            assert.ok(
              message.endsWith(
                `; ${db} is left marked as a failed copy (table coffer_ops_progress; ${db} existed before this copy, so it is not removed): coffer doctor reports it and nothing should use it; fix the cause and run the same coffer copy again to resume it, or add --discard to throw away what was loaded`,
              ),
              message,
            );
            return true;
          });
          const marker = (await readMarker(target.engine.reader, target.dialect))!;
          assert.equal(marker.state, 'failed');
          assert.equal(marker.tables.get('fx_accounts')?.rowsDone, 8, 'the batches before the refused row were loaded');
          const reason = String(marker.info.error);
          assert.ok(message.startsWith(`${reason}; `), 'the marker records why');
          const doctor = await runDoctor(target, { only: ['incomplete'] });
          const [finding] = doctor.findings.filter((f) => f.check === 'incomplete');
          assert.equal(finding?.severity, 'error');
          assert.ok(
            finding.message.startsWith(`this database is an incomplete copy from ${describeCoffer(source.coffer)} (`) &&
              finding.message.includes(`state failed: ${reason.slice(0, 100)}`),
            finding.message,
          );
          assert.match(finding.remedy ?? '', /^run the same coffer copy again to resume it once the cause is fixed/);
          // The cause fixed (the repeated row deleted from the source), the same copy resumes.
          await source.fix();
          const progress = new SilentProgress();
          const r = await copyDatabase(source.coffer, target, { batchSize: 4, progress });
          assert.equal(r.resumed, true);
          assert.equal(r.verified, true);
          assert.ok(
            progress.notes.some((x) => /^resuming an incomplete copy .* state failed: /.test(x)),
            progress.notes.join('\n'),
          );
          assert.deepEqual(await dumpAll(target), await dumpAll(source.coffer));
          assert.equal(await readMarker(target.engine.reader, target.dialect), null);
        },
      );
    }
  }
});
