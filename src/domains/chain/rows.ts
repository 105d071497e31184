// Row mapping shared by the chain store and mempool: table names, decoding DB rows into the
// domain types, and encoding single values for WHERE clauses through the table codecs.
import { insertRows } from '../../db/bulk.js';
import type { Tx } from '../../db/tx.js';
import type { ChainCursor, ChainInfo, MempoolTx, StoredBlock, StoredOutput, StoredTransaction, SyncHealth } from './types.js';

export const T = {
  chains: 'chain_chains',
  cursors: 'chain_cursors',
  health: 'chain_sync_health',
  blocks: 'chain_blocks',
  txs: 'chain_transactions',
  outputs: 'chain_tx_outputs',
  mempool: 'chain_mempool',
} as const;

type Row = Record<string, unknown>;

/** The encoded (driver) form of one column value, for WHERE clauses. */
export function enc(tx: Tx, table: string, column: string, value: unknown): any {
  return tx.codec(table).encode({ [column]: value })[column];
}

export function decode<T>(tx: Tx, table: string, row: unknown): T {
  return tx.codec(table).decode<T>(row as Row);
}

export function toChain(tx: Tx, raw: unknown): ChainInfo {
  const r = decode<Row>(tx, T.chains, raw);
  return {
    chainId: r.chain_id as string,
    name: r.name as string,
    network: r.network as string,
    confirmations: r.confirmations as number,
    mempoolCapacity: r.mempool_capacity as number,
    createdAt: r.created_at as Date,
  };
}

export function toCursor(tx: Tx, raw: unknown): ChainCursor {
  const r = decode<Row>(tx, T.cursors, raw);
  return {
    chainId: r.chain_id as string,
    height: (r.height as bigint | null) ?? null,
    blockHash: (r.block_hash as string | null) ?? null,
    waitingForNextHash: r.waiting_for_next_hash as boolean,
    finalizedHeight: (r.finalized_height as bigint | null) ?? null,
  };
}

export function toHealth(tx: Tx, raw: unknown): SyncHealth {
  const r = decode<Row>(tx, T.health, raw);
  return {
    chainId: r.chain_id as string,
    currentHeight: (r.current_height as bigint | null) ?? null,
    latestHeight: (r.latest_height as bigint | null) ?? null,
    lag: (r.lag as bigint | null) ?? null,
    updatedAt: r.updated_at as Date,
  };
}

export function toBlock(tx: Tx, raw: unknown): StoredBlock {
  const r = decode<Row>(tx, T.blocks, raw);
  return {
    chainId: r.chain_id as string,
    height: r.height as bigint,
    hash: r.hash as string,
    parentHash: r.parent_hash as string,
    time: r.block_time as Date,
    txCount: r.tx_count as number,
  };
}

/** A transaction row as the domain type, with `outputs` (the caller's array, filled in later if need be). */
export function toTransaction(tx: Tx, raw: unknown, outputs: StoredOutput[] = []): StoredTransaction {
  const r = decode<Row>(tx, T.txs, raw);
  // One literal with every field: copying it later to add outputs ({ ...t, outputs }) cost more
  // than the decoding on the point-read path.
  return {
    chainId: r.chain_id as string,
    txHash: r.tx_hash as string,
    blockHeight: r.block_height as bigint,
    blockHash: r.block_hash as string,
    indexInBlock: r.index_in_block as number,
    actionType: (r.action_type as string | null) ?? null,
    actionVersion: (r.action_version as number | null) ?? null,
    payload: (r.payload as Buffer | null) ?? null,
    address: (r.address as string | null) ?? null,
    outputs,
  };
}

export function toMempoolTx(tx: Tx, raw: unknown): MempoolTx {
  const r = decode<Row>(tx, T.mempool, raw);
  return {
    chainId: r.chain_id as string,
    txHash: r.tx_hash as string,
    content: r.content as Buffer,
    fee: r.fee as bigint,
    sizeBytes: r.size_bytes as number,
    receivedAt: r.received_at as Date,
    claimedBy: (r.claimed_by as string | null) ?? null,
    claimExpiresAt: (r.claim_expires_at as Date | null) ?? null,
  };
}

/** Splits a list for IN (…) clauses and multi-row inserts, well under every backend's bind limit. */
export function chunks<T>(items: readonly T[], size = 200): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Multi-row insert, validated and encoded row by row (src/db/bulk.ts). */
export const insertMany = insertRows;
