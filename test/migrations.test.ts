// Migrations on every backend: applied once, checksummed, refused when edited, unknown or
// reordered, resumable on MySQL, exactly once under concurrent starts; and schema parity.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { sql } from 'kysely';
import { MigrationError } from '../src/db/errors.js';
import { MIGRATIONS } from '../src/domains/registry.js';
import { HISTORY_TABLE } from '../src/migrations/history.js';
import { defineMigration, migrationChecksum, type Migration } from '../src/migrations/migration.js';
import { validateMigrations } from '../src/migrations/runner.js';
import { addColumn, c, createIndex, createTable } from '../src/schema/builder.js';
import { diffFacts, expectedFacts } from '../src/schema/compile.js';
import { introspect } from '../src/schema/introspect.js';
import type { Coffer } from '../src/db/store.js';
import { FIXTURE_MIGRATIONS, kitchenSink } from './fixtures/kitchen-sink.js';
import { forEachBackend } from './harness.js';

function edited(m: Migration): Migration {
  const copy = structuredClone(m) as Migration;
  const t = (copy.ops[0] as { table: { columns: { name: string; type: { max?: number } }[] } }).table;
  t.columns.find((col) => col.name === 'name')!.type.max = 41;
  return copy;
}

async function liveDiff(coffer: Coffer): Promise<string[]> {
  const live = await coffer.read((tx) => introspect(tx.db, tx.dialect));
  return diffFacts(expectedFacts(coffer.dialect, coffer.schema), live);
}

test('the migration list itself is validated: versions 1..n per domain, consistent schema', () => {
  validateMigrations(FIXTURE_MIGRATIONS);
  const gap = defineMigration(import.meta.url, { domain: 'fixture', version: 3, name: 'gap', ops: [] });
  assert.throws(() => validateMigrations([...FIXTURE_MIGRATIONS, gap]), /expected version 2 of domain fixture/);
  const dupTable = defineMigration(import.meta.url, {
    domain: 'fixture',
    version: 2,
    name: 'dup',
    ops: [createTable('fx_accounts', { domain: 'fixture', columns: { id: c.bigint() }, primaryKey: ['id'] })],
  });
  assert.throws(() => validateMigrations([...FIXTURE_MIGRATIONS, dupTable]), /fx_accounts already exists/);
  assert.notEqual(migrationChecksum(kitchenSink), migrationChecksum(edited(kitchenSink)));
});

test('a migration adding a column that defaults to now() is refused when the list is validated, naming its file', () => {
  // SQLite adds such a column to an empty table (every test) and refuses it on a table with rows
  // (an upgrade in production), so it is refused before it can land.
  const addNow = defineMigration(import.meta.url, {
    domain: 'fixture',
    version: 2,
    name: 'seen_at',
    ops: [addColumn('fx_counters', 'seen_at', c.timestamp({ default: 'now()' }))],
  });
  assert.throws(
    () => validateMigrations([...FIXTURE_MIGRATIONS, addNow]),
    (e: unknown) =>
      e instanceof MigrationError &&
      /fixture\/0002_seen_at \(test\/migrations\.test\.ts\): added column fx_counters\.seen_at cannot default to now\(\)/.test(e.message) &&
      /nullable or with a constant default, then backfill it/.test(e.message),
  );
  const nullable = { ...addNow, ops: [addColumn('fx_counters', 'seen_at', c.timestamp({ nullable: true, default: 'now()' }))] };
  assert.throws(() => validateMigrations([...FIXTURE_MIGRATIONS, nullable]), /cannot default to now\(\)/);
  // What the message suggests is accepted.
  validateMigrations([...FIXTURE_MIGRATIONS, { ...addNow, ops: [addColumn('fx_counters', 'seen_at', c.timestamp({ nullable: true }))] }]);
});

forEachBackend('migrations', (ctx) => {
  test('each migration applies once, with domain, version, name, checksum, time and duration recorded', async () => {
    const db = await ctx.newDatabase();
    const first = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
    const states = await first.migrator.status();
    assert.equal(states.length, FIXTURE_MIGRATIONS.length);
    assert.ok(states.every((s) => s.state === 'applied' && s.appliedAt instanceof Date && s.durationMs! >= 0));
    assert.equal(states.find((s) => s.id === 'fixture/0001_kitchen_sink')!.checksum, migrationChecksum(kitchenSink));
    if (ctx.backend === 'memory') return; // a second connection to memory:// is a different database
    const again = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
    assert.deepEqual(await again.migrator.apply(), []);
    const rows = await again.read((tx) => tx.db.selectFrom(HISTORY_TABLE).selectAll().execute());
    assert.equal(rows.length, FIXTURE_MIGRATIONS.length);
  });

  test('the live schema matches the logical schema (parity)', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    assert.deepEqual(await liveDiff(coffer), []);
  });

  test('parity fails when one dialect loses a UNIQUE index', async () => {
    const coffer = await ctx.open({
      migrations: FIXTURE_MIGRATIONS,
      rewriteSteps: (d, m, steps) =>
        d === coffer_dialect(ctx.backend) && m.domain === 'fixture'
          ? steps.filter((s) => !s.sql.includes('"uq_fx_accounts_name"') && !s.sql.includes('`uq_fx_accounts_name`'))
          : steps,
    });
    const diff = await liveDiff(coffer);
    assert.deepEqual(diff, ['fx_accounts: missing unique index uq_fx_accounts_name (name)']);
  });

  test('parity fails when a CHECK is dropped or a column loses NOT NULL', async () => {
    const coffer = await ctx.open({
      migrations: FIXTURE_MIGRATIONS,
      rewriteSteps: (_d, m, steps) =>
        m.domain === 'fixture'
          ? steps.map((s) => ({
              ...s,
              sql: s.sql
                .replace(/,\n {2}CONSTRAINT ["`]ck_fx_accounts_hash_hex["`] CHECK \([^\n]*\)/, '')
                .replace(/(["`]amount["`] (BIGINT|INTEGER)) NOT NULL/, '$1'),
            }))
          : steps,
    });
    const diff = await liveDiff(coffer);
    assert.ok(diff.includes('fx_accounts: missing check ck_fx_accounts_hash_hex'), diff.join('\n'));
    assert.ok(diff.includes('fx_entries.amount: nullable, expected not null'), diff.join('\n'));
  });

  test('an edited landed migration makes open refuse, naming the file', async (t) => {
    if (ctx.backend === 'memory') return t.skip('needs a second connection to the same database');
    const db = await ctx.newDatabase();
    await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
    const changed = [...MIGRATIONS, edited(kitchenSink)];
    for (const migrate of ['apply', 'verify'] as const) {
      await assert.rejects(ctx.open({ url: db.url, migrations: changed, migrate }), (e: unknown) => {
        assert.ok(e instanceof MigrationError);
        assert.match(
          e.message,
          /migration fixture\/0001_kitchen_sink \(test\/fixtures\/kitchen-sink\.ts\) was changed after it was applied/,
        );
        return true;
      });
    }
    const inspect = await ctx.open({ url: db.url, migrations: changed, migrate: 'skip' });
    assert.equal((await inspect.migrator.status()).find((s) => s.domain === 'fixture')!.state, 'edited');
  });

  test('a database with a migration this build does not know is refused', async (t) => {
    if (ctx.backend === 'memory') return t.skip('needs a second connection to the same database');
    const db = await ctx.newDatabase();
    await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
    await assert.rejects(
      ctx.open({ url: db.url, migrations: MIGRATIONS }),
      /has migration fixture\/0001_kitchen_sink, which this build of Coffer does not know/,
    );
  });

  test('a pending migration older than an applied one of its domain is refused', async () => {
    const v2 = defineMigration(import.meta.url, {
      domain: 'fixture',
      version: 2,
      name: 'more',
      ops: [createIndex('fx_entries', 'ix_fx_entries_amount', ['amount'])],
    });
    const coffer = await ctx.open({ migrations: [...FIXTURE_MIGRATIONS, v2] });
    await coffer.write((tx) => tx.db.deleteFrom(HISTORY_TABLE).where('domain', '=', 'fixture').where('version', '=', 1).execute());
    await assert.rejects(
      coffer.migrator.verify(),
      /fixture\/0001_kitchen_sink .* is pending but a later migration of domain fixture is applied/,
    );
  });

  test('verify mode refuses to open with pending migrations', async () => {
    await assert.rejects(
      ctx.open({ migrations: FIXTURE_MIGRATIONS, migrate: 'verify' }),
      (e: unknown) => e instanceof MigrationError && /pending/.test(e.message),
    );
  });

  test("dry run prints this dialect's SQL and changes nothing", async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS, migrate: 'skip' });
    const plan = await coffer.migrator.plan();
    assert.match(plan, /-- bootstrap: migration history/);
    assert.match(plan, /-- fixture\/0001_kitchen_sink \(test\/fixtures\/kitchen-sink\.ts\)/);
    const marker = { postgres: /NUMERIC\(78,0\)/, mysql: /ENGINE=InnoDB/, sqlite: /\) STRICT;/ }[coffer.dialect];
    assert.match(plan, marker);
    assert.ok((await coffer.migrator.status()).every((s) => s.state === 'pending'));
    const live = await coffer.read((tx) => introspect(tx.db, tx.dialect));
    assert.deepEqual(Object.keys(live), []);
  });

  test('a failed migration leaves a state the next run recovers from', async (t) => {
    if (ctx.backend === 'memory') return t.skip('needs a second connection to the same database');
    const failing = defineMigration(import.meta.url, {
      domain: 'fixture',
      version: 2,
      name: 'two_steps',
      ops: [
        createTable('fx_later', { domain: 'fixture', columns: { id: c.bigint(), label: c.varchar(20) }, primaryKey: ['id'] }),
        createIndex('fx_later', 'ix_fx_later_label', ['label']),
      ],
    });
    const list = [...FIXTURE_MIGRATIONS, failing];
    const db = await ctx.newDatabase();
    const inject = (_d: unknown, m: Migration, steps: { sql: string }[]) =>
      m.version === 2 && m.domain === 'fixture'
        ? [steps[0]!, { sql: 'SELECT no_such_column FROM no_such_table' }, ...steps.slice(1)]
        : steps;
    const coffer = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
    const broken = await ctx.open({ url: db.url, migrations: list, migrate: 'skip', rewriteSteps: inject });
    await assert.rejects(
      broken.migrator.apply(),
      (e: unknown) => e instanceof MigrationError && /fixture\/0002_two_steps \(test\/migrations\.test\.ts\) failed/.test(e.message),
    );
    const live = await coffer.read((tx) => introspect(tx.db, tx.dialect));
    if (coffer.dialect === 'mysql') {
      // DDL committed as it went: the table exists and the journal says how far it got.
      assert.ok(live.fx_later);
      const row = await coffer.read((tx) =>
        tx.db.selectFrom(HISTORY_TABLE).selectAll().where('domain', '=', 'fixture').where('version', '=', 2).executeTakeFirstOrThrow(),
      );
      assert.equal(row.state, 'running');
      assert.equal(Number(row.steps_done), 1);
      // A crash between a statement and its journal update: the journal lags behind the DDL.
      await sql`update coffer_migrations set steps_done = 0 where domain = 'fixture' and version = 2`.execute(coffer.engine.writer);
    } else {
      // Transactional DDL: nothing of the failed migration remains.
      assert.equal(live.fx_later, undefined);
      assert.equal((await coffer.migrator.status()).length, FIXTURE_MIGRATIONS.length);
    }
    const fixed = await ctx.open({ url: db.url, migrations: list });
    const states = await fixed.migrator.status();
    assert.ok(
      states.every((s) => s.state === 'applied'),
      JSON.stringify(states),
    );
    assert.deepEqual(await liveDiff(fixed), []);
  });

  test('a migration reported applied stays applied when a later one fails', async () => {
    // `coffer migrate` prints "done" for each migration it is told was applied.
    const good = defineMigration(import.meta.url, {
      domain: 'fixture',
      version: 2,
      name: 'good',
      ops: [createIndex('fx_entries', 'ix_fx_entries_amount', ['amount'])],
    });
    const fails = 'SELECT no_such_column FROM no_such_table';
    const bad = defineMigration(import.meta.url, {
      domain: 'fixture',
      version: 3,
      name: 'bad',
      ops: [{ op: 'raw', sql: { postgres: [fails], mysql: [fails], sqlite: [fails] } }],
    });
    const coffer = await ctx.open({ migrations: [...FIXTURE_MIGRATIONS, good, bad], migrate: 'skip' });
    const reported: string[] = [];
    await assert.rejects(
      coffer.migrator.apply({ onApplied: (m) => reported.push(`${m.domain}/${m.version}`) }),
      (e: unknown) => e instanceof MigrationError && /fixture\/0003_bad \(test\/migrations\.test\.ts\) failed/.test(e.message),
    );
    assert.ok(reported.includes('fixture/2') && !reported.includes('fixture/3'), reported.join(', '));
    const states = new Map((await coffer.migrator.status()).map((s) => [`${s.domain}/${s.version}`, s.state]));
    const notApplied = reported.filter((id) => states.get(id) !== 'applied');
    assert.deepEqual(notApplied, [], 'every migration reported applied is applied');
    assert.notEqual(states.get('fixture/3'), 'applied');
  });

  test('a dropped index whose journal update was lost resumes instead of failing on every run', async (t) => {
    if (ctx.backend === 'memory') return t.skip('needs a second connection to the same database');
    const drop = defineMigration(import.meta.url, {
      domain: 'fixture',
      version: 2,
      name: 'drop_status_index',
      ops: [{ op: 'dropIndex', table: 'fx_accounts', name: 'ix_fx_accounts_status' }],
    });
    const list = [...FIXTURE_MIGRATIONS, drop];
    const db = await ctx.newDatabase();
    const coffer = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
    // The drop runs, then the migration fails: on MySQL the DROP INDEX has committed.
    const broken = await ctx.open({
      url: db.url,
      migrations: list,
      migrate: 'skip',
      rewriteSteps: (_d, m, steps) =>
        m.domain === 'fixture' && m.version === 2 ? [...steps, { sql: 'SELECT no_such_column FROM no_such_table' }] : steps,
    });
    await assert.rejects(broken.migrator.apply(), MigrationError);
    if (coffer.dialect === 'mysql') {
      // A crash between the DROP INDEX and its journal update: the journal says it never ran.
      const live = await coffer.read((tx) => introspect(tx.db, tx.dialect));
      assert.equal(live.fx_accounts!.indexes.ix_fx_accounts_status, undefined);
      await sql`update coffer_migrations set steps_done = 0 where domain = 'fixture' and version = 2`.execute(coffer.engine.writer);
    }
    const fixed = await ctx.open({ url: db.url, migrations: list });
    assert.ok((await fixed.migrator.status()).every((s) => s.state === 'applied'));
    assert.deepEqual(await liveDiff(fixed), []);
  });

  test('concurrent opens apply each migration exactly once', async (t) => {
    if (ctx.backend === 'memory') return t.skip('memory databases are private to one connection');
    const db = await ctx.newDatabase();
    const opened = await Promise.all(Array.from({ length: 4 }, () => ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS })));
    const rows = await opened[0]!.read((tx) => tx.db.selectFrom(HISTORY_TABLE).select(['domain', 'version']).execute());
    assert.equal(rows.length, FIXTURE_MIGRATIONS.length);
  });
});

function coffer_dialect(b: string): string {
  return b === 'memory' ? 'sqlite' : b;
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/coffer.js', ...args], {
      cwd: new URL('..', import.meta.url),
      env: { ...process.env, COFFER_LOG_LEVEL: 'warn' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

forEachBackend(
  'migrations across processes',
  (ctx) => {
    test('two `coffer migrate` processes started together apply each migration once', async () => {
      const db = await ctx.newDatabase();
      const [a, b] = await Promise.all([run(['migrate', '--db', db.url]), run(['migrate', '--db', db.url])]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const applied = [a.stdout, b.stdout].map((o) => Number(/applied (\d+) migration/.exec(o)?.[1] ?? 0));
      assert.equal(applied[0]! + applied[1]!, MIGRATIONS.length, `${a.stdout}\n${b.stdout}`);
      const coffer = await ctx.open({ url: db.url, migrate: 'verify' });
      const rows = await coffer.read((tx) => tx.db.selectFrom(HISTORY_TABLE).select(['domain', 'version']).execute());
      assert.equal(rows.length, MIGRATIONS.length);
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
