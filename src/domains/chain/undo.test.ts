// The undo journal on every backend: each journaled helper is reverted exactly (every column
// type survives the before-image), newest first, in place (rows referencing a restored row
// survive), only for the given chain and heights; pruning drops exactly the final entries.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { CHAIN_TEST_MIGRATIONS, dumpDatabase, hashOf } from './test-support.js';
import {
  journaledDelete,
  journaledInsert,
  journaledUpdate,
  journaledUpsert,
  journaledWriteAll,
  pruneFinalized,
  revertAbove,
  withJournalBatch,
  type BlockRef,
} from './undo.js';

const ref = (chainId: string, height: bigint): BlockRef => ({ chainId, height, blockHash: hashOf('undo-block', chainId, height) });

let seq = 0;
const newChainId = () => `u-${++seq}-${Math.random().toString(36).slice(2, 7)}`;

function event(chainId: string, n: number, over: Record<string, unknown> = {}) {
  return {
    chain_id: chainId,
    tx_hash: hashOf('ev', chainId, n),
    seq: n,
    kind: `k${n}`,
    amount: 2n ** 255n + BigInt(n),
    payload: Buffer.from([0, n, 255, 0]),
    at: new Date(Date.UTC(2031, 0, 1, 0, 0, 0, 123 + n)),
    meta: { nested: [1, 'two', { three: true }], big: '123456789012345678901234567890', unicode: 'ünï ✓ 𝄞' },
    flag: n % 2 === 0,
    status: 'new',
    ...over,
  };
}

forEachBackend('chain undo journal', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: CHAIN_TEST_MIGRATIONS });
  });

  test('insert, update, upsert and delete are reverted exactly, newest first, with every column type intact', async () => {
    const id = newChainId();
    // Rows that exist before any block: the journal must restore them bit for bit.
    await coffer.write(async (tx) => {
      await tx.insert('ct_events', event(id, 1));
      await tx.insert('ct_events', event(id, 2, { payload: null, meta: null }));
      await tx.insert('ct_balances', { chain_id: id, address: 'a', balance: 2n ** 256n - 1n, last_height: 0n, last_seen: new Date(1) });
    });
    const before = await dumpDatabase(coffer);
    const r5 = ref(id, 5n);
    const r6 = ref(id, 6n);
    await coffer.write(async (tx) => {
      await journaledInsert(tx, r5, 'ct_events', event(id, 3), ['chain_id', 'tx_hash', 'seq']);
      assert.equal(
        await journaledUpdate(
          tx,
          r5,
          'ct_events',
          { chain_id: id, tx_hash: hashOf('ev', id, 1), seq: 1 },
          { status: 'seen', meta: { changed: true }, payload: null },
        ),
        true,
      );
      assert.equal(await journaledDelete(tx, r5, 'ct_events', { chain_id: id, tx_hash: hashOf('ev', id, 2), seq: 2 }), true);
      assert.equal(
        await journaledUpsert(tx, r5, 'ct_balances', { chain_id: id, address: 'a', balance: 0n, last_height: 5n, last_seen: new Date(5) }, [
          'chain_id',
          'address',
        ]),
        false,
      );
      assert.equal(
        await journaledUpsert(tx, r5, 'ct_balances', { chain_id: id, address: 'b', balance: 9n, last_height: 5n, last_seen: new Date(5) }, [
          'chain_id',
          'address',
        ]),
        true,
      );
      // Block 6 changes the same rows again: the revert must unwind 6 before 5.
      await journaledUpdate(tx, r6, 'ct_balances', { chain_id: id, address: 'b' }, { balance: 10n });
      await journaledDelete(tx, r6, 'ct_balances', { chain_id: id, address: 'b' });
      await journaledInsert(tx, r6, 'ct_events', event(id, 2, { kind: 'reborn' }), ['chain_id', 'tx_hash', 'seq']);
      await journaledUpdate(
        tx,
        r6,
        'ct_events',
        { chain_id: id, tx_hash: hashOf('ev', id, 3), seq: 3 },
        { amount: 0n, flag: true, at: new Date(0) },
      );
      assert.equal(
        await journaledUpdate(tx, r6, 'ct_events', { chain_id: id, tx_hash: hashOf('missing'), seq: 9 }, { status: 'seen' }),
        false,
      );
      assert.equal(await journaledDelete(tx, r6, 'ct_events', { chain_id: id, tx_hash: hashOf('missing'), seq: 9 }), false);
    });
    const journal = await coffer.read((tx) =>
      tx.db.selectFrom('chain_undo').select(['height', 'table_name']).where('chain_id', '=', id).orderBy('id').execute(),
    );
    // Misses (no row) are not journaled, and a row changed twice in one block keeps the entry of
    // its first change only (b, updated then deleted in block 6); b's change in block 5 keeps its own.
    assert.deepEqual(
      journal.map((j) => `${String(j.height)}:${j.table_name}`),
      ['5:ct_events', '5:ct_events', '5:ct_events', '5:ct_balances', '5:ct_balances', '6:ct_balances', '6:ct_events', '6:ct_events'],
    );
    // Reverting above 6 changes nothing; above 5 undoes block 6 only.
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 6n)), 0);
    const mid = await coffer.read((tx) =>
      tx.db.selectFrom('ct_balances').select(['address', 'balance']).where('chain_id', '=', id).orderBy('address').execute(),
    );
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 5n)), 3);
    const afterSix = await coffer.read((tx) =>
      tx.db.selectFrom('ct_balances').select(['address', 'balance']).where('chain_id', '=', id).orderBy('address').execute(),
    );
    assert.deepEqual(
      afterSix.map((r) => [r.address, String(r.balance)]),
      [
        ['a', '0'],
        ['b', '9'],
      ],
    );
    assert.notDeepEqual(mid, afterSix);
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 4n)), 5);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('writes that must all happen, in a journal batch: journaled in write order with the batch, and only the ones that happened', async () => {
    const id = newChainId();
    await coffer.write(async (tx) => {
      await tx.insert('ct_balances', { chain_id: id, address: 'a', balance: 5n, last_height: 0n, last_seen: new Date(1) });
      await tx.insert('ct_balances', { chain_id: id, address: 'b', balance: 7n, last_height: 0n, last_seen: new Date(1) });
    });
    const before = await dumpDatabase(coffer);
    const r = ref(id, 3n);
    const row = async (tx: Parameters<Parameters<Coffer['write']>[0]>[0], address: string) =>
      tx.codec('ct_balances').decode<Record<string, unknown>>((await tx.selectWhere('ct_balances', { chain_id: id, address }))[0]!);
    await coffer.write((tx) =>
      withJournalBatch(tx, async () => {
        await journaledInsert(tx, r, 'ct_events', event(id, 1), ['chain_id', 'tx_hash', 'seq']);
        const a = await row(tx, 'a');
        // All happen: the batch so far and these entries go in with them (PostgreSQL: one statement).
        assert.deepEqual(
          await journaledWriteAll(
            tx,
            r,
            [
              {
                update: 'ct_balances',
                key: { chain_id: id, address: 'a' },
                changes: { balance: 6n },
                known: { before: a, guard: ['balance'] },
              },
              { insert: 'ct_events', row: event(id, 2), keyColumns: ['chain_id', 'tx_hash', 'seq'] },
            ],
            { allMust: true },
          ),
          [true, true],
        );
        // One guard no longer holds: the other write happened and is journaled all the same
        // (a caller that goes on and commits keeps an exact journal).
        const b = await row(tx, 'b');
        assert.deepEqual(
          await journaledWriteAll(
            tx,
            r,
            [
              {
                update: 'ct_balances',
                key: { chain_id: id, address: 'b' },
                changes: { balance: 8n },
                known: { before: b, guard: ['balance'] },
              },
              {
                update: 'ct_balances',
                key: { chain_id: id, address: 'a' },
                changes: { balance: 0n },
                known: { before: a, guard: ['balance'] },
              },
            ],
            { allMust: true },
          ),
          [true, false],
        );
        await journaledDelete(tx, r, 'ct_events', { chain_id: id, tx_hash: hashOf('ev', id, 1), seq: 1 });
      }),
    );
    const journal = await coffer.read((tx) =>
      tx.db.selectFrom('chain_undo').select(['table_name', 'row_key']).where('chain_id', '=', id).orderBy('id').execute(),
    );
    const keyOf = (k: unknown) => (typeof k === 'string' ? JSON.parse(k) : k) as Record<string, unknown>;
    assert.deepEqual(
      journal.map((j) => `${j.table_name}:${String(keyOf(j.row_key).address ?? keyOf(j.row_key).seq)}`),
      // The delete of event 1, inserted earlier in the same block, needs no entry of its own.
      ['ct_events:1', 'ct_balances:a', 'ct_events:2', 'ct_balances:b'],
    );
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 2n)), 4);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a block that swaps a unique value between two rows, through a temporary one or a delete, is reverted exactly', async () => {
    const id = newChainId();
    const t = hashOf('swap', id);
    const key = (n: number) => ({ chain_id: id, tx_hash: t, seq: n });
    // Two rows of one transaction, unique on (chain_id, kind, tx_hash): kinds a and b.
    await coffer.write(async (tx) => {
      await tx.insert('ct_events', event(id, 0, { tx_hash: t, kind: 'a' }));
      await tx.insert('ct_events', event(id, 1, { tx_hash: t, kind: 'b' }));
    });
    const before = await dumpDatabase(coffer);
    const known = async (tx: Parameters<Parameters<Coffer['write']>[0]>[0], n: number) => {
      const [row] = await tx.selectWhere('ct_events', key(n));
      return { before: tx.codec('ct_events').decode<Record<string, unknown>>(row!) };
    };
    await coffer.write(async (tx) => {
      // Block 5 swaps them through a temporary value, one row at a time; its second change of
      // row 0 must be journaled too, or the revert restores row 1 to b while row 0 still holds it.
      const r5 = ref(id, 5n);
      await journaledUpdate(tx, r5, 'ct_events', key(0), { kind: 'tmp' });
      await journaledUpdate(tx, r5, 'ct_events', key(1), { kind: 'a' });
      await journaledUpdate(tx, r5, 'ct_events', key(0), { kind: 'b' });
      // A change of a column no unique index holds is still journaled once per row and block.
      await journaledUpdate(tx, r5, 'ct_events', key(1), { status: 'seen' });
      // Block 6 swaps them back by deleting row 0 and inserting it again, in one journal batch.
      const r6 = ref(id, 6n);
      await withJournalBatch(tx, async () => {
        const row0 = await known(tx, 0);
        await journaledWriteAll(tx, r6, [{ delete: 'ct_events', key: key(0), known: row0 }], { allMust: true });
        await journaledWriteAll(tx, r6, [{ update: 'ct_events', key: key(1), changes: { kind: 'tmp2' }, known: await known(tx, 1) }], {
          allMust: true,
        });
        await journaledInsert(tx, r6, 'ct_events', { ...row0.before, kind: 'a' }, ['chain_id', 'tx_hash', 'seq']);
        await journaledUpdate(tx, r6, 'ct_events', key(1), { kind: 'b' });
      });
    });
    const journal = await coffer.read((tx) =>
      tx.db.selectFrom('chain_undo').select(['height']).where('chain_id', '=', id).orderBy('id').execute(),
    );
    assert.deepEqual(
      journal.map((j) => String(j.height)),
      ['5', '5', '5', '6', '6', '6', '6'],
    );
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 4n)), 7);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a row journaled again after a savepoint rolled back, or after a revert in the same transaction, gets its entry', async () => {
    const id = newChainId();
    const before = await dumpDatabase(coffer);
    const r = ref(id, 4n);
    const key = ['chain_id', 'tx_hash', 'seq'];
    await coffer.write(async (tx) => {
      // The insert and its entry under the savepoint are rolled back: the insert after it is the
      // row's first change in the block as far as the journal goes.
      await assert.rejects(
        tx.savepoint('undo_test', async () => {
          await journaledInsert(tx, r, 'ct_events', event(id, 1), key);
          throw new Error('rolled back');
        }),
        /rolled back/,
      );
      await journaledInsert(tx, r, 'ct_events', event(id, 1), key);
      // A revert removes the block's entries: processing the block again journals it again.
      await journaledInsert(tx, r, 'ct_events', event(id, 2), key);
      assert.equal(await revertAbove(tx, id, 3n), 2);
      await journaledInsert(tx, r, 'ct_events', event(id, 2), key);
    });
    const journal = await coffer.read((tx) => tx.db.selectFrom('chain_undo').select('table_name').where('chain_id', '=', id).execute());
    assert.equal(journal.length, 1);
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 3n)), 1);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a journal longer than a revert page is reverted exactly, in write order, not block order', async () => {
    const id = newChainId();
    await coffer.write((tx) =>
      tx.insert('ct_balances', { chain_id: id, address: 'a', balance: 1n, last_height: 0n, last_seen: new Date(1) }),
    );
    const before = await dumpDatabase(coffer);
    const r5 = ref(id, 5n);
    const bal = { chain_id: id, address: 'a' };
    await coffer.write((tx) =>
      withJournalBatch(tx, async () => {
        // More entries than one page of revertAbove (1,000), so the revert crosses pages.
        for (let n = 1; n <= 1100; n++) await journaledInsert(tx, r5, 'ct_events', event(id, n), ['chain_id', 'tx_hash', 'seq']);
        await journaledUpdate(tx, ref(id, 6n), 'ct_balances', bal, { balance: 6n });
        // Journaled under an earlier block after block 6's entry (as a payment settles under
        // the block that recorded it): newest first means this one is undone before block 6's.
        await journaledUpdate(tx, r5, 'ct_balances', bal, { balance: 5n });
      }),
    );
    const reverted = await coffer.write((tx) => revertAbove(tx, id, 4n));
    assert.equal(reverted, 1102);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a restored row is updated in place, so rows referencing it (ON DELETE CASCADE) survive', async () => {
    const id = newChainId();
    await coffer.write(async (tx) => {
      await tx.insert('ct_balances', { chain_id: id, address: 'kyc', balance: 1n, last_height: 0n, last_seen: new Date(1) });
      await tx.insert('ct_notes', { chain_id: id, address: 'kyc', note: 'verified' });
    });
    const before = await dumpDatabase(coffer);
    await coffer.write((tx) => journaledUpdate(tx, ref(id, 1n), 'ct_balances', { chain_id: id, address: 'kyc' }, { balance: 50n }));
    await coffer.write((tx) => revertAbove(tx, id, 0n));
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a journaled delete journals the rows its ON DELETE CASCADE removes first, so a revert restores them too', async () => {
    const id = newChainId();
    await coffer.write(async (tx) => {
      await tx.insert('ct_balances', { chain_id: id, address: 'carol', balance: 5n, last_height: 0n, last_seen: new Date(1) });
      await tx.insert('ct_notes', { chain_id: id, address: 'carol', note: 'verified' });
      await tx.insert('ct_balances', { chain_id: id, address: 'dave', balance: 7n, last_height: 0n, last_seen: new Date(1) });
    });
    const before = await dumpDatabase(coffer);
    const k = (address: string) => ({ chain_id: id, address });
    await coffer.write(async (tx) => {
      assert.equal(await journaledDelete(tx, ref(id, 1n), 'ct_balances', k('carol')), true);
      const dave = tx.codec('ct_balances').decode<Record<string, unknown>>((await tx.selectWhere('ct_balances', k('dave')))[0]!);
      assert.equal(await journaledDelete(tx, ref(id, 1n), 'ct_balances', k('dave'), { before: dave }), true);
    });
    assert.equal(await coffer.read(async (tx) => (await tx.selectWhere('ct_notes', k('carol'))).length), 0, 'the cascade removed the note');
    const journal = await coffer.read((tx) =>
      tx.db.selectFrom('chain_undo').select(['table_name']).where('chain_id', '=', id).orderBy('id').execute(),
    );
    assert.deepEqual(
      journal.map((j) => j.table_name),
      ['ct_notes', 'ct_balances', 'ct_balances'],
    );
    assert.equal(await coffer.write((tx) => revertAbove(tx, id, 0n)), 3);
    assert.deepEqual(await dumpDatabase(coffer), before);
    // Several rows in one statement cannot journal what a cascade removes with them: refused.
    await assert.rejects(
      coffer.write(async (tx) => {
        const carol = tx.codec('ct_balances').decode<Record<string, unknown>>((await tx.selectWhere('ct_balances', k('carol')))[0]!);
        await journaledWriteAll(tx, ref(id, 2n), [{ delete: 'ct_balances', key: k('carol'), known: { before: carol } }]);
      }),
      /ct_notes\.fk_ct_notes_balance \(ON DELETE CASCADE\) would change rows the journal does not see/,
    );
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('revertAbove and pruneFinalized touch only their chain and heights', async () => {
    const a = newChainId();
    const b = newChainId();
    await coffer.write(async (tx) => {
      for (const [chainId, h] of [
        [a, 1n],
        [a, 2n],
        [a, 3n],
        [b, 1n],
        [b, 2n],
        [b, 3n],
      ] as const) {
        await journaledInsert(tx, ref(chainId, h), 'ct_events', event(chainId, Number(h)), ['chain_id', 'tx_hash', 'seq']);
      }
    });
    const heights = (chainId: string) =>
      coffer.read(async (tx) =>
        (await tx.db.selectFrom('chain_undo').select('height').where('chain_id', '=', chainId).orderBy('id').execute()).map((r) =>
          BigInt(String(r.height)),
        ),
      );
    const events = (chainId: string) =>
      coffer.read(async (tx) =>
        (await tx.db.selectFrom('ct_events').select('seq').where('chain_id', '=', chainId).orderBy('seq').execute()).map((r) =>
          Number(r.seq),
        ),
      );
    assert.equal(await coffer.write((tx) => pruneFinalized(tx, a, 1n)), 1);
    assert.deepEqual(await heights(a), [2n, 3n]);
    assert.deepEqual(await heights(b), [1n, 2n, 3n]);
    assert.equal(await coffer.write((tx) => revertAbove(tx, a, 2n)), 1);
    assert.deepEqual(await events(a), [1, 2]);
    assert.deepEqual(await events(b), [1, 2, 3]);
    assert.deepEqual(await heights(a), [2n]);
    assert.equal(await coffer.write((tx) => revertAbove(tx, b, 0n)), 3);
    assert.deepEqual(await events(b), []);
    assert.deepEqual(await events(a), [1, 2]);
  });

  test('keys must be the primary key or a unique key, with every value; key columns cannot change', async () => {
    const id = newChainId();
    const r = ref(id, 1n);
    const before = await dumpDatabase(coffer);
    await assert.rejects(
      coffer.write((tx) => journaledInsert(tx, r, 'ct_events', event(id, 1), ['chain_id', 'tx_hash'])),
      /not the primary key/,
    );
    await assert.rejects(
      coffer.write((tx) => journaledInsert(tx, r, 'ct_events', { ...event(id, 1), seq: undefined }, ['chain_id', 'tx_hash', 'seq'])),
      /no value/,
    );
    await assert.rejects(
      coffer.write((tx) => journaledUpdate(tx, r, 'ct_events', { chain_id: id, kind: 'k1' }, { status: 'seen' })),
      /not the primary key/,
    );
    await assert.rejects(
      coffer.write((tx) => journaledDelete(tx, r, 'ct_balances', { address: 'a' })),
      /not the primary key/,
    );
    await assert.rejects(
      coffer.write((tx) => journaledUpdate(tx, r, 'ct_balances', { chain_id: id, address: 'a' }, { address: 'b' })),
      /key column/,
    );
    assert.deepEqual(await dumpDatabase(coffer), before);
    // A unique key other than the primary key is accepted.
    await coffer.write(async (tx) => {
      await journaledInsert(tx, r, 'ct_events', event(id, 7), ['chain_id', 'kind', 'tx_hash']);
      assert.equal(
        await journaledUpdate(tx, r, 'ct_events', { chain_id: id, kind: 'k7', tx_hash: hashOf('ev', id, 7) }, { status: 'seen' }),
        true,
      );
    });
    await coffer.write((tx) => revertAbove(tx, id, 0n));
    assert.deepEqual(await dumpDatabase(coffer), before);
  });
});
