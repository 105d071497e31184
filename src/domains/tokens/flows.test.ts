// The token flows on every backend: mint confirmation and credit, invoices with escrow,
// asset-manager signatures, payment and settlement after confirmations, expiry, release,
// reorgs through the undo journal, replays, retention, stats and offers.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ValidationError, InvalidStateTransitionError, NotFoundError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { InsufficientBalanceError } from './errors.js';
import { checkPayment } from './payments.js';
import { processTokenBlock } from './processors.js';
import { tokens } from './store.js';
import {
  actionTx,
  CHAIN,
  checkInvariants,
  FakeChain,
  invoiceInput,
  mintInput,
  newKey,
  sha,
  signedOffer,
  snapshot,
  unique,
  type TestKey,
} from './testkit.js';
import { T, type MintInput } from './types.js';
import { mintHash, parse, mintInputSchema } from './validate.js';
import type { MintContent } from './types.js';

const w =
  (coffer: Coffer) =>
  <R>(fn: (s: ReturnType<typeof tokens>) => Promise<R>) =>
    coffer.write((tx) => fn(tokens(tx)), { op: 'test.tokens' });
const r =
  (coffer: Coffer) =>
  <R>(fn: (s: ReturnType<typeof tokens>) => Promise<R>) =>
    coffer.read((tx) => fn(tokens(tx)));

/** Submits a mint, anchors it on chain and mines until it is credited. */
async function creditedMint(coffer: Coffer, chain: FakeChain, over: Partial<MintInput> = {}) {
  const input = mintInput(over);
  const { hash } = await w(coffer)((s) => s.submitMint(input));
  await chain.mine(coffer, [actionTx('mint', hash)]);
  await chain.mineEmpty(coffer, chain.confirmations - 1);
  return { hash, owner: input.ownerAddress, input };
}

function invoiceFor(mint: string, seller: string, quantity: bigint, price = 5n, over: Record<string, unknown> = {}, key?: TestKey) {
  return invoiceInput(
    { mintHash: mint, sellerAddress: seller, buyerAddress: unique('DBuyer'), quantity, price, paymentAddress: unique('DPay'), ...over },
    key,
  );
}

/** Each on-chain action of the chain, by transaction hash: its state and reason. */
async function actionStates(coffer: Coffer, chainId: string) {
  const rows = await coffer.read((tx) =>
    tx.db.selectFrom(T.actions).select(['tx_hash', 'state', 'reason']).where('chain_id', '=', chainId).execute(),
  );
  return (h: string) => rows.find((x) => x.tx_hash === h);
}

/** A credited mint of the chain and an invoice of it (1 at 5 to `pay`), matched on chain by the next block. */
async function matchedInvoice(coffer: Coffer, chain: FakeChain, buyer: string, pay: string) {
  const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n });
  const { hash: ih } = await w(coffer)((s) =>
    s.createInvoice(
      invoiceInput({
        chainId: chain.chainId,
        mintHash: hash,
        sellerAddress: owner,
        buyerAddress: buyer,
        quantity: 1n,
        price: 5n,
        paymentAddress: pay,
      }),
    ),
  );
  await chain.mine(coffer, [actionTx('invoice', ih)]);
  return { hash, ih };
}

forEachBackend('tokens flows', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  test('a mint is identified by the SHA-256 of the canonical JSON of its signed fields; submitting it again is a no-op', async () => {
    const input = mintInput({ fractionCount: '500', metadata: { b: 1, a: ['x', { z: null }] } });
    const first = await w(coffer)((s) => s.submitMint(input));
    const again = await w(coffer)((s) => s.submitMint({ ...input, metadata: { a: ['x', { z: null }], b: 1 } }));
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.hash, first.hash, 'key order does not change the hash');
    assert.equal(first.hash, mintHash(parse(mintInputSchema, input) as MintContent));
    const m = await r(coffer)((s) => s.getMint(first.hash.toUpperCase()));
    assert.equal(m?.status, 'unconfirmed');
    assert.equal(m?.fractionCount, 500n);
    assert.deepEqual(m?.metadata, { b: 1, a: ['x', { z: null }] });
    assert.equal(m?.ownerAddress, input.ownerAddress);
    const other = await w(coffer)((s) => s.submitMint({ ...input, ownerAddress: unique('DOther') }));
    assert.notEqual(other.hash, first.hash, 'the owner is a signed field');
  });

  test('a mint may leave out metadata, requirements, lockupOptions and contractOfSale: each is stored, and hashed, as null', async () => {
    const { metadata: _m, requirements: _r, lockupOptions: _l, contractOfSale: _c, ...bare } = mintInput();
    const first = await w(coffer)((s) => s.submitMint(bare));
    assert.equal(first.created, true);
    const m = await r(coffer)((s) => s.getMint(first.hash));
    assert.deepEqual([m?.metadata, m?.requirements, m?.lockupOptions, m?.contractOfSale], [null, null, null, null]);
    const explicit = await w(coffer)((s) =>
      s.submitMint({ ...bare, metadata: null, requirements: null, lockupOptions: null, contractOfSale: null }),
    );
    assert.deepEqual([explicit.hash, explicit.created], [first.hash, false], 'left out is the same content as null');
  });

  test('mint confirmation: the on-chain mint matches by hash, and the owner is credited once the block has the required confirmations', async () => {
    const chain = new FakeChain(unique('c3-'), 3);
    await chain.mineEmpty(coffer, 1);
    const input = mintInput({ chainId: chain.chainId, fractionCount: 777n });
    const { hash } = await w(coffer)((s) => s.submitMint(input));
    await chain.mine(coffer, [actionTx('mint', hash)]);
    let m = await r(coffer)((s) => s.getMint(hash));
    assert.equal(m?.status, 'confirmed');
    assert.equal(m?.onChain?.blockHeight, 1n);
    assert.equal(m?.onChain?.credited, false);
    assert.equal((await r(coffer)((s) => s.balance(hash, input.ownerAddress))).balance, 0n, 'one confirmation of three: not credited');
    await chain.mine(coffer);
    assert.equal((await r(coffer)((s) => s.balance(hash, input.ownerAddress))).balance, 0n, 'two of three');
    await chain.mine(coffer);
    m = await r(coffer)((s) => s.getMint(hash));
    assert.equal(m?.onChain?.credited, true);
    const bal = await r(coffer)((s) => s.balance(hash, input.ownerAddress));
    assert.deepEqual(bal, { mintHash: hash, address: input.ownerAddress, balance: 777n, reserved: 0n, available: 777n });
    const entries = await r(coffer)((s) => s.ledger(hash, input.ownerAddress));
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.causeKind, 'mint_credit');
    assert.equal(entries[0]!.causeRef, hash);
    assert.equal(entries[0]!.delta, 777n);
    assert.equal(entries[0]!.blockHeight, 1n, 'the entry names the block it came from');
    const st = await r(coffer)((s) => s.stats(chain.chainId));
    assert.deepEqual(st, [
      { chainId: chain.chainId, mints: 1, unconfirmedMints: 0, invoices: 0, unconfirmedInvoices: 0, onchainTransactions: 1 },
    ]);
    await checkInvariants(coffer);
  });

  test('an on-chain mint seen before its content stays pending and matches when the content arrives', async () => {
    const chain = new FakeChain(unique('late-'), 1);
    const input = mintInput({ chainId: chain.chainId });
    const hash = mintHash(parse(mintInputSchema, input) as MintContent);
    await chain.mine(coffer, [actionTx('mint', hash)]);
    assert.equal(await r(coffer)((s) => s.getMint(hash)), undefined);
    await w(coffer)((s) => s.submitMint(input));
    await chain.mine(coffer);
    const m = await r(coffer)((s) => s.getMint(hash));
    assert.equal(m?.status, 'confirmed');
    assert.equal(m?.onChain?.blockHeight, 0n, 'anchored at the transaction height');
    assert.equal(m?.onChain?.matchedHeight, 1n, 'matched when processed');
    assert.equal((await r(coffer)((s) => s.balance(hash, input.ownerAddress))).balance, 1000n);
    const again = await w(coffer)((s) => s.submitMint(input));
    assert.deepEqual([again.status, again.created], ['confirmed', false]);
    // A second on-chain transaction for the same mint is rejected, not a second credit.
    await chain.mine(coffer, [actionTx('mint', hash)]);
    assert.equal((await r(coffer)((s) => s.balance(hash, input.ownerAddress))).balance, 1000n);
    await checkInvariants(coffer);
  });

  test("an invoice reserves the seller's tokens only if the available balance covers the quantity", async () => {
    const chain = new FakeChain(unique('inv-'), 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 100n });
    const inv1 = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerA',
      quantity: 60n,
      price: 3n,
      paymentAddress: 'DPayA',
    });
    const res = await w(coffer)((s) => s.createInvoice(inv1));
    assert.equal(res.created, true);
    assert.equal(res.invoice.status, 'open');
    assert.equal(res.invoice.totalPrice, 180n);
    assert.equal(res.invoice.reservation?.state, 'reserved');
    assert.deepEqual(await r(coffer)((s) => s.balance(hash, owner)), {
      mintHash: hash,
      address: owner,
      balance: 100n,
      reserved: 60n,
      available: 40n,
    });
    const before = await snapshot(coffer);
    const inv2 = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerB',
      quantity: 41n,
      price: 3n,
      paymentAddress: 'DPayB',
    });
    await assert.rejects(
      w(coffer)((s) => s.createInvoice(inv2)),
      (e: unknown) =>
        e instanceof InsufficientBalanceError &&
        e.code === 'invalid_state_transition' &&
        e.details.available === 40n &&
        e.details.field === 'quantity',
    );
    assert.deepEqual(await snapshot(coffer), before, 'a refused invoice writes nothing');
    const replay = await w(coffer)((s) => s.createInvoice(inv1));
    assert.equal(replay.created, false);
    assert.deepEqual(await snapshot(coffer), before, 'a replayed invoice writes nothing');
    const inv3 = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerB',
      quantity: 40n,
      price: 3n,
      paymentAddress: 'DPayB',
    });
    await w(coffer)((s) => s.createInvoice(inv3));
    assert.equal((await r(coffer)((s) => s.balance(hash, owner))).available, 0n);
    await checkInvariants(coffer);
  });

  test('two invoices racing for the same balance: exactly one reserves', async () => {
    const chain = new FakeChain(unique('race-'), 1);
    const sellers = [];
    for (let i = 0; i < 4; i++) sellers.push(await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n }));
    const attempts = sellers.flatMap(({ hash, owner }) =>
      [0, 1].map(() =>
        invoiceInput({
          chainId: chain.chainId,
          mintHash: hash,
          sellerAddress: owner,
          buyerAddress: unique('DB'),
          quantity: 10n,
          price: 1n,
          paymentAddress: 'DPay',
        }),
      ),
    );
    const results = await Promise.allSettled(attempts.map((inv) => w(coffer)((s) => s.createInvoice(inv))));
    for (const rr of results) if (rr.status === 'rejected') assert.ok(rr.reason instanceof InsufficientBalanceError, String(rr.reason));
    for (const { hash, owner } of sellers) {
      const bal = await r(coffer)((s) => s.balance(hash, owner));
      assert.deepEqual([bal.reserved, bal.available], [10n, 0n]);
    }
    assert.equal(results.filter((x) => x.status === 'fulfilled').length, sellers.length);
    await checkInvariants(coffer);
  });

  test('invoice → on-chain match → payment → settlement after the required confirmations', async () => {
    const chain = new FakeChain(unique('pay-'), 2);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 50n });
    const inv = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerX',
      quantity: 20n,
      price: 250_000_000n,
      paymentAddress: 'DPayX',
    });
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
    await chain.mine(coffer, [actionTx('invoice', ih)]);
    let got = await r(coffer)((s) => s.getInvoice(ih));
    assert.equal(got?.status, 'matched');
    assert.equal(got?.onChain?.blockHeight, chain.tip);
    const total = 20n * 250_000_000n;
    await chain.mine(coffer, [
      actionTx('payment', ih, [
        { address: 'DPayX', value: total },
        { address: 'DChange', value: 12345n },
      ]),
    ]);
    const paidAt = chain.tip;
    got = await r(coffer)((s) => s.getInvoice(ih));
    assert.equal(got?.status, 'matched', 'one confirmation of two: not settled');
    assert.equal((await r(coffer)((s) => s.balance(hash, 'DBuyerX'))).balance, 0n);
    await chain.mine(coffer);
    got = await r(coffer)((s) => s.getInvoice(ih));
    assert.equal(got?.status, 'paid');
    assert.equal(got?.onChain?.paidHeight, paidAt);
    assert.equal(got?.reservation?.state, 'settled');
    assert.deepEqual(await r(coffer)((s) => s.balance(hash, 'DBuyerX')), {
      mintHash: hash,
      address: 'DBuyerX',
      balance: 20n,
      reserved: 0n,
      available: 20n,
    });
    assert.deepEqual(await r(coffer)((s) => s.balance(hash, owner)), {
      mintHash: hash,
      address: owner,
      balance: 30n,
      reserved: 0n,
      available: 30n,
    });
    const sellerEntries = await r(coffer)((s) => s.ledger(hash, owner));
    assert.deepEqual(
      sellerEntries.map((e) => [e.causeKind, e.delta]),
      [
        ['mint_credit', 50n],
        ['sale_debit', -20n],
      ],
    );
    // The buyer can sell on immediately: the credit is final.
    await w(coffer)((s) =>
      s.createInvoice(
        invoiceInput({
          chainId: chain.chainId,
          mintHash: hash,
          sellerAddress: 'DBuyerX',
          buyerAddress: 'DThird',
          quantity: 20n,
          price: 1n,
          paymentAddress: 'DPay3',
        }),
      ),
    );
    await checkInvariants(coffer);
  });

  test('a block final when processed (confirmations lowered to one) credits and settles its own mints and payments with those earlier blocks left due, oldest first', async () => {
    const chain = new FakeChain(unique('lower-'), 3);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 40n });
    const later = mintInput({ chainId: chain.chainId, fractionCount: 7n });
    const { hash: m2 } = await w(coffer)((s) => s.submitMint(later));
    await chain.mine(coffer, [actionTx('mint', m2)]);
    const sale = async (quantity: bigint) => {
      const pay = unique('DPay');
      const buyer = unique('DBuyer');
      const inv = invoiceInput({
        chainId: chain.chainId,
        mintHash: hash,
        sellerAddress: owner,
        buyerAddress: buyer,
        quantity,
        price: 5n,
        paymentAddress: pay,
      });
      const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
      return { ih, buyer, txs: [actionTx('invoice', ih), actionTx('payment', ih, [{ address: pay, value: quantity * 5n }])] };
    };
    const first = await sale(4n);
    await chain.mine(coffer, first.txs);
    assert.equal((await r(coffer)((s) => s.getInvoice(first.ih)))?.status, 'matched', 'recorded, not final at three confirmations');
    assert.equal((await r(coffer)((s) => s.balance(m2, later.ownerAddress))).balance, 0n, 'not credited at three confirmations');

    // The operator lowers the confirmations to one: the next block is final as it is processed.
    const newest = mintInput({ chainId: chain.chainId, fractionCount: 9n });
    const { hash: m3 } = await w(coffer)((s) => s.submitMint(newest));
    const second = await sale(6n);
    const block = chain.next([actionTx('mint', m3), ...second.txs]);
    await coffer.write((tx) => processTokenBlock(tx, { block, tipHeight: block.height, confirmationsNeeded: 1 }));
    chain.blocks.push(block);

    assert.equal((await r(coffer)((s) => s.balance(m2, later.ownerAddress))).balance, 7n, 'the earlier block’s mint is credited');
    assert.equal((await r(coffer)((s) => s.balance(m3, newest.ownerAddress))).balance, 9n, 'the block’s own mint is credited');
    for (const { ih, buyer, q } of [
      { ...first, q: 4n },
      { ...second, q: 6n },
    ]) {
      assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
      assert.equal((await r(coffer)((s) => s.balance(hash, buyer))).balance, q);
    }
    assert.deepEqual(
      (await r(coffer)((s) => s.ledger(hash, owner))).map((e) => [e.causeKind, e.causeRef, e.delta]),
      [
        ['mint_credit', hash, 40n],
        ['sale_debit', first.ih, -4n],
        ['sale_debit', second.ih, -6n],
      ],
      'the earlier payment settles first',
    );
    // Processing the block again changes nothing.
    const before = await snapshot(coffer);
    await coffer.write((tx) => processTokenBlock(tx, { block, tipHeight: block.height, confirmationsNeeded: 1 }));
    assert.deepEqual(await snapshot(coffer), before);
    await checkInvariants(coffer);
  });

  test('a payment that does not pay exactly quantity × price is a typed error and writes nothing', async () => {
    const chain = new FakeChain(unique('bad-'), 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 50n });
    const inv = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerY',
      quantity: 3n,
      price: 7n,
      paymentAddress: 'DPayY',
    });
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
    await chain.mine(coffer, [actionTx('invoice', ih)]);
    for (const value of [20n, 22n, 0n]) {
      const payment = {
        invoiceHash: ih,
        txHash: sha(unique('p')),
        blockHeight: 9n,
        blockHash: sha('b'),
        outputs: [{ address: 'DPayY', value }],
      };
      const before = await snapshot(coffer, { journal: true });
      await assert.rejects(
        coffer.write((tx) => checkPayment(tx, chain.chainId, payment)),
        (e: unknown) => e instanceof ValidationError && e.details.field === 'outputs' && e.details.required === 21n,
      );
      assert.deepEqual(await snapshot(coffer, { journal: true }), before);
    }
    // Paying the right amount to another address is not paying the invoice either.
    await assert.rejects(
      coffer.write((tx) =>
        checkPayment(tx, chain.chainId, {
          invoiceHash: ih,
          txHash: sha('x'),
          blockHeight: 1n,
          blockHash: sha('b'),
          outputs: [{ address: 'DElse', value: 21n }],
        }),
      ),
      ValidationError,
    );
    // Through the processor: the action is recorded as rejected and nothing else changes.
    const tablesBefore = await snapshot(coffer);
    await chain.mine(coffer, [actionTx('payment', ih, [{ address: 'DPayY', value: 20n }])]);
    const after = await snapshot(coffer);
    for (const t of Object.keys(after))
      if (t !== T.actions) assert.deepEqual(after[t], tablesBefore[t], `${t} unchanged by a wrong payment`);
    const action = await coffer.read((tx) =>
      tx.db.selectFrom(T.actions).select(['state', 'reason']).where('ref_hash', '=', ih).where('action_type', '=', 'payment').execute(),
    );
    assert.deepEqual(
      action.map((a) => a.state),
      ['rejected'],
    );
    assert.match(String(action[0]!.reason), /requires exactly 21/);
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'matched');
    await checkInvariants(coffer);
  });

  test('signature rules: an invoice of a mint requiring asset-manager signatures cannot settle without them', async () => {
    const chain = new FakeChain(unique('sig-'), 1);
    const managers = [newKey(), newKey(), newKey()];
    const am = managers.map((k, i) => ({ name: `manager ${i}`, publicKey: k.publicKey, url: null }));
    for (const [rule, min, needed] of [
      ['all', null, 3],
      ['one', null, 1],
      ['min', 2, 2],
    ] as const) {
      const { hash, owner } = await creditedMint(coffer, chain, {
        chainId: chain.chainId,
        fractionCount: 10n,
        signatureRule: rule,
        minSignatures: min,
        assetManagers: am,
      });
      const inv = invoiceInput({
        chainId: chain.chainId,
        mintHash: hash,
        sellerAddress: owner,
        buyerAddress: unique('DB'),
        quantity: 4n,
        price: 2n,
        paymentAddress: 'DPayS',
      });
      const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
      await chain.mine(coffer, [actionTx('invoice', ih)]);
      assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'open', `${rule}: no match without signatures`);
      // Wrong signer, bad signature: refused, nothing written.
      const outsider = newKey();
      await assert.rejects(
        w(coffer)((s) => s.addInvoiceSignature({ invoiceHash: ih, publicKey: outsider.publicKey, signature: outsider.sign(ih) })),
        (e: unknown) => e instanceof ValidationError && e.details.field === 'publicKey',
      );
      await assert.rejects(
        w(coffer)((s) => s.addInvoiceSignature({ invoiceHash: ih, publicKey: managers[0]!.publicKey, signature: managers[1]!.sign(ih) })),
        (e: unknown) => e instanceof ValidationError && e.details.field === 'signature',
      );
      for (let i = 0; i < needed; i++) {
        const st = await r(coffer)((s) => s.signatureStatus(ih));
        assert.equal(st.satisfied, false);
        const res = await w(coffer)((s) =>
          s.addInvoiceSignature({ invoiceHash: ih, publicKey: managers[i]!.publicKey, signature: managers[i]!.sign(ih) }),
        );
        assert.equal(res.created, true);
        const dup = await w(coffer)((s) =>
          s.addInvoiceSignature({ invoiceHash: ih, publicKey: managers[i]!.publicKey, signature: managers[i]!.sign(ih) }),
        );
        assert.equal(dup.created, false, 'unique per invoice and key');
        if (i < needed - 1) {
          await chain.mine(coffer);
          assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'open', `${rule}: ${i + 1}/${needed} is not enough`);
        }
      }
      assert.equal((await r(coffer)((s) => s.signatureStatus(ih))).satisfied, true);
      await chain.mine(coffer); // the pending on-chain invoice is retried and now matches
      assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'matched', `${rule}: matched once signed`);
      await chain.mine(coffer, [actionTx('payment', ih, [{ address: 'DPayS', value: 8n }])]);
      assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
    }
    await checkInvariants(coffer);
  });

  test('a payment seen before its invoice is matched waits, then settles once the invoice matches', async () => {
    const chain = new FakeChain(unique('order-'), 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n });
    const inv = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerO',
      quantity: 1n,
      price: 9n,
      paymentAddress: 'DPayO',
    });
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
    const early = actionTx('payment', ih, [{ address: 'DPayO', value: 9n }]);
    await chain.mine(coffer, [early]);
    // The block that matches the invoice also carries a second payment, after the match: the
    // payment that waited is older, so it is the one recorded.
    const second = actionTx('payment', ih, [{ address: 'DPayO', value: 9n }]);
    await chain.mine(coffer, [actionTx('invoice', ih), second]);
    await chain.mine(coffer);
    const got = await r(coffer)((s) => s.getInvoice(ih));
    assert.equal(got?.status, 'paid');
    assert.equal(got?.onChain?.paidTxHash, early.txHash);
    const rejected = await coffer.read((tx) =>
      tx.db
        .selectFrom(T.actions)
        .select(['state', 'reason'])
        .where('chain_id', '=', chain.chainId)
        .where('tx_hash', '=', second.txHash)
        .executeTakeFirst(),
    );
    assert.deepEqual(rejected, { state: 'rejected', reason: `invoice ${ih} is already paid by ${early.txHash}` });
    await checkInvariants(coffer);
  });

  test('expiry releases reservations of unpaid invoices, unconfirmed or matched, but not of an invoice whose payment is confirming', async () => {
    const chain = new FakeChain(unique('exp-'), 3);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 30n });
    // Far in the past, so expiring "now" here touches only this test's reservations.
    const t0 = new Date('2000-01-01T00:00:00Z');
    const at = (ms: number) => new Date(t0.getTime() + ms);
    const mk = (buyer: string) =>
      invoiceInput({
        chainId: chain.chainId,
        mintHash: hash,
        sellerAddress: owner,
        buyerAddress: buyer,
        quantity: 10n,
        price: 1n,
        paymentAddress: `P${buyer}`,
      });
    const create = (inv: ReturnType<typeof mk>) =>
      coffer.write((tx) => tokens(tx, { clock: () => t0 }).createInvoice(inv, { ttlMs: 1000 }));
    const first = mk('DB1');
    const unconfirmed = (await create(first)).hash;
    const matched = (await create(mk('DB2'))).hash;
    const paying = (await create(mk('DB3'))).hash;
    await chain.mine(coffer, [actionTx('invoice', matched), actionTx('invoice', paying)]);
    await chain.mine(coffer, [actionTx('payment', paying, [{ address: 'PDB3', value: 10n }])]);
    assert.deepEqual(await w(coffer)((s) => s.expireReservations({ now: at(999) })), [], 'nothing before expiry');
    const expired = await w(coffer)((s) => s.expireReservations({ now: at(1000) }));
    assert.deepEqual(expired.sort(), [unconfirmed, matched].sort());
    assert.equal((await r(coffer)((s) => s.getInvoice(unconfirmed)))?.status, 'expired');
    assert.equal((await r(coffer)((s) => s.getInvoice(matched)))?.status, 'expired');
    assert.equal((await r(coffer)((s) => s.getInvoice(paying)))?.status, 'matched');
    assert.deepEqual(await w(coffer)((s) => s.expireReservations({ now: at(5000) })), [], 'a replay expires nothing more');
    assert.equal((await r(coffer)((s) => s.balance(hash, owner))).available, 20n);
    // A late payment for the expired matched invoice is rejected; the confirming one settles.
    await chain.mine(coffer, [actionTx('payment', matched, [{ address: 'PDB2', value: 10n }])]);
    await chain.mineEmpty(coffer, 2);
    assert.equal((await r(coffer)((s) => s.getInvoice(paying)))?.status, 'paid');
    assert.equal((await r(coffer)((s) => s.getInvoice(matched)))?.status, 'expired');
    assert.equal((await r(coffer)((s) => s.balance(hash, 'DB2'))).balance, 0n);
    // Submitting an expired invoice again is a replay: it is returned as it is, not revived.
    const again = await create(first);
    assert.deepEqual([again.created, again.invoice.status], [false, 'expired']);
    await checkInvariants(coffer);
  });

  test('a payment whose invoice can never be matched (reservation expired or released first) is rejected, paid before or after the invoice transaction; a reorg over the rejection restores it exactly', async () => {
    const chain = new FakeChain(unique('never-'), 3);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 40n });
    // Before the expiry test's reservations (2000) and after the retention test's invoices
    // (1990, trimmed by age), so expiring "now" and trimming there touch only their own rows.
    const t0 = new Date('1995-01-01T00:00:00Z');
    const at = (ms: number) => new Date(t0.getTime() + ms);
    const create = (buyer: string, ttlMs: number) =>
      coffer.write((tx) =>
        tokens(tx, { clock: () => t0 }).createInvoice(
          invoiceInput({
            chainId: chain.chainId,
            mintHash: hash,
            sellerAddress: owner,
            buyerAddress: buyer,
            quantity: 5n,
            price: 2n,
            paymentAddress: `P${buyer}`,
          }),
          { ttlMs },
        ),
      );
    const pay = (ih: string, buyer: string) => actionTx('payment', ih, [{ address: `P${buyer}`, value: 10n }]);
    const a = (await create('DNa', 1000)).hash; // paid before its invoice transaction, which comes after expiry
    const b = (await create('DNb', 1000)).hash; // expires, then paid; never anchored
    const c = (await create('DNc', 1000)).hash; // released, then paid
    const d = (await create('DNd', 3600_000)).hash; // paid while still reserved: waits
    const payA = pay(a, 'DNa');
    await chain.mine(coffer, [payA]);
    assert.equal((await actionStates(coffer, chain.chainId))(payA.txHash)?.state, 'pending', 'waits for the match while reserved');
    await w(coffer)((s) => s.releaseInvoice(c));
    assert.deepEqual((await w(coffer)((s) => s.expireReservations({ now: at(5000) }))).sort(), [a, b].sort());

    const before = await snapshot(coffer, { journal: true });
    const fork = chain.tip;
    const block = [actionTx('invoice', a), pay(b, 'DNb'), pay(c, 'DNc'), pay(d, 'DNd')] as const;
    const [invA, payB, payC, payD] = block;
    await chain.mine(coffer, [...block]);
    const expect = async () => {
      const of = await actionStates(coffer, chain.chainId);
      const ended = (ih: string, state: string) => `the reservation of invoice ${ih} is ${state}, not reserved`;
      assert.deepEqual(of(invA.txHash), { tx_hash: invA.txHash, state: 'rejected', reason: 'reservation is expired' });
      assert.deepEqual(of(payA.txHash), { tx_hash: payA.txHash, state: 'rejected', reason: ended(a, 'expired') }, 'paid before');
      assert.deepEqual(of(payB.txHash), { tx_hash: payB.txHash, state: 'rejected', reason: ended(b, 'expired') }, 'paid after');
      assert.deepEqual(of(payC.txHash), { tx_hash: payC.txHash, state: 'rejected', reason: ended(c, 'released') }, 'released');
      assert.deepEqual(of(payD.txHash), { tx_hash: payD.txHash, state: 'pending', reason: null }, 'still reserved: waits');
      assert.deepEqual(await Promise.all([a, b, c, d].map((i) => r(coffer)((s) => s.getReservation(i)).then((x) => x?.state))), [
        'expired',
        'expired',
        'released',
        'reserved',
      ]);
      assert.equal((await r(coffer)((s) => s.balance(hash, owner))).available, 35n, 'only the waiting invoice holds tokens');
    };
    await expect();
    const after = await snapshot(coffer);
    for (const t of [T.payments, T.invoices, T.ledger, T.balances, T.reservations, T.unconfirmedInvoices])
      assert.deepEqual(after[t], before[t], `${t}: a rejection writes nothing else`);
    await checkInvariants(coffer);

    // A reorg back over the rejecting block restores every row, and the journal, exactly: the
    // earlier payment is pending again.
    await chain.revert(coffer, fork);
    assert.deepEqual(await snapshot(coffer, { journal: true }), before);
    assert.equal((await actionStates(coffer, chain.chainId))(payA.txHash)?.state, 'pending');
    // The same transactions in the new branch are rejected again, and stay so.
    await chain.mine(coffer, [...block]);
    await chain.mineEmpty(coffer, 3);
    await expect();

    // The waiting payment is rejected by the first block after its reservation expires.
    assert.deepEqual(await w(coffer)((s) => s.expireReservations({ now: at(3600_000) })), [d]);
    await chain.mine(coffer);
    assert.deepEqual((await actionStates(coffer, chain.chainId))(payD.txHash), {
      tx_hash: payD.txHash,
      state: 'rejected',
      reason: `the reservation of invoice ${d} is expired, not reserved`,
    });
    await checkInvariants(coffer);
  });

  test('releasing an unconfirmed invoice frees its tokens; a matched one cannot be released', async () => {
    const chain = new FakeChain(unique('rel-'), 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n });
    const aInput = invoiceFor(hash, owner, 4n, 1n, { chainId: chain.chainId });
    const a = (await w(coffer)((s) => s.createInvoice(aInput))).hash;
    const b = (await w(coffer)((s) => s.createInvoice(invoiceFor(hash, owner, 4n, 1n, { chainId: chain.chainId })))).hash;
    await chain.mine(coffer, [actionTx('invoice', b)]);
    await w(coffer)((s) => s.releaseInvoice(a));
    assert.equal((await r(coffer)((s) => s.getReservation(a)))?.state, 'released');
    assert.equal(await r(coffer)((s) => s.getInvoice(a)).then((i) => i?.status ?? 'gone'), 'gone');
    await assert.rejects(
      w(coffer)((s) => s.releaseInvoice(a)),
      InvalidStateTransitionError,
      'released once',
    );
    await assert.rejects(
      w(coffer)((s) => s.createInvoice(aInput)),
      (e: unknown) =>
        e instanceof InvalidStateTransitionError && /was released; create a new invoice/.test(e.message) && e.details?.state === 'released',
      'a released invoice is not revived, and the error names its state',
    );
    await assert.rejects(
      w(coffer)((s) => s.releaseInvoice(b)),
      InvalidStateTransitionError,
    );
    assert.equal((await r(coffer)((s) => s.balance(hash, owner))).available, 6n);
    // The on-chain invoice of a released one is rejected.
    await chain.mine(coffer, [actionTx('invoice', a)]);
    assert.equal((await r(coffer)((s) => s.getReservation(a)))?.state, 'released');
    await checkInvariants(coffer);
  });

  test('a signature of an invoice whose reservation ended (released, trimmed or expired) is refused, naming invoiceHash, and nothing is written', async () => {
    const chain = new FakeChain(unique('sigend-'), 1);
    const managers = [newKey(), newKey()];
    const { hash, owner } = await creditedMint(coffer, chain, {
      chainId: chain.chainId,
      fractionCount: 10n,
      signatureRule: 'all',
      assetManagers: managers.map((k, i) => ({ name: `manager ${i}`, publicKey: k.publicKey, url: null })),
    });
    // Received long before every other test's rows, so the trim and the expiry below touch only these.
    const t = (s: number) => new Date(Date.UTC(1975, 0, 1, 0, 0, s));
    const create = (s: number) =>
      coffer.write(
        (tx) =>
          tokens(tx, { clock: () => t(s) }).createInvoice(invoiceFor(hash, owner, 1n, 1n, { chainId: chain.chainId }), { ttlMs: 1000 }),
        { op: 'test.tokens' },
      );
    const sign = (ih: string, k: TestKey) =>
      w(coffer)((s) => s.addInvoiceSignature({ invoiceHash: ih, publicKey: k.publicKey, signature: k.sign(ih) }));
    const signatureRows = (ih: string) =>
      coffer.read(
        async (tx) => (await tx.db.selectFrom(T.signatures).select('public_key').where('invoice_hash', '=', ih).execute()).length,
      );
    const ended = (ih: string, state: string) => (e: unknown) =>
      e instanceof InvalidStateTransitionError &&
      e.details.field === 'invoiceHash' &&
      e.details.invoiceHash === ih &&
      e.details.state === state &&
      new RegExp(`is ${state}: the invoice takes no more signatures`).test(e.message);

    const released = (await create(10)).hash;
    const trimmed = (await create(0)).hash;
    const expired = (await create(20)).hash;
    for (const ih of [released, trimmed, expired]) assert.equal((await sign(ih, managers[0]!)).created, true);
    await w(coffer)((s) => s.releaseInvoice(released));
    assert.equal(await w(coffer)((s) => s.trimUnconfirmedInvoices({ olderThan: t(1) })), 1, 'only the oldest one is trimmed');
    assert.deepEqual(await w(coffer)((s) => s.expireReservations({ now: t(25) })), [expired]);
    assert.equal(await signatureRows(released), 0, 'the release dropped its signature');
    assert.equal(await signatureRows(trimmed), 0, 'the trim dropped its signature');
    assert.equal(await signatureRows(expired), 1, 'expiry keeps the invoice and its signatures');

    const before = await snapshot(coffer);
    for (const [ih, state] of [
      [released, 'released'],
      [trimmed, 'released'],
      [expired, 'expired'],
    ] as const) {
      // A new key, and a replay of the key that signed before the end: both refused.
      for (const k of managers) await assert.rejects(sign(ih, k), ended(ih, state), `${state} ${ih}`);
    }
    assert.deepEqual(await snapshot(coffer), before, 'nothing written');
    assert.equal((await r(coffer)((s) => s.signatureStatus(expired))).present, 1);
    // Retention then removes the expired one with its signatures (and leaves nothing of this test for the retention test below).
    assert.equal(await w(coffer)((s) => s.trimUnconfirmedInvoices({ olderThan: t(30) })), 1);
    assert.equal(await signatureRows(expired), 0);
    // An invoice still open takes signatures as before; once paid, a replay is still a no-op.
    const open = (
      await w(coffer)((s) => s.createInvoice(invoiceFor(hash, owner, 1n, 1n, { chainId: chain.chainId, paymentAddress: 'DPayE' })))
    ).hash;
    for (const k of managers) assert.equal((await sign(open, k)).created, true);
    await chain.mine(coffer, [actionTx('invoice', open), actionTx('payment', open, [{ address: 'DPayE', value: 1n }])]);
    assert.equal((await r(coffer)((s) => s.getInvoice(open)))?.status, 'paid');
    assert.deepEqual(await sign(open, managers[0]!), { created: false, status: { rule: 'all', required: 2, present: 2, satisfied: true } });
    await checkInvariants(coffer);
  });

  // Chain ingest never reverts below its finalized height; these reverts go deeper on purpose
  // (with one confirmation every block is final at once) to show the journal is exact anyway.
  test('a revert through the undo journal restores every token row exactly, and the new branch re-applies', async () => {
    const chain = new FakeChain(unique('reorg-'), 1);
    await chain.mineEmpty(coffer, 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 40n });
    const inv = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerR',
      quantity: 15n,
      price: 2n,
      paymentAddress: 'DPayR',
    });
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
    const beforeMatch = await snapshot(coffer, { journal: true });
    const fork = chain.tip;
    const matchTx = actionTx('invoice', ih);
    const payTx = actionTx('payment', ih, [{ address: 'DPayR', value: 30n }]);
    await chain.mine(coffer, [matchTx]);
    await chain.mine(coffer, [payTx]);
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
    await checkInvariants(coffer);
    const reverted = await chain.revert(coffer, fork, { beyondFinality: true });
    assert.ok(reverted > 0);
    assert.deepEqual(await snapshot(coffer, { journal: true }), beforeMatch, 'after the reorg every token row is as before the blocks');
    // The same transactions in a new branch (one block this time).
    await chain.mine(coffer, [matchTx, payTx]);
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
    assert.equal((await r(coffer)((s) => s.balance(hash, 'DBuyerR'))).balance, 15n);
    await checkInvariants(coffer);

    // Reverting the mint's own block removes the mint, its credit and the balance row.
    const chain2 = new FakeChain(unique('reorg2-'), 1);
    await chain2.mineEmpty(coffer, 1);
    const input = mintInput({ chainId: chain2.chainId });
    const { hash: h2 } = await w(coffer)((s) => s.submitMint(input));
    const before2 = await snapshot(coffer, { journal: true });
    await chain2.mine(coffer, [actionTx('mint', h2)]);
    assert.equal((await r(coffer)((s) => s.balance(h2, input.ownerAddress))).balance, 1000n);
    await chain2.revert(coffer, 0n, { beyondFinality: true });
    assert.deepEqual(await snapshot(coffer, { journal: true }), before2);
    assert.equal((await r(coffer)((s) => s.getMint(h2)))?.status, 'unconfirmed');
  });

  test('one block anchors a mint twice and matches and pays an invoice of it: the mint moves once, the invoice matches and settles', async () => {
    const chain = new FakeChain(unique('remint-'), 1);
    await chain.mineEmpty(coffer, 1);
    const fork = chain.tip;
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n });
    const inv = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerM',
      quantity: 2n,
      price: 3n,
      paymentAddress: 'DPayM',
    });
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
    // A reorg deeper than finality (on purpose) takes the mint's block away: the mint is
    // unconfirmed again, and its invoice still waits for the chain.
    await chain.revert(coffer, fork, { beyondFinality: true });
    assert.equal((await r(coffer)((s) => s.getMint(hash)))?.status, 'unconfirmed');
    const [m1, m2, i1, p1] = [
      actionTx('mint', hash),
      actionTx('mint', hash),
      actionTx('invoice', ih),
      actionTx('payment', ih, [{ address: 'DPayM', value: 6n }]),
    ];
    await chain.mine(coffer, [m1!, m2!, i1!, p1!]);
    const of = await actionStates(coffer, chain.chainId);
    assert.equal(of(m1!.txHash)?.state, 'applied');
    assert.deepEqual(of(m2!.txHash), { tx_hash: m2!.txHash, state: 'rejected', reason: 'mint already confirmed by another transaction' });
    assert.equal(of(i1!.txHash)?.state, 'applied');
    assert.equal(of(p1!.txHash)?.state, 'applied');
    assert.equal((await r(coffer)((s) => s.getMint(hash)))?.onChain?.txHash, m1!.txHash);
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
    assert.deepEqual(
      [(await r(coffer)((s) => s.balance(hash, owner))).balance, (await r(coffer)((s) => s.balance(hash, 'DBuyerM'))).balance],
      [8n, 2n],
    );
    await checkInvariants(coffer);
  });

  test('credits and settlements wait for finality, so a reorg shallower than the confirmations never takes them back', async () => {
    const chain = new FakeChain(unique('deep-'), 3);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 9n });
    const inv = invoiceInput({
      chainId: chain.chainId,
      mintHash: hash,
      sellerAddress: owner,
      buyerAddress: 'DBuyerD',
      quantity: 9n,
      price: 1n,
      paymentAddress: 'DPayD',
    });
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(inv));
    await chain.mine(coffer, [actionTx('invoice', ih), actionTx('payment', ih, [{ address: 'DPayD', value: 9n }])]);
    const recorded = chain.tip;
    await chain.mineEmpty(coffer, 2);
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
    // The buyer resells at once; then a two-block reorg (allowed: above the final height).
    await w(coffer)((s) =>
      s.createInvoice(
        invoiceInput({
          chainId: chain.chainId,
          mintHash: hash,
          sellerAddress: 'DBuyerD',
          buyerAddress: 'DNext',
          quantity: 9n,
          price: 1n,
          paymentAddress: 'DPayN',
        }),
      ),
    );
    await chain.revert(coffer, recorded);
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'paid');
    assert.deepEqual(await r(coffer)((s) => s.balance(hash, 'DBuyerD')), {
      mintHash: hash,
      address: 'DBuyerD',
      balance: 9n,
      reserved: 9n,
      available: 0n,
    });
    await checkInvariants(coffer);
  });

  test('the cached balance equals SUM(ledger.delta) for every holder after mints and trades', async () => {
    const chain = new FakeChain(unique('cache-'), 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 90n });
    const buyers = ['DCacheA', 'DCacheB', 'DCacheC'];
    for (const [i, b] of buyers.entries()) {
      const { hash: ih } = await w(coffer)((s) =>
        s.createInvoice(
          invoiceInput({
            chainId: chain.chainId,
            mintHash: hash,
            sellerAddress: owner,
            buyerAddress: b,
            quantity: BigInt(10 * (i + 1)),
            price: 2n,
            paymentAddress: `P${b}`,
          }),
        ),
      );
      await chain.mine(coffer, [actionTx('invoice', ih), actionTx('payment', ih, [{ address: `P${b}`, value: BigInt(20 * (i + 1)) }])]);
    }
    let total = 0n;
    for (const a of [owner, ...buyers]) {
      const bal = await r(coffer)((s) => s.balance(hash, a));
      const sum = (await r(coffer)((s) => s.ledger(hash, a))).reduce((acc, e) => acc + e.delta, 0n);
      assert.equal(bal.balance, sum, `cache of ${a} = SUM(ledger)`);
      total += bal.balance;
    }
    assert.deepEqual(await Promise.all([owner, ...buyers].map((a) => r(coffer)((s) => s.balance(hash, a)).then((b) => b.balance))), [
      30n,
      10n,
      20n,
      30n,
    ]);
    assert.equal(total, 90n, 'the supply is conserved');
    await checkInvariants(coffer);
  });

  test('processing a block again is a no-op', async () => {
    const chain = new FakeChain(unique('replay-'), 2);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 12n });
    const { hash: ih } = await w(coffer)((s) =>
      s.createInvoice(
        invoiceInput({
          chainId: chain.chainId,
          mintHash: hash,
          sellerAddress: owner,
          buyerAddress: 'DBuyerP',
          quantity: 2n,
          price: 3n,
          paymentAddress: 'DPayP',
        }),
      ),
    );
    const blocks = [
      await chain.mine(coffer, [actionTx('invoice', ih)]),
      await chain.mine(coffer, [actionTx('payment', ih, [{ address: 'DPayP', value: 6n }])]),
      await chain.mine(coffer),
    ];
    const before = await snapshot(coffer, { journal: true });
    for (const b of blocks) await chain.replay(coffer, b);
    assert.deepEqual(await snapshot(coffer, { journal: true }), before);
  });

  test('a second on-chain invoice for one invoice is rejected in the block that matched it; a second payment in that block and in later ones', async () => {
    const chain = new FakeChain(unique('dup-'), 2);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n });
    const { hash: ih } = await w(coffer)((s) =>
      s.createInvoice(
        invoiceInput({
          chainId: chain.chainId,
          mintHash: hash,
          sellerAddress: owner,
          buyerAddress: 'DBuyerD',
          quantity: 4n,
          price: 3n,
          paymentAddress: 'DPayD',
        }),
      ),
    );
    const pay = () => actionTx('payment', ih, [{ address: 'DPayD', value: 12n }]);
    const [inv1, inv2, pay1, pay2] = [actionTx('invoice', ih), actionTx('invoice', ih), pay(), pay()];
    // A payment first in its block waits for the invoice matched after it, in the same block.
    const first = await chain.mine(coffer, [pay1!, inv1!, inv2!, pay2!]);
    const later = pay();
    await chain.mine(coffer, [later]);
    await chain.mine(coffer);
    const states = await coffer.read((tx) =>
      tx.db
        .selectFrom(T.actions)
        .select(['tx_hash', 'state', 'reason'])
        .where('chain_id', '=', chain.chainId)
        .where('action_type', '!=', 'mint')
        .execute(),
    );
    const of = (h: string) => states.find((s) => s.tx_hash === h);
    assert.equal(of(inv1!.txHash)?.state, 'applied');
    assert.equal(of(pay1!.txHash)?.state, 'applied');
    assert.deepEqual(of(inv2!.txHash), {
      tx_hash: inv2!.txHash,
      state: 'rejected',
      reason: 'invoice already matched by another transaction',
    });
    for (const t of [pay2!, later])
      assert.deepEqual(of(t.txHash), { tx_hash: t.txHash, state: 'rejected', reason: `invoice ${ih} is already paid by ${pay1!.txHash}` });
    const got = await r(coffer)((s) => s.getInvoice(ih));
    assert.equal(got?.status, 'paid');
    assert.equal(got?.onChain?.txHash, inv1!.txHash);
    assert.equal((await r(coffer)((s) => s.balance(hash, 'DBuyerD'))).balance, 4n, 'settled once');
    // Processing the first block again changes nothing (its memo starts empty).
    const before = await snapshot(coffer, { journal: true });
    await chain.replay(coffer, first);
    assert.deepEqual(await snapshot(coffer, { journal: true }), before);
    await checkInvariants(coffer);
  });

  test('two payments in one block of an invoice matched earlier: the first is recorded, the second rejected', async () => {
    const chain = new FakeChain(unique('twopay-'), 2);
    const { ih } = await matchedInvoice(coffer, chain, 'DBuyerT', 'DPayT');
    const [a, b] = [actionTx('payment', ih, [{ address: 'DPayT', value: 5n }]), actionTx('payment', ih, [{ address: 'DPayT', value: 5n }])];
    await chain.mine(coffer, [a!, b!]);
    await chain.mine(coffer);
    const of = await actionStates(coffer, chain.chainId);
    assert.deepEqual(of(a!.txHash), { tx_hash: a!.txHash, state: 'applied', reason: null });
    assert.deepEqual(of(b!.txHash), { tx_hash: b!.txHash, state: 'rejected', reason: `invoice ${ih} is already paid by ${a!.txHash}` });
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.onChain?.paidTxHash, a!.txHash);
    await checkInvariants(coffer);
  });

  test('an on-chain mint or invoice of one already confirmed by an earlier block is rejected, not left pending', async () => {
    const chain = new FakeChain(unique('late-'), 1);
    const { hash, ih } = await matchedInvoice(coffer, chain, 'DBuyerL', 'DPayL');
    const [lateMint, lateInvoice] = [actionTx('mint', hash), actionTx('invoice', ih)];
    await chain.mine(coffer, [lateMint!, lateInvoice!]);
    const of = await actionStates(coffer, chain.chainId);
    assert.deepEqual(of(lateMint!.txHash), {
      tx_hash: lateMint!.txHash,
      state: 'rejected',
      reason: 'mint already confirmed by another transaction',
    });
    assert.deepEqual(of(lateInvoice!.txHash), {
      tx_hash: lateInvoice!.txHash,
      state: 'rejected',
      reason: 'invoice already matched by another transaction',
    });
    assert.equal((await r(coffer)((s) => s.getInvoice(ih)))?.status, 'matched');
    await checkInvariants(coffer);
  });

  test("another chain's transaction reusing the hash of the one that confirmed a mint or matched an invoice is rejected as for that chain", async () => {
    const a = new FakeChain(unique('xa-'), 1);
    const b = new FakeChain(unique('xb-'), 1);
    const input = mintInput({ chainId: a.chainId, fractionCount: 10n });
    const { hash } = await w(coffer)((s) => s.submitMint(input));
    const mintTx = actionTx('mint', hash);
    await a.mine(coffer, [mintTx]);
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(invoiceFor(hash, input.ownerAddress, 1n, 5n, { chainId: a.chainId })));
    const invoiceTx = actionTx('invoice', ih);
    await a.mine(coffer, [invoiceTx]);
    const before = await snapshot(coffer);
    await b.mine(coffer, [mintTx, invoiceTx]);
    const of = await actionStates(coffer, b.chainId);
    assert.deepEqual(of(mintTx.txHash), { tx_hash: mintTx.txHash, state: 'rejected', reason: `mint is for chain ${a.chainId}` });
    assert.deepEqual(of(invoiceTx.txHash), { tx_hash: invoiceTx.txHash, state: 'rejected', reason: `invoice is for chain ${a.chainId}` });
    const after = await snapshot(coffer);
    for (const t of Object.keys(after)) if (t !== T.actions) assert.deepEqual(after[t], before[t], `${t} unchanged`);
    assert.deepEqual(
      [(await r(coffer)((s) => s.getMint(hash)))?.chainId, (await r(coffer)((s) => s.getInvoice(ih)))?.status],
      [a.chainId, 'matched'],
    );
    await checkInvariants(coffer);
  });

  test('malformed on-chain actions are recorded as rejected and change nothing else; foreign actions are ignored', async () => {
    const chain = new FakeChain(unique('junk-'), 1);
    const before = await snapshot(coffer);
    await chain.mine(coffer, [
      actionTx('mint', 'ab', [], { payload: Buffer.alloc(31) }),
      actionTx('invoice', 'ab', [], { payload: null }),
      actionTx('payment', 'ab', [], { payload: Buffer.alloc(32), actionVersion: 2 }),
      actionTx('mint', 'ab', [], { actionType: 'sell_offer', payload: Buffer.alloc(32) }),
      actionTx('mint', 'ab', [], { actionType: null, payload: null }),
    ]);
    const after = await snapshot(coffer);
    for (const t of Object.keys(after)) if (t !== T.actions) assert.deepEqual(after[t], before[t]);
    const rows = await coffer.read((tx) =>
      tx.db.selectFrom(T.actions).select(['state', 'reason']).where('chain_id', '=', chain.chainId).execute(),
    );
    assert.deepEqual(
      rows.map((x) => x.state),
      ['rejected', 'rejected', 'rejected'],
    );
  });

  test('retention trims unconfirmed mints and invoices oldest first (releasing their reservations) and on-chain actions below a height', async () => {
    // Through chain ingest: trimming on-chain actions reads the chain's finalized height.
    const chain = new FakeChain(unique('ret-'), 1, { ingest: true });
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n });
    // Before every other test's rows (the expiry test uses 2000), so only these are trimmed.
    const t = (s: number) => new Date(Date.UTC(1990, 0, 1, 0, 0, s));
    const at = (s: number) => ({ clock: () => t(s) });
    const mints: string[] = [];
    for (let s = 0; s < 4; s++)
      mints.push((await coffer.write((tx) => tokens(tx, at(s)).submitMint(mintInput({ chainId: chain.chainId })))).hash);
    const invs: string[] = [];
    for (let s = 0; s < 3; s++) {
      invs.push(
        (
          await coffer.write((tx) =>
            tokens(tx, at(s)).createInvoice(invoiceFor(hash, owner, 2n, 1n, { chainId: chain.chainId }), { ttlMs: 3600_000 }),
          )
        ).hash,
      );
    }
    assert.equal(await w(coffer)((s) => s.trimUnconfirmedMints({ olderThan: t(3), limit: 2 })), 2, 'limit bounds the batch');
    const left = await Promise.all(mints.map((m) => r(coffer)((s) => s.getMint(m))));
    assert.deepEqual(
      left.map((m) => m !== undefined),
      [false, false, true, true],
      'oldest first',
    );
    assert.equal(await w(coffer)((s) => s.trimUnconfirmedMints({ olderThan: t(3) })), 1);
    assert.equal(await w(coffer)((s) => s.trimUnconfirmedInvoices({ olderThan: t(2) })), 2);
    assert.deepEqual(await Promise.all(invs.map((i) => r(coffer)((s) => s.getReservation(i)).then((x) => x?.state))), [
      'released',
      'released',
      'reserved',
    ]);
    assert.equal((await r(coffer)((s) => s.balance(hash, owner))).available, 8n);
    await chain.mine(coffer, [actionTx('invoice', invs[2]!)]);
    await chain.mine(coffer, [actionTx('mint', sha('nothing'))]);
    const trimmed = await w(coffer)((s) => s.trimOnchainActions({ chainId: chain.chainId, belowHeight: chain.tip }));
    assert.equal(trimmed, 2, 'the mint action of the credited mint and the invoice action');
    assert.equal((await r(coffer)((s) => s.stats(chain.chainId)))[0]!.onchainTransactions, 1);
    await checkInvariants(coffer);
  });

  test("trimming on-chain actions stops at the chain's finalized height + 1: actions of blocks a reorg can take back are kept", async () => {
    const chain = new FakeChain(unique('trimfin-'), 3, { ingest: true });
    for (let i = 0; i < 4; i++) await chain.mine(coffer, [actionTx('mint', sha(unique('absent')))]);
    assert.equal(chain.finalized, 1n);
    const refused = async (belowHeight: bigint, chainId = chain.chainId) => {
      const before = await snapshot(coffer);
      await assert.rejects(
        w(coffer)((s) => s.trimOnchainActions({ chainId, belowHeight })),
        (e: unknown) => e instanceof ValidationError && e.details.field === 'belowHeight',
        `belowHeight ${belowHeight}`,
      );
      assert.deepEqual(await snapshot(coffer), before, `belowHeight ${belowHeight}: nothing trimmed`);
    };
    await refused(3n);
    await refused(2n ** 63n);
    await refused(2n ** 70n);
    assert.equal(await w(coffer)((s) => s.trimOnchainActions({ chainId: chain.chainId, belowHeight: 2n })), 2, 'heights 0 and 1');
    // A registered chain with nothing final keeps everything; an unknown chain is not found.
    const empty = new FakeChain(unique('trim0-'), 2, { ingest: true });
    await empty.mine(coffer, [actionTx('mint', sha(unique('absent')))]);
    assert.equal(await w(coffer)((s) => s.trimOnchainActions({ chainId: empty.chainId, belowHeight: 0n })), 0);
    await refused(1n, empty.chainId);
    await assert.rejects(
      w(coffer)((s) => s.trimOnchainActions({ chainId: unique('nochain-'), belowHeight: 0n })),
      (e: unknown) => e instanceof NotFoundError && e.details.field === 'chainId',
    );
  });

  test('stats count mints, unconfirmed mints, invoices and on-chain transactions per chain', async () => {
    const a = new FakeChain(unique('sa-'), 1);
    const b = new FakeChain(unique('sb-'), 1);
    const m = await creditedMint(coffer, a, { chainId: a.chainId, fractionCount: 5n });
    await w(coffer)((s) => s.submitMint(mintInput({ chainId: a.chainId })));
    await w(coffer)((s) => s.submitMint(mintInput({ chainId: b.chainId })));
    const { hash: ih } = await w(coffer)((s) => s.createInvoice(invoiceFor(m.hash, m.owner, 1n, 1n, { chainId: a.chainId })));
    await w(coffer)((s) => s.createInvoice(invoiceFor(m.hash, m.owner, 1n, 1n, { chainId: a.chainId })));
    await a.mine(coffer, [actionTx('invoice', ih)]);
    await b.mine(coffer, [actionTx('mint', sha('unknown'))]);
    const st = await r(coffer)((s) => s.stats());
    assert.deepEqual(
      st.filter((x) => x.chainId === a.chainId || x.chainId === b.chainId),
      [
        { chainId: a.chainId, mints: 1, unconfirmedMints: 1, invoices: 1, unconfirmedInvoices: 1, onchainTransactions: 2 },
        { chainId: b.chainId, mints: 0, unconfirmedMints: 1, invoices: 0, unconfirmedInvoices: 0, onchainTransactions: 1 },
      ].sort((x, y) => (x.chainId < y.chainId ? -1 : 1)),
    );
  });

  test('sell and buy offers are signed, unique by hash, and listed by mint with keyset paging', async () => {
    const chain = new FakeChain(unique('off-'), 1);
    const { hash } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 100n });
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = {
        side: 'sell' as const,
        chainId: chain.chainId,
        mintHash: hash,
        offererAddress: 'DSeller',
        sellerAddress: null,
        quantity: BigInt(i + 1),
        price: 10n,
        priceUnit: 'koinu',
        createdAt: new Date(Date.UTC(2024, 0, 1, 0, 0, i)),
      };
      const { content, signature } = signedOffer(c);
      const input = {
        chainId: c.chainId,
        mintHash: c.mintHash,
        offererAddress: c.offererAddress,
        quantity: c.quantity,
        price: c.price,
        priceUnit: c.priceUnit,
        publicKey: content.publicKey,
        signature,
        createdAt: c.createdAt,
      };
      const res = await w(coffer)((s) => s.createSellOffer(input));
      assert.equal(res.created, true);
      assert.equal((await w(coffer)((s) => s.createSellOffer(input))).created, false);
      made.push(res.hash);
    }
    const buy = signedOffer({
      side: 'buy',
      chainId: chain.chainId,
      mintHash: hash,
      offererAddress: 'DBuyer',
      sellerAddress: 'DSeller',
      quantity: 5n,
      price: 9n,
      priceUnit: 'koinu',
      createdAt: new Date(Date.UTC(2024, 0, 2)),
    });
    const b = await w(coffer)((s) =>
      s.createBuyOffer({
        chainId: chain.chainId,
        mintHash: hash,
        offererAddress: 'DBuyer',
        sellerAddress: 'DSeller',
        quantity: 5n,
        price: 9n,
        priceUnit: 'koinu',
        publicKey: buy.content.publicKey,
        signature: buy.signature,
        createdAt: buy.content.createdAt,
      }),
    );
    const page1 = await r(coffer)((s) => s.listOffers('sell', hash, { limit: 2 }));
    assert.deepEqual(
      page1.map((o) => o.hash),
      made.slice(0, 2),
    );
    const page2 = await r(coffer)((s) =>
      s.listOffers('sell', hash, { limit: 2, after: { createdAt: page1[1]!.createdAt, hash: page1[1]!.hash } }),
    );
    assert.deepEqual(
      page2.map((o) => o.hash),
      made.slice(2),
    );
    const buys = await r(coffer)((s) => s.listOffers('buy', hash));
    assert.deepEqual(
      buys.map((o) => [o.hash, o.sellerAddress, o.quantity]),
      [[b.hash, 'DSeller', 5n]],
    );
  });

  test('an offer waits for its mint to be final: one on a mint a reorg can still take back is refused, naming mintHash', async () => {
    const chain = new FakeChain(unique('offin-'), 3);
    const input = mintInput({ chainId: chain.chainId, fractionCount: 10n });
    const { hash } = await w(coffer)((s) => s.submitMint(input));
    await chain.mine(coffer, [actionTx('mint', hash)]);
    assert.deepEqual(
      [(await r(coffer)((s) => s.getMint(hash)))?.status, (await r(coffer)((s) => s.getMint(hash)))?.onChain?.credited],
      ['confirmed', false],
    );
    const offer = (side: 'sell' | 'buy') => {
      const c = {
        side,
        chainId: chain.chainId,
        mintHash: hash,
        offererAddress: side === 'sell' ? input.ownerAddress : 'DBuyerF',
        sellerAddress: side === 'sell' ? null : input.ownerAddress,
        quantity: 2n,
        price: 3n,
        priceUnit: 'koinu',
        createdAt: new Date(Date.UTC(2024, 2, 1)),
      };
      const { content, signature } = signedOffer(c);
      const { side: _side, sellerAddress, ...rest } = content;
      return { ...rest, ...(sellerAddress === null ? {} : { sellerAddress }), signature };
    };
    const before = await snapshot(coffer);
    for (const [what, op] of [
      ['sell', () => w(coffer)((s) => s.createSellOffer(offer('sell')))],
      ['buy', () => w(coffer)((s) => s.createBuyOffer(offer('buy')))],
    ] as const)
      await assert.rejects(op(), (e: unknown) => e instanceof ValidationError && e.details.field === 'mintHash', `${what} offer`);
    assert.deepEqual(await snapshot(coffer), before, 'nothing written');
    await chain.mineEmpty(coffer, 2);
    assert.equal((await w(coffer)((s) => s.createSellOffer(offer('sell')))).created, true, 'accepted once the mint is credited');
    assert.equal((await w(coffer)((s) => s.createBuyOffer(offer('buy')))).created, true);
  });

  test('lists use the normalised arguments: an uppercase hash pages and filters like its lowercase form', async () => {
    const chain = new FakeChain(unique('up-'), 1);
    const mints = [];
    for (let i = 0; i < 3; i++) mints.push(await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 10n }));
    const all = (await r(coffer)((s) => s.listMints({ chainId: chain.chainId }))).map((m) => m.hash);
    assert.equal(all.length, 3);
    const rest = await r(coffer)((s) => s.listMints({ chainId: chain.chainId, after: all[0]!.toUpperCase() }));
    assert.deepEqual(
      rest.map((m) => m.hash),
      all.slice(1),
      'mints after an uppercase hash: no row repeated',
    );

    const { hash, owner } = mints[0]!;
    const ih = (await w(coffer)((s) => s.createInvoice(invoiceFor(hash, owner, 1n, 1n, { chainId: chain.chainId })))).hash;
    await chain.mine(coffer, [actionTx('invoice', ih)]);
    const byMint = await r(coffer)((s) => s.listInvoices({ mintHash: hash.toUpperCase() }));
    assert.deepEqual(
      byMint.map((i) => i.hash),
      [ih],
      'invoices of an uppercase mint hash',
    );
    assert.deepEqual(
      await r(coffer)((s) => s.listInvoices({ mintHash: hash, after: ih.toUpperCase() })),
      [],
      'invoices after an uppercase hash',
    );

    const made: string[] = [];
    const createdAt = new Date(Date.UTC(2024, 5, 1));
    for (let i = 0; i < 3; i++) {
      const c = {
        side: 'sell' as const,
        chainId: chain.chainId,
        mintHash: hash,
        offererAddress: owner,
        sellerAddress: null,
        quantity: BigInt(i + 1),
        price: 10n,
        priceUnit: 'koinu',
        createdAt,
      };
      const { content, signature } = signedOffer(c);
      const { sellerAddress: _none, side: _side, ...input } = content;
      made.push((await w(coffer)((s) => s.createSellOffer({ ...input, signature }))).hash);
    }
    made.sort();
    const page = await r(coffer)((s) => s.listOffers('sell', hash.toUpperCase(), { after: { createdAt, hash: made[0]!.toUpperCase() } }));
    assert.deepEqual(
      page.map((o) => o.hash),
      made.slice(1),
      'offers after an uppercase hash at the same time: no row repeated',
    );
  });

  test('the chain id of an invoice is signed; an invoice for another chain than its mint is refused', async () => {
    const chain = new FakeChain(unique('xc-'), 1);
    const { hash, owner } = await creditedMint(coffer, chain, { chainId: chain.chainId, fractionCount: 5n });
    await assert.rejects(
      w(coffer)((s) => s.createInvoice(invoiceFor(hash, owner, 1n, 1n, { chainId: CHAIN }))),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'chainId',
    );
  });
});
