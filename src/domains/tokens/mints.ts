// Mints: signed token definitions, received off chain as unconfirmed mints and confirmed when
// an on-chain mint transaction names their content hash. The owner (a signed field, so whoever
// broadcasts the anchoring transaction cannot redirect the supply) is credited the full
// fraction count once the matching block has the chain's required confirmations.
import type { Tx } from '../../db/tx.js';
import type { BlockRef, JournaledWrite } from '../chain/undo.js';
import { appendEntry, mustUpdate } from './ledger.js';
import { decode, mintContentRow, readEither, toMint, type Ctx, type Row } from './rows.js';
import { T, type Mint, type MintContent, type MintInput } from './types.js';
import { mintHash, mintInputSchema, parse } from './validate.js';

export interface SubmitMintResult {
  hash: string;
  /** unconfirmed: stored (or already stored) awaiting its on-chain transaction; confirmed: already on chain. */
  status: 'unconfirmed' | 'confirmed';
  /** False when this content was already known (a replay). */
  created: boolean;
}

export function parseMint(input: MintInput): { hash: string; content: MintContent } {
  const content = parse(mintInputSchema, input) as MintContent;
  return { hash: mintHash(content), content };
}

/** Stores a signed mint received off chain. Submitting the same content again is a no-op. */
export async function submitMint(ctx: Ctx, input: MintInput): Promise<SubmitMintResult> {
  const { tx } = ctx;
  tx.assertWritable('tokens.submitMint');
  const { hash, content } = parseMint(input);
  // Insert first, then look for the confirmed mint. A block confirming it meanwhile deletes the
  // unconfirmed row: our insert of the same key waits for that transaction, and the read after
  // it (a new statement) sees the confirmed row. Looking first left a window in which the block
  // committed and the insert re-created the unconfirmed row, reported as created.
  const created = await tx.insertOrIgnore(T.unconfirmedMints, { hash, ...mintContentRow(content), received_at: ctx.now() }, ['hash']);
  if (!(await confirmedMintRow(tx, hash))) return { hash, status: 'unconfirmed', created };
  // Already confirmed: a row we just inserted is a stale copy (ours, uncommitted), so it goes.
  if (created) await deleteOwnCopy(tx, hash);
  return { hash, status: 'confirmed', created: false };
}

async function deleteOwnCopy(tx: Tx, hash: string): Promise<void> {
  const r = await tx.db.deleteFrom(T.unconfirmedMints).where('hash', '=', hash).executeTakeFirst();
  if (Number(r.numDeletedRows ?? 0n) !== 1) throw new Error(`unconfirmed mint ${hash} inserted by this transaction vanished`);
}

async function confirmedMintRow(tx: Tx, hash: string) {
  return (await tx.selectWhere(T.mints, { hash }))[0];
}

/** A mint by content hash, confirmed or not (both tables in one statement: see readEither). */
export async function getMint(tx: Tx, hash: string): Promise<Mint | undefined> {
  const r = await readEither(tx, T.mints, T.unconfirmedMints, hash);
  return r ? toMint(tx, r.confirmed ? T.mints : T.unconfirmedMints, r.row) : undefined;
}

export async function getConfirmedMint(tx: Tx, hash: string): Promise<Mint | undefined> {
  const c = await confirmedMintRow(tx, hash);
  return c ? toMint(tx, T.mints, c) : undefined;
}

export interface ListMintsOptions {
  chainId?: string;
  ownerAddress?: string;
  /** Keyset: hashes strictly after this one. */
  after?: string;
  /** 1..1000, default 100. */
  limit?: number;
}

/** Confirmed mints in hash order (keyset paging: pass the last hash as `after`). */
export async function listMints(tx: Tx, o: ListMintsOptions): Promise<Mint[]> {
  let q = tx.db
    .selectFrom(T.mints)
    .selectAll()
    .orderBy('hash')
    .limit(o.limit ?? 100);
  if (o.chainId !== undefined) q = q.where('chain_id', '=', o.chainId);
  if (o.ownerAddress !== undefined) q = q.where('owner_address', '=', o.ownerAddress);
  if (o.after !== undefined) q = q.where('hash', '>', o.after);
  return (await q.execute()).map((r) => toMint(tx, T.mints, r));
}

// ---------------------------------------------------------------- block-derived (journaled)

export interface OnChainAnchor {
  txHash: string;
  /** Height and hash of the block holding the transaction. */
  blockHeight: bigint;
  blockHash: string;
}

/** The columns a match writes: the anchoring transaction, and the block that matched it. */
export function anchorColumns(anchor: OnChainAnchor, ref: BlockRef): Row {
  return {
    tx_hash: anchor.txHash,
    block_height: anchor.blockHeight,
    block_hash: anchor.blockHash,
    matched_height: ref.height,
    matched_block_hash: ref.blockHash,
  };
}

/**
 * What an action handler decided. `writes`: journaled writes of the action that the block
 * processor runs together with the action's state change (one round trip where the backend can).
 */
export type MatchOutcome =
  | { outcome: 'applied'; writes?: readonly JournaledWrite[] }
  | { outcome: 'pending'; reason: string }
  | { outcome: 'rejected'; reason: string };

/**
 * Matches an on-chain mint transaction with the unconfirmed mint of the same hash: the row moves
 * to token_mints (journaled under `ref`, the block being processed), as the outcome's writes. Pending while the content
 * has not arrived; rejected when the content is for another chain (confirmed there or not) or
 * the mint is already confirmed by another transaction.
 */
export async function confirmMint(tx: Tx, ref: BlockRef, hash: string, anchor: OnChainAnchor): Promise<MatchOutcome> {
  const confirmed = await confirmedMintRow(tx, hash);
  if (confirmed) {
    const c = decode(tx, T.mints, confirmed);
    // The chain first: a transaction of another chain reusing the anchoring transaction's hash
    // is not that transaction (rejected as the unconfirmed path rejects it).
    if (c.chain_id !== ref.chainId) return { outcome: 'rejected', reason: `mint is for chain ${String(c.chain_id)}` };
    return c.tx_hash === anchor.txHash
      ? { outcome: 'applied' }
      : { outcome: 'rejected', reason: 'mint already confirmed by another transaction' };
  }
  // Locked (FOR UPDATE; SQLite's write lock already serialises): retention trims unconfirmed
  // mints with SKIP LOCKED, so it cannot delete this row before the pass's guarded delete runs,
  // and a trim that claimed it first is waited for (the row is then gone: still pending).
  const [raw] = await tx.selectWhere(T.unconfirmedMints, { hash }, { lock: true });
  if (!raw) return { outcome: 'pending', reason: 'mint content not received yet' };
  const row = decode(tx, T.unconfirmedMints, raw);
  if (row.chain_id !== ref.chainId) return { outcome: 'rejected', reason: `mint is for chain ${String(row.chain_id)}` };
  // The row read above is the before image (unconfirmed mints are only inserted and deleted).
  // The block processor runs the move with the action's state change.
  return {
    outcome: 'applied',
    writes: [
      { delete: T.unconfirmedMints, key: { hash }, known: { before: row } },
      { insert: T.mints, row: { ...row, ...anchorColumns(anchor, ref), credited: false }, keyColumns: ['hash'] },
    ],
  };
}

/**
 * Credits the owner of a mint whose matching block is now final (tip - matched + 1 ≥ the
 * required confirmations); `m`: its token_mints row as the block processor's due read returns
 * it (processors.ts). Journaled under the matching block, which can no longer be reorged, so a
 * credit some reservation may rely on is never taken back by a shallow reorg.
 */
export async function creditMint(tx: Tx, chainId: string, m: Row, at: Date): Promise<void> {
  const ref: BlockRef = { chainId, height: m.matched_height as bigint, blockHash: m.matched_block_hash as string };
  await appendEntry(tx, ref, {
    causeKind: 'mint_credit',
    causeRef: m.hash as string,
    chainId,
    mintHash: m.hash as string,
    address: m.owner_address as string,
    delta: m.fraction_count as bigint,
    txHash: m.tx_hash as string,
    createdAt: at,
  });
  await mustUpdate(tx, ref, T.mints, { hash: m.hash }, { credited: true });
}
