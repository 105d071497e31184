// Rows one block's processing has already read, locked or written, so that its later steps do
// not read them again: an invoice matched and paid in the same block was read three times, its
// reservation locked three times and its mint read twice (a settlement is bound by its
// statement count). Valid for one processBlock call, in its transaction, because each entry
// stays exactly what the database holds until the block changes it:
// - reservations: locked (FOR UPDATE) by this transaction, so nobody else changes them;
// - invoices (matched, token_invoices): written only by block processing of their chain, which
//   the chain's ingest lock serialises, and their content is fixed by the hash that keys them;
// - mints (confirmed): their content is fixed by their hash;
// - payments of invoices this block matched: a payment is recorded only against a matched
//   invoice, so an invoice matched by this block has no payment but those this block recorded
//   (a reorg reverts a payment together with, or before, the match it needed). The payments'
//   primary key (invoice_hash) would refuse a second one anyway;
// - payments this block recorded, of any invoice: the processor writes a pass's changes
//   together at its end (processors.ts, PassWrites), so until then only the memo has them.
// A step that changes a reservation or an invoice forgets it (forget()), so the next reader
// goes back to the database. The guarded updates (mustUpdate, mustWriteAll) still re-check every guard
// column in the database, so even a stale entry could not write a wrong before image.
import type { Tx } from '../../db/tx.js';
import { getReservationRow } from './escrow.js';
import { getConfirmedMint } from './mints.js';
import { asRead, decode, type Row } from './rows.js';
import { T, type Mint, type Reservation } from './types.js';

export interface BlockMemo {
  readonly invoices: Map<string, Row>;
  readonly reservations: Map<string, { reservation: Reservation; row: Row }>;
  readonly mints: Map<string, Mint>;
  /** Invoices this block matched. */
  readonly matched: Set<string>;
  /** Payments this block recorded: invoice hash → payment transaction. */
  readonly paid: Map<string, string>;
}

export function newBlockMemo(): BlockMemo {
  return { invoices: new Map(), reservations: new Map(), mints: new Map(), matched: new Set(), paid: new Map() };
}

/** A confirmed mint, from the memo or the database (remembered when found). */
export async function memoMint(tx: Tx, memo: BlockMemo | undefined, hash: string): Promise<Mint | undefined> {
  const known = memo?.mints.get(hash);
  if (known) return known;
  const m = await getConfirmedMint(tx, hash);
  if (m) memo?.mints.set(hash, m);
  return m;
}

/** The invoice's reservation, locked by this transaction, and its decoded row (the before image). */
export async function memoLockedReservation(
  tx: Tx,
  memo: BlockMemo | undefined,
  invoiceHash: string,
): Promise<{ reservation: Reservation; row: Row } | undefined> {
  const known = memo?.reservations.get(invoiceHash);
  if (known) return known;
  const r = await getReservationRow(tx, invoiceHash, { lock: true });
  if (r) memo?.reservations.set(invoiceHash, r);
  return r;
}

/** A matched invoice's decoded token_invoices row, from the memo or the database. */
export async function memoInvoice(tx: Tx, memo: BlockMemo | undefined, hash: string): Promise<Row | undefined> {
  const known = memo?.invoices.get(hash);
  if (known) return known;
  const [raw] = await tx.selectWhere(T.invoices, { hash });
  if (!raw) return undefined;
  const row = decode(tx, T.invoices, raw);
  memo?.invoices.set(hash, row);
  return row;
}

/** Remembers a token_invoices row this block just inserted, as a read of it would return it. */
export function rememberInvoice(tx: Tx, memo: BlockMemo | undefined, written: Row): void {
  if (!memo) return;
  memo.invoices.set(written.hash as string, asRead(tx, T.invoices, written));
  memo.matched.add(written.hash as string);
}

/**
 * The transaction that paid an invoice, if a payment is recorded: without a statement for an
 * invoice this block matched or paid (see above).
 */
export async function memoPaymentOf(tx: Tx, memo: BlockMemo | undefined, invoiceHash: string): Promise<string | undefined> {
  // A payment this block recorded may not be written yet (the processor writes a pass's
  // changes together): the memo has it whatever block matched the invoice.
  const paid = memo?.paid.get(invoiceHash);
  if (paid !== undefined || memo?.matched.has(invoiceHash)) return paid;
  const [prior] = await tx.selectWhere(T.payments, { invoice_hash: invoiceHash });
  return prior ? String(decode(tx, T.payments, prior).tx_hash) : undefined;
}

/** Remembers a payment this block recorded. */
export function rememberPayment(memo: BlockMemo | undefined, invoiceHash: string, txHash: string): void {
  memo?.paid.set(invoiceHash, txHash);
}

/** Forgets the invoice and reservation of `invoiceHash` after a step changed them. */
export function forget(memo: BlockMemo | undefined, invoiceHash: string): void {
  memo?.invoices.delete(invoiceHash);
  memo?.reservations.delete(invoiceHash);
}
