// The contract between chain ingest and the domains that derive rows from blocks. Ingest stores
// the block and its transactions, then calls each processor in the same transaction; a
// processor writes derived rows through undo.ts's journaled helpers so a reorg reverts them.
import type { Tx } from '../../db/tx.js';
import type { BlockRef } from './undo.js';

export interface IngestedOutput {
  address: string;
  /** Integer base units. */
  value: bigint;
}

export interface IngestedTransaction {
  txHash: string;
  indexInBlock: number;
  /** Protocol action carried by the transaction (e.g. Fractal's mint, invoice, payment), if any. */
  actionType: string | null;
  actionVersion: number | null;
  payload: Buffer | null;
  address: string | null;
  outputs: IngestedOutput[];
}

export interface IngestedBlock extends BlockRef {
  parentHash: string;
  time: Date;
  transactions: IngestedTransaction[];
}

export interface BlockContext {
  block: IngestedBlock;
  /** Current tip height after this block (for confirmation counts). */
  tipHeight: bigint;
  /** Confirmations the chain requires for finality. */
  confirmationsNeeded: number;
}

export type BlockProcessor = (tx: Tx, ctx: BlockContext) => Promise<void>;
