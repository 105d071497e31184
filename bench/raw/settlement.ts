// Workload 2's settlement written by hand for PostgreSQL: the same work as the Coffer side
// (create the invoice and reserve the seller's tokens; record the block's invoice and payment
// actions, match the invoice, record the payment, settle it with two ledger entries and both
// balances; journal every block-derived change for reorgs; one hash-chained audit entry), the
// same durable commit, in the fewest round trips a careful engineer would use: named prepared
// statements, and data-modifying CTEs that do one step's writes in one statement.
//
// It answers how much of the gap to the two-row transfer is the work itself and how much is
// Coffer. Its journal holds each row's first change in the block only (10 rows; a row inserted
// by the block is deleted by the revert, so its later changes need no image).
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { invoiceHash } from '../../src/domains/tokens/index.js';
import { pgAppend } from './audit.js';

export interface RawSeller {
  mintHash: string;
  owner: string;
}

const hex = (n: number) => randomBytes(n).toString('hex');
const TTL = 24 * 3600_000;
const INV_COLS =
  'hash, chain_id, mint_hash, seller_address, buyer_address, quantity, price, price_unit, total_price, payment_address, public_key, signature, created_at, received_at';

const LOCK_SELLER = `SELECT b.balance::text AS balance, b.updated_height::text AS updated_height,
  (SELECT coalesce(sum(r.quantity), 0) FROM token_reservations r
    WHERE r.mint_hash = $1 AND r.seller_address = $2 AND r.state = 'reserved')::text AS held,
  EXISTS (SELECT 1 FROM token_mints m WHERE m.hash = $1 AND m.chain_id = $3) AS mint_ok
FROM token_balances b WHERE b.mint_hash = $1 AND b.address = $2 FOR UPDATE OF b`;

const RESERVE = `WITH r AS (
  INSERT INTO token_reservations (invoice_hash, chain_id, mint_hash, seller_address, quantity, state, expires_at, created_at)
  VALUES ($1, $2, $3, $4, $6, 'reserved', $15, $14))
INSERT INTO token_unconfirmed_invoices (${INV_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`;

const ACTIONS = `INSERT INTO token_onchain_actions
  (chain_id, tx_hash, action_type, action_version, ref_hash, block_height, block_hash, index_in_block, outputs, state, reason)
VALUES ($1, $2, 'invoice', 1, $4, $5, $6, 0, NULL, 'pending', NULL), ($1, $3, 'payment', 1, $4, $5, $6, 1, $7, 'pending', NULL)
ON CONFLICT (chain_id, tx_hash) DO NOTHING RETURNING tx_hash`;

// Match the invoice (unconfirmed → matched), record the payment, mark both actions applied.
const MATCH = `WITH d AS (DELETE FROM token_unconfirmed_invoices WHERE hash = $1 RETURNING *),
i AS (INSERT INTO token_invoices (${INV_COLS}, tx_hash, block_height, block_hash, matched_height, matched_block_hash, status)
  SELECT ${INV_COLS}, $2, $4, $5, $4, $5, 'matched' FROM d RETURNING 1),
p AS (INSERT INTO token_payments (invoice_hash, chain_id, tx_hash, block_height, block_hash, recorded_height, recorded_block_hash, amount, state)
  SELECT hash, chain_id, $3, $4, $5, $4, $5, total_price, 'pending' FROM d WHERE total_price <= $7 RETURNING 1),
a AS (UPDATE token_onchain_actions SET state = 'applied' WHERE chain_id = $6 AND tx_hash IN ($2, $3) AND state = 'pending' RETURNING 1)
SELECT d.*, (SELECT count(*) FROM i)::int AS i, (SELECT count(*) FROM p)::int AS p, (SELECT count(*) FROM a)::int AS a FROM d`;

const LOCK_BOTH = `SELECT address, balance::text AS balance, updated_height::text AS updated_height FROM token_balances
WHERE mint_hash = $1 AND address IN ($2, $3) ORDER BY address FOR UPDATE`;

// $1 mint, $2 chain, $3 seller, $4 buyer, $5 quantity, $6 invoice, $7 payment tx, $8 height,
// $9 block hash, $10 now, $11/$12/$13 journal tables/keys/images.
const SETTLE = `WITH l AS (INSERT INTO token_ledger (cause_kind, cause_ref, chain_id, mint_hash, address, delta, tx_hash, block_height, block_hash, created_at)
  VALUES ('sale_credit', $6, $2, $1, $4, $5, $7, $8, $9, $10), ('sale_debit', $6, $2, $1, $3, -$5::bigint, $7, $8, $9, $10) RETURNING 1),
bb AS (INSERT INTO token_balances (mint_hash, address, chain_id, balance, updated_height) VALUES ($1, $4, $2, $5, $8)
  ON CONFLICT (mint_hash, address) DO UPDATE SET balance = token_balances.balance + excluded.balance, updated_height = excluded.updated_height RETURNING 1),
sb AS (UPDATE token_balances SET balance = balance - $5, updated_height = $8 WHERE mint_hash = $1 AND address = $3 AND balance >= $5 RETURNING 1),
rv AS (UPDATE token_reservations SET state = 'settled' WHERE invoice_hash = $6 AND state = 'reserved' RETURNING 1),
iv AS (UPDATE token_invoices SET status = 'paid', paid_tx_hash = $7, paid_height = $8 WHERE hash = $6 AND status = 'matched' RETURNING 1),
py AS (UPDATE token_payments SET state = 'settled' WHERE invoice_hash = $6 AND state = 'pending' RETURNING 1),
u AS (INSERT INTO chain_undo (chain_id, height, block_hash, table_name, row_key, before_image)
  SELECT $2, $8, $9, t.table_name, t.row_key, t.before_image FROM unnest($11::text[], $12::jsonb[], $13::jsonb[]) AS t(table_name, row_key, before_image) RETURNING 1)
SELECT (SELECT count(*) FROM l)::int AS l, (SELECT count(*) FROM bb)::int AS bb, (SELECT count(*) FROM sb)::int AS sb,
  (SELECT count(*) FROM rv)::int AS rv, (SELECT count(*) FROM iv)::int AS iv, (SELECT count(*) FROM py)::int AS py, (SELECT count(*) FROM u)::int AS u`;
const SETTLED = { l: 2, bb: 1, sb: 1, rv: 1, iv: 1, py: 1, u: 10 };

let height = 1_000_000_000n;

/** One settlement in its own durable transaction; false when the seller's free balance does not cover it. */
export async function rawSettlePg(pool: pg.Pool, chainId: string, s: RawSeller, quantity: bigint, price: bigint): Promise<boolean> {
  const now = new Date();
  const total = quantity * price;
  const inv = {
    chainId,
    mintHash: s.mintHash,
    sellerAddress: s.owner,
    buyerAddress: `DBuyer${hex(10)}`,
    quantity,
    price,
    priceUnit: 'koinu',
    paymentAddress: `DPay${hex(8)}`,
    publicKey: `02${hex(32)}`,
    signature: 'ab'.repeat(64),
    createdAt: now,
  };
  const hash = invoiceHash(inv);
  height += 1n;
  const h = height.toString();
  const blockHash = hex(32);
  const invoiceTx = hex(32);
  const paymentTx = hex(32);
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const seller = (await c.query({ name: 'rs_lock', text: LOCK_SELLER, values: [s.mintHash, s.owner, chainId] })).rows[0];
    if (!seller?.mint_ok) throw new Error(`mint ${s.mintHash} is not confirmed on ${chainId}`);
    if (BigInt(seller.balance) - BigInt(seller.held) < quantity) {
      await c.query('ROLLBACK');
      return false;
    }
    const expires = new Date(now.getTime() + TTL);
    await c.query({
      name: 'rs_reserve',
      text: RESERVE,
      values: [
        hash,
        chainId,
        s.mintHash,
        s.owner,
        inv.buyerAddress,
        quantity.toString(),
        price.toString(),
        inv.priceUnit,
        total.toString(),
        inv.paymentAddress,
        inv.publicKey,
        inv.signature,
        inv.createdAt,
        now,
        expires,
      ],
    });
    // The block: its two actions, then the match, the payment and the settlement.
    const outputs = JSON.stringify([{ address: inv.paymentAddress, value: total.toString() }]);
    const acts = await c.query({ name: 'rs_actions', text: ACTIONS, values: [chainId, invoiceTx, paymentTx, hash, h, blockHash, outputs] });
    if (acts.rowCount !== 2) throw new Error('an action of the block was already recorded');
    const m = (
      await c.query({ name: 'rs_match', text: MATCH, values: [hash, invoiceTx, paymentTx, h, blockHash, chainId, total.toString()] })
    ).rows[0];
    if (!m || m.i !== 1 || m.p !== 1 || m.a !== 2) throw new Error(`invoice ${hash} did not match`);
    const locked = (await c.query({ name: 'rs_lock_both', text: LOCK_BOTH, values: [s.mintHash, s.owner, inv.buyerAddress] })).rows as {
      address: string;
      balance: string;
      updated_height: string;
    }[];
    const before = (a: string) => locked.find((r) => r.address === a);
    const sellerRow = before(s.owner)!;
    const buyerRow = before(inv.buyerAddress);
    const { i: _i, p: _p, a: _a, ...unconfirmed } = m;
    const journal: [string, unknown, unknown][] = [
      ['token_onchain_actions', { chain_id: chainId, tx_hash: invoiceTx }, null],
      ['token_onchain_actions', { chain_id: chainId, tx_hash: paymentTx }, null],
      ['token_unconfirmed_invoices', { hash }, unconfirmed],
      ['token_invoices', { hash }, null],
      ['token_payments', { invoice_hash: hash }, null],
      ['token_ledger', { cause_kind: 'sale_credit', cause_ref: hash }, null],
      ['token_ledger', { cause_kind: 'sale_debit', cause_ref: hash }, null],
      [
        'token_balances',
        { mint_hash: s.mintHash, address: inv.buyerAddress },
        buyerRow ? { mint_hash: s.mintHash, chain_id: chainId, ...buyerRow } : null,
      ],
      ['token_balances', { mint_hash: s.mintHash, address: s.owner }, { mint_hash: s.mintHash, chain_id: chainId, ...sellerRow }],
      [
        'token_reservations',
        { invoice_hash: hash },
        {
          invoice_hash: hash,
          chain_id: chainId,
          mint_hash: s.mintHash,
          seller_address: s.owner,
          quantity: quantity.toString(),
          state: 'reserved',
          expires_at: expires,
          created_at: now,
        },
      ],
    ];
    const done = (
      await c.query({
        name: 'rs_settle',
        text: SETTLE,
        values: [
          s.mintHash,
          chainId,
          s.owner,
          inv.buyerAddress,
          quantity.toString(),
          hash,
          paymentTx,
          h,
          blockHash,
          now,
          journal.map((j) => j[0]),
          journal.map((j) => JSON.stringify(j[1])),
          journal.map((j) => (j[2] === null ? null : JSON.stringify(j[2]))),
        ],
      })
    ).rows[0] as Record<string, number>;
    for (const [k, n] of Object.entries(SETTLED))
      if (done[k] !== n) throw new Error(`settlement of ${hash}: ${k} changed ${done[k]} rows, not ${n}`);
    await pgAppend(c, {
      actor: { type: 'system', id: 'bench.settlement.raw' },
      action: 'tokens.invoice.settle',
      domain: 'tokens',
      entity: 'invoice',
      entityId: hash,
      change: { details: { seller: s.owner, buyer: inv.buyerAddress, quantity: quantity.toString(), total: total.toString() } },
    });
    await c.query('COMMIT');
    return true;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}
