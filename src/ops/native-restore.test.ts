// A native restore (pg_restore / the mysql client fed a mysqldump) into a target that holds
// more than Coffer: it must never drop, replace or alter another application's object (in any
// schema), and it must refuse a target whose migration history is newer than this build's,
// before anything is read or dropped.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { ConfigError, MigrationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { defineMigration } from '../migrations/migration.js';
import { c, createTable } from '../schema/builder.js';
import { OPS_MIGRATIONS } from '../../test/fixtures/ops-fixture.js';
import { dumpAll, Pool } from '../../test/fixtures/ops-helpers.js';
import { skipReason } from '../../test/harness.js';
import { backupDatabase } from './backup.js';
import { readMarker } from './marker.js';
import { findTool } from './native-tools.js';
import { restoreDatabase } from './restore.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-native-restore-test-'));
let n = 0;
const file = (name: string) => join(dir, `${++n}-${name}`);

/** Why the native tests of a backend cannot run here, or undefined. */
function nativeSkip(b: 'postgres' | 'mysql'): string | undefined {
  const s = skipReason(b);
  if (s) return s;
  const tools = b === 'postgres' ? (['pg_dump', 'pg_restore'] as const) : (['mysqldump', 'mysql'] as const);
  const missing = tools.filter((t) => !findTool(t));
  return missing.length ? `${missing.join(' and ')} not installed` : undefined;
}

const rows = async <T>(db: Coffer, q: ReturnType<typeof sql<T>>): Promise<T[]> => (await q.execute(db.engine.reader)).rows;

/** A migration of a newer Coffer build than this one. */
const future = defineMigration(import.meta.url, {
  domain: 'fixture_future',
  version: 1,
  name: 'newer',
  ops: [
    createTable('fxf_things', {
      domain: 'fixture_future',
      columns: { id: c.int(), note: c.text() },
      primaryKey: ['id'],
    }),
  ],
});

describe('native restore into a target that holds more than Coffer', () => {
  const pool = new Pool();
  after(async () => {
    await pool.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A migrated source with one counter row; `extra` adds other objects before the backup. */
  async function nativeBackup(b: 'postgres' | 'mysql', extra: (db: Coffer) => Promise<void> = async () => {}): Promise<string> {
    const src = await pool.open((await pool.database(b)).url);
    await src.write((tx) => tx.insert('fx_counters', { name: 'n', value: 1n }));
    await extra(src);
    const f = file(`${b}.backup`);
    const r = await backupDatabase(src, f, { format: 'native' });
    assert.equal(r.kind, b === 'postgres' ? 'pg_dump' : 'mysqldump');
    return f;
  }

  test(
    'PostgreSQL: a table of another application in another schema of the target is never replaced',
    { skip: nativeSkip('postgres') },
    async () => {
      const f = await nativeBackup('postgres', async (src) => {
        const w = src.engine.writer;
        await sql`create schema other`.execute(w);
        await sql`create table other.accounts (id int primary key, owner text)`.execute(w);
        await sql`insert into other.accounts values (1, 'from the source')`.execute(w);
      });
      const { coffer: target } = await pool.emptyTarget('postgres');
      const w = target.engine.writer;
      await sql`create schema other`.execute(w);
      await sql`create table other.accounts (id int primary key, owner text)`.execute(w);
      await sql`insert into other.accounts values (1, 'precious'), (2, 'more')`.execute(w);
      await assert.rejects(restoreDatabase(f, target), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(e.message, /object\(s\) of another application \(.*schema other.*table other\.accounts/);
        assert.match(e.message, /that the backup would replace: restore into another database$/);
        return true;
      });
      assert.deepEqual(await rows(target, sql<{ id: number; owner: string }>`select id, owner from other.accounts order by id`), [
        { id: 1, owner: 'precious' },
        { id: 2, owner: 'more' },
      ]);
      assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'nothing was started');
    },
  );

  test(
    'PostgreSQL: a view and a function of another application in the current schema are never replaced',
    { skip: nativeSkip('postgres') },
    async () => {
      const f = await nativeBackup('postgres', async (src) => {
        await sql`create view app_report as select 1 as x`.execute(src.engine.writer);
        await sql`create function app_fn() returns text language sql as $$select 'source'$$`.execute(src.engine.writer);
      });
      const { coffer: target } = await pool.emptyTarget('postgres');
      await sql`create table app_report (id int primary key)`.execute(target.engine.writer);
      await sql`insert into app_report values (7)`.execute(target.engine.writer);
      await sql`create function app_fn() returns text language sql as $$select 'target'$$`.execute(target.engine.writer);
      await assert.rejects(
        restoreDatabase(f, target),
        (e: unknown) => e instanceof ConfigError && /view app_report/.test(e.message) && /function app_fn\(\)/.test(e.message),
      );
      assert.deepEqual(await rows(target, sql<{ id: number }>`select id from app_report`), [{ id: 7 }]);
      assert.deepEqual(await rows(target, sql<{ v: string }>`select app_fn() as v`), [{ v: 'target' }]);
    },
  );

  test(
    'MySQL: a table named as a view of the dump, and a same-named procedure, are never replaced',
    { skip: nativeSkip('mysql') },
    async () => {
      const f = await nativeBackup('mysql', async (src) => {
        await sql`create view app_report as select 1 as x`.execute(src.engine.writer);
        await sql.raw(`create procedure app_proc() select 'source version' as v`).execute(src.engine.writer);
      });
      const { coffer: target } = await pool.emptyTarget('mysql');
      const w = target.engine.writer;
      await sql`create table app_report (id int primary key, v text)`.execute(w);
      await sql`insert into app_report values (1, 'precious')`.execute(w);
      await sql.raw(`create procedure app_proc() select 'target version' as v`).execute(w);
      await assert.rejects(restoreDatabase(f, target), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(
          e.message,
          /2 object\(s\) of another application \((table app_report, procedure app_proc|procedure app_proc, table app_report)\)/,
        );
        return true;
      });
      assert.deepEqual(await rows(target, sql<{ id: number; v: string }>`select id, v from app_report`), [{ id: 1, v: 'precious' }]);
      const types = await rows(
        target,
        sql<{
          t: string;
        }>`select table_type as t from information_schema.tables where table_schema = database() and table_name = 'app_report'`,
      );
      assert.deepEqual(
        types.map((r) => r.t),
        ['BASE TABLE'],
      );
      const body = await rows(
        target,
        sql<{
          b: string;
        }>`select routine_definition as b from information_schema.routines where routine_schema = database() and routine_name = 'app_proc'`,
      );
      assert.match(String(body[0]?.b), /target version/);
      assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'nothing was started');
    },
  );

  for (const b of ['postgres', 'mysql'] as const) {
    test(`${b}: a dump of only Coffer's objects still restores into a migrated target`, { skip: nativeSkip(b) }, async () => {
      const src = await pool.open((await pool.database(b)).url);
      await src.write((tx) => tx.insert('fx_counters', { name: 'n', value: 1n }));
      const f = file(`${b}-plain.backup`);
      await backupDatabase(src, f, { format: 'native' });
      const { coffer: target } = await pool.emptyTarget(b);
      await target.migrator.apply();
      const r = await restoreDatabase(f, target);
      assert.equal(r.verified, true);
      assert.deepEqual(await dumpAll(target), await dumpAll(src));
    });

    test(
      `${b}: a target whose schema is newer than this build is refused before anything is dropped`,
      { skip: nativeSkip(b) },
      async () => {
        const f = await nativeBackup(b);
        const db = await pool.database(b);
        // A newer build migrated the target: it has a migration this build does not know.
        const newer = await pool.open(db.url, { migrations: [...OPS_MIGRATIONS, future] });
        await newer.write((tx) => tx.insert('fx_counters', { name: 'theirs', value: 5n }));
        const target = await pool.open(db.url, { migrate: 'skip' });
        await assert.rejects(restoreDatabase(f, target, { force: true }), (e: unknown) => {
          assert.ok(e instanceof MigrationError, String(e));
          assert.equal(e.code, 'migration');
          assert.match(e.message, /fixture_future/);
          return true;
        });
        // Nothing was dropped: the newer history and the newer build's table are still there.
        const history = await rows(target, sql<{ d: string }>`select domain as d from coffer_migrations where domain = 'fixture_future'`);
        assert.equal(history.length, 1);
        assert.equal((await rows(target, sql<{ n: unknown }>`select count(*) as n from fxf_things`)).length, 1);
        assert.deepEqual(
          (await rows(target, sql<{ name: string }>`select name from fx_counters order by name`)).map((r) => r.name),
          ['theirs'],
        );
        assert.equal(await readMarker(target.engine.reader, target.dialect), null, 'nothing was started');
      },
    );
  }
});
