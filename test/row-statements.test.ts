// The single-row helpers of Tx (src/db/row-statements.ts): one compiled statement per table and
// column shape, so a cached statement must never carry one call's values or shape into another.
// On every backend: null in a WHERE means IS NULL (a different statement from `=`), the counts
// are the rows changed, encoding and validation are insert()'s, and FOR UPDATE really locks.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { insertRowsInOrder } from '../src/db/bulk.js';
import { MAX_BOUND } from '../src/db/row-statements.js';
import { ReadOnlyError, ValidationError } from '../src/db/errors.js';
import type { Coffer } from '../src/db/store.js';
import { Tx, type RowWrite } from '../src/db/tx.js';
import type { KyselyPlugin } from 'kysely';
import { FIXTURE_MIGRATIONS } from './fixtures/kitchen-sink.js';
import { forEachBackend } from './harness.js';

let seq = 0;
function account(over: Record<string, unknown> = {}): Record<string, unknown> {
  seq++;
  return {
    name: `rs-${seq}-${Math.random().toString(36).slice(2, 8)}`,
    balance: BigInt(seq),
    hash: (Math.floor(Math.random() * 2 ** 48) * 1000 + seq).toString(16).padStart(64, '0'),
    created_at: new Date(1_700_000_000_000 + seq),
    ...over,
  };
}

forEachBackend('row statements', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
  });

  /**
   * `lock` runs in a first transaction, which then waits; `second` starts in another one once
   * the first holds its locks and gets 100 ms (it must wait for them); then the first runs
   * `finish` and commits. Returns 'first' and what `second` returned, in the order they finished.
   */
  async function whileLocked<T>(
    lock: (tx: Tx) => Promise<T>,
    finish: (tx: Tx, locked: T) => Promise<unknown>,
    second: (tx: Tx) => Promise<string>,
  ): Promise<string[]> {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const order: string[] = [];
    const first = coffer.write(async (tx) => {
      const got = await lock(tx);
      locked();
      await held;
      await finish(tx, got);
      order.push('first');
    });
    await isLocked;
    const other = coffer.write(async (tx) => {
      order.push(await second(tx));
    });
    await new Promise((r) => setTimeout(r, 100));
    release();
    await Promise.all([first, other]);
    return order;
  }

  const byName = (name: string) =>
    coffer.read(async (tx) => {
      const [r] = await tx.selectWhere('fx_accounts', { name });
      return r ? tx.codec('fx_accounts').decode<Record<string, unknown>>(r) : undefined;
    });

  test('insert, select, update and delete by shape; a null in WHERE matches IS NULL, not every row', async () => {
    const a = account({ note: null, small: 7 });
    const b = account({ note: 'kept', small: 7 });
    await coffer.write(async (tx) => {
      await tx.insert('fx_accounts', a);
      await tx.insert('fx_accounts', b);
    });
    // Same columns, different null-ness: two statements; each changes only its own row.
    const n1 = await coffer.write((tx) => tx.updateWhere('fx_accounts', { balance: 100n }, { small: 7, note: null, name: a.name }));
    const n2 = await coffer.write((tx) => tx.updateWhere('fx_accounts', { balance: 200n }, { small: 7, note: 'kept', name: b.name }));
    assert.equal(n1, 1n);
    assert.equal(n2, 1n);
    assert.equal((await byName(a.name as string))!.balance, 100n);
    assert.equal((await byName(b.name as string))!.balance, 200n);
    // A guard that no longer holds changes nothing and says so.
    assert.equal(await coffer.write((tx) => tx.updateWhere('fx_accounts', { balance: 1n }, { name: a.name, note: 'other' })), 0n);
    assert.equal(await coffer.write((tx) => tx.updateWhere('fx_accounts', { balance: 1n }, { name: b.name, note: null })), 0n);
    // The same shape with other values: the cached statement binds each call's own.
    const rows = await coffer.read(async (tx) => [
      ...(await tx.selectWhere('fx_accounts', { name: a.name, note: null })),
      ...(await tx.selectWhere('fx_accounts', { name: b.name, note: null })),
      ...(await tx.selectWhere('fx_accounts', { name: b.name, note: 'kept' })),
    ]);
    assert.deepEqual(
      rows.map((r) => r.name),
      [a.name, b.name],
    );
    assert.equal(await coffer.write((tx) => tx.deleteWhere('fx_accounts', { name: a.name, note: 'kept' })), 0n);
    assert.equal(await coffer.write((tx) => tx.deleteWhere('fx_accounts', { name: a.name, note: null })), 1n);
    assert.equal(await byName(a.name as string), undefined);
    assert.ok(await byName(b.name as string));
  });

  test('insertOrIgnore inserts once and reports the replay; values are validated before any SQL', async () => {
    const a = account();
    assert.equal(await coffer.write((tx) => tx.insertOrIgnore('fx_accounts', a, ['name'])), true);
    assert.equal(await coffer.write((tx) => tx.insertOrIgnore('fx_accounts', { ...a }, ['name'])), false);
    await assert.rejects(
      coffer.write((tx) => tx.updateWhere('fx_accounts', { balance: 'lots' }, { name: a.name })),
      (e) => e instanceof ValidationError && /balance/.test(e.message),
    );
    await assert.rejects(
      coffer.write((tx) => tx.updateWhere('fx_accounts', { balance: 1n }, { nope: 1 })),
      /no column fx_accounts\.nope/,
    );
    await assert.rejects(
      coffer.read((tx) => tx.updateWhere('fx_accounts', { balance: 1n }, { name: a.name })),
      /needs a write transaction/,
    );
    await assert.rejects(
      coffer.read((tx) => tx.selectWhere('fx_accounts', { name: a.name }, { lock: true })),
      /needs a write transaction/,
    );
  });

  test('selectWhereIn: the rows of several keys in key order, duplicates bound once, values validated, lock held until commit', async () => {
    // Names that sort the same under any collation: one prefix, then a, b, c.
    const tag = `rsin${Math.random().toString(36).slice(2, 8)}`;
    const [a, b, c] = [account({ name: `${tag}a` }), account({ name: `${tag}b`, note: 'kept' }), account({ name: `${tag}c` })];
    await coffer.write(async (tx) => {
      for (const r of [a, b, c]) await tx.insert('fx_accounts', r);
    });
    const names = [c.name, a.name, `${tag}x`, c.name, b.name] as string[];
    const sorted = [a.name, b.name, c.name] as string[];
    const got = await coffer.write((tx) => tx.selectWhereIn('fx_accounts', {}, 'name', names, { lock: true }));
    assert.deepEqual(
      got.map((r) => r.name),
      sorted,
    );
    // A WHERE shape with a null (IS NULL) beside the IN list: b has a note, so it is left out.
    const unnoted = await coffer.read((tx) => tx.selectWhereIn('fx_accounts', { note: null }, 'name', names));
    assert.deepEqual(
      unnoted.map((r) => r.name),
      sorted.filter((n) => n !== b.name),
    );
    assert.deepEqual(await coffer.read((tx) => tx.selectWhereIn('fx_accounts', {}, 'name', [])), []);
    await assert.rejects(
      coffer.read((tx) => tx.selectWhereIn('fx_accounts', {}, 'id', ['not a number'])),
      (e) => e instanceof ValidationError,
    );
    await assert.rejects(
      coffer.read((tx) => tx.selectWhereIn('fx_accounts', {}, 'name', [a.name], { lock: true })),
      /needs a write transaction/,
    );
    if (ctx.backend === 'memory') return; // one connection: a second writer cannot be waiting
    // Locked rows: a second writer locking one of them waits for the first to commit.
    const order = await whileLocked(
      (tx) => tx.selectWhereIn('fx_accounts', {}, 'name', [c.name, a.name], { lock: true }),
      (tx) => tx.updateWhere('fx_accounts', { balance: 100n }, { name: c.name }),
      async (tx) => {
        const [r] = await tx.selectWhereIn('fx_accounts', {}, 'name', [c.name], { lock: true });
        return `second saw ${String(r!.balance)}`;
      },
    );
    assert.deepEqual(order, ['first', 'second saw 100']);
  });

  test('selectWhere with lock holds the row until commit (a second writer waits)', async (t) => {
    if (ctx.backend === 'memory') return t.skip('one connection');
    const a = account({ balance: 0n });
    await coffer.write((tx) => tx.insert('fx_accounts', a));
    const increment = async (tx: Tx, rows: Record<string, unknown>[]) => {
      await tx.updateWhere('fx_accounts', { balance: BigInt(String(rows[0]!.balance)) + 1n }, { name: a.name });
    };
    const lock = (tx: Tx) => tx.selectWhere('fx_accounts', { name: a.name }, { lock: true });
    const order = await whileLocked(lock, increment, async (tx) => {
      await increment(tx, await lock(tx));
      return 'second';
    });
    // Read-then-write under the lock: neither increment is lost.
    assert.equal((await byName(a.name as string))!.balance, 2n);
    assert.deepEqual(order, ['first', 'second']);
  });
  test('insertRowsInOrder: multi-row statements split to stay within the placeholders, ids in row order, values intact', async () => {
    // 5 columns a row: MAX_BOUND / 5 rows a statement, so this takes three statements, the last one short.
    const perStatement = MAX_BOUND / 5;
    const rows = Array.from({ length: 2 * perStatement + 50 }, (_, i) => {
      const { name, balance, hash, created_at } = account();
      return { name, balance, hash, created_at, note: i % 3 ? `n${i}` : null };
    });
    await coffer.write((tx) => insertRowsInOrder(tx, 'fx_accounts', rows));
    const stored = await coffer.read(async (tx) =>
      (
        await tx.db
          .selectFrom('fx_accounts')
          .selectAll()
          .where(
            'name',
            'in',
            rows.map((r) => r.name as string),
          )
          .orderBy('id')
          .execute()
      ).map((r) => tx.codec('fx_accounts').decode<Record<string, unknown>>(r)),
    );
    assert.deepEqual(
      stored.map((r) => [r.name, r.balance, r.note]),
      rows.map((r) => [r.name, r.balance, r.note]),
    );
    // A bad row anywhere refuses the whole call before any SQL: nothing of it is written.
    const bad = [account({ note: 'x' }), account({ hash: 'not hex' })];
    await assert.rejects(
      coffer.write((tx) => insertRowsInOrder(tx, 'fx_accounts', bad)),
      ValidationError,
    );
    assert.equal(await byName(bad[0]!.name as string), undefined);
  });
  test('insertThenUpdate inserts the rows and returns the count of the update that goes with them', async () => {
    const target = account({ note: 'target' });
    await coffer.write((tx) => tx.insert('fx_accounts', target));
    const rows = [account({ note: 'a' }), account({ note: 'b' })];
    const n = await coffer.write((tx) =>
      tx.insertThenUpdate('fx_accounts', rows, 'fx_accounts', { balance: 77n }, { name: target.name, note: 'target' }),
    );
    assert.equal(n, 1n);
    assert.equal((await byName(target.name as string))!.balance, 77n);
    for (const r of rows) assert.equal((await byName(r.name as string))!.balance, r.balance);
    // A guard that does not hold updates nothing and says so; the caller decides (here: roll back).
    const more = account();
    await assert.rejects(
      coffer.write(async (tx) => {
        const m = await tx.insertThenUpdate('fx_accounts', [more], 'fx_accounts', { balance: 1n }, { name: target.name, note: 'moved' });
        assert.equal(m, 0n);
        throw new Error('guard failed');
      }),
      /guard failed/,
    );
    assert.equal(await byName(more.name as string), undefined);
    assert.equal((await byName(target.name as string))!.balance, 77n);
  });
  test("writeAll: single-row inserts, updates and deletes, each one's count in order; validated before any runs; one row each", async () => {
    const a = account();
    const counter = `wa-${Math.random().toString(36).slice(2, 10)}`;
    const id = await coffer.write(async (tx) => {
      const id = await tx.insertReturningId('fx_accounts', a);
      await tx.insert('fx_counters', { name: counter, value: 5n });
      await tx.insert('fx_counters', { name: `${counter}-gone`, value: 1n });
      await tx.insert('fx_counters', { name: `${counter}-kept`, value: 1n });
      return id;
    });
    const counts = await coffer.write((tx) =>
      tx.writeAll([
        { update: 'fx_accounts', set: { balance: 50n, note: 'moved' }, where: { id, balance: a.balance, note: null } },
        { insert: 'fx_entries', row: { account_id: id, seq: 1, amount: 50n, memo: null } },
        { update: 'fx_counters', set: { value: 6n }, where: { name: counter, value: 5n } },
        { update: 'fx_counters', set: { value: 1n }, where: { name: `${counter}-none` } },
        { delete: 'fx_counters', where: { name: `${counter}-gone`, value: 1n } },
      ]),
    );
    assert.deepEqual(counts, [1n, 1n, 1n, 0n, 1n]);
    const state = () =>
      coffer.read(async (tx) => ({
        account: tx.codec('fx_accounts').decode<Record<string, unknown>>((await tx.selectWhere('fx_accounts', { id }))[0]!),
        entries: (await tx.selectWhere('fx_entries', { account_id: id })).map((r) =>
          tx.codec('fx_entries').decode<Record<string, unknown>>(r),
        ),
        counter: tx.codec('fx_counters').decode<Record<string, unknown>>((await tx.selectWhere('fx_counters', { name: counter }))[0]!)
          .value,
      }));
    const after = await state();
    assert.equal(after.account.balance, 50n);
    assert.equal(after.account.note, 'moved');
    assert.deepEqual(after.entries, [{ account_id: BigInt(id), seq: 1, amount: 50n, memo: null }]);
    assert.equal(after.counter, 6n);

    // One statement on PostgreSQL, one per write elsewhere (counted by a plugin that sees each).
    let statements = 0;
    const spy: KyselyPlugin = {
      transformQuery: (args) => (statements++, args.node),
      transformResult: async (args) => args.result,
    };
    await coffer.write((tx) =>
      new Tx('write', tx.dialect, tx.mariadb, tx.db.withPlugin(spy), coffer.schema, new Map()).writeAll([
        { update: 'fx_counters', set: { value: 6n }, where: { name: counter, value: 6n } },
        { insert: 'fx_entries', row: { account_id: id, seq: 9, amount: 9n } },
        { update: 'fx_counters', set: { value: 1n }, where: { name: `${counter}-kept` } },
      ]),
    );
    assert.equal(statements, ctx.backend === 'postgres' ? 1 : 3);

    // A guard that no longer holds: that write's count is 0, the others' 1; the caller decides.
    assert.deepEqual(
      await coffer.write((tx) =>
        tx.writeAll([
          { update: 'fx_counters', set: { value: 7n }, where: { name: counter, value: 5n } },
          { insert: 'fx_entries', row: { account_id: id, seq: 2, amount: 1n } },
          { delete: 'fx_entries', where: { account_id: id, seq: 1, amount: 49n } },
          { insert: 'fx_counters', row: { name: `${counter}-kept`, value: 0n }, ignoreOn: ['name'] },
        ]),
      ),
      [0n, 1n, 0n, 0n],
    );
    assert.equal((await coffer.read((tx) => tx.selectWhere('fx_counters', { name: `${counter}-gone` }))).length, 0);
    // Refused before anything is written: a value that fails validation, a write without its
    // row's key, two writes of one row; and in a read transaction.
    const refusals: [RowWrite[], RegExp | typeof ValidationError][] = [
      [
        [
          { update: 'fx_counters', set: { value: 8n }, where: { name: counter, value: 6n } },
          { insert: 'fx_entries', row: { account_id: id, seq: 3, amount: 1n, memo: 'x'.repeat(101) } },
        ],
        ValidationError,
      ],
      [
        [
          { update: 'fx_counters', set: { value: 8n }, where: { name: counter, value: 6n } },
          { update: 'fx_accounts', set: { note: 'x' }, where: { name: a.name } },
        ],
        /lacks its key column\(s\) id/,
      ],
      [
        [
          { update: 'fx_counters', set: { value: 8n }, where: { name: counter, value: 6n } },
          { update: 'fx_counters', set: { value: 9n }, where: { name: counter } },
        ],
        /two writes of fx_counters/,
      ],
    ];
    for (const [writes, err] of refusals)
      await assert.rejects(
        coffer.write((tx) => tx.writeAll(writes)),
        err,
      );
    await assert.rejects(
      coffer.read((tx) => tx.writeAll([{ insert: 'fx_counters', row: { name: `${counter}-r`, value: 1n } }])),
      ReadOnlyError,
    );
    // A constraint the database enforces fails the call and, with it, the transaction.
    await assert.rejects(
      coffer.write((tx) =>
        tx.writeAll([
          { update: 'fx_counters', set: { value: 8n }, where: { name: counter, value: 6n } },
          { update: 'fx_accounts', set: { balance: -1n }, where: { id } },
        ]),
      ),
    );
    const now = await state();
    assert.equal(now.counter, 6n);
    assert.equal(now.account.balance, 50n);
    assert.deepEqual(
      now.entries.map((e) => e.seq as number).sort((x, y) => x - y),
      [1, 2, 9],
    );
  });

  test('writeAll thenInsert: rows of a table with a generated key go in after the writes, in order, only if every write wrote', async () => {
    const counter = `ti-${Math.random().toString(36).slice(2, 10)}`;
    await coffer.write((tx) => tx.insert('fx_counters', { name: counter, value: 1n }));
    const rows = ['plain', "it's", 'ünïcødé 🚀', ''].map((note, i) =>
      account({
        note,
        supply: 10n ** 30n + BigInt(i),
        payload: Buffer.from([i, 0, 255]),
        doc: { i, s: note },
        active: i % 2 === 0,
        small: i,
      }),
    );
    const names = rows.map((r) => r.name as string);
    const stored = () =>
      coffer.read(async (tx) =>
        (await tx.db.selectFrom('fx_accounts').selectAll().where('name', 'in', names).orderBy('id').execute()).map((r) =>
          tx.codec('fx_accounts').decode<Record<string, unknown>>(r),
        ),
      );
    // A guard that no longer holds: no row goes in, and the counts say which write did not.
    assert.deepEqual(
      await coffer.write((tx) =>
        tx.writeAll(
          [
            { update: 'fx_counters', set: { value: 2n }, where: { name: counter, value: 1n } },
            { update: 'fx_counters', set: { value: 3n }, where: { name: `${counter}-none` } },
          ],
          { thenInsert: { table: 'fx_accounts', rows } },
        ),
      ),
      [1n, 0n],
    );
    assert.deepEqual(await stored(), []);
    // Every write wrote: the rows go in, ids in row order, values as insert() stores them; one
    // statement on PostgreSQL (writes and rows), the writes and one INSERT elsewhere.
    let statements = 0;
    const spy: KyselyPlugin = {
      transformQuery: (args) => (statements++, args.node),
      transformResult: async (args) => args.result,
    };
    assert.deepEqual(
      await coffer.write((tx) =>
        new Tx('write', tx.dialect, tx.mariadb, tx.db.withPlugin(spy), coffer.schema, new Map()).writeAll(
          [{ update: 'fx_counters', set: { value: 3n }, where: { name: counter, value: 2n } }],
          { thenInsert: { table: 'fx_accounts', rows } },
        ),
      ),
      [1n],
    );
    assert.equal(statements, ctx.backend === 'postgres' ? 1 : 2);
    const got = await stored();
    assert.deepEqual(
      got.map((r) => r.name),
      names,
    );
    got.forEach((r, i) => {
      for (const k of ['balance', 'supply', 'hash', 'note', 'doc', 'active', 'small'])
        assert.deepEqual(r[k], rows[i]![k], `${k} of row ${i}`);
      assert.deepEqual(Buffer.from(r.payload as Buffer), rows[i]!.payload);
      assert.equal((r.created_at as Date).getTime(), (rows[i]!.created_at as Date).getTime());
    });
    // Refused: a table keyed otherwise, rows carrying the generated key, rows without writes.
    const refusals: [Parameters<Tx['writeAll']>, RegExp][] = [
      [
        [
          [{ update: 'fx_counters', set: { value: 4n }, where: { name: counter } }],
          { thenInsert: { table: 'fx_counters', rows: [{ name: `${counter}-x`, value: 1n }] } },
        ],
        /keyed by a generated id, not fx_counters/,
      ],
      [
        [
          [{ update: 'fx_counters', set: { value: 4n }, where: { name: counter } }],
          { thenInsert: { table: 'fx_accounts', rows: [{ ...account(), id: 10n ** 12n }] } },
        ],
        /without id/,
      ],
      [[[], { thenInsert: { table: 'fx_accounts', rows: [account()] } }], /need writes before them/],
    ];
    for (const [args, err] of refusals)
      await assert.rejects(
        coffer.write((tx) => tx.writeAll(...args)),
        err,
      );
    assert.equal((await coffer.read((tx) => tx.selectWhere('fx_counters', { name: counter }))).map((r) => Number(r.value)).join(), '3');
  });
});
