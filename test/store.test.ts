// The unit of work on every backend: exact types, typed errors, read-only reads, transactions
// that cannot leak, retries, isolation and session settings.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { sql } from 'kysely';
import { UINT256_MAX, INT64_MAX, INT64_MIN, toBigInt } from '../src/db/codec.js';
import {
  CheckViolationError,
  ForeignKeyViolationError,
  NotNullViolationError,
  ReadOnlyError,
  UniqueViolationError,
  ValidationError,
  CofferError,
} from '../src/db/errors.js';
import { ISOLATION, READ_ISOLATION } from '../src/db/engine.js';
import type { Coffer } from '../src/db/store.js';
import type { Tx } from '../src/db/tx.js';
import { FIXTURE_MIGRATIONS } from './fixtures/kitchen-sink.js';
import { forEachBackend } from './harness.js';

let seq = 0;
function account(over: Record<string, unknown> = {}): Record<string, unknown> {
  seq++;
  return {
    name: `acct-${seq}-${Math.random().toString(36).slice(2, 8)}`,
    hash: (seq.toString(16) + 'ab'.repeat(32)).slice(0, 64).padEnd(64, '0'),
    created_at: new Date(1_700_000_000_123 + seq),
    ...over,
  };
}

async function countRows(tx: Tx, table: string): Promise<bigint> {
  const r = await tx.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return toBigInt((r as { n: unknown }).n);
}

forEachBackend('store', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
  });

  test('every logical type round-trips exactly', async () => {
    const row = account({
      balance: INT64_MAX,
      supply: UINT256_MAX,
      pubkey: '02' + 'ff'.repeat(32),
      payload: Buffer.from([0, 1, 2, 255, 0]),
      active: false,
      created_at: new Date('2024-02-29T23:59:59.987Z'),
      doc: { nested: [1, 'two', { three: true }], unicode: 'ünïcødé ✓ 𝄞' },
      status: 'frozen',
      small: -2147483648,
      note: 'emoji 🚀 and quotes \' " and backslash \\',
    });
    const id = await coffer.write((tx) => tx.insertReturningId('fx_accounts', row));
    assert.equal(typeof id, 'bigint');
    const got = await coffer.read(async (tx) =>
      tx
        .codec('fx_accounts')
        .decode<Record<string, unknown>>(await tx.db.selectFrom('fx_accounts').selectAll().where('id', '=', id).executeTakeFirstOrThrow()),
    );
    assert.equal(got.id, id);
    assert.equal(got.balance, INT64_MAX);
    assert.equal(got.supply, UINT256_MAX);
    assert.equal(got.pubkey, row.pubkey);
    assert.deepEqual(got.payload, row.payload);
    assert.equal(got.active, false);
    assert.equal((got.created_at as Date).toISOString(), '2024-02-29T23:59:59.987Z');
    assert.deepEqual(got.doc, row.doc);
    assert.equal(got.status, 'frozen');
    assert.equal(got.small, -2147483648);
    assert.equal(got.note, row.note);
  });

  test('defaults apply on every backend', async () => {
    const id = await coffer.write((tx) => tx.insertReturningId('fx_accounts', account()));
    const got = await coffer.read(async (tx) =>
      tx
        .codec('fx_accounts')
        .decode<Record<string, unknown>>(await tx.db.selectFrom('fx_accounts').selectAll().where('id', '=', id).executeTakeFirstOrThrow()),
    );
    assert.equal(got.balance, 0n);
    assert.equal(got.supply, 0n);
    assert.equal(got.active, true);
    assert.equal(got.status, 'open');
  });

  test('property: any int64 and uint256 value survives the database unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(fc.bigInt({ min: 0n, max: INT64_MAX }), fc.bigInt({ min: 0n, max: UINT256_MAX }), async (balance, supply) => {
        const id = await coffer.write((tx) => tx.insertReturningId('fx_accounts', account({ balance, supply })));
        const got = await coffer.read(async (tx) =>
          tx
            .codec('fx_accounts')
            .decode<{ balance: bigint; supply: bigint }>(
              await tx.db.selectFrom('fx_accounts').select(['balance', 'supply']).where('id', '=', id).executeTakeFirstOrThrow(),
            ),
        );
        assert.equal(got.balance, balance);
        assert.equal(got.supply, supply);
      }),
      { numRuns: 25 },
    );
    // Negative int64 goes through a plain bigint column.
    await coffer.write((tx) => tx.insert('fx_entries', { account_id: 1n, seq: 999, amount: INT64_MIN }).catch(() => undefined));
  });

  test('bad input is a ValidationError naming the field, and nothing is written', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ hash: 'AB'.repeat(32) }, 'hash'],
      [{ hash: 'ab' }, 'hash'],
      [{ hash: 'zz'.repeat(32) }, 'hash'],
      [{ pubkey: 'abc' }, 'pubkey'],
      [{ balance: INT64_MAX + 1n }, 'balance'],
      [{ balance: 1.5 }, 'balance'],
      [{ supply: -1n }, 'supply'],
      [{ supply: UINT256_MAX + 1n }, 'supply'],
      [{ status: 'deleted' }, 'status'],
      [{ name: 'x'.repeat(41) }, 'name'],
      [{ created_at: new Date('nonsense') }, 'created_at'],
      [{ small: 2 ** 31 }, 'small'],
      [{ active: 'yes' }, 'active'],
      [{ name: 'nul\u0000byte' }, 'name'],
      // What PostgreSQL's JSON refuses, refused the same way everywhere (a value, a key, a lone half).
      [{ doc: { s: 'nul\u0000' } }, 'doc'],
      [{ doc: { 'k\u0000': 1 } }, 'doc'],
      [{ doc: ['lone \ud800'] }, 'doc'],
    ];
    const before = await coffer.read((tx) => countRows(tx, 'fx_accounts'));
    for (const [over, field] of cases) {
      await assert.rejects(
        coffer.write((tx) => tx.insert('fx_accounts', account(over))),
        (e: unknown) => e instanceof ValidationError && e.details.field === field,
        `expected ValidationError on ${field} for ${JSON.stringify(over, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`,
      );
    }
    assert.equal(await coffer.read((tx) => countRows(tx, 'fx_accounts')), before);
  });

  test('the database itself rejects what bypasses the codec (constraints are real on every backend)', async () => {
    const raw = async (column: string, value: unknown) => {
      const base = {
        name: `raw-${Math.random()}`,
        hash: 'c'.repeat(64),
        created_at: coffer.dialect === 'sqlite' ? 1 : new Date(),
      } as Record<string, unknown>;
      base[column] = value;
      await coffer.write((tx) => tx.db.insertInto('fx_accounts').values(base).execute());
    };
    await assert.rejects(raw('hash', 'C'.repeat(64)), CheckViolationError);
    await assert.rejects(raw('hash', 'c'.repeat(63)), (e: unknown) => e instanceof CheckViolationError || e instanceof ValidationError);
    await assert.rejects(raw('status', 'bogus'), CheckViolationError);
    await assert.rejects(raw('supply', '-5'), (e: unknown) => e instanceof CheckViolationError || e instanceof ValidationError);
    await assert.rejects(raw('balance', -1), CheckViolationError);
    await assert.rejects(raw('name', 'n'.repeat(41)), (e: unknown) => e instanceof CheckViolationError || e instanceof ValidationError);
  });

  test('unique, foreign key, check and not-null violations map to typed errors', async () => {
    const a = account();
    await coffer.write((tx) => tx.insert('fx_accounts', a));
    await assert.rejects(
      coffer.write((tx) => tx.insert('fx_accounts', { ...account(), name: a.name })),
      (e: unknown) => e instanceof UniqueViolationError && /uq_fx_accounts_name|name/.test(String(e.details.constraint ?? e.message)),
    );
    await assert.rejects(
      coffer.write((tx) => tx.insert('fx_entries', { account_id: 987654321n, seq: 1, amount: 5n })),
      ForeignKeyViolationError,
    );
    await assert.rejects(
      coffer.write((tx) => tx.insert('fx_accounts', account({ balance: -5n }))),
      (e: unknown) => e instanceof CheckViolationError,
    );
    await assert.rejects(
      coffer.write((tx) => tx.db.insertInto('fx_counters').values({ name: null, value: 1 }).execute()),
      (e: unknown) => e instanceof NotNullViolationError || (e instanceof CofferError && e.code === 'not_null_violation'),
    );
  });

  test('a failed write rolls back everything it did', async () => {
    const before = await coffer.read((tx) => countRows(tx, 'fx_accounts'));
    await assert.rejects(
      coffer.write(async (tx) => {
        await tx.insert('fx_accounts', account());
        await tx.insert('fx_accounts', account());
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await coffer.read((tx) => countRows(tx, 'fx_accounts')), before);
  });

  test('read transactions refuse writes', async () => {
    await assert.rejects(
      coffer.read((tx) => tx.insert('fx_counters', { name: 'ro', value: 1n })),
      ReadOnlyError,
    );
    await assert.rejects(
      coffer.read((tx) => tx.db.insertInto('fx_counters').values({ name: 'ro2', value: 1 }).execute()),
      (e: unknown) => e instanceof CofferError && e.code === 'read_only',
    );
    assert.equal(
      await coffer
        .read((tx) =>
          countRows(tx, 'fx_counters').then(() => tx.db.selectFrom('fx_counters').where('name', 'like', 'ro%').selectAll().execute()),
        )
        .then((r) => r.length),
      0,
    );
  });

  test('a transaction handle cannot be used after its transaction ended', async () => {
    let leaked: Tx | undefined;
    await coffer.write(async (tx) => {
      leaked = tx;
    });
    assert.throws(() => leaked!.db, /transaction has ended/);
    await assert.rejects(leaked!.insert('fx_counters', { name: 'leak', value: 1n }), /transaction has ended/);
  });

  test('statements started after the callback settled never run: not after COMMIT, not after ROLLBACK, not in the next transaction', async () => {
    const names = (prefix: string) =>
      coffer.read(async (tx) =>
        (await tx.db.selectFrom('fx_counters').select('name').where('name', 'like', `${prefix}%`).execute())
          .map((r) => String(r.name))
          .sort(),
      );
    // Each late statement's outcome, caught at once (a rejection left pending would fail the test).
    const late: Promise<string>[] = [];
    const track = (p: Promise<unknown>) =>
      late.push(
        p.then(
          () => 'ran',
          (e: unknown) => String(e),
        ),
      );
    // A Kysely handle kept past the callback.
    let held: Tx['db'] | undefined;
    await coffer.write(async (tx) => {
      held = tx.db;
      await tx.insert('fx_counters', { name: 'late-a', value: 1n });
      // Un-awaited: starts after the callback returned, while (or after) COMMIT is sent.
      track(new Promise((r) => setTimeout(r, 0)).then(() => tx.insert('fx_counters', { name: 'late-b', value: 1n })));
    });
    track(held!.insertInto('fx_counters').values({ name: 'late-c', value: 1 }).execute());
    // A failing write whose siblings go on after the failure: each sibling starts some microtask
    // turns after the throw, so some start while ROLLBACK is being sent. None may run after it
    // (in autocommit, where its row would stay): each runs inside and is rolled back, or is refused.
    await assert.rejects(
      coffer.write(async (tx) => {
        await tx.insert('fx_counters', { name: 'late-f', value: 1n });
        for (let hops = 0; hops < 16; hops++) {
          let p: Promise<unknown> = Promise.resolve();
          for (let i = 0; i < hops; i++) p = p.then();
          track(p.then(() => tx.insert('fx_counters', { name: `late-h${hops}`, value: 1n })));
        }
        track(new Promise((r) => setTimeout(r, 0)).then(() => tx.insert('fx_counters', { name: 'late-e', value: 1n })));
        throw new Error('boom');
      }),
      /boom/,
    );
    const outcomes = await Promise.all(late);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(
      outcomes.every((o) => o === 'ran' || /transaction has ended/.test(o)),
      JSON.stringify(outcomes),
    );
    // The first write's late statements (a timer, a kept handle) start after it ended: refused.
    assert.ok(/transaction has ended/.test(outcomes[0]!) && /transaction has ended/.test(outcomes[1]!), JSON.stringify(outcomes));
    assert.deepEqual(await names('late-'), ['late-a']);
  });

  test('a WHERE with an undefined value is refused, never widened to every row', async () => {
    await coffer.write((tx) => tx.insert('fx_counters', { name: 'keep-1', value: 1n }));
    for (const run of [
      (tx: Tx): Promise<unknown> => tx.updateWhere('fx_counters', { value: 0n }, { name: undefined }),
      (tx: Tx) => tx.deleteWhere('fx_counters', { name: undefined }),
      (tx: Tx) => tx.selectWhere('fx_counters', { name: undefined }),
    ])
      await assert.rejects(
        coffer.write((tx) => run(tx)),
        /WHERE column name is undefined/,
      );
    assert.equal((await coffer.read((tx) => tx.selectWhere('fx_counters', { name: 'keep-1' })))[0]?.value !== undefined, true);
  });

  test('a savepoint whose rollback fails reports the error that made it roll back', async () => {
    // The savepoint is gone before the rollback to it (as when MySQL rolls a deadlocked
    // transaction back whole): the caller must see the original error, the one retries look at.
    await assert.rejects(
      coffer.write((tx) =>
        tx.savepoint('sp_gone', async () => {
          await sql.raw('release savepoint sp_gone').execute(tx.db);
          throw new Error('the original failure');
        }),
      ),
      /the original failure/,
    );
  });

  test('a statement failure caught without a savepoint ends the transaction on every backend', async () => {
    const key = `swallowed-${Date.now()}`;
    const stored = async (name: string) => (await coffer.read((tx) => tx.selectWhere('fx_counters', { name }))).length;
    let later: unknown;
    const run = coffer.write(async (tx) => {
      await tx.insert('fx_counters', { name: key, value: 1n });
      await tx.insert('fx_counters', { name: key, value: 2n }).catch(() => undefined);
      // Every later statement raises the failure, through the store's statements and tx.db alike.
      later = await tx.insert('fx_counters', { name: `${key}-after`, value: 3n }).catch((e: unknown) => e);
      await assert.rejects(tx.db.selectFrom('fx_counters').selectAll().execute(), (e: unknown) => e === later);
      return 'done';
    });
    // The write reports the failure (mapped, as every driver error is) and stores nothing of it.
    await assert.rejects(run, UniqueViolationError);
    assert.ok(later !== undefined && /unique|duplicate/i.test(String((later as Error).message)), String(later));
    assert.equal(await stored(key), 0);
    assert.equal(await stored(`${key}-after`), 0);

    // Inside a savepoint the failure is survivable everywhere, and the rest commits.
    const key2 = `${key}-sp`;
    await coffer.write(async (tx) => {
      await tx.insert('fx_counters', { name: key2, value: 1n });
      await tx.savepoint('dup', () => tx.insert('fx_counters', { name: key2, value: 2n })).catch(() => undefined);
      await tx.insert('fx_counters', { name: `${key2}-after`, value: 3n });
    });
    assert.equal(await stored(key2), 1);
    assert.equal(await stored(`${key2}-after`), 1);

    // A failure caught inside the savepoint's own function fails the savepoint all the same: its
    // writes are undone and the caller sees the failure, then the transaction goes on.
    const key3 = `${key}-inner`;
    const seen = await coffer.write(async (tx) => {
      await tx.insert('fx_counters', { name: key3, value: 1n });
      const e = await tx
        .savepoint('sp_inner', async () => {
          await tx.insert('fx_counters', { name: `${key3}-undone`, value: 1n });
          await tx.insert('fx_counters', { name: key3, value: 2n }).catch(() => undefined);
          return 'swallowed';
        })
        .catch((err: unknown) => err);
      await tx.insert('fx_counters', { name: `${key3}-after`, value: 3n });
      return e;
    });
    assert.ok(seen instanceof Error && /unique|duplicate/i.test(seen.message), String(seen));
    assert.deepEqual([await stored(key3), await stored(`${key3}-undone`), await stored(`${key3}-after`)], [1, 0, 1]);
  });

  test('insertOrIgnore is idempotent and reports whether it inserted', async () => {
    const r1 = await coffer.write((tx) => tx.insertOrIgnore('fx_counters', { name: 'idem', value: 1n }, ['name']));
    const r2 = await coffer.write((tx) => tx.insertOrIgnore('fx_counters', { name: 'idem', value: 1n }, ['name']));
    assert.equal(r1, true);
    assert.equal(r2, false);
  });

  test('concurrent read-modify-write under lockRows loses no update', async () => {
    await coffer.write((tx) => tx.insert('fx_counters', { name: 'race', value: 0n }));
    const workers = 8;
    const perWorker = 10;
    await Promise.all(
      Array.from({ length: workers }, () =>
        (async () => {
          for (let i = 0; i < perWorker; i++) {
            await coffer.write(
              async (tx) => {
                const row = await tx
                  .lockRows(tx.db.selectFrom('fx_counters').select('value').where('name', '=', 'race'))
                  .executeTakeFirstOrThrow();
                const next = toBigInt(row.value) + 1n;
                await tx.db.updateTable('fx_counters').set({ value: next }).where('name', '=', 'race').execute();
              },
              { op: 'test.increment' },
            );
          }
        })(),
      ),
    );
    const v = await coffer.read((tx) =>
      tx.db.selectFrom('fx_counters').select('value').where('name', '=', 'race').executeTakeFirstOrThrow(),
    );
    assert.equal(toBigInt(v.value), BigInt(workers * perWorker));
  });

  test('a read transaction is one snapshot: a write committed while it runs is not seen by its later statements', async () => {
    await coffer.write((tx) => tx.insert('fx_counters', { name: 'snapshot', value: 1n }));
    const value = async (tx: Tx) =>
      toBigInt((await tx.db.selectFrom('fx_counters').select('value').where('name', '=', 'snapshot').executeTakeFirstOrThrow()).value);
    let write: Promise<unknown> | undefined;
    const seen = await coffer.read(async (tx) => {
      const first = await value(tx);
      write = coffer.write((w) => w.db.updateTable('fx_counters').set({ value: 2n }).where('name', '=', 'snapshot').execute());
      // memory:// has one connection, so there the write waits for this read to end.
      if (ctx.backend !== 'memory') await write;
      return [first, await value(tx)];
    });
    await write;
    assert.deepEqual(seen, [1n, 1n], 'both statements of the read saw the same snapshot');
    assert.equal(await coffer.read(value), 2n);
  });

  test('session settings are pinned at connect', async () => {
    await coffer.read(async (tx) => {
      if (tx.dialect === 'sqlite') {
        const fk = await sql<{ foreign_keys: bigint }>`pragma foreign_keys`.execute(tx.db);
        assert.equal(Number(fk.rows[0]!.foreign_keys), 1);
        const bt = await sql<{ timeout: bigint }>`pragma busy_timeout`.execute(tx.db);
        assert.equal(Number(bt.rows[0]!.timeout), 5000);
        const sync = await sql<{ synchronous: bigint }>`pragma synchronous`.execute(tx.db);
        assert.equal(Number(sync.rows[0]!.synchronous), 1); // NORMAL
        if (ctx.backend === 'sqlite') {
          const jm = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(tx.db);
          assert.equal(jm.rows[0]!.journal_mode, 'wal');
        }
      } else if (tx.dialect === 'postgres') {
        const q = async (name: string) =>
          String(Object.values((await sql.raw(`show ${name}`).execute(tx.db)).rows[0] as Record<string, unknown>)[0]);
        assert.equal(await q('timezone'), 'UTC');
        assert.equal(await q('statement_timeout'), '30s');
        assert.equal(await q('lock_timeout'), '10s');
        assert.equal(await q('application_name'), 'coffer');
        // Reads run at REPEATABLE READ (one snapshot); writes at the session's READ COMMITTED.
        assert.equal(await q('transaction_isolation'), READ_ISOLATION.postgres);
        const write = await coffer.write(
          async (w) => (await sql.raw('show transaction_isolation').execute(w.db)).rows[0] as Record<string, unknown>,
        );
        assert.equal(String(Object.values(write)[0]), ISOLATION.postgres);
        // Named in BEGIN, so a database default does not change it (new sessions read it).
        const url = (await ctx.newDatabase()).url;
        const admin = await ctx.open({ url });
        try {
          await admin.write((t) =>
            sql
              .raw(
                `alter database "${decodeURIComponent(new URL(url).pathname.slice(1))}" set default_transaction_isolation = 'serializable'`,
              )
              .execute(t.db),
          );
        } finally {
          await admin.close();
        }
        const fresh = await ctx.open({ url });
        try {
          const iso = await fresh.write(
            async (w) => (await sql.raw('show transaction_isolation').execute(w.db)).rows[0] as Record<string, unknown>,
          );
          assert.equal(String(Object.values(iso)[0]), ISOLATION.postgres);
        } finally {
          await fresh.close();
        }
      } else {
        const r = (
          await sql`select @@session.time_zone as tz, @@session.sql_mode as mode, @@session.tx_isolation as iso, @@character_set_connection as cs`.execute(
            tx.db,
          )
        ).rows[0] as Record<string, string>;
        assert.equal(r.tz, '+00:00');
        assert.match(r.mode!, /STRICT_ALL_TABLES/);
        // Reads run on the reader pool, whose sessions are REPEATABLE READ (one snapshot, and a
        // read begins with one statement); writes on sessions at READ COMMITTED.
        assert.equal(r.iso!.replace('-', ' ').toLowerCase(), READ_ISOLATION.mysql);
        const w = await coffer.write(
          async (wtx) => (await sql<{ iso: string }>`select @@session.tx_isolation as iso`.execute(wtx.db)).rows[0]!.iso,
        );
        assert.equal(w.replace('-', ' ').toLowerCase(), ISOLATION.mysql);
        assert.equal(r.cs, 'utf8mb4');
      }
    });
  });

  test('timestamps are stored as UTC with millisecond precision', async () => {
    const when = new Date('2031-06-15T12:34:56.789Z');
    const id = await coffer.write((tx) => tx.insertReturningId('fx_accounts', account({ created_at: when })));
    const found = await coffer.read((tx) =>
      tx.db
        .selectFrom('fx_accounts')
        .select('id')
        .where('created_at', '=', tx.codec('fx_accounts').encode({ created_at: when }).created_at as never)
        .where('id', '=', id)
        .execute(),
    );
    assert.equal(found.length, 1);
  });

  test('metrics record operations, errors and pool state', async () => {
    await coffer.write(async () => undefined, { op: 'test.metrics' });
    await assert.rejects(coffer.write(() => Promise.reject(new UniqueViolationError('x')), { op: 'test.metrics' }));
    const text = await coffer.metrics.registry.metrics();
    assert.match(text, /coffer_store_operation_duration_seconds_count\{op="test.metrics",kind="write",backend="[a-z]+"\} [1-9]/);
    assert.match(text, /coffer_store_operation_errors_total\{op="test.metrics",backend="[a-z]+",code="unique_violation"\} 1/);
    assert.match(text, /coffer_pool_connections_total\{database="[a-z]+"\} [1-9]/);
    assert.match(text, /coffer_pool_connections_idle/);
    assert.match(text, /coffer_pool_waiting_requests/);
    assert.match(text, /coffer_pool_connections_created/);
    assert.match(text, /coffer_pool_connections_closed/);
    assert.match(text, /coffer_transaction_retries_total/);
  });
});

// Deadlocks are retried, not surfaced: two transactions lock two rows in opposite order.
forEachBackend(
  'store retries',
  (ctx) => {
    test('a deadlock between two writers is retried and both commit', async () => {
      const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS, settings: { lockTimeoutMs: 20_000 } });
      await coffer.write(async (tx) => {
        await tx.insert('fx_counters', { name: 'dl-a', value: 0n });
        await tx.insert('fx_counters', { name: 'dl-b', value: 0n });
      });
      let firstHold!: () => void;
      let secondHold!: () => void;
      const aLocked = new Promise<void>((r) => (firstHold = r));
      const bLocked = new Promise<void>((r) => (secondHold = r));
      let attempts = 0;
      const bump = (tx: Tx, name: string) =>
        tx.db
          .updateTable('fx_counters')
          .set((eb) => ({ value: eb('value', '+', 1) }))
          .where('name', '=', name)
          .execute();
      const t1 = coffer.write(
        async (tx) => {
          attempts++;
          await bump(tx, 'dl-a');
          firstHold();
          await bLocked;
          await bump(tx, 'dl-b');
        },
        { op: 'test.deadlock' },
      );
      const t2 = coffer.write(
        async (tx) => {
          attempts++;
          await bump(tx, 'dl-b');
          secondHold();
          await aLocked;
          await bump(tx, 'dl-a');
        },
        { op: 'test.deadlock' },
      );
      await Promise.all([t1, t2]);
      assert.ok(attempts >= 3, `expected a retry, saw ${attempts} attempts`);
      const rows = await coffer.read((tx) =>
        tx.db.selectFrom('fx_counters').select(['name', 'value']).where('name', 'in', ['dl-a', 'dl-b']).execute(),
      );
      for (const r of rows) assert.equal(toBigInt(r.value), 2n);
      const text = await coffer.metrics.registry.metrics();
      assert.match(text, /coffer_transaction_retries_total\{op="test.deadlock",backend="(postgres|mysql)"\} [1-9]/);
    });

    test('a deadlock caught without a savepoint is still retried, and nothing after it commits on its own', async () => {
      // MySQL rolls a deadlocked transaction back whole; a caller that caught the error and went
      // on would run its later statements in autocommit, each committed even if the callback
      // then failed. They are refused instead, and the whole callback runs again.
      const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS, settings: { lockTimeoutMs: 20_000 } });
      const tag = `dlc-${Date.now()}`;
      await coffer.write(async (tx) => {
        await tx.insert('fx_counters', { name: `${tag}-a`, value: 0n });
        await tx.insert('fx_counters', { name: `${tag}-b`, value: 0n });
      });
      let firstHold!: () => void;
      let secondHold!: () => void;
      const aLocked = new Promise<void>((r) => (firstHold = r));
      const bLocked = new Promise<void>((r) => (secondHold = r));
      const bump = (tx: Tx, name: string) => tx.updateWhere('fx_counters', { value: 1n }, { name });
      let attempts = 0;
      const swallowing = (first: string, second: string, hold: () => void, wait: Promise<void>, marker: string) =>
        coffer.write(
          async (tx) => {
            attempts++;
            await bump(tx, `${tag}-${first}`);
            hold();
            await wait;
            await bump(tx, `${tag}-${second}`).catch(() => undefined);
            await tx.insert('fx_counters', { name: `${tag}-${marker}-${attempts}`, value: 1n });
          },
          { op: 'test.deadlock-caught' },
        );
      await Promise.all([swallowing('a', 'b', firstHold, bLocked, 'm1'), swallowing('b', 'a', secondHold, aLocked, 'm2')]);
      assert.ok(attempts >= 3, `expected a retry, saw ${attempts} attempts`);
      // One marker per writer: the attempt that deadlocked committed nothing.
      const markers = await coffer.read((tx) =>
        tx.db.selectFrom('fx_counters').select('name').where('name', 'like', `${tag}-m%`).execute(),
      );
      assert.equal(markers.length, 2, JSON.stringify(markers));
    });
  },
  ['postgres', 'mysql'],
);

// Two processes sharing one SQLite file (the service and a CLI): a writer that finds the file
// locked past busy_timeout backs off and retries instead of failing. Instances inside one
// process share the connection and queue on an in-process lock instead.
forEachBackend(
  'store sqlite sharing',
  (ctx) => {
    test('a writer blocked by another process retries until the lock is released', async () => {
      const db = await ctx.newDatabase();
      const waiter = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS, settings: { busyTimeoutMs: 20 } });
      const path = db.url.slice('sqlite:'.length);
      const holder = spawn(
        process.execPath,
        [
          '-e',
          `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)});
           db.exec('BEGIN IMMEDIATE'); db.exec("INSERT INTO fx_counters (name, value) VALUES ('share-1', 1)");
           process.stdout.write('locked\\n');
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400);
           db.exec('COMMIT'); db.close();`,
        ],
        { cwd: new URL('..', import.meta.url) },
      );
      const exited = new Promise((r) => holder.once('exit', r));
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve());
        void exited.then((code) => reject(new Error(`holder exited early (${code})`)));
      });
      // The holder keeps the lock 400 ms. With busy_timeout 20 ms, the default 8 attempts and their
      // random backoff gave up before that in about 2 % of runs (seen once in a full run: 160 ms of
      // busy waits plus jitter that may draw near 0); 20 attempts cannot end before 400 ms of
      // busy waits alone, so the write outlasts the holder whatever the draws.
      await waiter.write((tx) => tx.insert('fx_counters', { name: 'share-2', value: 2n }), { op: 'test.busy', maxAttempts: 20 });
      await exited;
      const names = await waiter.read((tx) => tx.db.selectFrom('fx_counters').select('name').where('name', 'like', 'share-%').execute());
      assert.equal(names.length, 2);
      assert.match(await waiter.metrics.registry.metrics(), /coffer_transaction_retries_total\{op="test.busy",backend="sqlite"\} [1-9]/);
    });

    test('two instances in one process share the file without blocking each other', async () => {
      const db = await ctx.newDatabase();
      const a = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
      const b = await ctx.open({ url: db.url, migrations: FIXTURE_MIGRATIONS });
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const started = Date.now();
      const h = a.write(async (tx) => {
        await tx.insert('fx_counters', { name: 'inproc-1', value: 1n });
        await held;
      });
      const w = b.write((tx) => tx.insert('fx_counters', { name: 'inproc-2', value: 2n }));
      setTimeout(release, 50);
      await Promise.all([h, w]);
      assert.ok(Date.now() - started < 2000, 'no busy_timeout stall');
      const n = await b.read((tx) => tx.db.selectFrom('fx_counters').select('name').where('name', 'like', 'inproc-%').execute());
      assert.equal(n.length, 2);
    });
  },
  ['sqlite'],
);

forEachBackend('store json', (ctx) => {
  test('JSON values of every shape round-trip, including a bare string and a number', async () => {
    const coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    // Backslashes and escapes that only look like NUL or a surrogate are text, and kept.
    for (const doc of [
      'just a string',
      '{"looks":"like json"}',
      42,
      true,
      null,
      [1, 'two'],
      { nested: { deep: ['x'] } },
      ['\\u0000', '\\ud800', '𝄞 \u0001'],
    ]) {
      const id = await coffer.write((tx) => tx.insertReturningId('fx_accounts', account({ doc })));
      const got = await coffer.read(async (tx) =>
        tx
          .codec('fx_accounts')
          .decode<{ doc: unknown }>(await tx.db.selectFrom('fx_accounts').select('doc').where('id', '=', id).executeTakeFirstOrThrow()),
      );
      assert.deepEqual(got.doc, doc, JSON.stringify(doc));
    }
  });
});
