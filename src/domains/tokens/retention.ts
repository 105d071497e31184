// Retention of the token domain's transient rows, oldest first and in bounded batches:
// unconfirmed mints and invoices by the time we received them, and on-chain token actions below
// a height window. Candidates are claimed with SKIP LOCKED so concurrent trimmers share work.
// Ledger entries, reservations, confirmed mints and invoices are records and are never trimmed.
// (Raw chain transactions below a height window are the chain domain's to trim.)
import { INT64_MAX } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';
import { chain } from '../chain/store.js';
import { endReservation } from './escrow.js';
import { enc } from './rows.js';
import { T } from './types.js';
import { batchLimitSchema, chainIdSchema, invalid, parse, trimSchema } from './validate.js';
import { z } from 'zod';

const DEFAULT_LIMIT = 1000;

export interface TrimOptions {
  /** Rows received before this instant are removed. */
  olderThan: Date;
  /** Most rows removed by this call (default 1000). */
  limit?: number;
}

/** Removes unconfirmed mints received before `olderThan`, oldest first. Returns how many. */
export async function trimUnconfirmedMints(tx: Tx, o: TrimOptions): Promise<number> {
  tx.assertWritable('tokens.trimUnconfirmedMints');
  const v = parse(trimSchema, o);
  const rows = await tx
    .lockRows(
      tx.db
        .selectFrom(T.unconfirmedMints)
        .select('hash')
        .where('received_at', '<', enc(tx, T.unconfirmedMints, 'received_at', v.olderThan))
        .orderBy('received_at')
        .orderBy('hash')
        .limit(v.limit ?? DEFAULT_LIMIT),
      { skipLocked: true },
    )
    .execute();
  if (!rows.length) return 0;
  const r = await tx.db
    .deleteFrom(T.unconfirmedMints)
    .where(
      'hash',
      'in',
      rows.map((x) => x.hash as string),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows ?? 0n);
}

/**
 * Removes unconfirmed invoices received before `olderThan`, oldest first, releasing their
 * reservations (reserved → released) and dropping their signatures in the same transaction, so
 * no tokens stay locked by an invoice that no longer exists. Returns how many were removed.
 */
export async function trimUnconfirmedInvoices(tx: Tx, o: TrimOptions): Promise<number> {
  tx.assertWritable('tokens.trimUnconfirmedInvoices');
  const v = parse(trimSchema, o);
  // Candidates are read without locking them: the lock taken is the reservation's, in the same
  // order as the block processor's match (reservation, then the invoice row), so the two never
  // deadlock; a reservation another transaction holds is skipped and trimmed next time.
  const rows = await tx.db
    .selectFrom(T.unconfirmedInvoices)
    .select('hash')
    .where('received_at', '<', enc(tx, T.unconfirmedInvoices, 'received_at', v.olderThan))
    .orderBy('received_at')
    .orderBy('hash')
    .limit(v.limit ?? DEFAULT_LIMIT)
    .execute();
  let removed = 0;
  for (const { hash } of rows as { hash: string }[]) {
    const claimed = await tx
      .lockRows(tx.db.selectFrom(T.reservations).select('invoice_hash').where('invoice_hash', '=', hash), { skipLocked: true })
      .executeTakeFirst();
    if (!claimed) continue;
    // Matched on chain meanwhile (this row is a stale copy): the reservation is the matched
    // invoice's and stays; only the copy goes.
    const matched = await tx.db.selectFrom(T.invoices).select('hash').where('hash', '=', hash).executeTakeFirst();
    if (!matched) {
      await endReservation(tx, hash, 'released');
      await tx.db.deleteFrom(T.signatures).where('invoice_hash', '=', hash).execute();
    }
    const r = await tx.db.deleteFrom(T.unconfirmedInvoices).where('hash', '=', hash).executeTakeFirst();
    removed += Number(r.numDeletedRows ?? 0n);
  }
  return removed;
}

const actionTrimSchema = z
  .object({
    chainId: chainIdSchema,
    /** Actions of blocks below this height are removed; at most the finalized height + 1 (checked below). */
    belowHeight: z
      .bigint({ error: 'expected a bigint' })
      .min(0n, 'must not be negative')
      .max(INT64_MAX, 'exceeds the 64-bit integer range'),
    limit: batchLimitSchema,
  })
  .strict();

/**
 * Removes on-chain token actions of blocks below `belowHeight` (applied, rejected, and pending
 * ones whose content never arrived), lowest first. Returns how many. `belowHeight` may be at
 * most the chain's finalized height + 1: a block that can still be reorged needs its actions
 * (the journal reverts their rows, and a pending one may still apply). An unknown chain is a
 * NotFoundError naming chainId.
 */
export async function trimOnchainActions(tx: Tx, o: { chainId: string; belowHeight: bigint; limit?: number }): Promise<number> {
  tx.assertWritable('tokens.trimOnchainActions');
  const v = parse(actionTrimSchema, o);
  // Read without a lock: the finalized height only rises, so a stale read is only stricter.
  const finalized = (await chain(tx).getCursor(v.chainId)).finalizedHeight;
  const most = finalized === null ? 0n : finalized + 1n;
  if (v.belowHeight > most)
    invalid(
      'belowHeight',
      `must be at most ${most} (chain ${v.chainId}'s finalized height ${finalized ?? '(none yet)'} + 1): actions of blocks that can still be reorged are kept`,
      { finalizedHeight: finalized },
    );
  const rows = await tx
    .lockRows(
      tx.db
        .selectFrom(T.actions)
        .select('tx_hash')
        .where('chain_id', '=', v.chainId)
        .where('block_height', '<', enc(tx, T.actions, 'block_height', v.belowHeight))
        .orderBy('block_height')
        .orderBy('index_in_block')
        .limit(v.limit ?? DEFAULT_LIMIT),
      { skipLocked: true },
    )
    .execute();
  if (!rows.length) return 0;
  const r = await tx.db
    .deleteFrom(T.actions)
    .where('chain_id', '=', v.chainId)
    .where(
      'tx_hash',
      'in',
      rows.map((x) => x.tx_hash as string),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows ?? 0n);
}
