// Payments and settlement. A payment transaction names an invoice matched on chain and must pay
// exactly quantity × price base units to its payment address (bigint end to end; no floats).
// It is recorded as pending under the block that saw it; once that block is final (tip -
// recorded + 1 ≥ the chain's required confirmations) the reservation settles: buyer credited,
// seller debited, invoice paid, all journaled under the recording block.
import { InvalidStateTransitionError } from '../../db/errors.js';
import type { Tx } from '../../db/tx.js';
import type { IngestedOutput } from '../chain/processors.js';
import type { BlockRef, JournaledWrite } from '../chain/undo.js';
import { forget, memoInvoice, memoLockedReservation, memoMint, memoPaymentOf, rememberPayment, type BlockMemo } from './block-memo.js';
import { requireState } from './escrow.js';
import { signatureStatus } from './invoices.js';
import { lockBalances, mustWriteAll, newEntryWrites, type LedgerWrite } from './ledger.js';
import type { OnChainAnchor } from './mints.js';
import type { Row } from './rows.js';
import { T } from './types.js';
import { invalid } from './validate.js';

export interface PaymentTx extends OnChainAnchor {
  invoiceHash: string;
  outputs: readonly IngestedOutput[];
}

export type PaymentPlan = { kind: 'pending'; reason: string } | { kind: 'replay' } | { kind: 'record'; amount: bigint };

/**
 * Checks a payment against its invoice without writing anything. Throws ValidationError when the
 * amount paid to the payment address is not exactly the invoice total, and
 * InvalidStateTransitionError when the invoice is already paid by another transaction or its
 * reservation is no longer active. Returns pending while the invoice is not matched on chain.
 */
export async function checkPayment(tx: Tx, chainId: string, p: PaymentTx, memo?: BlockMemo): Promise<PaymentPlan> {
  const inv = await memoInvoice(tx, memo, p.invoiceHash);
  if (!inv) return { kind: 'pending', reason: 'invoice not matched on chain yet' };
  if (inv.chain_id !== chainId) invalid('chainId', `invoice ${p.invoiceHash} is on chain ${String(inv.chain_id)}`);
  const prior = await memoPaymentOf(tx, memo, p.invoiceHash);
  if (prior !== undefined) {
    if (prior === p.txHash) return { kind: 'replay' };
    throw new InvalidStateTransitionError(`invoice ${p.invoiceHash} is already paid by ${prior}`, {
      field: 'invoiceHash',
      invoiceHash: p.invoiceHash,
    });
  }
  const total = inv.total_price as bigint;
  let paid = 0n;
  for (const o of p.outputs) if (o.address === inv.payment_address) paid += o.value;
  if (paid !== total) {
    invalid(
      'outputs',
      `pays ${paid} ${String(inv.price_unit)} to ${String(inv.payment_address)}; the invoice requires exactly ${total} (${String(inv.quantity)} × ${String(inv.price)})`,
      {
        paid,
        required: total,
      },
    );
  }
  // Lock the reservation: expiry checks for a payment only while holding this lock.
  requireState((await memoLockedReservation(tx, memo, p.invoiceHash))?.reservation, p.invoiceHash, 'reserved');
  return { kind: 'record', amount: total };
}

/**
 * Why a payment whose invoice is not matched on chain is rejected, given the state of the
 * invoice's reservation (null: none); undefined while it may still be matched. An invoice whose
 * reservation was released or expired is never matched (matchInvoice requires reserved), and
 * neither state ever returns to reserved: the payment can never be recorded. Worded as
 * checkPayment's rejection of a payment of a matched invoice whose reservation ended.
 */
export function unmatchablePayment(invoiceHash: string, reservationState: string | null): string | undefined {
  return reservationState === 'expired' || reservationState === 'released'
    ? `the reservation of invoice ${invoiceHash} is ${reservationState}, not reserved`
    : undefined;
}

/**
 * The journaled insert that records a checked payment as pending under `ref` (the block being
 * processed), for the block processor to run with the action's state change.
 */
export function paymentRecord(ref: BlockRef, p: PaymentTx, amount: bigint, memo?: BlockMemo): JournaledWrite {
  rememberPayment(memo, p.invoiceHash, p.txHash);
  return {
    insert: T.payments,
    row: {
      invoice_hash: p.invoiceHash,
      chain_id: ref.chainId,
      tx_hash: p.txHash,
      block_height: p.blockHeight,
      block_hash: p.blockHash,
      recorded_height: ref.height,
      recorded_block_hash: ref.blockHash,
      amount,
      state: 'pending',
    },
    keyColumns: ['invoice_hash'],
  };
}

/**
 * Settles a pending payment whose recording block is final; `p`: its decoded token_payments
 * row (the block processor's due read, processors.ts). False when its invoice still lacks
 * asset-manager signatures: it stays pending.
 */
export async function settlePayment(tx: Tx, p: Row, at: Date, memo?: BlockMemo): Promise<boolean> {
  const hash = p.invoice_hash as string;
  const ref: BlockRef = { chainId: p.chain_id as string, height: p.recorded_height as bigint, blockHash: p.recorded_block_hash as string };
  const inv = await memoInvoice(tx, memo, hash);
  if (!inv) throw new Error(`invoice ${hash} of a recorded payment is missing`);
  const mint = await memoMint(tx, memo, inv.mint_hash as string);
  if (!mint)
    throw new InvalidStateTransitionError(`mint ${String(inv.mint_hash)} of invoice ${hash} is not confirmed`, { invoiceHash: hash });
  // The match already required the signatures; checked again because settling without them is
  // the one thing that must never happen.
  if (!(await signatureStatus(tx, hash, mint)).satisfied) return false;
  // A recorded payment keeps its reservation from expiring, so anything but reserved here is a
  // broken invariant: fail the block rather than settle wrongly.
  const locked = await memoLockedReservation(tx, memo, hash);
  const r = requireState(locked?.reservation, hash, 'reserved');
  const quantity = r.quantity;
  const seller = inv.seller_address as string;
  const buyer = inv.buyer_address as string;
  const common = { chainId: ref.chainId, mintHash: r.mintHash, causeRef: hash, txHash: p.tx_hash as string, createdAt: at };
  // Both holders locked in one statement, in address order, so concurrent settlements cannot
  // deadlock on them; the entries then go in under those locks.
  const held = await lockBalances(tx, r.mintHash, [seller, buyer]);
  const debit: LedgerWrite = { ...common, causeKind: 'sale_debit', address: seller, delta: -quantity };
  const credit: LedgerWrite = { ...common, causeKind: 'sale_credit', address: buyer, delta: quantity };
  // The rows read above are the before images: the reservation is locked; the invoice and the
  // payment change only through their state columns (matched → paid, pending → settled), and
  // each UPDATE re-checks those and the anchor columns a re-match or re-recording would change
  // (the signed content is fixed by the hash that keys the row).
  forget(memo, hash);
  const transitions: JournaledWrite[] = [
    {
      update: T.reservations,
      key: { invoice_hash: hash },
      changes: { state: 'settled' },
      known: { before: locked!.row, guard: ['state'] },
    },
    {
      update: T.invoices,
      key: { hash },
      changes: { status: 'paid', paid_tx_hash: p.tx_hash, paid_height: p.block_height },
      known: { before: inv, guard: ['status', 'tx_hash', 'matched_block_hash', 'paid_tx_hash', 'paid_height'] },
    },
    {
      update: T.payments,
      key: { invoice_hash: hash },
      changes: { state: 'settled' },
      known: { before: p, guard: ['state', 'tx_hash', 'recorded_block_hash'] },
    },
  ];
  // Both entries, both balances and the three transitions in one round trip where the backend
  // can (seven statements otherwise): all are writes of distinct rows. A sale's entries are
  // written once, by the settlement that moves its payment out of pending, so they cannot exist
  // yet; if they did, mustWriteAll fails the block. The buyer never is the seller
  // (invoiceInputSchema), and newEntryWrites refuses two entries of one holder.
  const entries = newEntryWrites(ref, [
    { entry: debit, locked: held.get(seller) ?? null },
    { entry: credit, locked: held.get(buyer) ?? null },
  ]);
  await mustWriteAll(tx, ref, [...entries, ...transitions]);
  return true;
}
