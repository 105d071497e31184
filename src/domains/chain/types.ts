// What the chain domain returns. Heights are bigint, values are bigint base units, hashes are
// lowercase hex; rows are decoded through the table codecs so these are exact on every backend.
import type { BlockProcessor, IngestedBlock } from './processors.js';

export interface ChainInfo {
  chainId: string;
  name: string;
  network: string;
  confirmations: number;
  mempoolCapacity: number;
  createdAt: Date;
}

export interface RegisterChainInput {
  chainId: string;
  name: string;
  network: string;
  /** Confirmations (the block itself included) after which a block is final. */
  confirmations: number;
  /** Most transactions the chain's mempool holds (default 10 000). */
  mempoolCapacity?: number;
}

export interface ChainCursor {
  chainId: string;
  /** Null until the first block is ingested. */
  height: bigint | null;
  blockHash: string | null;
  waitingForNextHash: boolean;
  /** Blocks at or below this height are final; null while none is. Never decreases. */
  finalizedHeight: bigint | null;
}

export interface SyncHealth {
  chainId: string;
  currentHeight: bigint | null;
  latestHeight: bigint | null;
  /** latestHeight - currentHeight, never negative; null while either is unknown. */
  lag: bigint | null;
  updatedAt: Date;
}

export interface StoredBlock {
  chainId: string;
  height: bigint;
  hash: string;
  parentHash: string;
  time: Date;
  txCount: number;
}

export interface StoredOutput {
  address: string;
  value: bigint;
}

export interface StoredTransaction {
  chainId: string;
  txHash: string;
  blockHeight: bigint;
  blockHash: string;
  indexInBlock: number;
  actionType: string | null;
  actionVersion: number | null;
  payload: Buffer | null;
  address: string | null;
  /** Sorted by address. */
  outputs: StoredOutput[];
}

/** A transaction's place in the chain: the keyset-pagination key. */
export interface TxPosition {
  height: bigint;
  index: number;
}

export interface PageRequest {
  /** Return rows strictly after this position (the previous page's `next`). */
  after?: TxPosition | null;
  /** 1..1000, default 100. */
  limit?: number;
}

export interface Page<T> {
  items: T[];
  /** Pass as `after` for the next page; null when this page is the last. */
  next: TxPosition | null;
}

/** A block to ingest: the processor contract's block plus, optionally, its full transaction count. */
export interface IngestBlockInput extends IngestedBlock {
  /**
   * Transactions in the block on chain. Defaults to transactions.length; larger when the
   * caller keeps only the transactions it cares about (Fractal keeps only envelope ones).
   */
  txCount?: number;
}

export interface IngestOptions {
  /** Called in order after the block and its transactions are stored, in the same transaction. */
  processors?: readonly BlockProcessor[];
  /**
   * Allow a block whose parent is a stored block below the tip: everything above the parent
   * is rolled back first (see reorg). Without it such a block is a ReorgRequiredError.
   */
  reorg?: boolean;
}

export interface IngestResult {
  status: 'ingested' | 'duplicate';
  height: bigint;
  hash: string;
  /** Present when the block replaced a branch (IngestOptions.reorg). */
  reorg?: ReorgSummary;
}

export interface ReorgSummary {
  forkHeight: bigint;
  /** Blocks removed above the fork. */
  removedBlocks: number;
  /** Journaled derived writes reverted (processor rows, mempool drops). */
  revertedWrites: number;
}

export interface ReorgResult extends ReorgSummary {
  /** Blocks of the new branch ingested. */
  ingestedBlocks: number;
  tip: { height: bigint; hash: string };
}

export interface MempoolInput {
  txHash: string;
  /** The raw transaction (or its canonical JSON as UTF-8). */
  content: Buffer;
  /** Base units; orders claims (highest first) and eviction (lowest first). */
  fee: bigint;
  sizeBytes: number;
  /** Defaults to the store clock. */
  receivedAt?: Date;
}

export interface MempoolTx {
  chainId: string;
  txHash: string;
  content: Buffer;
  fee: bigint;
  sizeBytes: number;
  receivedAt: Date;
  claimedBy: string | null;
  claimExpiresAt: Date | null;
}

export type MempoolAddResult =
  /** `evicted`: hashes dropped to make room (lowest fee first, then oldest). */
  | { status: 'added'; evicted: string[] }
  /** Already in the mempool: nothing changed. */
  | { status: 'duplicate' }
  /** Already in a stored block: not added. */
  | { status: 'confirmed' }
  /** The mempool is full and this transaction pays less than every evictable one, or none is evictable (all claimed). */
  | { status: 'rejected'; reason: 'fee_too_low' | 'full' };

export interface ClaimOptions {
  /** Who holds the claim (worker id). */
  worker: string;
  /** Most transactions to claim (1..1000). */
  limit: number;
  /** The claimed sizes stay within this many bytes (a row that does not fit is skipped). */
  maxBytes?: number;
  /** Lease length; an expired claim may be taken by another worker (default 60 s). */
  leaseMs?: number;
}

export interface StoreOptions {
  /** Source of "now" for health and mempool times (tests pin it). */
  clock?: () => Date;
}
