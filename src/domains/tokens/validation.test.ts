// Bad input on every backend: malformed or wrong-length hex, zero, negative, fractional and
// overflowing amounts, unknown mints and invoices, bad signatures, inconsistent signature rules,
// non-JSON documents. Each is a ValidationError naming the field, and nothing is written.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { CheckViolationError, UniqueViolationError, ValidationError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { tokens } from './store.js';
import { checkPayment } from './payments.js';
import { counts, FakeChain, actionTx, invoiceInput, mintInput, newKey, sha, signedOffer, unique } from './testkit.js';
import type { InvoiceInput, MintInput, OfferInput, OfferSide } from './types.js';

const OVER_INT64 = 2n ** 63n;

forEachBackend('tokens validation', (ctx) => {
  let coffer: Coffer;
  let chain: FakeChain;
  let mint: string;
  let owner: string;
  let validInvoice: InvoiceInput;
  let validOffer: OfferInput;

  before(async () => {
    coffer = await ctx.open();
    chain = new FakeChain(unique('val-'), 1);
    const input = mintInput({ chainId: chain.chainId, fractionCount: 100n });
    owner = input.ownerAddress;
    mint = (await coffer.write((tx) => tokens(tx).submitMint(input))).hash;
    await chain.mine(coffer, [actionTx('mint', mint)]);
    validInvoice = invoiceInput({
      chainId: chain.chainId,
      mintHash: mint,
      sellerAddress: owner,
      buyerAddress: 'DBuyerV',
      quantity: 5n,
      price: 10n,
      paymentAddress: 'DPayV',
    });
    const o = signedOffer({
      side: 'sell',
      chainId: chain.chainId,
      mintHash: mint,
      offererAddress: owner,
      sellerAddress: null,
      quantity: 5n,
      price: 10n,
      priceUnit: 'koinu',
      createdAt: new Date(Date.UTC(2024, 0, 1)),
    });
    validOffer = {
      chainId: chain.chainId,
      mintHash: mint,
      offererAddress: owner,
      quantity: 5n,
      price: 10n,
      priceUnit: 'koinu',
      publicKey: o.content.publicKey,
      signature: o.signature,
      createdAt: o.content.createdAt,
    };
  });

  /** Runs the operation and checks it is a ValidationError on `field` that wrote nothing. */
  async function refused(field: string, op: (s: ReturnType<typeof tokens>) => Promise<unknown>, what = field) {
    const before = await counts(coffer);
    await assert.rejects(
      coffer.write((tx) => op(tokens(tx))),
      (e: unknown) => {
        assert.ok(e instanceof ValidationError, `${what}: expected a ValidationError, got ${String(e)}`);
        assert.equal(e.details.field, field, `${what}: ${e.message}`);
        return true;
      },
    );
    assert.deepEqual(await counts(coffer), before, `${what}: nothing written`);
  }

  test('the valid inputs used below are accepted (so each refusal is about its one bad field)', async () => {
    const inv = await coffer.write((tx) => tokens(tx).createInvoice(validInvoice));
    assert.equal(inv.created, true);
    const off = await coffer.write((tx) => tokens(tx).createSellOffer(validOffer));
    assert.equal(off.created, true);
  });

  test('mints: bad amounts, hex, documents, signature rules and unknown fields', async () => {
    const m = (over: Record<string, unknown>) => ({ ...mintInput({ chainId: chain.chainId }), ...over }) as MintInput;
    const managers = [newKey(), newKey()].map((k, i) => ({ name: `m${i}`, publicKey: k.publicKey, url: null }));
    const cases: [string, Record<string, unknown>][] = [
      ['fractionCount', { fractionCount: 0n }],
      ['fractionCount', { fractionCount: -5n }],
      ['fractionCount', { fractionCount: OVER_INT64 }],
      ['fractionCount', { fractionCount: 1.5 }],
      ['fractionCount', { fractionCount: '12abc' }],
      ['fractionCount', { fractionCount: 2 ** 60 }],
      ['publicKey', { publicKey: 'zz'.repeat(33) }],
      ['publicKey', { publicKey: '02' + 'ab'.repeat(31) }],
      ['publicKey', { publicKey: '02' + 'ff'.repeat(32) }],
      ['publicKey', { publicKey: '04' + 'ab'.repeat(32) }],
      ['metadata.price', { metadata: { price: 1.5 } }],
      ['contractOfSale.when', { contractOfSale: { when: new Date() } }],
      ['assetManagers', { signatureRule: 'all', assetManagers: [] }],
      ['minSignatures', { signatureRule: 'min', assetManagers: managers, minSignatures: null }],
      ['minSignatures', { signatureRule: 'min', assetManagers: managers, minSignatures: 3 }],
      ['minSignatures', { signatureRule: 'one', assetManagers: managers, minSignatures: 1 }],
      ['assetManagers[1].publicKey', { signatureRule: 'one', assetManagers: [managers[0], { ...managers[1], publicKey: 'abc' }] }],
      ['assetManagers[1].publicKey', { signatureRule: 'one', assetManagers: [managers[0], managers[0]] }],
      ['signatureRule', { signatureRule: 'most' }],
      ['feedUrl', { feedUrl: 'ftp://feed.example' }],
      ['ownerAddress', { ownerAddress: 'has space' }],
      ['ownerAddress', { ownerAddress: 'D'.repeat(129) }],
      ['title', { title: '' }],
      ['chainId', { chainId: 'bad chain' }],
      ['owner', { owner: 'DX' }],
    ];
    for (const [field, over] of cases)
      await refused(
        field,
        (s) => s.submitMint(m(over)),
        `${field} ${JSON.stringify(over, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`,
      );
  });

  test('mints: NUL characters and lone surrogates are refused, naming the field (in a JSON document, the path inside it)', async () => {
    // PostgreSQL JSONB refuses NUL (22P05, naming no field) and canonical JSON lone surrogates:
    // refused by validation on every backend, before anything is written.
    const m = (over: Record<string, unknown>) => ({ ...mintInput({ chainId: chain.chainId }), ...over }) as MintInput;
    const manager = { name: 'm0', publicKey: newKey().publicKey, url: null };
    const cases: [string, Record<string, unknown>][] = [
      ['metadata.k', { metadata: { k: 'a\u0000b' } }],
      ['metadata.k', { metadata: { k: '\ud800' } }],
      ['metadata.a[1].b', { metadata: { a: [1, { b: 'x\u0000' }] } }],
      ['metadata', { metadata: { 'bad\u0000key': 1 } }],
      ['metadata', { metadata: { ['\udc00']: 1 } }],
      ['metadata', { metadata: '\u0000' }],
      ['requirements.list[1]', { requirements: { list: ['ok', '\u0000'] } }],
      ['lockupOptions.note', { lockupOptions: { note: 'lone \udfff' } }],
      ['contractOfSale.law', { contractOfSale: { law: '\u0000' } }],
      ['tags[0]', { tags: ['a\u0000'] }],
      ['tags[1]', { tags: ['fine', '\ud83d'] }],
      ['assetManagers[0].name', { assetManagers: [{ ...manager, name: 'Ann\u0000' }] }],
      ['assetManagers[0].name', { assetManagers: [{ ...manager, name: '\ud800x' }] }],
      ['assetManagers[0].url', { assetManagers: [{ ...manager, url: 'https://x.example/\u0000' }] }],
      // Not JSON, but refused the same way (by the content hash and the codec), naming the field.
      ['title', { title: 'T\u0000' }],
      ['description', { description: 'lone \ud800' }],
    ];
    for (const [field, over] of cases) await refused(field, (s) => s.submitMint(m(over)), `${field} ${JSON.stringify(over)}`);
    // A well-formed surrogate pair and other control characters are fine, and come back as given.
    const ok = m({ metadata: { emoji: '\ud83d\ude00', tab: 'a\tb', bell: '\u0007' }, tags: ['\ud83d\ude00'] });
    const { hash } = await coffer.write((tx) => tokens(tx).submitMint(ok));
    const back = await coffer.read((tx) => tokens(tx).getMint(hash));
    assert.deepEqual([back?.metadata, back?.tags], [ok.metadata, ok.tags]);
  });

  test('timestamps outside the years 1000-9999 are refused, naming the field; the bounds themselves are stored exactly', async () => {
    const tooEarly = new Date(Date.UTC(999, 11, 31, 23, 59, 59, 999));
    const tooLate = new Date(Date.UTC(10000, 0, 1));
    const first = new Date(Date.UTC(1000, 0, 1));
    const last = new Date(Date.UTC(10000, 0, 1) - 1);
    for (const d of [tooEarly, tooLate, new Date(8.64e15), new Date(-8.64e15)]) {
      await refused('createdAt', (s) => s.createInvoice({ ...validInvoice, createdAt: d }), `invoice createdAt ${d.getTime()}`);
      await refused('createdAt', (s) => s.createSellOffer({ ...validOffer, createdAt: d }), `offer createdAt ${d.getTime()}`);
      const k = newKey();
      await refused(
        'createdAt',
        (s) => s.addInvoiceSignature({ invoiceHash: sha('x'), publicKey: k.publicKey, signature: k.sign(sha('x')), createdAt: d }),
        `signature createdAt ${d.getTime()}`,
      );
      await refused('now', (s) => s.expireReservations({ now: d }), `expiry now ${d.getTime()}`);
      await refused('olderThan', (s) => s.trimUnconfirmedInvoices({ olderThan: d }), `trim olderThan ${d.getTime()}`);
      await refused('after.createdAt', (s) => s.listOffers('sell', mint, { after: { createdAt: d, hash: sha('o') } }), 'offer page');
    }
    for (const d of [first, last]) {
      const inv = invoiceInput({
        chainId: chain.chainId,
        mintHash: mint,
        sellerAddress: owner,
        buyerAddress: 'DBuyerT',
        quantity: 1n,
        price: 1n,
        paymentAddress: 'DPayT',
        createdAt: d,
      });
      const { hash } = await coffer.write((tx) => tokens(tx).createInvoice(inv));
      assert.equal((await coffer.read((tx) => tokens(tx).getInvoice(hash)))?.createdAt.getTime(), d.getTime(), `${d.toISOString()}`);
      await coffer.write((tx) => tokens(tx).releaseInvoice(hash));
    }
  });

  test("an offer's createdAt is required: it is signed, so a time chosen by the server could not verify", async () => {
    const { createdAt: _omitted, ...withoutTime } = validOffer;
    await refused('createdAt', (s) => s.createSellOffer(withoutTime as OfferInput), 'sell offer without createdAt');
    await refused(
      'createdAt',
      (s) => s.createBuyOffer({ ...withoutTime, sellerAddress: 'DS' } as OfferInput),
      'buy offer without createdAt',
    );
  });

  test('invoices: malformed or wrong-length hex, zero, negative or overflowing amounts, unknown mint, bad signatures', async () => {
    const v = () => validInvoice;
    const cases: [string, Record<string, unknown>][] = [
      ['mintHash', { mintHash: 'g'.repeat(64) }],
      ['mintHash', { mintHash: 'ab'.repeat(31) }],
      ['mintHash', { mintHash: 'ab'.repeat(33) }],
      ['quantity', { quantity: 0n }],
      ['quantity', { quantity: -1n }],
      ['quantity', { quantity: OVER_INT64 }],
      ['quantity', { quantity: 1.5 }],
      ['quantity', { quantity: '1e3' }],
      ['price', { price: 0n }],
      ['price', { price: -10n }],
      ['price', { price: OVER_INT64 }],
      ['price', { price: 0.1 }],
      ['price', { quantity: 2n ** 32n, price: 2n ** 32n }],
      ['priceUnit', { priceUnit: 'KOINU' }],
      ['priceUnit', { priceUnit: '' }],
      ['buyerAddress', { buyerAddress: v().sellerAddress }],
      ['publicKey', { publicKey: 'ab' }],
      ['signature', { signature: 'abc' }],
      ['signature', { signature: 'zz'.repeat(35) }],
      ['signature', { signature: 'ab'.repeat(80) }],
      ['createdAt', { createdAt: new Date('nonsense') }],
      ['paymentAddress', { paymentAddress: '' }],
      ['extra', { extra: 1 }],
    ];
    for (const [field, over] of cases)
      await refused(field, (s) => s.createInvoice({ ...v(), ...over } as InvoiceInput), `invoice ${field}`);
    // Well-formed but wrong: a signature by another key, or over other content.
    const other = newKey();
    await refused('signature', (s) => s.createInvoice({ ...v(), signature: other.sign(sha('x')) }), 'signature by another key');
    await refused('signature', (s) => s.createInvoice({ ...v(), quantity: 6n }), 'signature over other content');
    // Unknown mint, mint on another chain, more than the fraction count, bad ttl.
    const unknown = invoiceInput({
      chainId: chain.chainId,
      mintHash: sha('no such mint'),
      sellerAddress: owner,
      buyerAddress: 'DB',
      quantity: 1n,
      price: 1n,
      paymentAddress: 'DP',
    });
    await refused('mintHash', (s) => s.createInvoice(unknown), 'unknown mint');
    const tooMany = invoiceInput({
      chainId: chain.chainId,
      mintHash: mint,
      sellerAddress: owner,
      buyerAddress: 'DB',
      quantity: 101n,
      price: 1n,
      paymentAddress: 'DP',
    });
    await refused('quantity', (s) => s.createInvoice(tooMany), 'more than the fraction count');
    const fresh = invoiceInput({
      chainId: chain.chainId,
      mintHash: mint,
      sellerAddress: owner,
      buyerAddress: 'DB',
      quantity: 1n,
      price: 1n,
      paymentAddress: 'DP',
    });
    await refused('ttlMs', (s) => s.createInvoice(fresh, { ttlMs: 0 }), 'ttl');
    await refused('ttlMs', (s) => s.createInvoice(fresh, { ttlMs: 1.5 }), 'fractional ttl');
  });

  test('offers: unknown mint, amounts, hex, and the buy-offer seller', async () => {
    const v = () => validOffer;
    const o = signedOffer({
      side: 'sell',
      chainId: chain.chainId,
      mintHash: sha('unknown'),
      offererAddress: owner,
      sellerAddress: null,
      quantity: 5n,
      price: 10n,
      priceUnit: 'koinu',
      createdAt: new Date(Date.UTC(2024, 0, 1)),
    });
    await refused('mintHash', (s) => s.createSellOffer({ ...v(), mintHash: sha('unknown'), signature: o.signature }), 'unknown mint');
    const cases: [string, Record<string, unknown>][] = [
      ['quantity', { quantity: 0n }],
      ['quantity', { quantity: -2n }],
      ['quantity', { quantity: OVER_INT64 }],
      ['price', { price: 0 }],
      ['mintHash', { mintHash: 'xy'.repeat(32) }],
      ['mintHash', { mintHash: 'ab' }],
      ['signature', { signature: '0'.repeat(15) }],
      ['sellerAddress', { sellerAddress: 'DS' }],
    ];
    for (const [field, over] of cases)
      await refused(field, (s) => s.createSellOffer({ ...v(), ...over } as OfferInput), `sell offer ${field}`);
    await refused('sellerAddress', (s) => s.createBuyOffer(v()), 'buy offer without seller');
  });

  test('signatures, reads, expiry and retention refuse bad arguments', async () => {
    const k = newKey();
    await refused(
      'invoiceHash',
      (s) => s.addInvoiceSignature({ invoiceHash: sha('none'), publicKey: k.publicKey, signature: k.sign(sha('none')) }),
      'unknown invoice',
    );
    await refused(
      'invoiceHash',
      (s) => s.addInvoiceSignature({ invoiceHash: 'abc', publicKey: k.publicKey, signature: k.sign(sha('none')) }),
      'short invoice hash',
    );
    await refused(
      'publicKey',
      (s) => s.addInvoiceSignature({ invoiceHash: sha('none'), publicKey: 'zz', signature: k.sign(sha('none')) }),
      'bad key',
    );
    await refused('hash', (s) => s.getMint('not-hex'));
    await refused('mintHash', (s) => s.balance('ab', 'DX'));
    await refused('address', (s) => s.balance(sha('m'), ''));
    // A ledger page's start names a cause, which is always a content hash (of the mint or the
    // invoice): anything else is refused before the keyset read (PostgreSQL refused a NUL in
    // the statement itself, with a driver error naming no field).
    for (const [causeRef, what] of [
      ['a\u0000b', 'NUL'],
      [`${'a'.repeat(63)}\u0000`, 'NUL in 64 characters'],
      ['x', 'not a hash'],
      ['g'.repeat(64), 'not hex'],
      ['ab'.repeat(33), 'too long'],
    ] as const)
      await refused(
        'after.causeRef',
        (s) => s.ledger(mint, owner, { after: { blockHeight: 1n, causeKind: 'sale_credit', causeRef } }),
        `ledger cursor cause ref: ${what}`,
      );
    assert.equal(
      (
        await coffer.read((tx) =>
          tokens(tx).ledger(mint, owner, { after: { blockHeight: 0n, causeKind: 'mint_credit', causeRef: mint.toUpperCase() }, limit: 5 }),
        )
      ).length,
      (
        await coffer.read((tx) =>
          tokens(tx).ledger(mint, owner, { after: { blockHeight: 0n, causeKind: 'mint_credit', causeRef: mint }, limit: 5 }),
        )
      ).length,
      'a hash in upper case is the same cause',
    );
    await refused('limit', (s) => s.expireReservations({ limit: 0 }));
    await refused('now', (s) => s.expireReservations({ now: new Date('x') }));
    await refused('olderThan', (s) => s.trimUnconfirmedMints({ olderThan: 'yesterday' as unknown as Date }));
    await refused('belowHeight', (s) => s.trimOnchainActions({ chainId: chain.chainId, belowHeight: -1n }));
    await refused(
      'belowHeight',
      (s) => s.trimOnchainActions({ chainId: chain.chainId, belowHeight: 2n ** 70n }),
      'belowHeight beyond int64',
    );
    await refused('side', (s) => s.getOffer('sideways' as OfferSide, sha('o')), 'getOffer side');
    await refused('side', (s) => s.listOffers('Sell' as OfferSide, mint), 'listOffers side');
    await refused('chainId', (s) => s.stats('no spaces allowed'));
    await refused('limit', (s) => s.listMints({ limit: 5000 }));
  });

  test('the database itself refuses what bypasses the store (named CHECKs and keys on every backend)', async () => {
    const raw = (table: string, row: Record<string, unknown>) => coffer.write((tx) => tx.insert(table, row));
    const base = {
      chain_id: chain.chainId,
      mint_hash: mint,
      address: 'DRaw',
      tx_hash: sha('t'),
      block_height: 1n,
      block_hash: sha('b'),
      created_at: new Date(),
    };
    await assert.rejects(
      raw('token_ledger', { ...base, cause_kind: 'mint_credit', cause_ref: 'r0', delta: 0n }),
      CheckViolationError,
      'delta 0',
    );
    await raw('token_ledger', { ...base, cause_kind: 'sale_credit', cause_ref: 'r1', delta: 5n });
    await assert.rejects(
      raw('token_ledger', { ...base, cause_kind: 'sale_credit', cause_ref: 'r1', delta: 7n }),
      UniqueViolationError,
      'one entry per cause',
    );
    await assert.rejects(
      raw('token_balances', { mint_hash: mint, address: 'DRaw', chain_id: chain.chainId, balance: -1n, updated_height: 1n }),
      CheckViolationError,
      'negative balance',
    );
    const invRow = {
      hash: sha('raw-inv'),
      chain_id: chain.chainId,
      mint_hash: mint,
      seller_address: 'DS',
      buyer_address: 'DB',
      quantity: 3n,
      price: 4n,
      price_unit: 'koinu',
      total_price: 11n,
      payment_address: 'DP',
      public_key: '02' + 'ab'.repeat(32),
      signature: 'ab'.repeat(8),
      created_at: new Date(),
      received_at: new Date(),
    };
    await assert.rejects(raw('token_unconfirmed_invoices', invRow), CheckViolationError, 'total ≠ quantity × price');
    await assert.rejects(
      raw('token_unconfirmed_invoices', { ...invRow, total_price: 12n, buyer_address: 'DS' }),
      CheckViolationError,
      'buyer = seller',
    );
    await assert.rejects(
      coffer.write((tx) =>
        tx.db
          .insertInto('token_reservations')
          .values({
            ...tx.codec('token_reservations').encode({
              invoice_hash: sha('r'),
              chain_id: 'c',
              mint_hash: mint,
              seller_address: 'DS',
              quantity: 1n,
              expires_at: new Date(),
              created_at: new Date(),
            }),
            state: 'lost',
          })
          .execute(),
      ),
      CheckViolationError,
      'unknown reservation state',
    );
    await coffer.write((tx) => tx.db.deleteFrom('token_ledger').where('cause_ref', '=', 'r1').execute());
  });

  test('a price that does not match the payment is a typed error and settles nothing (see also flows)', async () => {
    const res = await coffer.write((tx) =>
      tokens(tx).createInvoice(
        invoiceInput({
          chainId: chain.chainId,
          mintHash: mint,
          sellerAddress: owner,
          buyerAddress: 'DBuyerW',
          quantity: 2n,
          price: 5n,
          paymentAddress: 'DPayW',
        }),
      ),
    );
    await chain.mine(coffer, [actionTx('invoice', res.hash)]);
    const before = await counts(coffer);
    await assert.rejects(
      coffer.write((tx) =>
        checkPayment(tx, chain.chainId, {
          invoiceHash: res.hash,
          txHash: sha('p'),
          blockHeight: 1n,
          blockHash: sha('b'),
          outputs: [{ address: 'DPayW', value: 11n }],
        }),
      ),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'outputs' && e.details.paid === 11n && e.details.required === 10n,
    );
    assert.deepEqual(await counts(coffer), before);
  });
});
