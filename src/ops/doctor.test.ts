// `coffer doctor`'s schema check on every backend compares definitions, not only names: a CHECK
// rebuilt under its old name with another expression, a changed or dropped default, a table
// rebuilt with other options (SQLite without STRICT), a disabled or rewritten trigger and a
// weakened unique index are each an error naming the table, the object, and what was expected
// and found. An untouched database passes; a database with migrations still pending is
// compared with the migrations it has; an account that may not create the scratch reference
// gets a warning saying so, never a silent pass.
//
// What a least-privileged account cannot see is not missing: MariaDB hides constraints and
// triggers in information_schema from an account with only SELECT, and doctor then warns what it
// could not check and which GRANT would let it, while a CHECK, foreign key or trigger that is
// really gone stays an error for an account that can see it (PostgreSQL shows its catalogue to
// every role; SQLite has no accounts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { sql } from 'kysely';
import { Coffer } from '../db/store.js';
import { defineMigration, type Migration } from '../migrations/migration.js';
import { addColumn, c } from '../schema/builder.js';
import { FIXTURE_MIGRATIONS, kitchenSink } from '../../test/fixtures/kitchen-sink.js';
import { forEachBackend } from '../../test/harness.js';
import { runDoctor, type DoctorFinding } from './doctor.js';
import { opsDb } from './db.js';
import { createMarker, setMarkerState } from './marker.js';

const laterColumn = defineMigration(import.meta.url, {
  domain: 'fixture',
  version: 2,
  name: 'counter_note',
  ops: [addColumn('fx_counters', 'note', c.text({ nullable: true }))],
});

/** Runs statements one by one on the writer, outside any transaction (DDL, as an operator would). */
async function run(coffer: Coffer, statements: readonly string[]): Promise<void> {
  await coffer.engine.writer.connection().execute(async (conn) => {
    for (const s of statements) await sql.raw(s).execute(conn);
  });
}

/**
 * Rebuilds a SQLite table by hand the documented way (new table, copy, drop, rename, indexes
 * and triggers again) from its own CREATE TABLE text changed by `edit`.
 */
async function rebuildSqliteTable(coffer: Coffer, table: string, edit: (ddl: string) => string): Promise<void> {
  await coffer.engine.writer.connection().execute(async (conn) => {
    const ddl = String(
      (await sql<{ sql: string }>`select sql from sqlite_schema where type = 'table' and name = ${table}`.execute(conn)).rows[0]!.sql,
    );
    const others = (
      await sql<{
        sql: string;
      }>`select sql from sqlite_schema where tbl_name = ${table} and type in ('index', 'trigger') and sql is not null`.execute(conn)
    ).rows.map((r) => String(r.sql));
    const changed = edit(ddl);
    assert.notEqual(changed, ddl, 'the edit changes the table');
    await sql.raw('PRAGMA foreign_keys = OFF').execute(conn);
    try {
      await sql.raw(changed.replace(`"${table}"`, `"${table}__rebuilt"`)).execute(conn);
      await sql.raw(`INSERT INTO "${table}__rebuilt" SELECT * FROM "${table}"`).execute(conn);
      await sql.raw(`DROP TABLE "${table}"`).execute(conn);
      await sql.raw(`ALTER TABLE "${table}__rebuilt" RENAME TO "${table}"`).execute(conn);
      for (const s of others) await sql.raw(s).execute(conn);
    } finally {
      await sql.raw('PRAGMA foreign_keys = ON').execute(conn);
    }
  });
}

async function schemaFindings(coffer: Coffer): Promise<DoctorFinding[]> {
  return (await runDoctor(coffer, { only: ['schema'] })).findings;
}

const show = (fs: readonly DoctorFinding[]) => fs.map((f) => `${f.severity} ${f.message}`).join('\n');

function assertError(findings: readonly DoctorFinding[], pattern: RegExp): void {
  const f = findings.find((x) => x.severity === 'error' && pattern.test(x.message));
  assert.ok(f, `expected an error matching ${pattern}, got:\n${show(findings)}`);
  assert.match(f.remedy ?? '', /put the definition back/);
}

function assertHealthy(findings: readonly DoctorFinding[]): void {
  assert.ok(
    findings.every((f) => f.severity === 'ok' || f.severity === 'info'),
    show(findings),
  );
  assert.ok(
    findings.some((f) => f.severity === 'ok' && /match the migrations, definitions included/.test(f.message)),
    show(findings),
  );
}

forEachBackend('doctor schema definitions', (ctx) => {
  test('an untouched database passes, definitions compared with the migrations run on the same engine', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    assertHealthy(await schemaFindings(coffer));
  });

  test('CHECKs re-created from the text the engine shows (as a dump and restore does) still pass', async () => {
    const coffer = await ctx.open({ migrations: [kitchenSink] });
    if (ctx.backend === 'postgres') {
      // pg_restore re-creates each CHECK from pg_get_constraintdef, which PostgreSQL then shows differently.
      const checks = await sql<{ name: string; def: string }>`select conname as name, pg_get_constraintdef(oid) as def
        from pg_constraint where conrelid = 'fx_accounts'::regclass and contype = 'c'`.execute(coffer.engine.reader);
      assert.ok(
        checks.rows.some((r) => /ARRAY\[/.test(r.def)),
        'the enum CHECK is among them',
      );
      await run(
        coffer,
        checks.rows.flatMap((r) => [
          `ALTER TABLE "fx_accounts" DROP CONSTRAINT "${r.name}"`,
          `ALTER TABLE "fx_accounts" ADD CONSTRAINT "${r.name}" ${r.def}`,
        ]),
      );
      const after = await sql<{ def: string }>`select pg_get_constraintdef(oid) as def from pg_constraint
        where conname = 'ck_fx_accounts_status_enum'`.execute(coffer.engine.reader);
      const before = checks.rows.find((r) => r.name === 'ck_fx_accounts_status_enum')!.def;
      assert.notEqual(after.rows[0]!.def, before, 'PostgreSQL shows the re-created CHECK differently');
    } else if (ctx.backend === 'mysql') {
      const checks = await sql<{ name: string; def: string }>`select constraint_name as name, check_clause as def
        from information_schema.check_constraints where constraint_schema = database() and constraint_name like 'ck_fx_accounts_%'`.execute(
        coffer.engine.reader,
      );
      assert.ok(checks.rows.length > 3);
      await run(
        coffer,
        checks.rows.flatMap((r) => [
          `ALTER TABLE \`fx_accounts\` DROP CONSTRAINT \`${r.name}\``,
          `ALTER TABLE \`fx_accounts\` ADD CONSTRAINT \`${r.name}\` CHECK (${r.def})`,
        ]),
      );
    } else {
      // SQLite keeps the text as written: another layout, case and quoting of the same definitions.
      await rebuildSqliteTable(coffer, 'fx_accounts', (ddl) =>
        ddl
          .replace(/\n\s*/g, ' ')
          .replace('CHECK (balance >= 0)', 'check(  BALANCE>=0 )')
          .replace(/"(hash|status)"/g, '$1'),
      );
    }
    assertHealthy(await schemaFindings(coffer));
  });

  test('a CHECK rebuilt under its own name with another expression is an error naming table, constraint, expected and found', async () => {
    const coffer = await ctx.open({ migrations: [kitchenSink] });
    if (ctx.backend === 'postgres')
      await run(coffer, [
        'ALTER TABLE "fx_accounts" DROP CONSTRAINT "ck_fx_accounts_balance"',
        'ALTER TABLE "fx_accounts" ADD CONSTRAINT "ck_fx_accounts_balance" CHECK (1 = 1)',
      ]);
    else if (ctx.backend === 'mysql')
      await run(coffer, [
        'ALTER TABLE `fx_accounts` DROP CONSTRAINT `ck_fx_accounts_balance`',
        'ALTER TABLE `fx_accounts` ADD CONSTRAINT `ck_fx_accounts_balance` CHECK (1 = 1)',
      ]);
    else await rebuildSqliteTable(coffer, 'fx_accounts', (ddl) => ddl.replace('CHECK (balance >= 0)', 'CHECK (1 = 1)'));
    const findings = await schemaFindings(coffer);
    assertError(
      findings,
      /^schema differs from the migrations: fx_accounts: check ck_fx_accounts_balance is CHECK \(+1 = 1\)+, expected CHECK \(+`?balance`? >= 0\)+$/,
    );
    // The name is still there: only the definition tells.
    assert.ok(!findings.some((f) => /missing check/.test(f.message)), show(findings));
    // A negative balance, which the migrations' CHECK refuses, now goes in.
    await coffer.write((tx) => tx.insert('fx_accounts', { name: 'neg', balance: -5n, hash: 'a'.repeat(64), created_at: new Date() }));
  });

  test('a changed default and a dropped default are errors naming the column, expected and found', async () => {
    const coffer = await ctx.open({ migrations: [kitchenSink] });
    if (ctx.backend === 'postgres')
      await run(coffer, [
        'ALTER TABLE "fx_counters" ALTER COLUMN "value" SET DEFAULT 7',
        'ALTER TABLE "fx_accounts" ALTER COLUMN "status" DROP DEFAULT',
      ]);
    else if (ctx.backend === 'mysql')
      await run(coffer, [
        'ALTER TABLE `fx_counters` ALTER COLUMN `value` SET DEFAULT 7',
        'ALTER TABLE `fx_accounts` ALTER COLUMN `status` DROP DEFAULT',
      ]);
    else {
      await rebuildSqliteTable(coffer, 'fx_counters', (ddl) => ddl.replace('NOT NULL DEFAULT 0', 'NOT NULL DEFAULT 7'));
      await rebuildSqliteTable(coffer, 'fx_accounts', (ddl) => ddl.replace(" DEFAULT 'open'", ''));
    }
    const findings = await schemaFindings(coffer);
    assertError(findings, /^schema differs from the migrations: fx_counters\.value: default 7, expected 0$/);
    assertError(findings, /^schema differs from the migrations: fx_accounts\.status: default none, expected 'open'/);
    assert.equal(findings.filter((f) => f.severity === 'error').length, 2, show(findings));
  });

  test('a table rebuilt with other options (SQLite: without STRICT) is an error naming the table and the option', async () => {
    const coffer = await ctx.open({ migrations: [kitchenSink] });
    if (ctx.backend === 'postgres') {
      // A table that is not crash-safe.
      await run(coffer, ['ALTER TABLE "fx_counters" SET UNLOGGED']);
      assertError(await schemaFindings(coffer), /^schema differs from the migrations: fx_counters: table UNLOGGED on, expected off$/);
    } else if (ctx.backend === 'mysql') {
      // Keys that compare case-insensitively.
      await run(coffer, ['ALTER TABLE `fx_counters` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci']);
      const findings = await schemaFindings(coffer);
      assertError(findings, /^schema differs from the migrations: fx_counters: table COLLATE utf8mb4_general_ci, expected utf8mb4_bin$/);
      assertError(findings, /^schema differs from the migrations: fx_counters\.name: collation utf8mb4_general_ci, expected utf8mb4_bin$/);
    } else {
      await rebuildSqliteTable(coffer, 'fx_counters', (ddl) => ddl.replace(/\)\s*STRICT$/, ')'));
      const findings = await schemaFindings(coffer);
      assertError(findings, /^schema differs from the migrations: fx_counters: table STRICT off, expected on$/);
      assert.equal(findings.filter((f) => f.severity === 'error').length, 1, show(findings));
      // What STRICT refused now goes in: text in an INTEGER column.
      await run(coffer, [`INSERT INTO "fx_counters" ("name", "value") VALUES ('x', 'not a number')`]);
    }
  });

  test('a disabled or rewritten trigger and a weakened unique index are errors naming them', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    if (ctx.backend === 'postgres')
      await run(coffer, [
        'ALTER TABLE "audit_log" DISABLE TRIGGER "trg_audit_log_no_update"',
        'DROP INDEX "uq_fx_accounts_name"',
        'CREATE UNIQUE INDEX "uq_fx_accounts_name" ON "fx_accounts" ("name") WHERE "id" < 0',
      ]);
    else if (ctx.backend === 'mysql')
      await run(coffer, [
        'DROP TRIGGER `trg_audit_log_no_update`',
        'CREATE TRIGGER `trg_audit_log_no_update` BEFORE UPDATE ON `audit_log` FOR EACH ROW SET @coffer_test = 1',
        'DROP INDEX `uq_fx_accounts_name` ON `fx_accounts`',
        'CREATE UNIQUE INDEX `uq_fx_accounts_name` ON `fx_accounts` (`name`(3))',
      ]);
    else
      await run(coffer, [
        'DROP TRIGGER "trg_audit_log_no_update"',
        'CREATE TRIGGER "trg_audit_log_no_update" BEFORE UPDATE ON "audit_log" BEGIN SELECT 1; END',
        'DROP INDEX "uq_fx_accounts_name"',
        'CREATE UNIQUE INDEX "uq_fx_accounts_name" ON "fx_accounts" ("name") WHERE "id" < 0',
      ]);
    const findings = await schemaFindings(coffer);
    assertError(findings, /^schema differs from the migrations: audit_log: trigger trg_audit_log_no_update is .+, expected .+$/);
    assertError(findings, /^schema differs from the migrations: fx_accounts: index uq_fx_accounts_name is .+, expected .+$/);
    assert.equal(findings.filter((f) => f.severity === 'error').length, 2, show(findings));
  });

  test('with migrations pending, the database is compared with the migrations it has applied', async (t) => {
    if (ctx.backend === 'memory') return t.skip('needs a second connection to the same database');
    const db = await ctx.newDatabase();
    await ctx.open({ url: db.url, migrations: [kitchenSink] });
    const newer = await ctx.open({ url: db.url, migrations: [kitchenSink, laterColumn], migrate: 'skip' });
    assertHealthy(await schemaFindings(newer));
    assert.ok((await runDoctor(newer, { only: ['migrations'] })).findings.some((f) => /1 migration\(s\) pending/.test(f.message)));
  });

  test('an account that may not create the scratch reference gets a warning saying why, never a silent pass', async (t) => {
    if (ctx.backend === 'memory' || ctx.backend === 'sqlite')
      return t.skip('the SQLite reference is an in-memory database, which any process may create');
    const owner = await ctx.open({ migrations: [kitchenSink] });
    const user = `coffer_t_${randomBytes(4).toString('hex')}`;
    const url = new URL(owner.target.url);
    const database = decodeURIComponent(url.pathname.slice(1));
    url.username = user;
    url.password = '';
    // What a service account has: its rows, no DDL. (MariaDB lists a table's constraints only to
    // an account with more than SELECT on it.)
    if (ctx.backend === 'postgres')
      await run(owner, [`CREATE ROLE "${user}" LOGIN`, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "${user}"`]);
    else await run(owner, [`CREATE USER '${user}'@'%'`, `GRANT SELECT, INSERT, UPDATE, DELETE ON \`${database}\`.* TO '${user}'@'%'`]);
    let limited: Coffer | undefined;
    try {
      limited = await ctx.open({ url: url.toString(), migrations: [kitchenSink], migrate: 'skip' });
      const report = await runDoctor(limited, { only: ['schema'] });
      assert.equal(report.ok, false, 'a comparison that could not run is not a pass');
      const warning = report.findings.find((f) => f.severity === 'warning');
      assert.ok(warning, show(report.findings));
      assert.match(
        warning.message,
        ctx.backend === 'postgres'
          ? /^CHECK expressions, defaults, .* were not compared \(only names were\): cannot create a scratch schema in this database: .*permission denied/
          : /^CHECK expressions, defaults, .* were not compared \(only names were\): cannot create a scratch database: .*denied/i,
      );
      assert.match(warning.remedy ?? '', ctx.backend === 'postgres' ? /GRANT CREATE ON DATABASE/ : /GRANT ALL ON `coffer\\_doctor\\_%`/);
      assert.ok(
        report.findings.some((f) => f.severity === 'ok' && /match the logical schema by name/.test(f.message)),
        show(report.findings),
      );
      assert.ok(!report.findings.some((f) => f.severity === 'error'), show(report.findings));
    } finally {
      await limited?.close();
      if (ctx.backend === 'postgres') await run(owner, [`DROP OWNED BY "${user}"`, `DROP ROLE "${user}"`]);
      else await run(owner, [`DROP USER '${user}'@'%'`]);
    }
  });
});

type Grants = (user: string, database: string) => string[];

/**
 * Runs `body` with Coffer opened on `owner`'s database as a new account that has only what
 * `grants` gives it, and drops the account afterwards, also when `body` fails.
 */
async function asAccount(
  owner: Coffer,
  migrations: readonly Migration[],
  grants: Grants,
  body: (coffer: Coffer) => Promise<void>,
): Promise<void> {
  const postgres = owner.dialect === 'postgres';
  const user = `coffer_t_${randomBytes(4).toString('hex')}`;
  const url = new URL(owner.target.url);
  const database = decodeURIComponent(url.pathname.slice(1));
  url.username = user;
  url.password = '';
  let created = false;
  let limited: Coffer | undefined;
  try {
    await run(owner, [postgres ? `CREATE ROLE "${user}" LOGIN` : `CREATE USER '${user}'@'%'`]);
    created = true;
    await run(owner, grants(user, database));
    limited = await Coffer.open({ url: url.toString(), migrations, migrate: 'skip' });
    await body(limited);
  } finally {
    await limited?.close();
    if (created) await run(owner, postgres ? [`DROP OWNED BY "${user}"`, `DROP ROLE "${user}"`] : [`DROP USER '${user}'@'%'`]);
  }
}

/** Reads the tables and nothing else (PostgreSQL: USAGE on the schema, SELECT on its tables). */
const readOnly =
  (postgres: boolean): Grants =>
  (user, database) =>
    postgres
      ? [`GRANT USAGE ON SCHEMA public TO "${user}"`, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "${user}"`]
      : [`GRANT SELECT ON \`${database}\`.* TO '${user}'@'%'`];

const SCRATCH_GRANT = (user: string) => `GRANT ALL ON \`coffer\\_doctor\\_%\`.* TO '${user}'@'%'`;

const NO_ACCOUNTS = 'SQLite has no accounts: whoever opens the file reads its whole schema';

const errors = (fs: readonly DoctorFinding[]) => fs.filter((f) => f.severity === 'error').map((f) => f.message);

forEachBackend('doctor schema: what the account cannot see', (ctx) => {
  test('a least-privileged account reports no false errors on an untouched database, and warns what it could not check', async (t) => {
    if (ctx.backend === 'memory' || ctx.backend === 'sqlite') return t.skip(NO_ACCOUNTS);
    const owner = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    await asAccount(owner, FIXTURE_MIGRATIONS, readOnly(ctx.backend === 'postgres'), async (limited) => {
      const report = await runDoctor(limited);
      assert.deepEqual(errors(report.findings), [], show(report.findings));
      assert.equal(report.ok, false, 'what could not be checked is not a pass');
      const warnings = report.findings.filter((f) => f.severity === 'warning');
      assert.ok(
        warnings.some((f) => f.check === 'schema' && /were not compared \(only names were\)/.test(f.message)),
        show(report.findings),
      );
      if (ctx.backend === 'postgres') {
        // pg_catalog shows every constraint, trigger and definition to every role: only the
        // scratch reference (CREATE on the database) is out of reach.
        assert.equal(warnings.length, 1, show(report.findings));
        assert.ok(report.findings.some((f) => f.severity === 'ok' && /^\d+ table\(s\) match the logical schema by name$/.test(f.message)));
        return;
      }
      const user = new URL(limited.target.url).username;
      const constraints = warnings.find((f) =>
        /^not checked, this account cannot see them: CHECK constraints and foreign keys of \d+ table\(s\)/.test(f.message),
      );
      assert.ok(constraints, show(report.findings));
      assert.match(constraints.message, /MariaDB lists the constraints of a table only to an account with a privilege beyond SELECT/);
      const hiddenTables = constraints.details?.tables as string[];
      for (const table of ['fx_accounts', 'fx_entries', 'audit_log', 'coffer_migrations']) assert.ok(hiddenTables.includes(table), table);
      assert.match(constraints.remedy ?? '', new RegExp(`^GRANT REFERENCES ON \`coffer_t_[^\`]+\`\\.\\* TO '${user}'@'%'`));
      const triggers = warnings.find((f) => /^not checked, this account cannot see them: triggers /.test(f.message));
      assert.ok(triggers, show(report.findings));
      assert.deepEqual(triggers.details?.names, [
        'trg_audit_log_no_delete',
        'trg_audit_log_no_update',
        'trg_audit_row_history_no_delete',
        'trg_audit_row_history_no_update',
      ]);
      assert.match(triggers.remedy ?? '', new RegExp(`^GRANT TRIGGER ON \`coffer_t_[^\`]+\`\\.\\* TO '${user}'@'%'`));
      assert.equal(warnings.length, 3, show(report.findings));
      assert.ok(
        report.findings.some(
          (f) => f.severity === 'ok' && /match the logical schema by name, as far as this account can see/.test(f.message),
        ),
        show(report.findings),
      );
    });
  });

  test('an account that builds the scratch reference but cannot see every definition is warned, not failed', async (t) => {
    if (ctx.backend === 'memory' || ctx.backend === 'sqlite') return t.skip(NO_ACCOUNTS);
    const owner = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    if (ctx.backend === 'postgres') {
      // A role that reads the tables and may create (never commit) the scratch schema compares
      // every definition, trigger functions' bodies included.
      const grants: Grants = (user, database) => [...readOnly(true)(user, database), `GRANT CREATE ON DATABASE "${database}" TO "${user}"`];
      await asAccount(owner, FIXTURE_MIGRATIONS, grants, async (limited) => assertHealthy(await schemaFindings(limited)));
      return;
    }
    // A service account: its rows, no DDL. MariaDB lists its triggers but not what they do.
    const grants: Grants = (user, database) => [
      `GRANT SELECT, INSERT, UPDATE, DELETE ON \`${database}\`.* TO '${user}'@'%'`,
      SCRATCH_GRANT(user),
    ];
    await asAccount(owner, FIXTURE_MIGRATIONS, grants, async (limited) => {
      const findings = await schemaFindings(limited);
      assert.deepEqual(errors(findings), [], show(findings));
      const warnings = findings.filter((f) => f.severity === 'warning');
      assert.equal(warnings.length, 1, show(findings));
      assert.match(warnings[0]!.message, /^not checked, this account cannot see them: trigger definitions trg_audit_log_no_delete, /);
      assert.match(warnings[0]!.message, /only to an account with the TRIGGER privilege/);
      assert.match(warnings[0]!.remedy ?? '', /^GRANT TRIGGER ON /);
      assert.ok(
        findings.some((f) => f.severity === 'ok' && /definitions included .*, as far as this account can see/.test(f.message)),
        show(findings),
      );
    });
  });

  test('a dropped CHECK and foreign key are errors for an account that can see them, and only a warning for one that cannot; a dropped trigger is an error for both', async (t) => {
    if (ctx.backend === 'memory' || ctx.backend === 'sqlite') return t.skip(NO_ACCOUNTS);
    const owner = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    if (ctx.backend === 'postgres')
      await run(owner, [
        'ALTER TABLE "fx_accounts" DROP CONSTRAINT "ck_fx_accounts_balance"',
        'ALTER TABLE "fx_entries" DROP CONSTRAINT "fk_fx_entries_account"',
        'DROP TRIGGER "trg_audit_log_no_update" ON "audit_log"',
      ]);
    else
      await run(owner, [
        'ALTER TABLE `fx_accounts` DROP CONSTRAINT `ck_fx_accounts_balance`',
        'ALTER TABLE `fx_entries` DROP FOREIGN KEY `fk_fx_entries_account`',
        'DROP TRIGGER `trg_audit_log_no_update`',
      ]);
    const dropped = [
      'schema differs from the migrations: fx_accounts: missing check ck_fx_accounts_balance',
      'schema differs from the migrations: fx_entries: missing foreign key account_id -> fx_accounts(id) on delete cascade',
      'schema differs from the migrations: audit_log: missing trigger trg_audit_log_no_update',
    ];
    // PostgreSQL: a role that only reads sees every constraint. MySQL/MariaDB: the grant doctor
    // names for CHECKs and foreign keys (REFERENCES) shows them.
    const seeing: Grants =
      ctx.backend === 'postgres' ? readOnly(true) : (user, database) => [`GRANT SELECT, REFERENCES ON \`${database}\`.* TO '${user}'@'%'`];
    await asAccount(owner, FIXTURE_MIGRATIONS, seeing, async (limited) => {
      const findings = await schemaFindings(limited);
      assert.deepEqual(errors(findings).sort(), [...dropped].sort(), show(findings));
      assert.ok(!findings.some((f) => /CHECK constraints and foreign keys/.test(f.message)), show(findings));
    });
    if (ctx.backend !== 'mysql') return;
    // An account that cannot see constraints is not told they are missing; the trigger, asked
    // for by name, is.
    await asAccount(owner, FIXTURE_MIGRATIONS, readOnly(false), async (limited) => {
      const findings = await schemaFindings(limited);
      assert.deepEqual(errors(findings), [dropped[2]], show(findings));
      const constraints = findings.find((f) => f.severity === 'warning' && /CHECK constraints and foreign keys of/.test(f.message));
      assert.ok(constraints, show(findings));
      assert.ok((constraints.details?.tables as string[]).includes('fx_accounts'));
      assert.ok((constraints.details?.tables as string[]).includes('fx_entries'));
      const triggers = findings.find((f) => f.severity === 'warning' && /cannot see them: triggers /.test(f.message));
      assert.ok(triggers, show(findings));
      assert.ok(!(triggers.details?.names as string[]).includes('trg_audit_log_no_update'), 'the dropped trigger is missing, not hidden');
    });
  });
});

forEachBackend('doctor incomplete', (ctx) => {
  test('a failed verification is reported with --discard as the way on; a restore stopped by an error, to resume', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    const db = opsDb(coffer);
    const info = { operation: 'restore' as const, source: '/backups/b.jsonl.gz', startedAt: new Date(0).toISOString(), sourceId: 'b1' };
    await createMarker(db, info);
    await setMarkerState(db.writer, db.dialect, 'failed', { problems: ['fx_accounts: 3 rows, the manifest says 4'] });
    const verification = (await runDoctor(coffer, { only: ['incomplete'] })).findings[0]!;
    assert.equal(verification.severity, 'error');
    assert.match(verification.message, /state failed: its verification failed/);
    assert.match(verification.remedy ?? '', /again with --discard to throw it away and start over \(it cannot be resumed\)/);
    await createMarker(db, info);
    await setMarkerState(db.writer, db.dialect, 'failed', { error: 'disk full' });
    const stopped = (await runDoctor(coffer, { only: ['incomplete'] })).findings[0]!;
    assert.match(stopped.message, /state failed: disk full/);
    assert.match(stopped.remedy ?? '', /run the same coffer restore again to resume it once the cause is fixed, or again with --discard/);
  });
});
