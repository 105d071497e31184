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
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { sql } from 'kysely';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Coffer } from '../db/store.js';
import { defineMigration, type Migration } from '../migrations/migration.js';
import { addColumn, c } from '../schema/builder.js';
import { FIXTURE_MIGRATIONS, kitchenSink } from '../../test/fixtures/kitchen-sink.js';
import { forEachBackend } from '../../test/harness.js';
import { runDoctor, SCRATCH_STALE_MS, type DoctorFinding } from './doctor.js';
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

  test('a foreign key re-created with other rules, or whose enforcement is switched off, is an error naming it', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    const fk = /^schema differs from the migrations: fx_entries: foreign key fk_fx_entries_account is .+, expected .+$/;
    if (ctx.backend === 'postgres') {
      // Still listed with the same columns, table and ON DELETE: only its definition shows the change.
      await run(coffer, [
        'ALTER TABLE "fx_entries" DROP CONSTRAINT "fk_fx_entries_account"',
        'ALTER TABLE "fx_entries" ADD CONSTRAINT "fk_fx_entries_account" FOREIGN KEY ("account_id") REFERENCES "fx_accounts" ("id") ON DELETE CASCADE ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED NOT VALID',
      ]);
      assertError(
        await schemaFindings(coffer),
        /fk_fx_entries_account is .*ON UPDATE CASCADE ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED NOT VALID, expected .+ ON DELETE CASCADE$/,
      );
      await run(coffer, [
        'ALTER TABLE "fx_entries" DROP CONSTRAINT "fk_fx_entries_account"',
        'ALTER TABLE "fx_entries" ADD CONSTRAINT "fk_fx_entries_account" FOREIGN KEY ("account_id") REFERENCES "fx_accounts" ("id") ON DELETE CASCADE',
      ]);
      assertHealthy(await schemaFindings(coffer));
      // What a bulk load does to load rows in any order; left so, nothing checks the references.
      await run(coffer, ['ALTER TABLE "fx_entries" DISABLE TRIGGER ALL']);
      const findings = await schemaFindings(coffer);
      assertError(findings, /fk_fx_entries_account is .+ \(enforcement triggers DISABLED\), expected .+ ON DELETE CASCADE$/);
      assert.equal(findings.filter((f) => f.severity === 'error').length, 1, show(findings));
    } else if (ctx.backend === 'mysql') {
      await run(coffer, [
        'ALTER TABLE `fx_entries` DROP FOREIGN KEY `fk_fx_entries_account`',
        'ALTER TABLE `fx_entries` ADD CONSTRAINT `fk_fx_entries_account` FOREIGN KEY (`account_id`) REFERENCES `fx_accounts` (`id`) ON DELETE CASCADE ON UPDATE CASCADE',
      ]);
      const findings = await schemaFindings(coffer);
      assertError(findings, /fk_fx_entries_account is .*ON UPDATE CASCADE .+, expected .*ON UPDATE RESTRICT .+$/);
      assertError(findings, fk);
      assert.equal(findings.filter((f) => f.severity === 'error').length, 1, show(findings));
    } else {
      await rebuildSqliteTable(coffer, 'fx_entries', (ddl) =>
        ddl.replace(/(REFERENCES "fx_accounts" \("id"\) ON DELETE CASCADE)/, '$1 ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED'),
      );
      const findings = await schemaFindings(coffer);
      assertError(findings, /fk_fx_entries_account is .* ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED, expected .+ ON DELETE CASCADE$/);
      assert.equal(findings.filter((f) => f.severity === 'error').length, 1, show(findings));
    }
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

  test('a native restore (pg_restore, the mysql client) that stopped is to be started over, never "resumed"', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    const db = opsDb(coffer);
    const info = {
      operation: 'restore-native' as const,
      source: '/backups/b.dump',
      startedAt: new Date(0).toISOString(),
      sourceId: 'b1',
      kind: 'pg_dump',
    };
    await createMarker(db, info);
    const interrupted = (await runDoctor(coffer, { only: ['incomplete'] })).findings[0]!;
    assert.equal(interrupted.severity, 'error');
    assert.match(interrupted.message, /an incomplete restore from \/backups\/b\.dump .*state running/);
    assert.match(
      interrupted.remedy ?? '',
      /^run the same coffer restore again to start it over \(a restore of a native backup through pg_restore cannot resume: it drops what was loaded and loads the whole backup again\), or with --discard/,
    );
    assert.doesNotMatch(interrupted.remedy ?? '', /resume it/);
    await setMarkerState(db.writer, db.dialect, 'failed', { error: 'pg_restore exited with code 1' });
    const failed = (await runDoctor(coffer, { only: ['incomplete'] })).findings[0]!;
    assert.match(failed.remedy ?? '', /^run the same coffer restore again to start it over once the cause is fixed \(.*cannot resume/);
    assert.doesNotMatch(failed.remedy ?? '', /resume it/);
  });
});

/** A second session, as another application: runs `statements` and keeps its transaction (and locks) until release(). */
async function otherSession(coffer: Coffer, statements: readonly string[]): Promise<{ pid: number; release(): Promise<void> }> {
  if (coffer.dialect === 'postgres') {
    const client = new pg.Client({ connectionString: coffer.target.url, application_name: 'other_app' });
    await client.connect();
    try {
      const pid = Number((await client.query('select pg_backend_pid() as pid')).rows[0].pid);
      await client.query('BEGIN');
      for (const s of statements) await client.query(s);
      return { pid, release: async () => void (await client.query('ROLLBACK').finally(() => client.end())) };
    } catch (e) {
      await client.end();
      throw e;
    }
  }
  const conn = await mysql.createConnection(coffer.target.url);
  try {
    const [r] = await conn.query('select connection_id() as pid');
    const pid = Number((r as { pid: unknown }[])[0]!.pid);
    for (const s of statements) await conn.query(s);
    return { pid, release: async () => void (await conn.query('UNLOCK TABLES').finally(() => conn.end())) };
  } catch (e) {
    await conn.end();
    throw e;
  }
}

const NO_TABLE_LOCKS = 'SQLite locks the whole file, never one table, and a writer does not keep a reader from the schema';

forEachBackend('doctor schema: tables another session keeps locked', (ctx) => {
  test("another application's table locked in another session neither slows nor fails doctor", async (t) => {
    if (ctx.backend === 'memory' || ctx.backend === 'sqlite') return t.skip(NO_TABLE_LOCKS);
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    const q = (x: string) => (ctx.backend === 'postgres' ? `"${x}"` : `\`${x}\``);
    // A CHECK, a default and an index: each one PostgreSQL renders under a lock on the table.
    await run(coffer, [
      `CREATE TABLE ${q('other_app_jobs')} (${q('id')} INT PRIMARY KEY, ${q('n')} INT DEFAULT 1 CHECK (${q('n')} > 0))`,
      `CREATE INDEX ${q('ix_other_app_jobs_n')} ON ${q('other_app_jobs')} (${q('n')})`,
    ]);
    const other = await otherSession(
      coffer,
      ctx.backend === 'postgres'
        ? // REINDEX locks the index itself, as VACUUM FULL does: the indexes check read its size under a lock.
          ['LOCK TABLE "other_app_jobs" IN ACCESS EXCLUSIVE MODE', 'REINDEX INDEX "ix_other_app_jobs_n"']
        : ['LOCK TABLES `other_app_jobs` WRITE'],
    );
    try {
      const started = Date.now();
      const report = await runDoctor(coffer);
      const took = Date.now() - started;
      assert.equal(report.ok, true, show(report.findings));
      assert.ok(
        report.findings.some((f) => f.check === 'schema' && f.severity === 'ok' && /definitions included \(compared with/.test(f.message)),
        show(report.findings),
      );
      assert.ok(
        report.findings.some((f) => f.severity === 'info' && /Coffer does not define: other_app_jobs/.test(f.message)),
        show(report.findings),
      );
      // Another application's indexes are not Coffer's to judge (nor to lock for their size).
      assert.ok(!report.findings.some((f) => f.check === 'indexes' && /ix_other_app_jobs_n/.test(f.message)), show(report.findings));
      // The connection's lock_timeout is 10 s: a doctor that waited for the table would take that long.
      assert.ok(took < 5000, `doctor took ${took} ms`);
    } finally {
      await other.release();
      await run(coffer, [`DROP TABLE ${q('other_app_jobs')}`]);
    }
  });

  test('a Coffer table locked in another session: its definitions are a warning naming it and the session, everything else is still compared', async (t) => {
    if (ctx.backend === 'memory' || ctx.backend === 'sqlite') return t.skip(NO_TABLE_LOCKS);
    const coffer = await ctx.open({ migrations: [kitchenSink] });
    const postgres = ctx.backend === 'postgres';
    const q = (x: string) => (postgres ? `"${x}"` : `\`${x}\``);
    await run(coffer, [
      // By name, on a table that stays readable: a dropped CHECK.
      `ALTER TABLE ${q('fx_accounts')} DROP CONSTRAINT ${q('ck_fx_accounts_balance')}`,
      // By definition, on a table that stays readable: a dropped default.
      `ALTER TABLE ${q('fx_accounts')} ALTER COLUMN ${q('status')} DROP DEFAULT`,
      // By definition, on the table about to be locked.
      `ALTER TABLE ${q('fx_counters')} ALTER COLUMN ${q('value')} SET DEFAULT 7`,
    ]);
    // As coffer maintain --full (VACUUM FULL) or another session's ALTER TABLE would hold it.
    const other = await otherSession(coffer, [
      postgres ? 'LOCK TABLE "fx_counters" IN ACCESS EXCLUSIVE MODE' : 'LOCK TABLES `fx_counters` WRITE',
    ]);
    try {
      const started = Date.now();
      const findings = await schemaFindings(coffer);
      const took = Date.now() - started;
      const expected = [
        'schema differs from the migrations: fx_accounts: missing check ck_fx_accounts_balance',
        "schema differs from the migrations: fx_accounts.status: default none, expected 'open'",
      ];
      // PostgreSQL shows the expected default with its cast ('open'::character varying).
      const errorsOf = (fs: readonly DoctorFinding[]) => errors(fs).map((m) => m.replace(/::character varying$/, ''));
      assert.ok(took < 6000, `doctor took ${took} ms`);
      assert.ok(!findings.some((f) => /could not run/.test(f.message)), show(findings));
      if (!postgres) {
        // information_schema reads under LOCK TABLES … WRITE: the locked table is compared too.
        assert.deepEqual(
          errorsOf(findings).sort(),
          [...expected, 'schema differs from the migrations: fx_counters.value: default 7, expected 0'].sort(),
          show(findings),
        );
        assert.ok(!findings.some((f) => f.severity === 'warning'), show(findings));
        return;
      }
      assert.deepEqual(errorsOf(findings).sort(), [...expected].sort(), show(findings));
      const warnings = findings.filter((f) => f.severity === 'warning');
      assert.equal(warnings.length, 1, show(findings));
      assert.match(
        warnings[0]!.message,
        new RegExp(
          `^fx_counters: CHECK expressions, defaults, index, trigger and foreign key definitions and table options were not compared \\(only names were\\): the table stayed locked for 1\\.5 s \\(ACCESS EXCLUSIVE, held by session ${other.pid} \\(other_app\\): LOCK TABLE "fx_counters" IN ACCESS EXCLUSIVE MODE\\)$`,
        ),
      );
      assert.match(
        warnings[0]!.remedy ?? '',
        new RegExp(`^run coffer doctor --check schema again once the lock is gone \\(.*session ${other.pid} `),
      );
    } finally {
      await other.release();
    }
    // Once the lock is gone the table's definitions are compared again.
    const after = await schemaFindings(coffer);
    assert.ok(errors(after).includes('schema differs from the migrations: fx_counters.value: default 7, expected 0'), show(after));
    assert.ok(!after.some((f) => f.severity === 'warning'), show(after));
  });
});

interface Exited {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * `coffer doctor --check schema` on `url`, sent SIGINT as soon as a scratch database newer than
 * its start appears. Null when the scratch seen was another doctor's (tests run in parallel) and
 * this one was not in its scratch phase: the signal then had its default effect.
 */
async function interruptDuringScratch(coffer: Coffer, url: string): Promise<(Exited & { scratch: string }) | null> {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const since = Date.now();
  const child = spawn(process.execPath, [`${root}bin/coffer.js`, 'doctor', '--db', url, '--check', 'schema'], {
    cwd: root,
    env: { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<Exited>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr })));
  let finished = false;
  void exited.then(() => (finished = true));
  for (;;) {
    if (finished) throw new Error(`doctor finished before its scratch database was seen: ${stderr}`);
    const r = await sql<{ name: unknown }>`select schema_name as name from information_schema.schemata
      where schema_name like ${'coffer\\_doctor\\_%'}`.execute(coffer.engine.reader);
    const fresh = r.rows.map((x) => String(x.name)).filter((n) => parseInt(n.split('_')[2] ?? '', 36) >= since);
    if (fresh.length) break;
  }
  child.kill('SIGINT');
  const r = await exited;
  const scratch = /SIGINT: dropping the scratch database (coffer_doctor_\w+) before stopping/.exec(r.stderr)?.[1];
  return scratch ? { ...r, scratch } : null;
}

forEachBackend('doctor schema: scratch databases left behind', (ctx) => {
  test('Ctrl-C while doctor builds its scratch database drops it before exiting 130', async (t) => {
    if (ctx.backend !== 'mysql')
      return t.skip(
        ctx.backend === 'postgres'
          ? 'the PostgreSQL scratch is a schema that is never committed: an interrupted doctor leaves none'
          : 'the SQLite scratch is an in-memory database: nothing is left behind',
      );
    const db = await ctx.newDatabase();
    const coffer = await ctx.open({ url: db.url });
    let r: Awaited<ReturnType<typeof interruptDuringScratch>> = null;
    // Another test's doctor may have made the scratch seen; then try again.
    for (let i = 0; i < 5 && !r; i++) r = await interruptDuringScratch(coffer, db.url);
    assert.ok(r, 'doctor was interrupted during its scratch phase');
    assert.equal(r.code, 130, r.stderr);
    const left = await sql<{ n: unknown }>`select count(*) as n from information_schema.schemata where schema_name = ${r.scratch}`.execute(
      coffer.engine.reader,
    );
    assert.equal(Number(left.rows[0]!.n), 0, `${r.scratch} was dropped`);
  });

  test('a scratch database a killed doctor left behind is a warning naming it and the DROP to run; a recent one (a doctor running now) is left alone', async (t) => {
    if (ctx.backend !== 'mysql')
      return t.skip(
        ctx.backend === 'postgres'
          ? 'the PostgreSQL scratch is a schema that is never committed: a killed doctor leaves none'
          : 'the SQLite scratch is an in-memory database: nothing is left behind',
      );
    const coffer = await ctx.open({ migrations: [kitchenSink] });
    // Judged 11 minutes from now, so that doctors of other tests running meanwhile ignore both.
    const now = new Date(Date.now() + SCRATCH_STALE_MS + 60_000);
    const name = (at: number) => `coffer_doctor_${at.toString(36)}_${randomBytes(4).toString('hex')}`;
    const stale = name(Date.now());
    const recent = name(now.getTime() - 60_000);
    try {
      await run(coffer, [`CREATE DATABASE \`${stale}\``, `CREATE DATABASE \`${recent}\``]);
      const report = await runDoctor(coffer, { only: ['schema'], now });
      assert.equal(report.ok, false, 'a leftover is a warning');
      const leftovers = report.findings.filter((f) => f.severity === 'warning' && /left behind by a coffer doctor/.test(f.message));
      const mine = leftovers.filter((f) => f.message.includes(stale));
      assert.equal(mine.length, 1, show(report.findings));
      assert.match(
        mine[0]!.message,
        new RegExp(
          `^the scratch database ${stale} \\(made \\S+, 1[01] min ago\\) was left behind by a coffer doctor stopped before it could drop it$`,
        ),
      );
      assert.match(
        mine[0]!.remedy ?? '',
        new RegExp(`^drop it: DROP DATABASE \`${stale}\` \\(doctor never drops another run's scratch database`),
      );
      assert.ok(!report.findings.some((f) => f.message.includes(recent)), show(report.findings));
      // Never dropped by doctor: another doctor may be using it.
      const left = await sql<{
        n: unknown;
      }>`select count(*) as n from information_schema.schemata where schema_name in (${stale}, ${recent})`.execute(coffer.engine.reader);
      assert.equal(Number(left.rows[0]!.n), 2);
      assert.ok(
        report.findings.some((f) => f.severity === 'ok' && /definitions included/.test(f.message)),
        show(report.findings),
      );
    } finally {
      await run(coffer, [`DROP DATABASE IF EXISTS \`${stale}\``, `DROP DATABASE IF EXISTS \`${recent}\``]);
    }
  });
});
