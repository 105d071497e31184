// Multi-row inserts and many-key lookups (src/db/bulk.ts) on every backend: the batch path
// (PostgreSQL unnest arrays, hand-written VALUES lists elsewhere) must store exactly what
// tx.insert stores, for every logical type and for values that are awkward in an array literal.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { inValues, insertRows, insertRowsUnlessPresent } from '../src/db/bulk.js';
import { INT64_MAX, UINT256_MAX } from '../src/db/codec.js';
import { UniqueViolationError, ValidationError } from '../src/db/errors.js';
import type { Coffer } from '../src/db/store.js';
import { FIXTURE_MIGRATIONS } from './fixtures/kitchen-sink.js';
import { forEachBackend } from './harness.js';

let seq = 0;
const hashOf = (n: number) => n.toString(16).padStart(64, '0');

function row(over: Record<string, unknown> = {}): Record<string, unknown> {
  seq++;
  return {
    name: `bulk-${seq}-${Math.random().toString(36).slice(2, 8)}`,
    balance: BigInt(seq),
    supply: 0n,
    hash: hashOf(1_000_000 + seq + Math.floor(Math.random() * 1e9) * 1000),
    pubkey: null,
    payload: null,
    active: true,
    created_at: new Date(1_700_000_000_000 + seq),
    doc: null,
    status: 'open',
    small: null,
    note: null,
    ...over,
  };
}

/** Values a PostgreSQL array literal or a VALUES list must carry through unchanged. */
const AWKWARD = ['NULL', 'null', '', '{', '}', '{a,b}', '"', '\\', '\\\\"', ',', ' padded ', "it's", 'ünïcødé 𝄞 🚀', 'line\nbreak\ttab'];

forEachBackend('bulk insert', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
  });

  const readBack = (names: string[]) =>
    coffer.read(async (tx) => {
      const rows = await tx.db
        .selectFrom('fx_accounts')
        .selectAll()
        .where(inValues(tx, 'fx_accounts', 'name', names))
        .execute();
      const byName = new Map(rows.map((r) => [String(r.name), tx.codec('fx_accounts').decode<Record<string, unknown>>(r)]));
      return names.map((n) => byName.get(n));
    });

  test('every logical type and awkward strings round-trip exactly, as tx.insert stores them', async () => {
    const rows = AWKWARD.map((note, i) =>
      row({
        note,
        balance: i % 2 ? INT64_MAX : 0n,
        supply: i % 3 ? UINT256_MAX : 0n,
        pubkey: i % 2 ? '02' + 'ab'.repeat(32) : null,
        payload: i % 2 ? Buffer.from([0, 1, 92, 34, 123, 125, 255]) : Buffer.alloc(0),
        active: i % 2 === 0,
        doc: i % 2 ? { note, n: [1, 'two', { three: null }], big: '123456789012345678901234567890' } : note,
        status: (['open', 'frozen', 'closed'] as const)[i % 3],
        small: i % 2 ? -2147483648 : 2147483647,
        created_at: new Date(Date.UTC(2024, 1, 29, 23, 59, 59, i)),
      }),
    );
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', rows));
    const got = await readBack(rows.map((r) => r.name as string));
    rows.forEach((r, i) => {
      const g = got[i];
      assert.ok(g, `row ${i} stored`);
      for (const [k, v] of Object.entries(r)) {
        if (v instanceof Date) assert.equal((g[k] as Date).toISOString(), v.toISOString(), k);
        else assert.deepEqual(g[k], v, `${k} of row ${i} (${JSON.stringify(r.note)})`);
      }
      assert.equal(typeof g.id, 'bigint');
    });
  });

  test('columns with one value in every row (bound once on PostgreSQL) store that value in every row', async () => {
    // Every column but name and hash is the same in all rows, including awkward strings, the
    // extremes of each integer type, a null, a Buffer and a JSON document.
    const same = {
      balance: INT64_MAX,
      supply: UINT256_MAX,
      pubkey: null,
      payload: Buffer.from([0, 92, 34, 255]),
      active: false,
      doc: { a: [1, '{b}'] },
      status: 'frozen',
      small: -2147483648,
      note: '{a,"b"}\\',
      created_at: new Date(Date.UTC(2024, 1, 29)),
    };
    const rows = Array.from({ length: 5 }, () => row(same));
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', rows));
    const got = await readBack(rows.map((r) => r.name as string));
    for (const [i, g] of got.entries()) {
      assert.ok(g, `row ${i} stored`);
      for (const [k, v] of Object.entries(same)) {
        if (v instanceof Date) assert.equal((g[k] as Date).toISOString(), v.toISOString(), k);
        else assert.deepEqual(g[k], v, `${k} of row ${i}`);
      }
      assert.equal(g.hash, rows[i]!.hash);
    }
  });

  test('a many-key lookup finds keys with awkward characters (SQLite passes them as one JSON array)', async () => {
    const rows = AWKWARD.map((a, i) => row({ name: `awk-${seq}-${i}-${a}` }));
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', rows));
    const names = rows.map((r) => r.name as string);
    const got = await readBack([...names, 'awk-absent']);
    assert.deepEqual(
      got.map((g) => g?.name),
      [...names, undefined],
    );
  });

  test('a batch larger than one statement is stored whole; lookups by many keys find every row', async () => {
    const rows = Array.from({ length: 2_345 }, () => row());
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', rows));
    const names = rows.map((r) => r.name as string);
    const got = await readBack(names);
    assert.equal(got.filter(Boolean).length, rows.length);
    assert.deepEqual(
      got.map((g) => g!.balance),
      rows.map((r) => r.balance),
    );
  });

  test('rows that leave out different columns still get their defaults', async () => {
    const a = { name: `bulk-mixed-a-${seq++}`, hash: hashOf(9_000_000 + seq), created_at: new Date(1_700_000_000_000) };
    const b: Record<string, unknown> = { ...row(), status: 'closed', balance: 7n };
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', [a, b]));
    const [ga, gb] = await readBack([a.name, b.name as string]);
    assert.equal(ga!.status, 'open');
    assert.equal(ga!.balance, 0n);
    assert.equal(ga!.active, true);
    assert.equal(gb!.status, 'closed');
    assert.equal(gb!.balance, 7n);
  });

  test('bad input is a ValidationError naming the field, and nothing of the batch is written', async () => {
    const rows = [row(), row({ hash: 'XYZ' }), row()];
    await assert.rejects(
      coffer.write((tx) => insertRows(tx, 'fx_accounts', rows)),
      (e: unknown) => e instanceof ValidationError && /hash/.test((e as Error).message),
    );
    assert.deepEqual(await readBack(rows.map((r) => r.name as string)), [undefined, undefined, undefined]);
  });

  test('a duplicate key anywhere in the batch fails it whole with a UniqueViolationError', async () => {
    const first = row();
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', [first]));
    const rows = [row(), row(), { ...row(), name: first.name }];
    await assert.rejects(
      coffer.write((tx) => insertRows(tx, 'fx_accounts', rows)),
      (e: unknown) => e instanceof UniqueViolationError,
    );
    const got = await readBack(rows.slice(0, 2).map((r) => r.name as string));
    assert.deepEqual(got, [undefined, undefined]);
  });

  test('insertRowsUnlessPresent inserts only the rows whose key is new, says which, and leaves the present ones as they were', async () => {
    const present = AWKWARD.slice(0, 6).map((note) => row({ name: `up-${note}-${seq}`, balance: 7n }));
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', present));
    const fresh = AWKWARD.slice(6).map((note) => row({ name: `up-${note}-${seq}`, note }));
    // Present rows offered again with other values, interleaved with new ones.
    const offered = fresh.flatMap((r, i) => (present[i] ? [{ ...row(), name: present[i]!.name, balance: 99n }, r] : [r]));
    const inserted = await coffer.write((tx) => insertRowsUnlessPresent(tx, 'fx_accounts', offered, ['name']));
    assert.deepEqual(
      inserted,
      offered.map((r) => !present.some((p) => p.name === r.name)),
    );
    const got = await readBack(offered.map((r) => r.name as string));
    offered.forEach((r, i) => {
      assert.ok(got[i], `${String(r.name)} is stored`);
      assert.equal(got[i]!.balance, inserted[i] ? r.balance : 7n, `${String(r.name)}: the offered row if new, the stored one if present`);
    });
    // Offering the same rows again inserts nothing.
    assert.deepEqual(
      await coffer.write((tx) => insertRowsUnlessPresent(tx, 'fx_accounts', offered, ['name'])),
      offered.map(() => false),
    );
  });

  test('insertRowsUnlessPresent with a two-column integer key, rows of several key prefixes, more than one lookup of keys', async () => {
    const [a, b] = [row(), row()];
    await coffer.write((tx) => insertRows(tx, 'fx_accounts', [a, b]));
    const ids = await coffer.read(async (tx) => {
      const rows = await tx.db
        .selectFrom('fx_accounts')
        .select(['id', 'name'])
        .where('name', 'in', [a.name as string, b.name as string])
        .execute();
      return Object.fromEntries(rows.map((r) => [String(r.name), BigInt(r.id as string | number)]));
    });
    const entry = (account: bigint, s: number) => ({ account_id: account, seq: s, amount: BigInt(s + 1), memo: null });
    const before = [entry(ids[a.name as string]!, 3), entry(ids[a.name as string]!, 550), entry(ids[b.name as string]!, 1)];
    await coffer.write((tx) => insertRows(tx, 'fx_entries', before));
    const offered = [
      ...Array.from({ length: 600 }, (_, i) => entry(ids[a.name as string]!, i)),
      entry(ids[b.name as string]!, 1),
      entry(ids[b.name as string]!, 2),
    ];
    const inserted = await coffer.write((tx) => insertRowsUnlessPresent(tx, 'fx_entries', offered, ['account_id', 'seq']));
    const isPresent = (e: { account_id: bigint; seq: number }) => before.some((p) => p.account_id === e.account_id && p.seq === e.seq);
    assert.deepEqual(
      inserted,
      offered.map((e) => !isPresent(e)),
    );
    const n = await coffer.read(async (tx) =>
      Number(
        (
          await tx.db
            .selectFrom('fx_entries')
            .select((eb) => eb.fn.countAll().as('n'))
            .where('account_id', 'in', [ids[a.name as string]!, ids[b.name as string]!] as never[])
            .executeTakeFirstOrThrow()
        ).n,
      ),
    );
    assert.equal(n, 602);
  });

  test('insertRowsUnlessPresent refuses two rows of one key, a key column that is not text or integer, and bad rows, writing nothing', async () => {
    const [x, y] = [row(), row()];
    await assert.rejects(
      coffer.write((tx) => insertRowsUnlessPresent(tx, 'fx_accounts', [x, { ...y, name: x.name }], ['name'])),
      /two rows of fx_accounts have one key/,
    );
    await assert.rejects(
      coffer.write((tx) => insertRowsUnlessPresent(tx, 'fx_accounts', [x, y], ['created_at'])),
      /key column fx_accounts.created_at is timestamp, not text or integer/,
    );
    await assert.rejects(
      coffer.write((tx) => insertRowsUnlessPresent(tx, 'fx_accounts', [x, { ...y, hash: 'zz' }], ['name'])),
      (e: unknown) => e instanceof ValidationError && /hash/.test((e as Error).message),
    );
    assert.deepEqual(await readBack([x.name as string, y.name as string]), [undefined, undefined]);
  });

  test('property: any batch of valid rows reads back exactly as given', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            note: fc.option(
              fc.string({ unit: 'grapheme', maxLength: 30 }).filter((s) => !s.includes('\u0000') && s.isWellFormed()),
              { nil: null },
            ),
            balance: fc.bigInt({ min: 0n, max: INT64_MAX }),
            small: fc.option(fc.integer({ min: -2147483648, max: 2147483647 }), { nil: null }),
            payload: fc.option(
              fc.uint8Array({ maxLength: 16 }).map((u) => Buffer.from(u)),
              { nil: null },
            ),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        async (specs) => {
          const rows = specs.map((s) => row(s));
          await coffer.write((tx) => insertRows(tx, 'fx_accounts', rows));
          const got = await readBack(rows.map((r) => r.name as string));
          rows.forEach((r, i) => {
            assert.equal(got[i]!.note, r.note);
            assert.equal(got[i]!.balance, r.balance);
            assert.equal(got[i]!.small, r.small);
            assert.deepEqual(got[i]!.payload, r.payload);
          });
        },
      ),
      { numRuns: 25 },
    );
  });
});
