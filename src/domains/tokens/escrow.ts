// Escrow: one reservation per invoice, with an explicit state (reserved → settled | released |
// expired) and an expiry. Reserving locks the seller's balance row first, so two invoices
// racing for the same tokens serialise on it and the second sees the first's reservation: the
// database, not a read-then-write in the application, decides which one reserves.
//
// Who writes a reservation: the API creates it and ends it (release, expiry); a block only
// settles it (reserved → settled, journaled). A settled reservation is never touched again and
// expiry skips a reservation with a recorded payment, so the two writers never overwrite each
// other's change and a reorg's before-image restore is always exact.
import { InvalidStateTransitionError } from '../../db/errors.js';
import type { RowWrite, Tx } from '../../db/tx.js';
import { InsufficientBalanceError } from './errors.js';
import type { lockBalance } from './ledger.js';
import { enc, toReservation } from './rows.js';
import { T, type Reservation } from './types.js';

export interface ReserveRequest {
  invoiceHash: string;
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  quantity: bigint;
  expiresAt: Date;
  createdAt: Date;
}

/**
 * Reserves `quantity` of the seller's tokens for an invoice if the available balance covers it;
 * otherwise throws InsufficientBalanceError before writing anything. `alongside`: writes of
 * other rows that go with the reservation, in the same round trip where the backend can
 * (tx.writeAll). `held` is what the caller
 * read while holding the seller's balance lock in this transaction: the balance as lockBalance
 * returned it (null: no row) and the tokens its active reservations hold (reservedOf). Every
 * other reserver of these tokens holds or waits for the same lock, so that sum includes every
 * reservation committed before ours.
 */
export async function reserve(
  tx: Tx,
  r: ReserveRequest,
  held: { locked: Awaited<ReturnType<typeof lockBalance>> | null; reserved: bigint },
  alongside: readonly RowWrite[] = [],
): Promise<Reservation> {
  const { locked } = held;
  const reserved = locked ? held.reserved : 0n;
  const available = (locked?.balance ?? 0n) - reserved;
  if (available < r.quantity) {
    throw new InsufficientBalanceError(
      `seller ${r.sellerAddress} has ${available} available of mint ${r.mintHash}, ${r.quantity} requested`,
      {
        requested: r.quantity,
        available,
        mintHash: r.mintHash,
        address: r.sellerAddress,
      },
    );
  }
  const row = {
    invoice_hash: r.invoiceHash,
    chain_id: r.chainId,
    mint_hash: r.mintHash,
    seller_address: r.sellerAddress,
    quantity: r.quantity,
    state: 'reserved',
    expires_at: r.expiresAt,
    created_at: r.createdAt,
  };
  await tx.writeAll([{ insert: T.reservations, row }, ...alongside]);
  return toReservation(tx, tx.codec(T.reservations).encode(row));
}

export async function getReservation(tx: Tx, invoiceHash: string, opts: { lock?: boolean } = {}): Promise<Reservation | undefined> {
  return (await getReservationRow(tx, invoiceHash, opts))?.reservation;
}

/** The reservation and its decoded row (a before image while the lock is held). */
export async function getReservationRow(
  tx: Tx,
  invoiceHash: string,
  opts: { lock?: boolean } = {},
): Promise<{ reservation: Reservation; row: Record<string, unknown> } | undefined> {
  const [raw] = await tx.selectWhere(T.reservations, { invoice_hash: invoiceHash }, opts);
  return raw ? { reservation: toReservation(tx, raw), row: tx.codec(T.reservations).decode(raw as Record<string, unknown>) } : undefined;
}

/**
 * reserved → released | expired, conditional on the row still being reserved. Returns whether
 * it changed; the caller decides whether a lost race is an error.
 */
export async function endReservation(tx: Tx, invoiceHash: string, to: 'released' | 'expired'): Promise<boolean> {
  const r = await tx.db
    .updateTable(T.reservations)
    .set({ state: to })
    .where('invoice_hash', '=', invoiceHash)
    .where('state', '=', 'reserved')
    .executeTakeFirst();
  return Number(r.numUpdatedRows ?? 0n) === 1;
}

export async function hasPayment(tx: Tx, invoiceHash: string): Promise<boolean> {
  return (
    (await tx.db.selectFrom(T.payments).select('invoice_hash').where('invoice_hash', '=', invoiceHash).executeTakeFirst()) !== undefined
  );
}

/**
 * Expires reservations past their expiry whose invoice was never paid, whether the invoice is
 * still unconfirmed or already matched on chain. A reservation with a payment seen on chain
 * (waiting for confirmations) is kept. Candidates are claimed with SKIP LOCKED, so concurrent
 * expiry workers share the work instead of queueing. Returns the invoice hashes expired.
 */
export async function expireReservations(tx: Tx, now: Date, limit: number): Promise<string[]> {
  // Reservations with a payment are left out by the claim itself, not skipped after it: they
  // stay reserved past their expiry until the payment settles, so taking the oldest `limit`
  // and then skipping them would pick the same ones on every run, and a worker would make no
  // progress once `limit` of them exist. (PostgreSQL locks only the reservation rows: FOR
  // UPDATE does not reach into a subquery.)
  const candidates = await tx
    .lockRows(
      tx.db
        .selectFrom(`${T.reservations} as r`)
        .select('r.invoice_hash')
        .where('r.state', '=', 'reserved')
        .where('r.expires_at', '<=', enc(tx, T.reservations, 'expires_at', now))
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom(`${T.payments} as p`).select('p.invoice_hash').whereRef('p.invoice_hash', '=', 'r.invoice_hash'))),
        )
        .orderBy('r.expires_at')
        .orderBy('r.invoice_hash')
        .limit(limit),
      { skipLocked: true },
    )
    .execute();
  const expired: string[] = [];
  for (const c of candidates) {
    const hash = c.invoice_hash as string;
    // Checked again after the lock: the block processor records a payment only while holding
    // this row's lock, so a payment committed after the claim's snapshot but before we locked
    // is visible here.
    if (await hasPayment(tx, hash)) continue;
    if (await endReservation(tx, hash, 'expired')) expired.push(hash);
  }
  return expired;
}

/** Fails unless the reservation is in `state` (for callers that need a specific state). */
export function requireState(r: Reservation | undefined, invoiceHash: string, state: Reservation['state']): Reservation {
  if (!r) throw new InvalidStateTransitionError(`invoice ${invoiceHash} has no reservation`, { field: 'invoiceHash', invoiceHash });
  if (r.state !== state) {
    throw new InvalidStateTransitionError(`the reservation of invoice ${invoiceHash} is ${r.state}, not ${state}`, {
      field: 'invoiceHash',
      invoiceHash,
      state: r.state,
    });
  }
  return r;
}
