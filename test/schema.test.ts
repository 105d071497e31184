// The logical schema compiler: committed snapshots match the migrations, and the model refuses
// definitions that some backend could not enforce; definitions read back from an engine compare
// in a normal form.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS } from '../src/domains/registry.js';
import { c, createTable, tableDef } from '../src/schema/builder.js';
import { compileOperation, diffDefinitions, emptyDefinitions, impliedChecks } from '../src/schema/compile.js';
import { schemaOf } from '../src/schema/model.js';
import { snapshotSql, staleSnapshots } from '../src/schema/snapshot.js';
import { namedChecks, namedForeignKeys, normaliseSql } from '../src/schema/sql-text.js';

test('schema/*.sql snapshots match what the migrations generate', () => {
  const stale = staleSnapshots(fileURLToPath(new URL('../schema', import.meta.url)), MIGRATIONS);
  assert.deepEqual(stale, [], 'snapshots drifted: run `npm run schema:snapshot` and review the diff');
});

test('snapshots differ per dialect where the dialects differ', () => {
  assert.match(snapshotSql('postgres', MIGRATIONS), /TIMESTAMPTZ\(3\)/);
  assert.match(snapshotSql('mysql', MIGRATIONS), /ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin/);
  assert.match(snapshotSql('sqlite', MIGRATIONS), /\) STRICT;/);
});

test('every implied rule is a named CHECK on the backends that need one', () => {
  const hex = { name: 'txid', type: { kind: 'hex' as const, length: 64 }, nullable: false };
  assert.deepEqual(
    impliedChecks('postgres', 't', hex).map((x) => x.sql),
    [`"txid" ~ '^[0-9a-f]*$' AND length("txid") = 64`],
  );
  assert.deepEqual(
    impliedChecks('mysql', 't', hex).map((x) => x.name),
    ['ck_t_txid_hex'],
  );
  const vc = { name: 'label', type: { kind: 'varchar' as const, max: 10 }, nullable: false };
  assert.equal(impliedChecks('sqlite', 't', vc).length, 1, 'SQLite does not enforce VARCHAR(n) by itself');
  assert.equal(impliedChecks('postgres', 't', vc).length, 0);
  const long = impliedChecks('postgres', 'a_very_long_table_name_for_testing_limits', {
    name: 'an_even_longer_column_name_here',
    type: { kind: 'hex', length: 64 },
    nullable: false,
  });
  assert.ok(long[0]!.name.length <= 63);
});

test('definitions no backend could enforce are refused', () => {
  assert.throws(
    () =>
      schemaOf([createTable('t', { domain: 'x', columns: { body: c.text() }, primaryKey: ['body'], indexes: { ix_t_body: ['body'] } })]),
    /cannot be indexed/,
  );
  assert.throws(
    () => schemaOf([createTable('t', { domain: 'x', columns: { id: c.serial(), k: c.int() }, primaryKey: ['k'] })]),
    /serial column t.id must be the whole primary key/,
  );
  assert.throws(() => schemaOf([createTable('T', { domain: 'x', columns: { id: c.int() }, primaryKey: ['id'] })]), /snake_case/);
  assert.throws(
    () => schemaOf([createTable('t'.repeat(64), { domain: 'x', columns: { id: c.int() }, primaryKey: ['id'] })]),
    /longer than 63/,
  );
  assert.throws(
    () => schemaOf([createTable('t', { domain: 'x', columns: { id: c.int({ nullable: true }) }, primaryKey: ['id'] })]),
    /may not be nullable/,
  );
  assert.throws(() => schemaOf([createTable('t', { domain: 'x', columns: { id: c.int() }, primaryKey: [] })]), /needs a primary key/);
});

test('every foreign key gets an index starting with its columns', () => {
  const parent = createTable('p', { domain: 'x', columns: { id: c.bigint() }, primaryKey: ['id'] });
  const child = tableDef('ch', {
    domain: 'x',
    columns: { id: c.bigint(), parent_id: c.bigint() },
    primaryKey: ['id'],
    foreignKeys: { fk_ch_parent: { columns: ['parent_id'], references: 'p', refColumns: ['id'], onDelete: 'cascade' } },
  });
  assert.deepEqual(child.indexes, [{ name: 'fk_ch_parent_ix', table: 'ch', columns: ['parent_id'], unique: false }]);
  const s = schemaOf([parent, { op: 'createTable', table: child }]);
  assert.ok(s.tables.get('ch'));
  const sql = compileOperation('mysql', { op: 'createTable', table: child })
    .map((x) => x.sql)
    .join('\n');
  assert.match(sql, /FOREIGN KEY \(`parent_id`\) REFERENCES `p` \(`id`\) ON DELETE CASCADE/);
  assert.match(sql, /CREATE INDEX `fk_ch_parent_ix` ON `ch` \(`parent_id`\)/);
});

test("SQLite's CHECKs are read from the table's text whole, parentheses and keywords inside literals included", () => {
  const ddl = `CREATE TABLE "t" (
  "a" TEXT NOT NULL CONSTRAINT "ck_t_a" CHECK ("a" IN ('x)', 'CONSTRAINT "no" CHECK (0)', 'it''s')), -- CONSTRAINT "c" CHECK (1)
  b INTEGER, /* CONSTRAINT "d" CHECK (1) */
  CONSTRAINT ck_t_b CHECK (b BETWEEN (1) AND (3))
) STRICT`;
  assert.deepEqual(
    [...namedChecks(ddl)],
    [
      ['ck_t_a', `"a" IN ('x)', 'CONSTRAINT "no" CHECK (0)', 'it''s')`],
      ['ck_t_b', 'b BETWEEN (1) AND (3)'],
    ],
  );
});

test("SQLite's named foreign keys are read from the table's text to the end of their clause, DEFERRABLE and ON UPDATE included", () => {
  const ddl = `CREATE TABLE "t" (
  "a" INTEGER NOT NULL, b TEXT DEFAULT 'CONSTRAINT "x" FOREIGN KEY (b) REFERENCES y (z)',
  PRIMARY KEY ("a"),
  CONSTRAINT "fk_t_a" FOREIGN KEY ("a") REFERENCES "p" ("id") ON DELETE CASCADE ON UPDATE SET NULL DEFERRABLE INITIALLY DEFERRED,
  CONSTRAINT fk_t_b FOREIGN KEY (a, b) REFERENCES q (x, y),
  CONSTRAINT "ck_t_a" CHECK ("a" > 0)
) STRICT`;
  assert.deepEqual(
    [...namedForeignKeys(ddl)],
    [
      ['fk_t_a', 'FOREIGN KEY ("a") REFERENCES "p" ("id") ON DELETE CASCADE ON UPDATE SET NULL DEFERRABLE INITIALLY DEFERRED'],
      ['fk_t_b', 'FOREIGN KEY (a, b) REFERENCES q (x, y)'],
    ],
  );
  assert.deepEqual(
    [...namedForeignKeys('CREATE TABLE t (a INT, CONSTRAINT fk_last FOREIGN KEY (a) REFERENCES p (id))')],
    [['fk_last', 'FOREIGN KEY (a) REFERENCES p (id)']],
  );
});

test('definitions compare in a normal form: layout, keyword case and identifier quoting do not count, literals and operators do', () => {
  assert.equal(normaliseSql('CHECK (length("hash") = 64)'), normaliseSql('check(LENGTH(hash)=64)'));
  assert.equal(normaliseSql("`status` in ('open')"), normaliseSql('"status" IN (\'open\')'));
  assert.notEqual(normaliseSql("status IN ('open')"), normaliseSql("status IN ('OPEN')"));
  assert.notEqual(normaliseSql('CHECK (balance >= 0)'), normaliseSql('CHECK (1 = 1)'));
  const e = { ...emptyDefinitions(), check: { ck_t_b: 'CHECK (b >= 0)' }, default: { b: '0', c: null } };
  assert.deepEqual(diffDefinitions({ t: e }, { t: { ...e, check: { ck_t_b: 'check ("b">=0)' } } }), []);
  assert.deepEqual(diffDefinitions({ t: e }, { t: { ...e, check: { ck_t_b: 'CHECK (1)' }, default: { b: null, c: "'x'" } } }), [
    't: check ck_t_b is CHECK (1), expected CHECK (b >= 0)',
    't.b: default none, expected 0',
    "t.c: default 'x', expected none",
  ]);
});
