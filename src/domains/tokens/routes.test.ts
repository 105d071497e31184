// The token API through app.inject() on every backend: a mint confirmed on chain credits its
// owner, an invoice reserves (or is refused), the on-chain invoice and payment settle it, and
// every failure is a typed 4xx naming the field with nothing written.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { testService, type TestService } from '../../../test/service-support.js';
import { tokens } from './store.js';
import { CHAIN, invoiceInput, mintInput, newKey, sha, unique } from './testkit.js';

interface WireTx {
  txHash: string;
  indexInBlock: number;
  actionType: string;
  actionVersion: number;
  payload: string;
  outputs: { address: string; value: string }[];
}

const jsonMint = () => {
  const m = mintInput();
  return { ...m, fractionCount: String(m.fractionCount) };
};

forEachBackend('tokens API', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  let admin: { authorization: string; keyId: string };
  let writer: { authorization: string; keyId: string };
  let reader: { authorization: string; keyId: string };
  let height = 0;
  let parent = '0'.repeat(64);

  async function mine(txs: Omit<WireTx, 'indexInBlock'>[]) {
    const hash = sha(unique('block'));
    const body = {
      height: String(height),
      hash,
      parentHash: parent,
      time: new Date(Date.UTC(2026, 0, 1) + height * 60_000).toISOString(),
      transactions: txs.map((t, i) => ({ ...t, indexInBlock: i })),
    };
    const r = await svc.call('POST', `/v1/chains/${CHAIN}/blocks`, writer, body);
    assert.equal(r.statusCode, 200, r.body);
    height++;
    parent = hash;
  }
  const action = (type: string, hash: string, outputs: { address: string; value: string }[] = []) => ({
    txHash: sha(unique('tx')),
    actionType: type,
    actionVersion: 1,
    payload: hash,
    outputs,
  });

  before(async () => {
    coffer = await ctx.open();
    svc = await testService(coffer);
    admin = await svc.key(['chain:admin', 'tokens:admin']);
    writer = await svc.key(['chain:write', 'tokens:write']);
    reader = await svc.key(['tokens:read']);
    const reg = await svc.call('POST', '/v1/chains', admin, {
      chainId: CHAIN,
      name: 'Dogecoin testnet',
      network: 'testnet',
      confirmations: 1,
    });
    assert.equal(reg.statusCode, 201, reg.body);
  });

  test('mint → confirm on chain → invoice reserves → invoice and payment on chain settle it', async () => {
    const mint = jsonMint();
    const submitted = await svc.call('POST', '/v1/tokens/mints', writer, mint);
    assert.equal(submitted.statusCode, 201, submitted.body);
    const mintHash = submitted.json().hash;
    assert.equal((await svc.call('POST', '/v1/tokens/mints', writer, mint)).json().created, false, 'idempotent');
    await mine([action('mint', mintHash)]);
    const owner = mint.ownerAddress;
    const bal = await svc.call('GET', `/v1/tokens/mints/${mintHash}/balances/${owner}`, reader);
    assert.equal(bal.statusCode, 200, bal.body);
    assert.deepEqual({ b: bal.json().balance, a: bal.json().available }, { b: '1000', a: '1000' });

    const inv = invoiceInput({
      mintHash,
      sellerAddress: owner,
      buyerAddress: 'DBuyer1',
      quantity: 400n,
      price: 5n,
      paymentAddress: 'DPay1',
    });
    const wire = { ...inv, quantity: '400', price: '5', createdAt: inv.createdAt.toISOString() };
    const created = await svc.call('POST', '/v1/tokens/invoices', writer, wire);
    assert.equal(created.statusCode, 201, created.body);
    const invoiceHash = created.json().hash;
    assert.equal((await svc.call('GET', `/v1/tokens/mints/${mintHash}/balances/${owner}`, reader)).json().available, '600');

    const tooMuch = invoiceInput({
      mintHash,
      sellerAddress: owner,
      buyerAddress: 'DBuyer2',
      quantity: 700n,
      price: 5n,
      paymentAddress: 'DPay2',
    });
    const refused = await svc.call('POST', '/v1/tokens/invoices', writer, {
      ...tooMuch,
      quantity: '700',
      price: '5',
      createdAt: tooMuch.createdAt.toISOString(),
    });
    assert.equal(refused.statusCode, 422, refused.body);
    assert.equal(refused.json().error.code, 'invalid_state_transition');

    await mine([action('invoice', invoiceHash)]);
    await mine([action('payment', invoiceHash, [{ address: 'DPay1', value: '2000' }])]);
    const invoice = (await svc.call('GET', `/v1/tokens/invoices/${invoiceHash}`, reader)).json();
    assert.equal(invoice.status, 'paid', JSON.stringify(invoice));
    assert.equal(invoice.totalPrice, '2000');
    const buyer = (await svc.call('GET', '/v1/tokens/balances/DBuyer1', reader)).json();
    assert.equal(buyer.items[0].balance, '400');
    assert.equal((await svc.call('GET', `/v1/tokens/mints/${mintHash}/balances/${owner}`, reader)).json().balance, '600');
    const ledger = (await svc.call('GET', `/v1/tokens/mints/${mintHash}/ledger/${owner}`, reader)).json();
    assert.deepEqual(ledger.items.map((e: { causeKind: string; delta: string }) => `${e.causeKind}:${e.delta}`).sort(), [
      'mint_credit:1000',
      'sale_debit:-400',
    ]);

    const stats = (await svc.call('GET', `/v1/stats?chainId=${CHAIN}`, reader)).json();
    assert.equal(stats.items[0].mints, 1);
    const audited = await coffer.read((tx) =>
      tx.db.selectFrom('audit_log').select(['action', 'actor_id']).where('domain', '=', 'tokens').orderBy('seq').execute(),
    );
    assert.deepEqual(
      audited.map((a) => a.action),
      ['tokens.mint.submit', 'tokens.invoice.create'],
    );
    assert.ok(audited.every((a) => a.actor_id === writer.keyId));
  });

  test('lists of confirmed mints paginate to the end', async () => {
    const hashes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await svc.call('POST', '/v1/tokens/mints', writer, jsonMint());
      assert.equal(r.statusCode, 201);
      hashes.push(r.json().hash);
    }
    await mine(hashes.map((h) => action('mint', h)));
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await svc.call('GET', `/v1/tokens/mints?chainId=${CHAIN}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, reader);
      assert.equal(r.statusCode, 200, r.body);
      seen.push(...r.json().items.map((m: { hash: string }) => m.hash));
      cursor = r.json().nextCursor;
      if (!cursor) break;
    }
    // Every confirmed mint once (other tests of this suite confirm mints too), ours among them.
    const confirmed = await coffer.read(
      async (tx) => (await tx.db.selectFrom('token_mints').select('hash').where('chain_id', '=', CHAIN).execute()).length,
    );
    assert.equal(seen.length, confirmed);
    assert.equal(new Set(seen).size, seen.length);
    for (const h of hashes) assert.ok(seen.includes(h));
  });

  test('bad input is a 4xx naming the field, and nothing is written', async () => {
    const countMints = () => coffer.read(async (tx) => (await tx.db.selectFrom('token_unconfirmed_mints').select('hash').execute()).length);
    const before = await countMints();
    const cases: [Record<string, unknown>, string][] = [
      [{ fractionCount: '-5' }, 'fractionCount'],
      [{ fractionCount: '0' }, 'fractionCount'],
      [{ fractionCount: '1.5' }, 'fractionCount'],
      [{ fractionCount: '99999999999999999999999' }, 'fractionCount'],
      [{ publicKey: 'zz' }, 'publicKey'],
      [{ chainId: 'bad chain' }, 'body.chainId'],
      [{ surprise: true }, 'body.surprise'],
    ];
    for (const [over, field] of cases) {
      const r = await svc.call('POST', '/v1/tokens/mints', writer, { ...jsonMint(), ...over });
      assert.equal(r.statusCode, 400, `${field}: ${r.body}`);
      assert.equal(r.json().error.field, field, r.body);
    }
    assert.equal(await countMints(), before);
    const unknownMint = invoiceInput({
      mintHash: 'ab'.repeat(32),
      sellerAddress: 'DS',
      buyerAddress: 'DB',
      quantity: 1n,
      price: 1n,
      paymentAddress: 'DP',
    });
    const r = await svc.call('POST', '/v1/tokens/invoices', writer, {
      ...unknownMint,
      quantity: '1',
      price: '1',
      createdAt: unknownMint.createdAt.toISOString(),
    });
    assert.ok(r.statusCode === 400 || r.statusCode === 404, r.body);
    assert.equal((await svc.call('GET', `/v1/tokens/invoices/${'cd'.repeat(32)}`, reader)).statusCode, 404);
    assert.equal((await svc.call('POST', '/v1/tokens/mints', reader, jsonMint())).statusCode, 403);
  });

  test("a mint's holders: every balance with its reservations, in pages, summing to the supply", async () => {
    const mint = jsonMint();
    const mintHash = (await svc.call('POST', '/v1/tokens/mints', writer, mint)).json().hash;
    await mine([action('mint', mintHash)]);
    const sells = ['DHolderA', 'DHolderB'].map((buyer, i) =>
      invoiceInput({
        mintHash,
        sellerAddress: mint.ownerAddress,
        buyerAddress: buyer,
        quantity: BigInt(100 * (i + 1)),
        price: 1n,
        paymentAddress: `DPay${buyer}`,
      }),
    );
    const hashes: string[] = [];
    for (const inv of sells) {
      const r = await svc.call('POST', '/v1/tokens/invoices', writer, {
        ...inv,
        quantity: String(inv.quantity),
        price: '1',
        createdAt: inv.createdAt.toISOString(),
      });
      assert.equal(r.statusCode, 201, r.body);
      hashes.push(r.json().hash);
    }
    // The first is paid; the second stays reserved.
    await mine([action('invoice', hashes[0]!), action('payment', hashes[0]!, [{ address: 'DPayDHolderA', value: '100' }])]);
    const all = await svc.call('GET', `/v1/tokens/mints/${mintHash}/balances?chainId=${CHAIN}`, reader);
    assert.equal(all.statusCode, 200, all.body);
    const items = all.json().items as { address: string; balance: string; reserved: string; available: string }[];
    assert.deepEqual(
      items.map((h) => [h.address, h.balance, h.reserved, h.available]).sort(),
      [
        ['DHolderA', '100', '0', '100'],
        [mint.ownerAddress, '900', '200', '700'],
      ].sort(),
    );
    assert.equal(
      items.reduce((s, h) => s + BigInt(h.balance), 0n),
      1000n,
    );
    const first = await svc.call('GET', `/v1/tokens/mints/${mintHash}/balances?chainId=${CHAIN}&limit=1`, reader);
    assert.equal(first.json().items.length, 1);
    const second = await svc.call(
      'GET',
      `/v1/tokens/mints/${mintHash}/balances?chainId=${CHAIN}&limit=1&cursor=${first.json().nextCursor}`,
      reader,
    );
    assert.equal(second.json().items.length, 1);
    assert.equal(second.json().nextCursor, undefined);
    assert.deepEqual(
      [first.json().items[0].address, second.json().items[0].address],
      items.map((h) => h.address),
    );
  });

  /** Signs, submits and returns an invoice's hash (its tokens reserved). */
  async function invoice(mintHash: string, seller: string, buyer: string, quantity: bigint): Promise<string> {
    const inv = invoiceInput({ mintHash, sellerAddress: seller, buyerAddress: buyer, quantity, price: 1n, paymentAddress: `DPay${buyer}` });
    const r = await svc.call('POST', '/v1/tokens/invoices', writer, {
      ...inv,
      quantity: String(quantity),
      price: '1',
      createdAt: inv.createdAt.toISOString(),
    });
    assert.equal(r.statusCode, 201, r.body);
    return r.json().hash;
  }
  /** Every item of a list, page after page of `limit`, and how many pages it took. */
  async function allPages<T>(url: string, limit: number): Promise<{ items: T[]; pages: number }> {
    const items: T[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = await svc.call('GET', `${url}${url.includes('?') ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, reader);
      assert.equal(r.statusCode, 200, r.body);
      assert.ok(r.json().items.length <= limit);
      items.push(...r.json().items);
      cursor = r.json().nextCursor;
      pages++;
    } while (cursor);
    return { items, pages };
  }
  /** The statements a store read runs in its transaction (each one passes Tx.beforeStatement). */
  const statementsOf = (fn: (s: ReturnType<typeof tokens>) => Promise<unknown>) =>
    coffer.read(async (tx) => {
      let n = 0;
      const check = tx.beforeStatement.bind(tx);
      tx.beforeStatement = () => {
        n++;
        check();
      };
      await fn(tokens(tx));
      return n;
    });

  test("an address's balances: in pages by mint hash, each with its own reservations, in statements independent of the mints held", async () => {
    const owner = unique('DMulti');
    const mints: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await svc.call('POST', '/v1/tokens/mints', writer, { ...jsonMint(), ownerAddress: owner });
      assert.equal(r.statusCode, 201, r.body);
      mints.push(r.json().hash);
    }
    const single = unique('DSingle');
    const alone = await svc.call('POST', '/v1/tokens/mints', writer, { ...jsonMint(), ownerAddress: single });
    await mine([...mints, alone.json().hash].map((h) => action('mint', h)));
    // Reservations in two of the three mints, and one of another seller that must not count.
    await invoice(mints[0]!, owner, 'DBuyerX', 100n);
    await invoice(mints[2]!, owner, 'DBuyerY', 250n);
    const reserved = new Map([
      [mints[0]!, '100'],
      [mints[1]!, '0'],
      [mints[2]!, '250'],
    ]);
    const expected = [...mints].sort().map((h) => [h, '1000', reserved.get(h)!, String(1000n - BigInt(reserved.get(h)!))]);
    type Row = { mintHash: string; balance: string; reserved: string; available: string };
    const row = (b: Row) => [b.mintHash, b.balance, b.reserved, b.available];

    const all = await svc.call('GET', `/v1/tokens/balances/${owner}?chainId=${CHAIN}`, reader);
    assert.equal(all.statusCode, 200, all.body);
    assert.deepEqual(all.json().items.map(row), expected);
    assert.equal(all.json().nextCursor, undefined);
    for (const limit of [1, 2]) {
      const paged = await allPages<Row>(`/v1/tokens/balances/${owner}?chainId=${CHAIN}`, limit);
      assert.deepEqual(paged.items.map(row), expected, `limit=${limit}`);
      assert.equal(paged.pages, Math.ceil(3 / limit));
    }
    // No statement per mint: three mints' balances take the statements one mint's do.
    const one = await statementsOf((s) => s.balances(single));
    assert.equal(await statementsOf((s) => s.balances(owner)), one);
    assert.equal((await coffer.read((tx) => tokens(tx).balances(owner, { after: [...mints].sort()[0]!, limit: 5 }))).length, 2);

    const bad = await svc.call('GET', `/v1/tokens/balances/${owner}?cursor=${Buffer.from('{"h":"xyz"}').toString('base64url')}`, reader);
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(bad.json().error.field, 'query.cursor');
    assert.equal((await svc.call('GET', `/v1/tokens/balances/${owner}?limit=501`, reader)).statusCode, 400);
  });

  test("a holder's ledger: in pages, oldest block first, entries of one block in cause order", async () => {
    const mint = jsonMint();
    const mintHash = (await svc.call('POST', '/v1/tokens/mints', writer, mint)).json().hash;
    await mine([action('mint', mintHash)]);
    const owner = mint.ownerAddress;
    const sold: string[] = [];
    for (const [i, buyer] of ['DLedgerA', 'DLedgerB', 'DLedgerC'].entries())
      sold.push(await invoice(mintHash, owner, buyer, BigInt(10 * (i + 1))));
    const paid = (h: string, i: number, buyer: string) => [
      action('invoice', h),
      action('payment', h, [{ address: `DPay${buyer}`, value: String(10 * (i + 1)) }]),
    ];
    // Two sales settle in one block (equal heights: the cause orders them), the third later.
    await mine([...paid(sold[0]!, 0, 'DLedgerA'), ...paid(sold[1]!, 1, 'DLedgerB')]);
    await mine(paid(sold[2]!, 2, 'DLedgerC'));

    type Entry = { blockHeight: string; causeKind: string; causeRef: string; delta: string };
    const url = `/v1/tokens/mints/${mintHash}/ledger/${owner}?chainId=${CHAIN}`;
    const all = await svc.call('GET', url, reader);
    assert.equal(all.statusCode, 200, all.body);
    const items = all.json().items as Entry[];
    assert.equal(all.json().nextCursor, undefined);
    const key = (e: Entry) => [BigInt(e.blockHeight), e.causeKind, e.causeRef] as const;
    const order = (a: Entry, b: Entry) => {
      const [x, y] = [key(a), key(b)];
      return x[0] !== y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] !== y[1] ? (x[1] < y[1] ? -1 : 1) : x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0;
    };
    assert.deepEqual(items, [...items].sort(order));
    assert.deepEqual(
      items.map((e) => `${e.causeKind}:${e.delta}`),
      ['mint_credit:1000', ...[sold[0]!, sold[1]!].sort().map((h) => `sale_debit:${h === sold[0] ? -10 : -20}`), 'sale_debit:-30'],
    );
    assert.equal(items[1]!.blockHeight, items[2]!.blockHeight);
    for (const limit of [1, 3]) {
      const paged = await allPages<Entry>(url, limit);
      assert.deepEqual(paged.items, items, `limit=${limit}`);
      assert.equal(paged.pages, Math.ceil(4 / limit));
    }

    const cursor = (c: object) => Buffer.from(JSON.stringify(c)).toString('base64url');
    // A cause ref is a content hash (the mint's or the invoice's): a NUL reached PostgreSQL's
    // keyset WHERE and came back as the driver's error text, naming no field.
    for (const c of [
      { h: '99999999999999999999', k: 'mint_credit', r: mintHash },
      { h: '1', k: 'refund', r: mintHash },
      { h: '1' },
      { h: '1', k: 'sale_credit', r: 'a\u0000b' },
      { h: '1', k: 'sale_credit', r: `${'a'.repeat(63)}\u0000` },
      { h: '1', k: 'sale_credit', r: 'x' },
      { h: '1', k: 'sale_credit', r: mintHash.toUpperCase() },
      { h: '1', k: 'sale_credit', r: `${mintHash}0` },
    ]) {
      const bad = await svc.call('GET', `${url}&cursor=${cursor(c)}`, reader);
      assert.equal(bad.statusCode, 400, bad.body);
      assert.equal(bad.json().error.field, 'query.cursor');
    }
  });

  test('a mint without its optional documents is accepted (201) and stores each as null', async () => {
    const { metadata: _m, requirements: _r, lockupOptions: _l, contractOfSale: _c, ...bare } = jsonMint();
    const first = await svc.call('POST', '/v1/tokens/mints', writer, bare);
    assert.equal(first.statusCode, 201, first.body);
    const hash = first.json().hash;
    const got = await svc.call('GET', `/v1/tokens/mints/${hash}`, reader);
    assert.equal(got.statusCode, 200, got.body);
    const m = got.json();
    assert.deepEqual([m.metadata, m.requirements, m.lockupOptions, m.contractOfSale], [null, null, null, null]);
    const explicit = await svc.call('POST', '/v1/tokens/mints', writer, {
      ...bare,
      metadata: null,
      requirements: null,
      lockupOptions: null,
      contractOfSale: null,
    });
    assert.deepEqual([explicit.json().hash, explicit.json().created], [hash, false], 'the same content as explicit nulls');
  });

  test('a signature of a released invoice is a 422 naming invoiceHash, and nothing is written (no signature, no audit entry)', async () => {
    const manager = newKey();
    const m = mintInput({ signatureRule: 'one', assetManagers: [{ name: 'm', publicKey: manager.publicKey, url: null }] });
    const mint = { ...m, fractionCount: String(m.fractionCount) };
    const mintHash = (await svc.call('POST', '/v1/tokens/mints', writer, mint)).json().hash;
    await mine([action('mint', mintHash)]);
    const ih = await invoice(mintHash, mint.ownerAddress, 'DSigned', 1n);
    const sign = () =>
      svc.call('POST', `/v1/tokens/invoices/${ih}/signatures?chainId=${CHAIN}`, writer, {
        publicKey: manager.publicKey,
        signature: manager.sign(ih),
      });
    const signed = await sign();
    assert.equal(signed.statusCode, 200, signed.body);
    assert.equal(signed.json().created, true);
    const released = await svc.call('POST', `/v1/tokens/invoices/${ih}/release?chainId=${CHAIN}`, writer);
    assert.equal(released.statusCode, 200, released.body);
    const written = () =>
      coffer.read(async (tx) => ({
        signatures: (await tx.db.selectFrom('token_invoice_signatures').select('public_key').where('invoice_hash', '=', ih).execute())
          .length,
        audit: (await tx.db.selectFrom('audit_log').select('seq').where('domain', '=', 'tokens').where('entity_id', '=', ih).execute())
          .length,
      }));
    const before = await written();
    assert.equal(before.signatures, 0, 'the release dropped the signature');
    const refused = await sign();
    assert.equal(refused.statusCode, 422, refused.body);
    assert.equal(refused.json().error.code, 'invalid_state_transition');
    assert.equal(refused.json().error.field, 'invoiceHash');
    assert.deepEqual(await written(), before);
  });
});
