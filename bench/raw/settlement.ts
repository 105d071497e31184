// Workload 2's settlement written by hand with each raw driver: the same work as the Coffer
// side (create the invoice and reserve the seller's tokens; record the block's invoice and
// payment actions, match the invoice, record the payment, settle it with two ledger entries and
// both balances; journal every block-derived change for reorgs; one hash-chained audit entry),
// the same durable commit, in the fewest round trips a careful engineer would use. PostgreSQL:
// named statements, and data-modifying CTEs that do one step's writes in one statement (11
// round trips, BEGIN and COMMIT included). MySQL has no DML in CTEs: one prepared statement per
// step (23). SQLite: the same statements, prepared, in one IMMEDIATE transaction.
//
// It answers how much of the gap to the two-row transfer is the work itself and how much is
// Coffer. Its journal holds each row's first change in the block only (10 rows; a row inserted
// by the block is deleted by the revert, so its later changes need no image).
import { randomBytes } from 'node:crypto';
import type mysql from 'mysql2/promise';
import type pg from 'pg';
import { invoiceHash } from '../../src/domains/tokens/index.js';
import { myAppend, pgAppend, sqliteAppend, type AppendInput } from './audit.js';
import { myTx, pgTx } from './tx.js';

export interface RawSeller {
  mintHash: string;
  owner: string;
}

const hex = (n: number) => randomBytes(n).toString('hex');
const TTL = 24 * 3600_000;
const INV_COLS =
  'hash, chain_id, mint_hash, seller_address, buyer_address, quantity, price, price_unit, total_price, payment_address, public_key, signature, created_at, received_at';

// The seller's balance is locked first, and the reserved sum read by a second statement: under
// READ COMMITTED a statement's snapshot is taken when it starts, so a sum read in the locking
// statement itself misses a reservation committed while it waited for the lock (checked by hand:
// it returned 0 held after the other transaction had committed a reservation), and two
// concurrent invoices could over-reserve. Coffer reads it the same way (invoices.ts).
const LOCK_SELLER = `SELECT balance::text AS balance, updated_height::text AS updated_height FROM token_balances
WHERE mint_hash = $1 AND address = $2 FOR UPDATE`;

const HELD = `SELECT (SELECT coalesce(sum(r.quantity), 0) FROM token_reservations r
    WHERE r.mint_hash = $1 AND r.seller_address = $2 AND r.state = 'reserved')::text AS held,
  EXISTS (SELECT 1 FROM token_mints m WHERE m.hash = $1 AND m.chain_id = $3) AS mint_ok`;

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

/** A signed-invoice input for a settlement of `quantity` at `price` (the Coffer side's too; signatures are not checked). */
export function invoiceInput(chainId: string, s: RawSeller, quantity: bigint, price: bigint, publicKey: string, createdAt: Date) {
  return {
    chainId,
    mintHash: s.mintHash,
    sellerAddress: s.owner,
    buyerAddress: `DBuyer${hex(10)}`,
    quantity,
    price,
    priceUnit: 'koinu',
    paymentAddress: `DPay${hex(8)}`,
    publicKey,
    signature: 'ab'.repeat(64),
    createdAt,
  };
}

/** One settlement's values: the invoice, and the block holding its invoice and payment actions. */
function newCase(chainId: string, s: RawSeller, quantity: bigint, price: bigint) {
  const now = new Date();
  const total = quantity * price;
  const inv = invoiceInput(chainId, s, quantity, price, `02${hex(32)}`, now);
  height += 1n;
  return {
    chainId,
    s,
    quantity,
    total,
    inv,
    hash: invoiceHash(inv),
    now,
    expires: new Date(now.getTime() + TTL),
    height,
    blockHash: hex(32),
    invoiceTx: hex(32),
    paymentTx: hex(32),
    outputs: JSON.stringify([{ address: inv.paymentAddress, value: total.toString() }]),
  };
}
type Case = ReturnType<typeof newCase>;

type Balance = { balance: unknown; updated_height: unknown };

/** The block's journal: each row's first change (table, key, image before; null: the block inserted it). */
function journalOf(k: Case, unconfirmed: object, buyer: Balance | undefined, seller: Balance): [string, object, object | null][] {
  const { chainId, hash, s } = k;
  const balance = (address: string, b: Balance) => ({
    mint_hash: s.mintHash,
    address,
    chain_id: chainId,
    balance: b.balance,
    updated_height: b.updated_height,
  });
  return [
    ['token_onchain_actions', { chain_id: chainId, tx_hash: k.invoiceTx }, null],
    ['token_onchain_actions', { chain_id: chainId, tx_hash: k.paymentTx }, null],
    ['token_unconfirmed_invoices', { hash }, unconfirmed],
    ['token_invoices', { hash }, null],
    ['token_payments', { invoice_hash: hash }, null],
    ['token_ledger', { cause_kind: 'sale_credit', cause_ref: hash }, null],
    ['token_ledger', { cause_kind: 'sale_debit', cause_ref: hash }, null],
    ['token_balances', { mint_hash: s.mintHash, address: k.inv.buyerAddress }, buyer ? balance(k.inv.buyerAddress, buyer) : null],
    ['token_balances', { mint_hash: s.mintHash, address: s.owner }, balance(s.owner, seller)],
    [
      'token_reservations',
      { invoice_hash: hash },
      {
        invoice_hash: hash,
        chain_id: chainId,
        mint_hash: s.mintHash,
        seller_address: s.owner,
        quantity: k.quantity.toString(),
        state: 'reserved',
        expires_at: k.expires.getTime(),
        created_at: k.now.getTime(),
      },
    ],
  ];
}
const JOURNAL_ROWS = 10;

const auditOf = (k: Case): AppendInput => ({
  actor: { type: 'system', id: 'bench.settlement.raw' },
  action: 'tokens.invoice.settle',
  domain: 'tokens',
  entity: 'invoice',
  entityId: k.hash,
  change: { details: { seller: k.s.owner, buyer: k.inv.buyerAddress, quantity: k.quantity.toString(), total: k.total.toString() } },
});

/** The unconfirmed invoice row's values, in INV_COLS order (dates and amounts as `date` and `amount` map them). */
function invoiceValues<D, A>(k: Case, date: (d: Date) => D, amount: (n: bigint) => A): unknown[] {
  const v = k.inv;
  return [
    k.hash,
    k.chainId,
    v.mintHash,
    v.sellerAddress,
    v.buyerAddress,
    amount(v.quantity),
    amount(v.price),
    v.priceUnit,
    amount(k.total),
    v.paymentAddress,
    v.publicKey,
    v.signature,
    date(v.createdAt),
    date(k.now),
  ];
}

function check(k: Case, what: string, changed: number, n: number): void {
  if (changed !== n) throw new Error(`settlement of ${k.hash}: ${what} changed ${changed} rows, not ${n}`);
}

const str = (n: bigint) => n.toString();
const same = <T>(x: T) => x;

// ---------------------------------------------------------------- PostgreSQL

/** One settlement in its own durable transaction; false when the seller's free balance does not cover it. */
export async function rawSettlePg(pool: pg.Pool, chainId: string, s: RawSeller, quantity: bigint, price: bigint): Promise<boolean> {
  const k = newCase(chainId, s, quantity, price);
  const h = str(k.height);
  // A short balance commits nothing but the lock it took: COMMIT and ROLLBACK are the same there.
  return pgTx(pool, async (c) => {
    const seller = (await c.query({ name: 'rs_lock', text: LOCK_SELLER, values: [s.mintHash, s.owner] })).rows[0];
    const free = (await c.query({ name: 'rs_held', text: HELD, values: [s.mintHash, s.owner, chainId] })).rows[0];
    if (!free?.mint_ok) throw new Error(`mint ${s.mintHash} is not confirmed on ${chainId}`);
    if (!seller || BigInt(seller.balance) - BigInt(free.held) < quantity) return false;
    await c.query({ name: 'rs_reserve', text: RESERVE, values: [...invoiceValues(k, same, str), k.expires] });
    // The block: its two actions, then the match, the payment and the settlement.
    const acts = await c.query({
      name: 'rs_actions',
      text: ACTIONS,
      values: [chainId, k.invoiceTx, k.paymentTx, k.hash, h, k.blockHash, k.outputs],
    });
    check(k, 'actions', acts.rowCount ?? 0, 2);
    const m = (
      await c.query({ name: 'rs_match', text: MATCH, values: [k.hash, k.invoiceTx, k.paymentTx, h, k.blockHash, chainId, str(k.total)] })
    ).rows[0];
    if (!m || m.i !== 1 || m.p !== 1 || m.a !== 2) throw new Error(`invoice ${k.hash} did not match`);
    const locked = (await c.query({ name: 'rs_lock_both', text: LOCK_BOTH, values: [s.mintHash, s.owner, k.inv.buyerAddress] }))
      .rows as (Balance & { address: string })[];
    const { i: _i, p: _p, a: _a, ...unconfirmed } = m;
    const journal = journalOf(
      k,
      unconfirmed,
      locked.find((r) => r.address === k.inv.buyerAddress),
      locked.find((r) => r.address === s.owner)!,
    );
    const done = (
      await c.query({
        name: 'rs_settle',
        text: SETTLE,
        values: [
          s.mintHash,
          chainId,
          s.owner,
          k.inv.buyerAddress,
          str(quantity),
          k.hash,
          k.paymentTx,
          h,
          k.blockHash,
          k.now,
          journal.map((j) => j[0]),
          journal.map((j) => JSON.stringify(j[1])),
          journal.map((j) => (j[2] === null ? null : JSON.stringify(j[2]))),
        ],
      })
    ).rows[0] as Record<string, number>;
    for (const [what, n] of Object.entries(SETTLED)) check(k, what, done[what]!, n);
    await pgAppend(c, auditOf(k));
    return true;
  });
}

// ---------------------------------------------------------------- SQLite (and memory://'s copy)

type Db = import('better-sqlite3').Database;

const ACTION_COLS =
  '(chain_id, tx_hash, action_type, action_version, ref_hash, block_height, block_hash, index_in_block, outputs, state, reason)';
const RES_COLS = '(invoice_hash, chain_id, mint_hash, seller_address, quantity, state, expires_at, created_at)';
const MATCHED_COLS = `(${INV_COLS}, tx_hash, block_height, block_hash, matched_height, matched_block_hash, status)`;
const PAYMENT_COLS = '(invoice_hash, chain_id, tx_hash, block_height, block_hash, recorded_height, recorded_block_hash, amount, state)';
const LEDGER_COLS = '(cause_kind, cause_ref, chain_id, mint_hash, address, delta, tx_hash, block_height, block_hash, created_at)';
const UNDO_COLS = '(chain_id, height, block_hash, table_name, row_key, before_image)';
const marks = (n: number) => `(${Array(n).fill('?').join(', ')})`;

// Statement texts shared by SQLite and MySQL (? placeholders; ON CONFLICT / ON DUPLICATE KEY differ).
const Q = {
  seller: 'SELECT balance, updated_height FROM token_balances WHERE mint_hash = ? AND address = ?',
  held: "SELECT CAST(coalesce(sum(quantity), 0) AS CHAR) AS held, EXISTS (SELECT 1 FROM token_mints WHERE hash = ? AND chain_id = ?) AS mint_ok FROM token_reservations WHERE mint_hash = ? AND seller_address = ? AND state = 'reserved'",
  reserve: `INSERT INTO token_reservations ${RES_COLS} VALUES (?, ?, ?, ?, ?, 'reserved', ?, ?)`,
  unconfirmed: `INSERT INTO token_unconfirmed_invoices (${INV_COLS}) VALUES ${marks(14)}`,
  actions: `INSERT INTO token_onchain_actions ${ACTION_COLS} VALUES (?, ?, 'invoice', 1, ?, ?, ?, 0, NULL, 'pending', NULL), (?, ?, 'payment', 1, ?, ?, ?, 1, ?, 'pending', NULL)`,
  unconfirmedRow: 'SELECT * FROM token_unconfirmed_invoices WHERE hash = ?',
  matched: `INSERT INTO token_invoices ${MATCHED_COLS} SELECT ${INV_COLS}, ?, ?, ?, ?, ?, 'matched' FROM token_unconfirmed_invoices WHERE hash = ?`,
  dropUnconfirmed: 'DELETE FROM token_unconfirmed_invoices WHERE hash = ?',
  payment: `INSERT INTO token_payments ${PAYMENT_COLS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
  applied: "UPDATE token_onchain_actions SET state = 'applied' WHERE chain_id = ? AND tx_hash IN (?, ?) AND state = 'pending'",
  ledger: `INSERT INTO token_ledger ${LEDGER_COLS} VALUES ('sale_credit', ?, ?, ?, ?, ?, ?, ?, ?, ?), ('sale_debit', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  credit: 'INSERT INTO token_balances (mint_hash, address, chain_id, balance, updated_height) VALUES (?, ?, ?, ?, ?)',
  debit: 'UPDATE token_balances SET balance = balance - ?, updated_height = ? WHERE mint_hash = ? AND address = ? AND balance >= ?',
  settleReservation: "UPDATE token_reservations SET state = 'settled' WHERE invoice_hash = ? AND state = 'reserved'",
  paid: "UPDATE token_invoices SET status = 'paid', paid_tx_hash = ?, paid_height = ? WHERE hash = ? AND status = 'matched'",
  settlePayment: "UPDATE token_payments SET state = 'settled' WHERE invoice_hash = ? AND state = 'pending'",
  journal: `INSERT INTO chain_undo ${UNDO_COLS} VALUES ${Array(JOURNAL_ROWS).fill(marks(6)).join(', ')}`,
};

/** Each step's arguments for the ? statements above (amounts and dates as the driver binds them). */
function argsOf<D, A>(k: Case, date: (d: Date) => D, amount: (n: bigint) => A) {
  const { chainId, hash, s } = k;
  const h = amount(k.height);
  const q = amount(k.quantity);
  const buyer = k.inv.buyerAddress;
  const ledger = (address: string, delta: bigint) => [
    hash,
    chainId,
    s.mintHash,
    address,
    amount(delta),
    k.paymentTx,
    h,
    k.blockHash,
    date(k.now),
  ];
  return {
    held: [s.mintHash, chainId, s.mintHash, s.owner],
    reserve: [hash, chainId, s.mintHash, s.owner, q, date(k.expires), date(k.now)],
    unconfirmed: invoiceValues(k, date, amount),
    actions: [chainId, k.invoiceTx, hash, h, k.blockHash, chainId, k.paymentTx, hash, h, k.blockHash, k.outputs],
    matched: [k.invoiceTx, h, k.blockHash, h, k.blockHash, hash],
    payment: [hash, chainId, k.paymentTx, h, k.blockHash, h, k.blockHash, amount(k.total)],
    applied: [chainId, k.invoiceTx, k.paymentTx],
    ledger: [...ledger(buyer, k.quantity), ...ledger(s.owner, -k.quantity)],
    credit: [s.mintHash, buyer, chainId, q, h],
    debit: [q, h, s.mintHash, s.owner, q],
    paid: [k.paymentTx, h, hash],
    journal: (rows: [string, object, object | null][]) =>
      rows.flatMap(([table, key, image]) => [
        chainId,
        h,
        k.blockHash,
        table,
        JSON.stringify(key),
        image === null ? null : JSON.stringify(image),
      ]),
  };
}

const ON_CONFLICT_CREDIT =
  ' ON CONFLICT (mint_hash, address) DO UPDATE SET balance = balance + excluded.balance, updated_height = excluded.updated_height';
const sqliteCache = new WeakMap<Db, Record<keyof typeof Q, import('better-sqlite3').Statement>>();

/** The same settlement on SQLite: one IMMEDIATE transaction of prepared statements. */
export function rawSettleSqlite(db: Db, chainId: string, s: RawSeller, quantity: bigint, price: bigint): boolean {
  let st = sqliteCache.get(db);
  if (!st) {
    const text = { ...Q, credit: Q.credit + ON_CONFLICT_CREDIT };
    st = Object.fromEntries(Object.entries(text).map(([n, t]) => [n, db.prepare(t)])) as Record<
      keyof typeof Q,
      import('better-sqlite3').Statement
    >;
    sqliteCache.set(db, st);
  }
  const k = newCase(chainId, s, quantity, price);
  const a = argsOf(k, (d) => d.getTime(), same);
  return db
    .transaction((): boolean => {
      const seller = st.seller.get(s.mintHash, s.owner) as Balance | undefined;
      const free = st.held.get(...a.held) as { held: string; mint_ok: number };
      if (!free.mint_ok) throw new Error(`mint ${s.mintHash} is not confirmed on ${chainId}`);
      if (!seller || BigInt(seller.balance as number) - BigInt(free.held) < quantity) return false;
      st.reserve.run(...a.reserve);
      st.unconfirmed.run(...a.unconfirmed);
      // The block: its two actions, then the match, the payment and the settlement.
      check(k, 'actions', st.actions.run(...a.actions).changes, 2);
      const unconfirmed = st.unconfirmedRow.get(k.hash) as object;
      check(k, 'invoice', st.matched.run(...a.matched).changes, 1);
      st.dropUnconfirmed.run(k.hash);
      st.payment.run(...a.payment);
      check(k, 'actions', st.applied.run(...a.applied).changes, 2);
      const buyer = st.seller.get(s.mintHash, k.inv.buyerAddress) as Balance | undefined;
      st.ledger.run(...a.ledger);
      st.credit.run(...a.credit);
      check(k, 'seller balance', st.debit.run(...a.debit).changes, 1);
      check(k, 'reservation', st.settleReservation.run(k.hash).changes, 1);
      check(k, 'invoice', st.paid.run(...a.paid).changes, 1);
      check(k, 'payment', st.settlePayment.run(k.hash).changes, 1);
      st.journal.run(...a.journal(journalOf(k, unconfirmed, buyer, seller)));
      sqliteAppend(db, auditOf(k));
      return true;
    })
    .immediate();
}

// ---------------------------------------------------------------- MySQL / MariaDB

const ON_DUPLICATE_CREDIT = ' ON DUPLICATE KEY UPDATE balance = balance + VALUES(balance), updated_height = VALUES(updated_height)';

/** The same settlement on MySQL (no data-modifying CTEs: one prepared statement per step). */
export async function rawSettleMysql(pool: mysql.Pool, chainId: string, s: RawSeller, quantity: bigint, price: bigint): Promise<boolean> {
  const k = newCase(chainId, s, quantity, price);
  const a = argsOf(k, same, str);
  return myTx(pool, async (c) => {
    const exec = async (sql: string, args: unknown[] = []) => (await c.execute(sql, args as never[]))[0];
    const changed = async (sql: string, args: unknown[]) => ((await exec(sql, args)) as { affectedRows: number }).affectedRows;
    const seller = ((await exec(`${Q.seller} FOR UPDATE`, [s.mintHash, s.owner])) as Balance[])[0];
    const free = ((await exec(Q.held, a.held)) as { held: string; mint_ok: number }[])[0]!;
    if (!free.mint_ok) throw new Error(`mint ${s.mintHash} is not confirmed on ${chainId}`);
    if (!seller || BigInt(seller.balance as string) - BigInt(free.held) < quantity) return false;
    await exec(Q.reserve, a.reserve);
    await exec(Q.unconfirmed, a.unconfirmed);
    // The block: its two actions, then the match, the payment and the settlement.
    check(k, 'actions', await changed(Q.actions, a.actions), 2);
    const unconfirmed = ((await exec(Q.unconfirmedRow, [k.hash])) as object[])[0]!;
    check(k, 'invoice', await changed(Q.matched, a.matched), 1);
    await exec(Q.dropUnconfirmed, [k.hash]);
    await exec(Q.payment, a.payment);
    check(k, 'actions', await changed(Q.applied, a.applied), 2);
    const buyer = ((await exec(`${Q.seller} FOR UPDATE`, [s.mintHash, k.inv.buyerAddress])) as Balance[])[0];
    await exec(Q.ledger, a.ledger);
    await exec(Q.credit + ON_DUPLICATE_CREDIT, a.credit);
    check(k, 'seller balance', await changed(Q.debit, a.debit), 1);
    check(k, 'reservation', await changed(Q.settleReservation, [k.hash]), 1);
    check(k, 'invoice', await changed(Q.paid, a.paid), 1);
    check(k, 'payment', await changed(Q.settlePayment, [k.hash]), 1);
    await exec(Q.journal, a.journal(journalOf(k, unconfirmed, buyer, seller)));
    await myAppend(c, auditOf(k));
    return true;
  });
}
