// Invoices: a seller's signed request that a buyer pay quantity × price (integer base units) for
// fractions of a mint. Creating one reserves the seller's tokens in the same transaction, or
// fails with nothing written; an on-chain invoice transaction then matches it; asset-manager
// signatures gate the match when the mint requires them.
import { sql } from 'kysely';
import { toBigInt } from '../../db/codec.js';
import { InvalidStateTransitionError } from '../../db/errors.js';
import { defineQuery, type PreparedQuery } from '../../db/prepared.js';
import type { Tx } from '../../db/tx.js';
import type { BlockRef } from '../chain/undo.js';
import { memoInvoice, memoLockedReservation, rememberInvoice, type BlockMemo } from './block-memo.js';
import { getReservation, endReservation, reserve } from './escrow.js';
import { lockBalance } from './ledger.js';
import { anchorColumns, getConfirmedMint, type MatchOutcome, type OnChainAnchor } from './mints.js';
import { decode, readEither, toInvoice, toMint, type Ctx, type Row } from './rows.js';
import { T, type Invoice, type InvoiceInput, type Mint, type Reservation, type SignatureStatus } from './types.js';
import { invalid, invoiceHash, invoiceInputSchema, parse, signatureInputSchema, ttlSchema } from './validate.js';

export const DEFAULT_INVOICE_TTL_MS = 24 * 3600_000;

export interface CreateInvoiceOptions {
  /** How long the reservation holds if the invoice is not paid (default 24 h). */
  ttlMs?: number;
}

export interface CreateInvoiceResult {
  hash: string;
  /** False when the invoice was already known (a replay): nothing was written. */
  created: boolean;
  invoice: Invoice;
}

// On every invoice created: the seller's reserved sum, the invoice's own reservation if one
// exists (a replay) and the confirmed mint, in one round trip; each part reads one index. The
// mint part carries its fraction count in `n` and its chain in `state`.
const INVOICE_CONTEXT = defineQuery('tokens.invoiceContext', (db, $) =>
  db
    .selectFrom(T.reservations)
    .select((eb) => [sql<number>`0`.as('part'), eb.fn.sum<string>('quantity').as('n'), sql<string | null>`null`.as('state')])
    .where('mint_hash', '=', $(0))
    .where('seller_address', '=', $(1))
    .where('state', '=', $(2))
    .unionAll(
      db
        .selectFrom(T.reservations)
        .select([sql<number>`1`.as('part'), 'quantity as n', 'state'])
        .where('invoice_hash', '=', $(3)),
    )
    .unionAll(
      db
        .selectFrom(T.mints)
        .select([sql<number>`2`.as('part'), 'fraction_count as n', 'chain_id as state'])
        .where('hash', '=', $(0)),
    ),
);

/**
 * Tokens held by active reservations of a seller, the state of the reservation of
 * `invoiceHash` if it has one (one reservation per invoice hash, ever), and the confirmed mint
 * (absent: not confirmed). Read under the seller's balance lock, the sum includes every
 * reservation committed before.
 */
async function invoiceContext(
  tx: Tx,
  mintHash: string,
  seller: string,
  invoiceHash: string,
): Promise<{ reserved: bigint; own?: string; mint?: { chainId: string; fractionCount: bigint } }> {
  const rows = await tx.query(INVOICE_CONTEXT, [mintHash, seller, 'reserved', invoiceHash]);
  const out: { reserved: bigint; own?: string; mint?: { chainId: string; fractionCount: bigint } } = { reserved: 0n };
  for (const r of rows) {
    const part = Number(r.part);
    if (part === 0) out.reserved = toBigInt(r.n);
    else if (part === 1) out.own = String(r.state);
    else out.mint = { chainId: String(r.state), fractionCount: toBigInt(r.n) };
  }
  return out;
}

/**
 * Stores an invoice and reserves the seller's tokens, in one transaction: if the available
 * balance does not cover the quantity it throws InsufficientBalanceError and writes nothing.
 * Submitting the same invoice again returns it unchanged.
 */
export async function createInvoice(ctx: Ctx, input: InvoiceInput, opts: CreateInvoiceOptions = {}): Promise<CreateInvoiceResult> {
  const { tx } = ctx;
  tx.assertWritable('tokens.createInvoice');
  const v = parse(invoiceInputSchema, input);
  const ttl = parse(ttlSchema, opts.ttlMs ?? DEFAULT_INVOICE_TTL_MS, 'ttlMs');
  const hash = invoiceHash(v);
  if (!ctx.verify(v.publicKey, hash, v.signature)) invalid('signature', `does not verify against publicKey over the invoice hash ${hash}`);
  // Lock the seller's balance row before looking for the invoice: a concurrent submission of
  // the same invoice then waits here and finds ours instead of reserving twice.
  const locked = await lockBalance(tx, v.mintHash, v.sellerAddress);
  // Every invoice row (unconfirmed or matched) was created together with its reservation, and
  // reservations are records that are never deleted, so no reservation means no invoice: the
  // common case (a new invoice) costs one lookup instead of four. That lookup, the seller's
  // reserved sum and the mint are one statement, after the lock (the sum must see every
  // reservation committed before it); nothing is written before the mint is checked.
  const { mint, reserved, own } = await invoiceContext(tx, v.mintHash, v.sellerAddress, hash);
  if (!mint) invalid('mintHash', `unknown mint ${v.mintHash} (not confirmed on chain)`);
  if (mint.chainId !== v.chainId) invalid('chainId', `mint ${v.mintHash} is on chain ${mint.chainId}`);
  if (v.quantity > mint.fractionCount) invalid('quantity', `exceeds the mint's fraction count ${mint.fractionCount}`);
  if (own !== undefined) {
    const existing = await getInvoice(tx, hash);
    if (existing) return { hash, created: false, invoice: existing };
    // One reservation per invoice hash, ever: an invoice released or expired (and trimmed) is
    // not revived by resubmitting it; the seller signs a new one.
    throw new InvalidStateTransitionError(`invoice ${hash} was ${own}; create a new invoice`, {
      field: 'createdAt',
      invoiceHash: hash,
      state: own,
    });
  }

  const now = ctx.now();
  const row = {
    hash,
    chain_id: v.chainId,
    mint_hash: v.mintHash,
    seller_address: v.sellerAddress,
    buyer_address: v.buyerAddress,
    quantity: v.quantity,
    price: v.price,
    price_unit: v.priceUnit,
    total_price: v.quantity * v.price,
    payment_address: v.paymentAddress,
    public_key: v.publicKey,
    signature: v.signature,
    created_at: v.createdAt,
    received_at: now,
  };
  // The reservation and the invoice content in one round trip where the backend can.
  const reservation = await reserve(
    tx,
    {
      invoiceHash: hash,
      chainId: v.chainId,
      mintHash: v.mintHash,
      sellerAddress: v.sellerAddress,
      quantity: v.quantity,
      expiresAt: new Date(now.getTime() + ttl),
      createdAt: now,
    },
    { locked: locked ?? null, reserved },
    [{ insert: T.unconfirmedInvoices, row }],
  );
  // The invoice as written (the codec's encode then decode, as a read back would give it).
  return { hash, created: true, invoice: toInvoice(tx, T.unconfirmedInvoices, tx.codec(T.unconfirmedInvoices).encode(row), reservation) };
}

/** An invoice by hash, on chain or not, with its reservation. */
export async function getInvoice(tx: Tx, hash: string): Promise<Invoice | undefined> {
  const reservation = (await getReservation(tx, hash)) ?? null;
  // Both invoice tables in one statement: a match (or a reorg) moving the invoice between two
  // reads would make both miss it (rows.ts, readEither).
  const r = await readEither(tx, T.invoices, T.unconfirmedInvoices, hash);
  return r ? toInvoice(tx, r.confirmed ? T.invoices : T.unconfirmedInvoices, r.row, reservation) : undefined;
}

export interface ListInvoicesOptions {
  chainId?: string;
  buyerAddress?: string;
  sellerAddress?: string;
  mintHash?: string;
  after?: string;
  limit?: number;
}

/** Invoices matched on chain, in hash order (keyset paging: pass the last hash as `after`). */
export async function listInvoices(tx: Tx, o: ListInvoicesOptions): Promise<Invoice[]> {
  let q = tx.db
    .selectFrom(T.invoices)
    .selectAll()
    .orderBy('hash')
    .limit(o.limit ?? 100);
  if (o.chainId !== undefined) q = q.where('chain_id', '=', o.chainId);
  if (o.buyerAddress !== undefined) q = q.where('buyer_address', '=', o.buyerAddress);
  if (o.sellerAddress !== undefined) q = q.where('seller_address', '=', o.sellerAddress);
  if (o.mintHash !== undefined) q = q.where('mint_hash', '=', o.mintHash);
  if (o.after !== undefined) q = q.where('hash', '>', o.after);
  const out: Invoice[] = [];
  for (const r of await q.execute()) out.push(toInvoice(tx, T.invoices, r, (await getReservation(tx, r.hash as string)) ?? null));
  return out;
}

// ---------------------------------------------------------------- asset-manager signatures

export interface AddSignatureInput {
  invoiceHash: string;
  publicKey: string;
  signature: string;
  createdAt?: Date;
}

/**
 * Records an asset manager's approval of an invoice: the key must be one of the mint's asset
 * managers and the signature must verify over the invoice hash. Unique per (invoice, key): a
 * replay is a no-op. An invoice whose reservation ended (released or expired) can never be
 * matched or settled, so it takes no signature: InvalidStateTransitionError naming
 * invoiceHash, nothing written.
 */
export async function addInvoiceSignature(ctx: Ctx, input: AddSignatureInput): Promise<{ created: boolean; status: SignatureStatus }> {
  const { tx } = ctx;
  tx.assertWritable('tokens.addInvoiceSignature');
  const v = parse(signatureInputSchema, input);
  // Lock the reservation first, as release and retention do before they end it and drop the
  // invoice's signatures: a release in flight makes us wait, and we then see it released
  // instead of inserting a signature of an invoice that no longer exists. (Read without the
  // lock, a signature committed during a release was left orphaned, reported created.)
  const reservation = await getReservation(tx, v.invoiceHash, { lock: true });
  // Every invoice was created with its reservation, and reservations are never deleted.
  if (!reservation) invalid('invoiceHash', `unknown invoice ${v.invoiceHash}`);
  requireLive(reservation);
  // While the reservation is reserved (invoice open or matched) or settled (paid), the invoice
  // exists: only ending the reservation (release, retention) removes it, under this lock, and
  // a reorg moves it between its two tables, never out of both.
  const mint = await getConfirmedMint(tx, reservation.mintHash);
  if (!mint) invalid('invoiceHash', `the invoice's mint ${reservation.mintHash} is not confirmed`);
  if (!mint.assetManagers.some((m) => m.publicKey === v.publicKey)) invalid('publicKey', 'is not an asset manager of the mint');
  if (!ctx.verify(v.publicKey, v.invoiceHash, v.signature)) invalid('signature', 'does not verify against publicKey over the invoice hash');
  const created = await tx.insertOrIgnore(
    T.signatures,
    { invoice_hash: v.invoiceHash, public_key: v.publicKey, signature: v.signature, created_at: v.createdAt ?? ctx.now() },
    ['invoice_hash', 'public_key'],
  );
  return { created, status: await signatureStatus(tx, v.invoiceHash, mint) };
}

/** Refuses a signature of an invoice whose reservation ended (released or expired): it can never match or settle. */
function requireLive(r: Reservation): void {
  if (r.state === 'released' || r.state === 'expired')
    throw new InvalidStateTransitionError(
      `the reservation of invoice ${r.invoiceHash} is ${r.state}: the invoice takes no more signatures`,
      {
        field: 'invoiceHash',
        invoiceHash: r.invoiceHash,
        state: r.state,
      },
    );
}

/** Whether an invoice has the asset-manager signatures its mint's rule (none, all, one, min N) asks for. */
export async function signatureStatus(tx: Tx, invoiceHash: string, mint: Mint): Promise<SignatureStatus> {
  const managers = new Set(mint.assetManagers.map((m) => m.publicKey));
  const required =
    mint.signatureRule === 'none'
      ? 0
      : mint.signatureRule === 'all'
        ? managers.size
        : mint.signatureRule === 'one'
          ? 1
          : (mint.minSignatures ?? managers.size);
  if (required === 0) return { rule: mint.signatureRule, required, present: 0, satisfied: true };
  const rows = await tx.db.selectFrom(T.signatures).select('public_key').where('invoice_hash', '=', invoiceHash).execute();
  // Only keys that are managers count (the list is fixed by the mint's hash, so this is stable).
  const present = rows.filter((r) => managers.has(r.public_key as string)).length;
  return { rule: mint.signatureRule, required, present, satisfied: present >= required };
}

// ---------------------------------------------------------------- release

/**
 * Cancels an unconfirmed invoice: its reservation reserved → released and the invoice (with its
 * signatures) removed. An invoice already matched on chain cannot be cancelled, only expire.
 */
export async function releaseInvoice(ctx: Ctx, hash: string): Promise<void> {
  const { tx } = ctx;
  tx.assertWritable('tokens.releaseInvoice');
  // Lock first: the block processor locks the reservation before matching, so after this the
  // "not on chain" check below cannot be overtaken.
  const r = await getReservation(tx, hash, { lock: true });
  if (!r) invalid('invoiceHash', `unknown invoice ${hash}`);
  const onChain = await tx.db.selectFrom(T.invoices).select('hash').where('hash', '=', hash).executeTakeFirst();
  if (onChain)
    throw new InvalidStateTransitionError(`invoice ${hash} is matched on chain and cannot be released`, {
      field: 'invoiceHash',
      invoiceHash: hash,
    });
  if (!(await endReservation(tx, hash, 'released'))) {
    throw new InvalidStateTransitionError(`the reservation of invoice ${hash} is ${r.state}, not reserved`, {
      field: 'invoiceHash',
      invoiceHash: hash,
      state: r.state,
    });
  }
  await tx.db.deleteFrom(T.unconfirmedInvoices).where('hash', '=', hash).execute();
  await tx.db.deleteFrom(T.signatures).where('invoice_hash', '=', hash).execute();
}

// ---------------------------------------------------------------- block-derived (journaled)

// An unconfirmed invoice and its confirmed mint (if any), in one read on every match: the
// mint's columns prefixed, so they cannot collide with the invoice's. Compiled on first use
// (the column list comes from the table's definition), then once per dialect.
const MINT_PREFIX = 'mint__';
let unconfirmedWithMintQuery: PreparedQuery | undefined;
function unconfirmedWithMint(tx: Tx): PreparedQuery {
  if (unconfirmedWithMintQuery) return unconfirmedWithMintQuery;
  const mintColumns = tx.codec(T.mints).table.columns.map((c) => c.name);
  return (unconfirmedWithMintQuery = defineQuery('tokens.unconfirmedInvoiceWithMint', (db, $) =>
    db
      .selectFrom(`${T.unconfirmedInvoices} as i`)
      .leftJoin(`${T.mints} as m`, 'm.hash', 'i.mint_hash')
      .selectAll('i')
      .select(mintColumns.map((c) => `m.${c} as ${MINT_PREFIX}${c}`))
      .where('i.hash', '=', $(0)),
  ));
}

/**
 * Matches an on-chain invoice transaction with the unconfirmed invoice of the same hash: it moves
 * to token_invoices (status matched), journaled under `ref`. Its reservation must still be
 * active, and the mint's asset-manager signatures present; until they are, the action stays
 * pending and is retried with later blocks. The move is returned as the outcome's writes, which
 * the block processor runs with the action's state change.
 */
export async function matchInvoice(tx: Tx, ref: BlockRef, hash: string, anchor: OnChainAnchor, memo?: BlockMemo): Promise<MatchOutcome> {
  // The unconfirmed row first: a first match (the common case) finds it and need not read the
  // matched table. An invoice is never in both: its content is inserted once, with its
  // reservation (one per hash, ever), and the match moves it in one transaction (a reorg moves
  // it back); token_invoices' primary key would refuse a second match.
  const [raw] = memo?.invoices.has(hash) ? [] : await tx.query(unconfirmedWithMint(tx), [hash]);
  if (!raw) {
    const confirmed = await memoInvoice(tx, memo, hash);
    if (!confirmed) return { outcome: 'pending', reason: 'invoice content not received yet' };
    // The chain first: another chain's transaction reusing the matching transaction's hash is
    // not that transaction (rejected as below for an unconfirmed invoice).
    if (confirmed.chain_id !== ref.chainId) return { outcome: 'rejected', reason: `invoice is for chain ${String(confirmed.chain_id)}` };
    return confirmed.tx_hash === anchor.txHash
      ? { outcome: 'applied' }
      : { outcome: 'rejected', reason: 'invoice already matched by another transaction' };
  }
  const own: Row = {};
  const ofMint: Row = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k.startsWith(MINT_PREFIX)) ofMint[k.slice(MINT_PREFIX.length)] = v;
    else own[k] = v;
  }
  const row = decode(tx, T.unconfirmedInvoices, own);
  // A mint is confirmed once and its content is fixed by its hash: the block's later steps
  // (the settlement) take it from the memo.
  const mint = ofMint.hash == null ? undefined : toMint(tx, T.mints, ofMint);
  if (mint) memo?.mints.set(mint.hash, mint);
  if (row.chain_id !== ref.chainId) return { outcome: 'rejected', reason: `invoice is for chain ${String(row.chain_id)}` };
  // Lock the reservation: expiry and release lock it too, so it cannot end under us.
  const reservation = (await memoLockedReservation(tx, memo, hash))?.reservation;
  if (!reservation || reservation.state !== 'reserved')
    return { outcome: 'rejected', reason: `reservation is ${reservation?.state ?? 'missing'}` };
  if (!mint) return { outcome: 'rejected', reason: 'mint not confirmed' };
  const sigs = await signatureStatus(tx, hash, mint);
  if (!sigs.satisfied) return { outcome: 'pending', reason: `asset-manager signatures ${sigs.present}/${sigs.required}` };
  const matched = {
    ...row,
    ...anchorColumns(anchor, ref),
    status: 'matched',
    paid_tx_hash: null,
    paid_height: null,
  };
  rememberInvoice(tx, memo, matched);
  // The row read above is the before image: unconfirmed invoices are never updated, only
  // inserted and deleted, so while it exists it is exactly what was read.
  return {
    outcome: 'applied',
    writes: [
      { delete: T.unconfirmedInvoices, key: { hash }, known: { before: row } },
      { insert: T.invoices, row: matched, keyColumns: ['hash'] },
    ],
  };
}
