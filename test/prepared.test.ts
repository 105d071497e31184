// The compiled-query cache (src/db/prepared.ts, Tx.query) on every backend: correct rows, fresh
// parameters on every call (nothing leaks from one call into the next), refusal of captured
// constants and wrong arities, reads that see DDL done after a query was first prepared, writes
// through a cached statement refused in a read transaction, and read transactions that are one
// snapshot with one BEGIN statement.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { sql } from 'kysely';
import { defineQuery } from '../src/db/prepared.js';
import type { Coffer } from '../src/db/store.js';
import { forEachBackend } from './harness.js';

const table = `pq_items`;
const BY_NAME = defineQuery('test.byName', (db, $) => db.selectFrom(table).select(['name', 'qty']).where('name', '=', $(0)));
const BY_NAME_STAR = defineQuery('test.byNameStar', (db, $) => db.selectFrom(table).selectAll().where('name', '=', $(0)));
const RANGE = defineQuery('test.range', (db, $) =>
  db.selectFrom(table).select('name').where('qty', '>=', $(1)).where('qty', '<=', $(0)).orderBy('name').limit($(2)),
);
const INSERT = defineQuery('test.insert', (db, $) => db.insertInto(table).values({ name: $(0), qty: $(1) }));

forEachBackend('compiled-query cache', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
    await sql`create table pq_items (name varchar(64) not null primary key, qty integer not null)`.execute(coffer.engine.writer);
    await coffer.write(async (tx) => {
      for (let i = 0; i < 20; i++) await tx.query(INSERT, [`item-${String(i).padStart(2, '0')}`, i]);
    });
  });

  test('returns the rows of each call, with that call’s parameters', async () => {
    for (let i = 0; i < 20; i++) {
      const rows = await coffer.read((tx) => tx.query<{ name: string; qty: unknown }>(BY_NAME, [`item-${String(i).padStart(2, '0')}`]));
      assert.equal(rows.length, 1);
      assert.equal(Number(rows[0]!.qty), i);
    }
    assert.deepEqual(await coffer.read((tx) => tx.query(BY_NAME, ['missing'])), []);
    // Slots used out of order and several times: each call binds its own values.
    const a = await coffer.read((tx) => tx.query<{ name: string }>(RANGE, [5, 3, 10]));
    assert.deepEqual(
      a.map((r) => r.name),
      ['item-03', 'item-04', 'item-05'],
    );
    const b = await coffer.read((tx) => tx.query<{ name: string }>(RANGE, [12, 11, 1]));
    assert.deepEqual(
      b.map((r) => r.name),
      ['item-11'],
    );
  });

  test('concurrent reads with different parameters never see each other’s values', async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        coffer.read((tx) => tx.query<{ qty: unknown }>(BY_NAME, [`item-${String(i % 20).padStart(2, '0')}`])),
      ),
    );
    results.forEach((rows, i) => assert.equal(Number(rows[0]!.qty), i % 20));
  });

  test('PostgreSQL runs cached queries as named statements, and a read begins with one statement', async (t) => {
    if (ctx.backend !== 'postgres') return t.skip('PostgreSQL only');
    const names = await coffer.read(async (tx) => {
      await tx.query(BY_NAME, ['item-02']);
      const r = await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(tx.db);
      const iso = await sql<{
        i: string;
        ro: string;
      }>`select current_setting('transaction_isolation') as i, current_setting('transaction_read_only') as ro`.execute(tx.db);
      return { statements: r.rows.map((x) => x.statement), iso: iso.rows[0] };
    });
    assert.ok(
      names.statements.some((s) => s.includes('pq_items') && s.includes('"name" = $1')),
      names.statements.join('\n'),
    );
    assert.deepEqual(names.iso, { i: 'repeatable read', ro: 'on' });
  });

  test('MySQL reads run at REPEATABLE READ, read only; writes at READ COMMITTED', async (t) => {
    if (ctx.backend !== 'mysql') return t.skip('MySQL only');
    const q = sql<{ i: string }>`select @@session.transaction_isolation as i`;
    const qm = sql<{ i: string }>`select @@session.tx_isolation as i`;
    const iso = (db: any) => (coffer.engine.mariadb ? qm : q).execute(db).then((r) => r.rows[0]!.i);
    assert.equal(await coffer.read((tx) => iso(tx.db)), 'REPEATABLE-READ');
    assert.equal(await coffer.write((tx) => iso(tx.db)), 'READ-COMMITTED');
    await assert.rejects(coffer.read((tx) => tx.db.insertInto(table).values({ name: 'ro2', qty: 1 }).execute()));
  });

  test('a captured constant, a wrong arity and an undefined argument are refused', async () => {
    const name = 'item-01';
    const leaky = defineQuery('test.leaky', (db) => db.selectFrom(table).select('qty').where('name', '=', name));
    await assert.rejects(
      coffer.read((tx) => tx.query(leaky, [])),
      /constant, not a placeholder/,
    );
    await assert.rejects(
      coffer.read((tx) => tx.query(BY_NAME, [])),
      /expected 1 arguments, got 0/,
    );
    await assert.rejects(
      coffer.read((tx) => tx.query(BY_NAME, [undefined])),
      /undefined/,
    );
  });

  test('writes through a cached statement are refused in a read transaction', async () => {
    await assert.rejects(coffer.read((tx) => tx.query(INSERT, ['ro', 1])));
    assert.deepEqual(await coffer.read((tx) => tx.query(BY_NAME, ['ro'])), []);
  });

  test('a query prepared before DDL gives the new shape after it', async () => {
    const before = await coffer.read((tx) => tx.query<Record<string, unknown>>(BY_NAME_STAR, ['item-07']));
    assert.deepEqual(Object.keys(before[0]!).sort(), ['name', 'qty']);
    // Several reads so that every pooled connection may have prepared it.
    await Promise.all(Array.from({ length: 8 }, () => coffer.read((tx) => tx.query(BY_NAME_STAR, ['item-07']))));
    await sql`alter table pq_items add column note varchar(16)`.execute(coffer.engine.writer);
    for (let i = 0; i < 12; i++) {
      const after = await coffer.read((tx) => tx.query<Record<string, unknown>>(BY_NAME_STAR, ['item-07']));
      assert.deepEqual(Object.keys(after[0]!).sort(), ['name', 'note', 'qty']);
      assert.equal(Number(after[0]!.qty), 7);
    }
    const same = await coffer.read((tx) => tx.query<{ name: string; qty: unknown }>(BY_NAME, ['item-08']));
    assert.deepEqual(Object.keys(same[0]!).sort(), ['name', 'qty']);
  });

  test('a read is one snapshot: a commit between its statements is not seen', async (t) => {
    // memory:// has one connection: the nested write would wait for the read to end.
    if (ctx.backend === 'memory') return t.skip('one connection');
    const seen = await coffer.read(async (tx) => {
      const first = await tx.query<{ qty: unknown }>(BY_NAME, ['item-09']);
      await coffer.write((w) => w.db.updateTable(table).set({ qty: 900 }).where('name', '=', 'item-09').execute());
      const second = await tx.query<{ qty: unknown }>(BY_NAME, ['item-09']);
      return [Number(first[0]!.qty), Number(second[0]!.qty)];
    });
    assert.deepEqual(seen, [9, 9]);
    assert.equal(Number((await coffer.read((tx) => tx.query<{ qty: unknown }>(BY_NAME, ['item-09'])))[0]!.qty), 900);
  });

  // Statements built by the query builder (not the compiled-query cache) that transactions run
  // again and again become named statements on PostgreSQL (engine.ts statementName); one-offs
  // and autocommit statements never do, and a named one made stale by DDL is prepared again.
  test('PostgreSQL names a statement that transactions repeat, never an autocommit one, and survives DDL', async (t) => {
    if (ctx.backend !== 'postgres') return t.skip('PostgreSQL only');
    const tag = Math.random().toString(36).slice(2, 10);
    const star = (tx: { db: any }, name: string) =>
      sql<Record<string, unknown>>`select * from pq_items where name = ${name} ${sql.raw(`/* auto ${tag} */`)}`.execute(tx.db);
    const prepared = async (db: any) =>
      (await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(db)).rows.map((r) => r.statement);
    const once = `/* once ${tag} */`;
    const seen = await coffer.read(async (tx) => {
      for (let i = 0; i < 4; i++) await star(tx, 'item-03');
      await sql`select name from pq_items where name = ${'item-04'} ${sql.raw(once)}`.execute(tx.db);
      return prepared(tx.db);
    });
    assert.ok(
      seen.some((x) => x.includes(`auto ${tag}`)),
      'a statement run four times in a transaction is prepared',
    );
    assert.ok(!seen.some((x) => x.includes(once)), 'a one-off statement is not prepared');
    // Autocommit statements (no transaction block) are never auto-named, however often they run.
    const auto = `/* autocommit ${tag} */`;
    const outside = await coffer.engine.writer.connection().execute(async (db) => {
      for (let i = 0; i < 5; i++) await sql`select name from pq_items where name = ${'item-05'} ${sql.raw(auto)}`.execute(db);
      return prepared(db);
    });
    assert.ok(!outside.some((x) => x.includes(auto)));
    // Every pooled connection prepares it; then the table changes shape under it.
    await Promise.all(Array.from({ length: 8 }, () => coffer.read((tx) => star(tx, 'item-03'))));
    await sql`alter table pq_items add column note2 varchar(16)`.execute(coffer.engine.writer);
    for (let i = 0; i < 12; i++) {
      const rows = (await coffer.read((tx) => star(tx, 'item-03'))).rows;
      assert.ok('note2' in rows[0]!, Object.keys(rows[0]!).join(','));
      assert.equal(Number(rows[0]!.qty), 3);
    }
  });
});
