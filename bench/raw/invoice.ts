// POST invoice through the raw drivers: what tokens(tx).createInvoice does in SQL, written by
// hand (lock the seller's balance row, sum its active reservations, insert the reservation
// and the unconfirmed invoice, one durable commit). Returns false when the balance does not
// cover the quantity.
import type { Raw } from '../lib/backends.js';
import { myAppend, pgAppend, sqliteAppend, type AppendInput } from './audit.js';
import { myTx, pgTx } from './tx.js';

export interface RawInvoice {
  hash: string;
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  buyerAddress: string;
  quantity: bigint;
  price: bigint;
  priceUnit: string;
  paymentAddress: string;
  publicKey: string;
  signature: string;
  createdAt: Date;
}

const RES_COLS = '(invoice_hash, chain_id, mint_hash, seller_address, quantity, state, expires_at, created_at)';
const INV_COLS =
  '(hash, chain_id, mint_hash, seller_address, buyer_address, quantity, price, price_unit, total_price, payment_address, public_key, signature, created_at, received_at)';
const TTL = 24 * 3600_000;

/** With `audit`, the audit entry is appended in the same transaction (as the service route does). */
export async function rawCreateInvoice(raw: Raw, v: RawInvoice, audit?: AppendInput): Promise<boolean> {
  const now = new Date();
  const expires = new Date(now.getTime() + TTL);
  const total = v.quantity * v.price;
  if (raw.kind === 'sqlite') {
    const db = raw.db;
    return db
      .transaction(() => {
        const bal = db
          .prepare('SELECT balance FROM token_balances WHERE mint_hash = ? AND address = ?')
          .pluck()
          .get(v.mintHash, v.sellerAddress) as number | undefined;
        const held = db
          .prepare(
            "SELECT coalesce(sum(quantity), 0) FROM token_reservations WHERE mint_hash = ? AND seller_address = ? AND state = 'reserved'",
          )
          .pluck()
          .get(v.mintHash, v.sellerAddress) as number;
        if (BigInt(bal ?? 0) - BigInt(held) < v.quantity) return false;
        db.prepare(`INSERT INTO token_reservations ${RES_COLS} VALUES (?, ?, ?, ?, ?, 'reserved', ?, ?)`).run(
          v.hash,
          v.chainId,
          v.mintHash,
          v.sellerAddress,
          v.quantity,
          expires.getTime(),
          now.getTime(),
        );
        db.prepare(`INSERT INTO token_unconfirmed_invoices ${INV_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
          v.hash,
          v.chainId,
          v.mintHash,
          v.sellerAddress,
          v.buyerAddress,
          v.quantity,
          v.price,
          v.priceUnit,
          total,
          v.paymentAddress,
          v.publicKey,
          v.signature,
          v.createdAt.getTime(),
          now.getTime(),
        );
        if (audit) sqliteAppend(db, audit);
        return true;
      })
      .immediate();
  }
  // A short balance commits nothing but the lock it took: COMMIT and ROLLBACK are the same there.
  if (raw.kind === 'postgres') {
    return pgTx(raw.pool, async (c) => {
      const b = await c.query({
        name: 'i_bal',
        text: 'SELECT balance FROM token_balances WHERE mint_hash = $1 AND address = $2 FOR UPDATE',
        values: [v.mintHash, v.sellerAddress],
      });
      const h = await c.query({
        name: 'i_held',
        text: "SELECT coalesce(sum(quantity), 0)::text AS n FROM token_reservations WHERE mint_hash = $1 AND seller_address = $2 AND state = 'reserved'",
        values: [v.mintHash, v.sellerAddress],
      });
      if (BigInt(b.rows[0]?.balance ?? 0) - BigInt(h.rows[0].n) < v.quantity) return false;
      await c.query({
        name: 'i_res',
        text: `INSERT INTO token_reservations ${RES_COLS} VALUES ($1, $2, $3, $4, $5, 'reserved', $6, $7)`,
        values: [v.hash, v.chainId, v.mintHash, v.sellerAddress, v.quantity.toString(), expires, now],
      });
      await c.query({
        name: 'i_inv',
        text: `INSERT INTO token_unconfirmed_invoices ${INV_COLS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
        values: [
          v.hash,
          v.chainId,
          v.mintHash,
          v.sellerAddress,
          v.buyerAddress,
          v.quantity.toString(),
          v.price.toString(),
          v.priceUnit,
          total.toString(),
          v.paymentAddress,
          v.publicKey,
          v.signature,
          v.createdAt,
          now,
        ],
      });
      if (audit) await pgAppend(c, audit);
      return true;
    });
  }
  return myTx(raw.pool, async (c) => {
    const [b] = await c.execute('SELECT balance FROM token_balances WHERE mint_hash = ? AND address = ? FOR UPDATE', [
      v.mintHash,
      v.sellerAddress,
    ]);
    const [h] = await c.execute(
      "SELECT CAST(coalesce(sum(quantity), 0) AS CHAR) AS n FROM token_reservations WHERE mint_hash = ? AND seller_address = ? AND state = 'reserved'",
      [v.mintHash, v.sellerAddress],
    );
    const bal = (b as { balance: string }[])[0]?.balance ?? '0';
    if (BigInt(bal) - BigInt((h as { n: string }[])[0]!.n) < v.quantity) return false;
    await c.execute(`INSERT INTO token_reservations ${RES_COLS} VALUES (?, ?, ?, ?, ?, 'reserved', ?, ?)`, [
      v.hash,
      v.chainId,
      v.mintHash,
      v.sellerAddress,
      v.quantity.toString(),
      expires,
      now,
    ]);
    await c.execute(`INSERT INTO token_unconfirmed_invoices ${INV_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
      v.hash,
      v.chainId,
      v.mintHash,
      v.sellerAddress,
      v.buyerAddress,
      v.quantity.toString(),
      v.price.toString(),
      v.priceUnit,
      total.toString(),
      v.paymentAddress,
      v.publicKey,
      v.signature,
      v.createdAt,
      now,
    ]);
    if (audit) await myAppend(c, audit);
    return true;
  });
}
