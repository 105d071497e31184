// The ledger's write helpers on every backend: entries go in with their holders' balances in one
// set of writes, a recorded cause or a negative balance fails before anything stays written, and
// the cached balance always equals the sum of the holder's entries.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { toBigInt } from '../../db/codec.js';
import { InvalidStateTransitionError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { appendEntry, lockBalances, mustWriteAll, newEntryWrites, type LedgerWrite } from './ledger.js';
import { checkInvariants, sha, snapshot, unique } from './testkit.js';
import { T } from './types.js';

forEachBackend('tokens ledger', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  /** A mint with `owner` credited `amount` at height 1, and a sale's two entries of `quantity`. */
  async function setup(amount: bigint) {
    const chainId = unique('ledger-');
    const mintHash = sha(chainId);
    const [owner, buyer] = [unique('DOwner'), unique('DBuyer')];
    const ref = (height: bigint) => ({ chainId, height, blockHash: sha(`${chainId}/${height}`) });
    const base = { chainId, mintHash, txHash: sha(`${chainId}/tx`), createdAt: new Date(1_700_000_000_000) };
    await coffer.write((tx) =>
      appendEntry(tx, ref(1n), { ...base, causeKind: 'mint_credit', causeRef: mintHash, address: owner, delta: amount }),
    );
    const sale = (quantity: bigint, invoice = sha(unique('inv'))): [LedgerWrite, LedgerWrite] => [
      { ...base, causeKind: 'sale_debit', causeRef: invoice, address: owner, delta: -quantity },
      { ...base, causeKind: 'sale_credit', causeRef: invoice, address: buyer, delta: quantity },
    ];
    const settle = (entries: LedgerWrite[], height = 2n) =>
      coffer.write(async (tx) => {
        const held = await lockBalances(tx, mintHash, [owner, buyer]);
        await mustWriteAll(
          tx,
          ref(height),
          newEntryWrites(
            ref(height),
            entries.map((entry) => ({ entry, locked: held.get(entry.address) ?? null })),
          ),
        );
      });
    const balances = () =>
      coffer.read(async (tx) => {
        const rows = await tx.db.selectFrom(T.balances).select(['address', 'balance']).where('mint_hash', '=', mintHash).execute();
        const of = (a: string) => toBigInt(rows.find((r) => r.address === a)?.balance);
        return [of(owner), of(buyer)];
      });
    return { chainId, owner, buyer, sale, settle, balances };
  }

  test('a sale moves both balances with its two entries, journaled, the buyer getting a first row', async () => {
    const s = await setup(10n);
    await s.settle(s.sale(4n));
    assert.deepEqual(await s.balances(), [6n, 4n]);
    // Each row's change has its image: two entries, the owner's balance before, the buyer's none.
    const journal = await coffer.read((tx) =>
      tx.db
        .selectFrom('chain_undo')
        .select(['table_name', 'before_image'])
        .where('chain_id', '=', s.chainId)
        .where('height', '=', 2n as never)
        .execute(),
    );
    assert.deepEqual(journal.map((j) => `${j.table_name}:${j.before_image === null ? 'none' : 'image'}`).sort(), [
      'token_balances:image',
      'token_balances:none',
      'token_ledger:none',
      'token_ledger:none',
    ]);
    await s.settle(s.sale(6n), 3n);
    assert.deepEqual(await s.balances(), [0n, 10n]);
    await checkInvariants(coffer);
  });

  test('an entry whose cause is recorded fails the whole transaction: no entry, balance or journal row stays', async () => {
    const s = await setup(10n);
    const sale = s.sale(3n);
    await s.settle(sale);
    const before = await snapshot(coffer, { journal: true });
    await assert.rejects(
      s.settle(sale, 3n),
      (e: unknown) => e instanceof InvalidStateTransitionError && /token_ledger row .* exists already/.test(e.message),
    );
    assert.deepEqual(await snapshot(coffer, { journal: true }), before);
    assert.deepEqual(await s.balances(), [7n, 3n]);
  });

  test('a debit past the balance, or two entries of one holder, are refused before anything is written', async () => {
    const s = await setup(2n);
    const before = await snapshot(coffer, { journal: true });
    await assert.rejects(
      s.settle(s.sale(3n)),
      (e: unknown) => e instanceof InvalidStateTransitionError && /would make the balance of .* negative/.test(e.message),
    );
    const [debit] = s.sale(1n);
    await assert.rejects(s.settle([debit, { ...debit, causeRef: sha('other') }]), /two entries of one holder/);
    assert.deepEqual(await snapshot(coffer, { journal: true }), before);
    assert.deepEqual(await s.balances(), [2n, 0n]);
  });
});
