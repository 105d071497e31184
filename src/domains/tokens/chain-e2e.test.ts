// End to end through chain ingest on every backend: blocks carrying token actions go through
// chain(tx).ingestBlock with tokenProcessors(), a reorg through chain(tx).reorg reverts the token
// rows with the chain's own, and finality bounds what a reorg may take back.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { FinalityViolationError } from '../chain/errors.js';
import type { IngestedTransaction } from '../chain/processors.js';
import { chain } from '../chain/store.js';
import type { IngestBlockInput } from '../chain/types.js';
import { tokenProcessors } from './processors.js';
import { tokens } from './store.js';
import { actionTx, checkInvariants, invoiceInput, mintInput, sha, snapshot, unique } from './testkit.js';

forEachBackend('tokens through chain ingest', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  test('mint, invoice and payment ride chain ingest; a reorg reverts them with the blocks; finality bounds it', async () => {
    const chainId = unique('e2e-');
    await coffer.write((tx) => chain(tx).registerChain({ chainId, name: 'Doge regtest', network: 'regtest', confirmations: 2 }));
    const blocks: IngestBlockInput[] = [];
    const block = (height: number, txs: IngestedTransaction[], branch = 'a'): IngestBlockInput => ({
      chainId,
      height: BigInt(height),
      blockHash: sha(`${chainId}:${branch}:${height}`),
      parentHash: height === 0 ? '0'.repeat(64) : (blocks[height - 1]?.blockHash ?? sha(`${chainId}:${branch}:${height - 1}`)),
      time: new Date(Date.UTC(2025, 0, 1, 0, height)),
      transactions: txs.map((t, i) => ({ ...t, indexInBlock: i })),
    });
    const ingest = async (b: IngestBlockInput) => {
      const r = await coffer.write((tx) => chain(tx).ingestBlock(b, { processors: tokenProcessors() }), { op: 'chain.ingestBlock' });
      blocks[Number(b.height)] = b;
      return r;
    };
    const t = (fn: (s: ReturnType<typeof tokens>) => Promise<unknown>) => coffer.read((tx) => fn(tokens(tx))) as Promise<any>;

    const input = mintInput({ chainId, fractionCount: 100n });
    const { hash: mint } = await coffer.write((tx) => tokens(tx).submitMint(input));
    await ingest(block(0, [actionTx('mint', mint)]));
    assert.equal((await t((s) => s.balance(mint, input.ownerAddress))).balance, 0n, 'one confirmation of two');
    await ingest(block(1, []));
    assert.equal((await t((s) => s.balance(mint, input.ownerAddress))).balance, 100n);

    const inv = invoiceInput({
      chainId,
      mintHash: mint,
      sellerAddress: input.ownerAddress,
      buyerAddress: 'DBuyerE',
      quantity: 30n,
      price: 100_000n,
      paymentAddress: 'DPayE',
    });
    const { hash: ih } = await coffer.write((tx) => tokens(tx).createInvoice(inv));
    const beforeBranch = await snapshot(coffer);
    const match = actionTx('invoice', ih);
    const pay = actionTx('payment', ih, [{ address: 'DPayE', value: 3_000_000n }]);
    await ingest(block(2, [match, pay]));
    assert.equal((await t((s) => s.getInvoice(ih))).status, 'matched', 'paid but one confirmation of two');
    assert.equal((await ingest(block(2, [match, pay]))).status, 'duplicate', 'chain ingest of the same block is a no-op');

    // A one-block reorg to a branch without the token transactions: the token rows are as before.
    const r = await coffer.write((tx) => chain(tx).reorg(chainId, 1n, [block(2, [], 'b')], { processors: tokenProcessors() }));
    blocks[2] = block(2, [], 'b');
    assert.ok(r.revertedWrites > 0);
    assert.deepEqual(await snapshot(coffer), beforeBranch, 'the reorg reverted every token row the branch derived');

    // The transactions land again in the new branch and settle once final.
    await ingest(block(3, [match, pay], 'b'));
    await ingest(block(4, [], 'b'));
    const paid = await t((s) => s.getInvoice(ih));
    assert.equal(paid.status, 'paid');
    assert.equal(paid.onChain.paidHeight, 3n);
    assert.equal((await t((s) => s.balance(mint, 'DBuyerE'))).balance, 30n);
    await checkInvariants(coffer);

    // Below the finalized height (3) the chain refuses to reorg, so the settlement stands.
    const settled = await snapshot(coffer);
    await assert.rejects(
      coffer.write((tx) => chain(tx).reorg(chainId, 2n, [block(3, [], 'c')], { processors: tokenProcessors() })),
      FinalityViolationError,
    );
    assert.deepEqual(await snapshot(coffer), settled);
    const stats = await t((s) => s.stats(chainId));
    assert.deepEqual(stats, [{ chainId, mints: 1, unconfirmedMints: 0, invoices: 1, unconfirmedInvoices: 0, onchainTransactions: 3 }]);
  });
});
