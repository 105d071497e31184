// Claims and reads that must hold while other transactions write, on every backend: expiry is not
// stalled by reservations whose payment is confirming; getInvoice and getMint find a row while
// blocks move it between its two tables; a mint submitted again while a block confirms it is
// reported confirmed; retention cannot delete an unconfirmed mint a block is confirming. On
// SQLite and memory:// writers are serialised, so the races resolve one way there; the results
// asserted are the same on every backend. Each suite has its own database (expiry and retention
// act on every row of it).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { before, test } from 'node:test';
import { InvalidStateTransitionError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import type { BlockRef } from '../chain/undo.js';
import { mustWriteAll } from './ledger.js';
import { confirmMint } from './mints.js';
import { processTokenBlock } from './processors.js';
import { tokens } from './store.js';
import { actionTx, checkInvariants, FakeChain, invoiceInput, mintInput, newKey, sha, unique } from './testkit.js';
import { T, type MintInput } from './types.js';

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<void>((r) => (fire = r));
  return { promise, fire };
}

/** Long enough for a concurrent transaction to reach its conflicting statement. */
const SETTLE_MS = 300;

forEachBackend('tokens interleavings', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  async function creditedMint(chain: FakeChain, over: Partial<MintInput> = {}) {
    const input = mintInput({ chainId: chain.chainId, ...over });
    const { hash } = await coffer.write((tx) => tokens(tx).submitMint(input));
    await chain.mine(coffer, [actionTx('mint', hash)]);
    await chain.mineEmpty(coffer, chain.confirmations - 1);
    return { hash, owner: input.ownerAddress };
  }

  const unconfirmedMintRows = (hash: string) =>
    coffer.read(async (tx) => (await tx.db.selectFrom(T.unconfirmedMints).select('hash').where('hash', '=', hash).execute()).length);

  test('expiry with limit 1 expires an unpaid reservation queued behind an expired one whose payment is confirming', async () => {
    const chain = new FakeChain(unique('stall-'), 3);
    const { hash, owner } = await creditedMint(chain, { fractionCount: 10n });
    const t0 = new Date('2001-01-01T00:00:00Z');
    const create = (buyer: string, at: Date) =>
      coffer.write((tx) =>
        tokens(tx, { clock: () => at }).createInvoice(
          invoiceInput({
            chainId: chain.chainId,
            mintHash: hash,
            sellerAddress: owner,
            buyerAddress: buyer,
            quantity: 2n,
            price: 3n,
            paymentAddress: `P${buyer}`,
          }),
          { ttlMs: 1000 },
        ),
      );
    // The paid one expires first, so it is the oldest candidate.
    const paid = (await create('DPaid', t0)).hash;
    const unpaid = (await create('DUnpaid', new Date(t0.getTime() + 10))).hash;
    await chain.mine(coffer, [actionTx('invoice', paid)]);
    await chain.mine(coffer, [actionTx('payment', paid, [{ address: 'PDPaid', value: 6n }])]);
    const later = new Date(t0.getTime() + 5000);
    assert.deepEqual(await coffer.write((tx) => tokens(tx).expireReservations({ now: later, limit: 1 })), [unpaid]);
    assert.deepEqual(await coffer.write((tx) => tokens(tx).expireReservations({ now: later, limit: 1 })), [], 'nothing left to expire');
    assert.equal((await coffer.read((tx) => tokens(tx).getInvoice(unpaid)))?.status, 'expired');
    assert.equal(
      (await coffer.read((tx) => tokens(tx).getReservation(paid)))?.state,
      'reserved',
      'the confirming payment keeps its tokens',
    );
    assert.equal((await coffer.read((tx) => tokens(tx).balance(hash, owner))).reserved, 2n);
    // The payment settles once final; its reservation was never expired under it.
    await chain.mineEmpty(coffer, 2);
    assert.equal((await coffer.read((tx) => tokens(tx).getInvoice(paid)))?.status, 'paid');
    await checkInvariants(coffer);
  });

  test('getInvoice and getMint find the row while blocks move it between the unconfirmed and confirmed tables and back', async () => {
    const chain = new FakeChain(unique('move-'), 1);
    const { hash, owner } = await creditedMint(chain, { fractionCount: 10n });
    const input = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerM',
      quantity: 1n,
      price: 1n,
      paymentAddress: 'DPayM',
    });
    const ih = (await coffer.write((tx) => tokens(tx).createInvoice(input))).hash;
    const other = mintInput({ chainId: chain.chainId });
    const mh = (await coffer.write((tx) => tokens(tx).submitMint(other))).hash;
    const fork = chain.tip;
    let moving = true;
    let reads = 0;
    // Write transactions (READ COMMITTED on PostgreSQL and MySQL), as createInvoice's replay and
    // addInvoiceSignature read the invoice; each read must find it, in whichever table.
    const reader = (async () => {
      while (moving) {
        const again = await coffer.write((tx) => tokens(tx).createInvoice(input));
        assert.equal(again.created, false);
        assert.ok(await coffer.write((tx) => tokens(tx).getInvoice(ih)), 'the invoice is found');
        assert.ok(await coffer.write((tx) => tokens(tx).getMint(mh)), 'the mint is found');
        reads++;
      }
    })();
    try {
      for (let i = 0; i < 25; i++) {
        await chain.mine(coffer, [actionTx('invoice', ih), actionTx('mint', mh)]);
        // Back past finality on purpose: a reorg moves both rows back to the unconfirmed tables.
        await chain.revert(coffer, fork, { beyondFinality: true });
      }
    } finally {
      moving = false;
      await reader;
    }
    assert.ok(reads > 0);
    assert.equal((await coffer.read((tx) => tokens(tx).getInvoice(ih)))?.status, 'open');
    assert.equal((await coffer.read((tx) => tokens(tx).getMint(mh)))?.status, 'unconfirmed');
    await checkInvariants(coffer);
  });

  test('a mint submitted again while a block confirms it is reported confirmed, and no unconfirmed copy is left', async () => {
    const chain = new FakeChain(unique('resubmit-'), 1);
    const input = mintInput({ chainId: chain.chainId });
    const { hash } = await coffer.write((tx) => tokens(tx).submitMint(input));
    const block = chain.next([actionTx('mint', hash)]);
    const moved = signal();
    const commit = signal();
    // The block moves the mint to token_mints, then waits before committing.
    const processing = coffer.write(
      async (tx) => {
        await processTokenBlock(tx, chain.context(block));
        moved.fire();
        await commit.promise;
      },
      { op: 'test.tokens.block' },
    );
    await moved.promise;
    const resubmit = coffer.write((tx) => tokens(tx).submitMint(input));
    await sleep(SETTLE_MS);
    commit.fire();
    await processing;
    chain.blocks.push(block);
    assert.deepEqual(await resubmit, { hash, status: 'confirmed', created: false });
    assert.equal(await unconfirmedMintRows(hash), 0, 'no unconfirmed copy of a confirmed mint');
    assert.equal((await coffer.read((tx) => tokens(tx).getMint(hash)))?.status, 'confirmed');
    assert.deepEqual(await coffer.write((tx) => tokens(tx).submitMint(input)), { hash, status: 'confirmed', created: false });
    assert.equal(await unconfirmedMintRows(hash), 0, 'a later replay leaves none either');
  });

  test('retention cannot trim an unconfirmed mint that a block is confirming', async () => {
    const chain = new FakeChain(unique('trimrace-'), 1);
    const received = new Date('1980-01-01T00:00:00Z');
    const input = mintInput({ chainId: chain.chainId });
    const { hash } = await coffer.write((tx) => tokens(tx, { clock: () => received }).submitMint(input));
    const block = chain.next([actionTx('mint', hash)]);
    const ref: BlockRef = { chainId: chain.chainId, height: block.height, blockHash: block.blockHash };
    const read = signal();
    const write = signal();
    // As the block processor does: the mint handler reads the row, and the pass writes the move
    // (a guarded delete of the row read) later in the same transaction.
    const confirming = coffer.write(
      async (tx) => {
        const outcome = await confirmMint(tx, ref, hash, {
          txHash: sha(unique('tx')),
          blockHeight: block.height,
          blockHash: block.blockHash,
        });
        assert.equal(outcome.outcome, 'applied');
        read.fire();
        await write.promise;
        await mustWriteAll(tx, ref, outcome.outcome === 'applied' ? (outcome.writes ?? []) : []);
      },
      { op: 'test.tokens.block' },
    );
    await read.promise;
    const trimming = coffer.write((tx) => tokens(tx).trimUnconfirmedMints({ olderThan: new Date(received.getTime() + 1) }));
    await sleep(SETTLE_MS);
    write.fire();
    await confirming;
    assert.equal(await trimming, 0, 'the row being confirmed is not trimmed');
    assert.equal((await coffer.read((tx) => tokens(tx).getMint(hash)))?.status, 'confirmed');
    assert.equal(await unconfirmedMintRows(hash), 0);
  });

  test('a signature attempted while a release or a trim of its invoice is in flight waits for it, then is refused: no orphan signature', async () => {
    const chain = new FakeChain(unique('sigrace-'), 1);
    const manager = newKey();
    const { hash, owner } = await creditedMint(chain, {
      fractionCount: 10n,
      signatureRule: 'one',
      assetManagers: [{ name: 'm', publicKey: manager.publicKey, url: null }],
    });
    // Before every other row of this suite, so the trim removes only this test's invoice.
    const received = new Date('1981-01-01T00:00:00Z');
    for (const how of ['release', 'trim'] as const) {
      const input = invoiceInput({
        chainId: chain.chainId,
        mintHash: hash,
        sellerAddress: owner,
        buyerAddress: unique('DBuyerS'),
        quantity: 1n,
        price: 1n,
        paymentAddress: 'DPayS',
      });
      const ih = (await coffer.write((tx) => tokens(tx, { clock: () => received }).createInvoice(input))).hash;
      const ended = signal();
      const commit = signal();
      // The release (or trim) ends the reservation and drops the invoice with its signatures,
      // then holds its transaction open.
      const ending = coffer.write(
        async (tx) => {
          if (how === 'release') await tokens(tx).releaseInvoice(ih);
          else assert.equal(await tokens(tx).trimUnconfirmedInvoices({ olderThan: new Date(received.getTime() + 1) }), 1);
          ended.fire();
          await commit.promise;
        },
        { op: 'test.tokens.end' },
      );
      let signing: Promise<unknown> | undefined;
      let done = false;
      try {
        await ended.promise;
        signing = coffer.write((tx) =>
          tokens(tx).addInvoiceSignature({ invoiceHash: ih, publicKey: manager.publicKey, signature: manager.sign(ih) }),
        );
        signing.then(
          () => (done = true),
          () => (done = true),
        );
        await sleep(SETTLE_MS);
        assert.equal(done, false, `${how}: the signature waits for the transaction ending the invoice`);
      } finally {
        commit.fire();
        await ending;
      }
      await assert.rejects(
        signing,
        (e: unknown) =>
          e instanceof InvalidStateTransitionError &&
          e.details.field === 'invoiceHash' &&
          e.details.invoiceHash === ih &&
          e.details.state === 'released',
        `${how}: the signature is refused once the invoice is released`,
      );
      const rows = await coffer.read((tx) => tx.db.selectFrom(T.signatures).select('public_key').where('invoice_hash', '=', ih).execute());
      assert.equal(rows.length, 0, `${how}: no signature of an invoice that no longer exists`);
      assert.equal(await coffer.read((tx) => tokens(tx).getInvoice(ih)), undefined);
      assert.equal((await coffer.read((tx) => tokens(tx).getReservation(ih)))?.state, 'released');
    }
    await checkInvariants(coffer);
  });
});
