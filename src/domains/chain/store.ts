// The chain store: chains, block ingest with an atomic cursor advance, reorgs that revert every
// derived row, and reads. Construct it with a Tx inside coffer.write/read:
//   coffer.write((tx) => chain(tx).ingestBlock(block, { processors }), { op: 'chain.ingestBlock' })
// Every method is part of the caller's one transaction; bad input is a ValidationError thrown
// before the first write.
import { ConflictError, InvalidStateTransitionError, NotFoundError } from '../../db/errors.js';
import type { TableCodec } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';
import { BlockGapError, FinalityViolationError, ReorgRequiredError } from './errors.js';
import type { BlockProcessor } from './processors.js';
import { sql, type ExpressionBuilder } from 'kysely';
import { inValues } from '../../db/bulk.js';
import { keysetAfter } from '../../db/keyset.js';
import { defineQuery } from '../../db/prepared.js';
import { chunks, enc, insertMany, T, toBlock, toChain, toCursor, toHealth, toTransaction } from './rows.js';
import type {
  ChainCursor,
  ChainInfo,
  IngestBlockInput,
  IngestOptions,
  IngestResult,
  Page,
  PageRequest,
  RegisterChainInput,
  ReorgResult,
  ReorgSummary,
  StoredBlock,
  StoredOutput,
  StoredTransaction,
  StoreOptions,
  SyncHealth,
  TxPosition,
} from './types.js';
import { journaledDelete, pruneFinalized, revertAbove } from './undo.js';
import {
  addressSchema,
  blockSchema,
  CHAIN_ID_RE,
  chainIdSchema,
  fastBlock,
  HASH32_RE,
  hash32Schema,
  heightSchema,
  invalid,
  pageSchema,
  parse,
  registerChainSchema,
} from './validate.js';
import { z } from 'zod';

export const DEFAULT_MEMPOOL_CAPACITY = 10_000;
const DEFAULT_PAGE = 100;
/** The most outputs a page of transactions carries (beyond its first transaction's). */
export const PAGE_OUTPUTS = 10_000;
/** Hashes per IN (…) lookup during ingest: one statement for a block of 1,000 transactions. */
const LOOKUP_CHUNK = 1_000;

type ValidBlock = z.output<typeof blockSchema> & {
  /** The transactions in the caller's order, and the field prefix: errors name the caller's positions. */
  readonly given: z.output<typeof blockSchema>['transactions'];
  readonly prefix: string;
};

/** The field of a block's transaction by hash, as the caller gave it (`newBranch[1].transactions[3].txHash`). */
function txField(block: ValidBlock, txHash: string, name: string): string {
  const f = `transactions[${block.given.findIndex((t) => t.txHash === txHash)}].${name}`;
  return block.prefix ? `${block.prefix}.${f}` : f;
}

/** Validates a block and the rules between its fields; returns it with transactions in block order. */
export function validateBlock(input: IngestBlockInput, prefix = ''): ValidBlock {
  const b = fastBlock(input) ?? parse(blockSchema, input, prefix);
  const f = (name: string) => (prefix ? `${prefix}.${name}` : name);
  const txCount = b.txCount ?? b.transactions.length;
  if (txCount < b.transactions.length) invalid(f('txCount'), `is ${txCount} but ${b.transactions.length} transactions were given`);
  if (b.parentHash === b.blockHash) invalid(f('parentHash'), 'equals the block hash');
  const hashes = new Set<string>();
  const indexes = new Set<number>();
  b.transactions.forEach((t, i) => {
    if (hashes.has(t.txHash)) invalid(f(`transactions[${i}].txHash`), 'appears twice in the block');
    if (indexes.has(t.indexInBlock)) invalid(f(`transactions[${i}].indexInBlock`), 'appears twice in the block');
    if (t.indexInBlock >= txCount) invalid(f(`transactions[${i}].indexInBlock`), `must be below the block's transaction count ${txCount}`);
    hashes.add(t.txHash);
    indexes.add(t.indexInBlock);
    const addresses = new Set<string>();
    t.outputs.forEach((o, j) => {
      // One value per address: the adapter sums outputs to the same address.
      if (addresses.has(o.address)) invalid(f(`transactions[${i}].outputs[${j}].address`), 'appears twice in the transaction');
      addresses.add(o.address);
    });
  });
  return {
    ...b,
    txCount,
    transactions: [...b.transactions].sort((x, y) => x.indexInBlock - y.indexInBlock),
    given: b.transactions,
    prefix,
  };
}

/** Byte strings equal, null and absent alike. */
function sameBytes(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (a == null || b == null) return (a == null) === (b == null);
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function lagOf(current: bigint | null, latest: bigint | null): bigint | null {
  if (current === null || latest === null) return null;
  return latest > current ? latest - current : 0n;
}

// Keyset condition "(height, index) > pos"; no OFFSET, so rows deleted by a reorg between pages
// cannot shift a page.
const after = (pos: TxPosition) => (eb: ExpressionBuilder<any, any>) =>
  keysetAfter(eb, [
    { column: 'block_height', value: pos.height },
    { column: 'index_in_block', value: pos.index },
  ]);

export class ChainStore {
  readonly #tx: Tx;
  readonly #clock: () => Date;

  constructor(tx: Tx, opts: StoreOptions = {}) {
    this.#tx = tx;
    this.#clock = opts.clock ?? (() => new Date());
  }

  // ---------------------------------------------------------------- chains

  /** Registers a chain (with an empty cursor and health row). Registering the same chain again is a no-op; different settings are a ConflictError. */
  async registerChain(input: RegisterChainInput): Promise<{ chain: ChainInfo; created: boolean }> {
    const tx = this.#tx;
    tx.assertWritable('chain.registerChain');
    const v = parse(registerChainSchema, input);
    const now = this.#clock();
    const row = {
      chain_id: v.chainId,
      name: v.name,
      network: v.network,
      confirmations: v.confirmations,
      mempool_capacity: v.mempoolCapacity ?? DEFAULT_MEMPOOL_CAPACITY,
      created_at: now,
    };
    if (await tx.insertOrIgnore(T.chains, row, ['chain_id'])) {
      await tx.insert(T.cursors, {
        chain_id: v.chainId,
        height: null,
        block_hash: null,
        waiting_for_next_hash: false,
        finalized_height: null,
      });
      await tx.insert(T.health, { chain_id: v.chainId, current_height: null, latest_height: null, lag: null, updated_at: now });
      return { chain: (await this.getChain(v.chainId))!, created: true };
    }
    const existing = (await this.getChain(v.chainId))!;
    const differs = (
      [
        ['name', existing.name, v.name],
        ['network', existing.network, v.network],
        ['confirmations', existing.confirmations, v.confirmations],
        ['mempoolCapacity', existing.mempoolCapacity, v.mempoolCapacity ?? existing.mempoolCapacity],
      ] as const
    ).find(([, a, b]) => a !== b);
    if (differs) {
      throw new ConflictError(`chain ${v.chainId} is already registered with ${differs[0]} ${String(differs[1])}`, {
        field: differs[0],
        chainId: v.chainId,
      });
    }
    return { chain: existing, created: false };
  }

  async getChain(chainId: string): Promise<ChainInfo | null> {
    const id = parse(chainIdSchema, chainId, 'chainId');
    const r = await this.#tx.db.selectFrom(T.chains).selectAll().where('chain_id', '=', id).executeTakeFirst();
    return r ? toChain(this.#tx, r) : null;
  }

  async listChains(): Promise<ChainInfo[]> {
    const rows = await this.#tx.db.selectFrom(T.chains).selectAll().orderBy('chain_id').execute();
    return rows.map((r) => toChain(this.#tx, r));
  }

  /**
   * Up to `limit` chain ids of this database after `after`, in byte order of the id: the order
   * GET /v1/chains merges several databases in, so every backend must agree on it. Chain ids are
   * ASCII (CHAIN_ID_RE), where byte order is SQLite's BINARY and MySQL/MariaDB's utf8mb4_bin
   * (every table's collation); PostgreSQL compares and orders under "C", as its database
   * collation may be a linguistic one (`a-b` after `ab`, `B2` after `a`). That order is not the
   * primary key index's there, so PostgreSQL sorts this database's ids itself (the registry is
   * small), and still returns only `limit`. `only` keeps those ids, `except` leaves them out (the
   * chains another database holds).
   */
  async chainIdPage(opts: { after?: string; limit: number; only?: readonly string[]; except?: readonly string[] }): Promise<string[]> {
    const tx = this.#tx;
    const after = opts.after === undefined ? undefined : parse(chainIdSchema, opts.after, 'after');
    if (opts.only && opts.only.length === 0) return [];
    const id = tx.dialect === 'postgres' ? sql<string>`${sql.ref('chain_id')} collate "C"` : sql.ref('chain_id');
    let q = tx.db.selectFrom(T.chains).select('chain_id').orderBy(id).limit(opts.limit);
    if (after !== undefined) q = q.where(id, '>', after);
    if (opts.only) q = q.where(inValues(tx, T.chains, 'chain_id', opts.only));
    if (opts.except?.length) q = q.where((eb) => eb.not(inValues(tx, T.chains, 'chain_id', opts.except!)));
    const rows = await q.execute();
    return rows.map((r) => (r as { chain_id: string }).chain_id);
  }

  /**
   * The named chains, each with its cursor and sync health, in the order named: three
   * statements whatever their number (a page of a chain list). Ids not stored here are left out.
   */
  async chainsWithState(chainIds: readonly string[]): Promise<ChainWithState[]> {
    const tx = this.#tx;
    const ids = chainIds.map((id, i) => parse(chainIdSchema, id, `chainIds[${i}]`));
    if (!ids.length) return [];
    const [chains, cursors, health] = await Promise.all([
      tx.db
        .selectFrom(T.chains)
        .selectAll()
        .where(inValues(tx, T.chains, 'chain_id', ids))
        .execute(),
      tx.db
        .selectFrom(T.cursors)
        .selectAll()
        .where(inValues(tx, T.cursors, 'chain_id', ids))
        .execute(),
      tx.db
        .selectFrom(T.health)
        .selectAll()
        .where(inValues(tx, T.health, 'chain_id', ids))
        .execute(),
    ]);
    const byId = new Map(chains.map((r) => toChain(tx, r)).map((c) => [c.chainId, c]));
    return withState(tx, ids, byId, cursors, health);
  }

  /**
   * Every chain of this database with its cursor and sync health, in the order of listChains:
   * three statements however many chains (the dashboard and the chain gauges read them all).
   */
  async allChainsWithState(): Promise<ChainWithState[]> {
    const tx = this.#tx;
    const [chains, cursors, health] = await Promise.all([
      this.listChains(),
      tx.db.selectFrom(T.cursors).selectAll().execute(),
      tx.db.selectFrom(T.health).selectAll().execute(),
    ]);
    return withState(
      tx,
      chains.map((c) => c.chainId),
      new Map(chains.map((c) => [c.chainId, c])),
      cursors,
      health,
    );
  }

  async #requireChain(chainId: string): Promise<ChainInfo> {
    const c = await this.getChain(chainId);
    if (!c) throw new NotFoundError(`unknown chain ${chainId}`, { field: 'chainId', chainId });
    return c;
  }

  // Locks the chain's cursor row for the rest of the transaction: ingests and reorgs of one
  // chain are serialised (PostgreSQL/MySQL row lock; SQLite's write lock already is one).
  async #lockCursor(chainId: string): Promise<ChainCursor> {
    const tx = this.#tx;
    const r = await tx.lockRows(tx.db.selectFrom(T.cursors).selectAll().where('chain_id', '=', chainId)).executeTakeFirst();
    if (!r) throw new NotFoundError(`unknown chain ${chainId}`, { field: 'chainId', chainId });
    return toCursor(tx, r);
  }

  /** The cursor: tip height and hash, the waiting flag, the finalized height. */
  async getCursor(chainId: string): Promise<ChainCursor> {
    const id = parse(chainIdSchema, chainId, 'chainId');
    const r = await this.#tx.db.selectFrom(T.cursors).selectAll().where('chain_id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError(`unknown chain ${id}`, { field: 'chainId', chainId: id });
    return toCursor(this.#tx, r);
  }

  async getHealth(chainId: string): Promise<SyncHealth> {
    const id = parse(chainIdSchema, chainId, 'chainId');
    const r = await this.#tx.db.selectFrom(T.health).selectAll().where('chain_id', '=', id).executeTakeFirst();
    if (!r) throw new NotFoundError(`unknown chain ${id}`, { field: 'chainId', chainId: id });
    return toHealth(this.#tx, r);
  }

  /** The follower reached the node's tip and waits for the next block hash; the next ingest clears it. */
  async setWaitingForNextHash(chainId: string, waiting: boolean): Promise<void> {
    const tx = this.#tx;
    tx.assertWritable('chain.setWaitingForNextHash');
    const id = parse(chainIdSchema, chainId, 'chainId');
    parse(z.boolean({ error: 'expected a boolean' }), waiting, 'waiting');
    const r = await tx.db
      .updateTable(T.cursors)
      .set(tx.codec(T.cursors).encode({ waiting_for_next_hash: waiting }))
      .where('chain_id', '=', id)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw new NotFoundError(`unknown chain ${id}`, { field: 'chainId', chainId: id });
  }

  /** Records the node's best height (what the follower has yet to reach) and recomputes the lag. */
  async reportLatestHeight(chainId: string, latestHeight: bigint): Promise<SyncHealth> {
    const tx = this.#tx;
    tx.assertWritable('chain.reportLatestHeight');
    const id = parse(chainIdSchema, chainId, 'chainId');
    const latest = parse(heightSchema, latestHeight, 'latestHeight');
    await this.#requireChain(id);
    const h = toHealth(tx, await tx.lockRows(tx.db.selectFrom(T.health).selectAll().where('chain_id', '=', id)).executeTakeFirstOrThrow());
    await this.#writeHealth(id, h.currentHeight, latest);
    return this.getHealth(id);
  }

  async #writeHealth(chainId: string, current: bigint | null, latest: bigint | null): Promise<void> {
    const tx = this.#tx;
    const r = await tx.db
      .updateTable(T.health)
      .set(
        tx
          .codec(T.health)
          .encode({ current_height: current, latest_height: latest, lag: lagOf(current, latest), updated_at: this.#clock() }),
      )
      .where('chain_id', '=', chainId)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw new NotFoundError(`no sync health row for chain ${chainId}`, { chainId });
  }

  async #setTip(chainId: string, cursor: ChainCursor, tip: { height: bigint; hash: string }, finalized: bigint | null): Promise<void> {
    const tx = this.#tx;
    let q = tx.db
      .updateTable(T.cursors)
      .set(
        tx.codec(T.cursors).encode({ height: tip.height, block_hash: tip.hash, waiting_for_next_hash: false, finalized_height: finalized }),
      )
      .where('chain_id', '=', chainId);
    // Conditional on the tip we read: a concurrent writer that slipped past the lock is caught.
    q = cursor.height === null ? q.where('height', 'is', null) : q.where('height', '=', enc(tx, T.cursors, 'height', cursor.height));
    const r = await q.executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw new ConflictError(`the tip of chain ${chainId} moved during the operation`, { chainId });
    // Locked, so a concurrent reportLatestHeight is not overwritten with the value read here.
    const health = toHealth(
      tx,
      await tx.lockRows(tx.db.selectFrom(T.health).selectAll().where('chain_id', '=', chainId)).executeTakeFirstOrThrow(),
    );
    await this.#writeHealth(chainId, tip.height, health.latestHeight);
  }

  // ---------------------------------------------------------------- ingest

  /**
   * Stores a block and its transactions, drops them from the mempool, runs the processors and
   * advances the cursor, all in the caller's transaction. A block already stored is a no-op
   * ('duplicate'). A block that does not extend the tip is a ReorgRequiredError unless
   * `reorg: true`, in which case everything above its parent is rolled back first.
   */
  async ingestBlock(input: IngestBlockInput, options: IngestOptions | readonly BlockProcessor[] = {}): Promise<IngestResult> {
    const tx = this.#tx;
    tx.assertWritable('chain.ingestBlock');
    const opts: IngestOptions = Array.isArray(options) ? { processors: options as readonly BlockProcessor[] } : (options as IngestOptions);
    const block = validateBlock(input);
    const chain = await this.#requireChain(block.chainId);
    const cursor = await this.#lockCursor(block.chainId);
    const result = { height: block.height, hash: block.blockHash };

    const stored = await this.#blockAt(block.chainId, block.height);
    if (stored?.hash === block.blockHash) {
      await this.#assertSameBlock(stored, block);
      return { status: 'duplicate', ...result };
    }
    const sameHash = await this.#blockWithHash(block.chainId, block.blockHash);
    if (sameHash) {
      throw new ConflictError(`block ${block.blockHash} is already stored at height ${sameHash.height}`, {
        field: 'blockHash',
        chainId: block.chainId,
      });
    }
    if (cursor.height === null || (block.height === cursor.height + 1n && block.parentHash === cursor.blockHash)) {
      await this.#append(chain, cursor, block, opts.processors ?? []);
      return { status: 'ingested', ...result };
    }
    const details = {
      chainId: block.chainId,
      height: block.height,
      parentHash: block.parentHash,
      tipHeight: cursor.height,
      tipHash: cursor.blockHash,
    };
    if (block.height > cursor.height + 1n) {
      throw new BlockGapError(`block ${block.height} is above tip ${cursor.height} + 1 of chain ${block.chainId}`, {
        field: 'height',
        ...details,
      });
    }
    if (!opts.reorg) {
      throw new ReorgRequiredError(
        `block ${block.height} of chain ${block.chainId} does not extend the tip ${cursor.height} (${cursor.blockHash})`,
        {
          field: 'parentHash',
          ...details,
        },
      );
    }
    const parent = block.height > 0n ? await this.#blockAt(block.chainId, block.height - 1n) : undefined;
    if (parent?.hash !== block.parentHash) {
      // The fork is deeper than one block: the caller must reorg from the real fork point.
      throw new ReorgRequiredError(
        `the parent ${block.parentHash} of block ${block.height} is not stored: reorg from an earlier fork height`,
        {
          field: 'parentHash',
          ...details,
        },
      );
    }
    // Refused below finality: the block's height is what the caller can fix (the body has no fork height).
    const summary = await this.#rollback(chain, cursor, parent.height, 'height');
    await this.#append(chain, await this.#lockCursor(block.chainId), block, opts.processors ?? []);
    return { status: 'ingested', ...result, reorg: summary };
  }

  /**
   * Rolls the chain back to `forkHeight` (every block above it and every row any domain derived
   * from them, through the undo journal) and ingests `newBranch` on top, in one transaction.
   * An empty branch is a plain rollback. The fork may not be below the finalized height.
   */
  async reorg(
    chainId: string,
    forkHeight: bigint,
    newBranch: readonly IngestBlockInput[],
    options: { processors?: readonly BlockProcessor[] } = {},
  ): Promise<ReorgResult> {
    const tx = this.#tx;
    tx.assertWritable('chain.reorg');
    const id = parse(chainIdSchema, chainId, 'chainId');
    const fork = parse(heightSchema, forkHeight, 'forkHeight');
    parse(z.array(z.unknown(), { error: 'expected an array' }), newBranch, 'newBranch');
    const blocks = newBranch.map((b, i) => validateBlock(b, `newBranch[${i}]`));
    blocks.forEach((b, i) => {
      if (b.chainId !== id) invalid(`newBranch[${i}].chainId`, `is ${b.chainId}, not ${id}`);
      if (b.height !== fork + 1n + BigInt(i))
        invalid(`newBranch[${i}].height`, `must be ${fork + 1n + BigInt(i)} (contiguous above the fork)`);
      if (i > 0 && b.parentHash !== blocks[i - 1]!.blockHash)
        invalid(`newBranch[${i}].parentHash`, `must be the hash of newBranch[${i - 1}]`);
    });
    const chain = await this.#requireChain(id);
    const cursor = await this.#lockCursor(id);
    if (cursor.height === null || fork > cursor.height) {
      throw new InvalidStateTransitionError(`fork height ${fork} is above the tip ${cursor.height ?? '(none)'} of chain ${id}`, {
        field: 'forkHeight',
        chainId: id,
      });
    }
    const forkBlock = await this.#blockAt(id, fork);
    if (!forkBlock) throw new NotFoundError(`no block at fork height ${fork} on chain ${id}`, { field: 'forkHeight', chainId: id });
    if (blocks[0] && blocks[0].parentHash !== forkBlock.hash) {
      throw new ReorgRequiredError(`newBranch[0] does not attach to the block at fork height ${fork} (${forkBlock.hash})`, {
        field: 'newBranch[0].parentHash',
        chainId: id,
        forkHeight: fork,
      });
    }
    // A branch block may not reuse the hash of a block that stays (at or below the fork) or of
    // another branch block: the unique key would refuse it mid-reorg with no field to name.
    const heights = new Map<string, bigint>();
    for (const [i, b] of blocks.entries()) {
      const at = heights.get(b.blockHash) ?? (await this.#blockWithHash(id, b.blockHash))?.height;
      if (at !== undefined && (heights.has(b.blockHash) || at <= fork))
        throw new ConflictError(`newBranch[${i}]: block ${b.blockHash} is already at height ${at}`, {
          field: `newBranch[${i}].blockHash`,
          chainId: id,
        });
      heights.set(b.blockHash, b.height);
    }
    const summary = await this.#rollback(chain, cursor, fork);
    for (const b of blocks) await this.#append(chain, await this.#lockCursor(id), b, options.processors ?? []);
    const tip = blocks.length ? blocks[blocks.length - 1]! : { height: forkBlock.height, blockHash: forkBlock.hash };
    return { ...summary, ingestedBlocks: blocks.length, tip: { height: tip.height, hash: tip.blockHash } };
  }

  async #blockAt(chainId: string, height: bigint): Promise<StoredBlock | undefined> {
    const tx = this.#tx;
    const r = await tx.db
      .selectFrom(T.blocks)
      .selectAll()
      .where('chain_id', '=', chainId)
      .where('height', '=', enc(tx, T.blocks, 'height', height))
      .executeTakeFirst();
    return r ? toBlock(tx, r) : undefined;
  }

  // A replay must be the same block: a block hash commits to its content, so a difference means
  // the caller's data is wrong (an adapter's bug, say), and silently keeping either version would
  // hide it. Every stored column is compared: the block's, each transaction's and each output's.
  // Replays are rare (re-delivery after a crash), so the extra reads cost nothing in steady state.
  async #assertSameBlock(stored: StoredBlock, block: ValidBlock): Promise<void> {
    const tx = this.#tx;
    const problem = (field: string, what: string) => {
      throw new ConflictError(`block ${block.blockHash} is already stored with a different ${what}`, { field, chainId: block.chainId });
    };
    const blockField = (name: string) => (block.prefix ? `${block.prefix}.${name}` : name);
    if (stored.parentHash !== block.parentHash) problem(blockField('parentHash'), 'parent hash');
    if (stored.txCount !== block.txCount) problem(blockField('txCount'), 'transaction count');
    if (stored.time.getTime() !== block.time.getTime()) problem(blockField('time'), 'time');
    const rows = await tx.db
      .selectFrom(T.txs)
      .selectAll()
      .where('chain_id', '=', block.chainId)
      .where('block_height', '=', enc(tx, T.txs, 'block_height', block.height))
      .execute();
    const storedTxs = new Map(rows.map((r) => [String(r.tx_hash), tx.codec(T.txs).decode<Record<string, unknown>>(r)]));
    if (storedTxs.size !== block.transactions.length) problem(blockField('transactions'), 'transaction list');
    for (const t of block.transactions) {
      const r = storedTxs.get(t.txHash);
      if (!r) return problem(txField(block, t.txHash, 'txHash'), 'transaction list');
      const check = (name: string, same: boolean) => {
        if (!same) problem(txField(block, t.txHash, name), `${name} of transaction ${t.txHash}`);
      };
      check('indexInBlock', Number(r.index_in_block) === t.indexInBlock);
      check('actionType', (r.action_type ?? null) === (t.actionType ?? null));
      check('actionVersion', (r.action_version ?? null) === (t.actionVersion ?? null));
      check('address', (r.address ?? null) === (t.address ?? null));
      check('payload', sameBytes(r.payload as Uint8Array | null | undefined, t.payload));
    }
    const outs = await tx.db
      .selectFrom(T.outputs)
      .select(['tx_hash', 'address', 'value'])
      .where('chain_id', '=', block.chainId)
      .where('block_height', '=', enc(tx, T.outputs, 'block_height', block.height))
      .execute();
    const codec = tx.codec(T.outputs);
    const storedOuts = new Map(outs.map((o) => [`${String(o.tx_hash)} ${String(o.address)}`, codec.decode<{ value: bigint }>(o).value]));
    let given = 0;
    for (const t of block.transactions) {
      for (const o of t.outputs) {
        given++;
        if (storedOuts.get(`${t.txHash} ${o.address}`) !== o.value)
          problem(txField(block, t.txHash, 'outputs'), `outputs of transaction ${t.txHash}`);
      }
    }
    if (given !== storedOuts.size) problem(blockField('transactions'), 'set of outputs');
  }

  async #insertBlockRows(chainId: string, block: ValidBlock): Promise<void> {
    const tx = this.#tx;
    await tx.insert(T.blocks, {
      chain_id: chainId,
      height: block.height,
      hash: block.blockHash,
      parent_hash: block.parentHash,
      block_time: block.time,
      tx_count: block.txCount,
    });
    await insertMany(
      tx,
      T.txs,
      block.transactions.map((t) => ({
        chain_id: chainId,
        tx_hash: t.txHash,
        block_height: block.height,
        block_hash: block.blockHash,
        index_in_block: t.indexInBlock,
        action_type: t.actionType,
        action_version: t.actionVersion,
        payload: t.payload,
        address: t.address,
      })),
    );
    await insertMany(
      tx,
      T.outputs,
      block.transactions.flatMap((t) =>
        t.outputs.map((o) => ({
          chain_id: chainId,
          tx_hash: t.txHash,
          address: o.address,
          value: o.value,
          block_height: block.height,
          index_in_block: t.indexInBlock,
        })),
      ),
    );
  }

  /** Throws a ConflictError naming the first of the block's transactions already stored on the chain, if any. */
  async #refuseStoredTransactions(chainId: string, block: ValidBlock, hashes: readonly string[]): Promise<void> {
    const tx = this.#tx;
    for (const part of chunks(hashes, LOOKUP_CHUNK)) {
      if (!part.length) continue;
      const dup = await tx.db
        .selectFrom(T.txs)
        .select(['tx_hash', 'block_height'])
        .where('chain_id', '=', chainId)
        .where(inValues(tx, T.txs, 'tx_hash', part))
        .executeTakeFirst();
      if (dup) {
        throw new ConflictError(
          `transaction ${String(dup.tx_hash)} is already stored in block ${String(dup.block_height)} of chain ${chainId}`,
          {
            field: txField(block, String(dup.tx_hash), 'txHash'),
            chainId,
          },
        );
      }
    }
  }

  async #append(chain: ChainInfo, cursor: ChainCursor, block: ValidBlock, processors: readonly BlockProcessor[]): Promise<void> {
    const tx = this.#tx;
    const chainId = chain.chainId;
    const hashes = block.transactions.map((t) => t.txHash);
    // A transaction already on this chain is refused with a typed error naming it, and nothing of
    // the block is written (the primary key refuses it; tx.uniqueGuarded decides per backend
    // whether to look the hashes up first or only after a refusal).
    await tx.uniqueGuarded(
      'coffer_ingest_block',
      () => this.#insertBlockRows(chainId, block),
      () => this.#refuseStoredTransactions(chainId, block, hashes),
    );
    const ref = { chainId, height: block.height, blockHash: block.blockHash };
    // Included transactions leave the mempool through the journal, so a reorg puts them back.
    for (const part of chunks(hashes, LOOKUP_CHUNK)) {
      if (!part.length) continue;
      const inPool = await tx.db
        .selectFrom(T.mempool)
        .select('tx_hash')
        .where('chain_id', '=', chainId)
        .where(inValues(tx, T.mempool, 'tx_hash', part))
        .execute();
      for (const r of inPool) await journaledDelete(tx, ref, T.mempool, { chain_id: chainId, tx_hash: r.tx_hash });
    }
    const candidate = block.height - BigInt(chain.confirmations) + 1n;
    const finalized =
      candidate >= 0n && (cursor.finalizedHeight === null || candidate > cursor.finalizedHeight) ? candidate : cursor.finalizedHeight;
    await this.#setTip(chainId, cursor, { height: block.height, hash: block.blockHash }, finalized);
    const ctx = { block, tipHeight: block.height, confirmationsNeeded: chain.confirmations };
    for (const p of processors) await p(tx, ctx);
    if (finalized !== null && finalized !== cursor.finalizedHeight) await pruneFinalized(tx, chainId, finalized);
  }

  /** `field`: the caller's field an error names (reorg's forkHeight, an ingested block's height). */
  async #rollback(chain: ChainInfo, cursor: ChainCursor, fork: bigint, field = 'forkHeight'): Promise<ReorgSummary> {
    const tx = this.#tx;
    const chainId = chain.chainId;
    if (cursor.finalizedHeight !== null && fork < cursor.finalizedHeight) {
      throw new FinalityViolationError(
        `cannot reorg chain ${chainId} below its finalized height ${cursor.finalizedHeight} (fork ${fork})`,
        {
          field,
          chainId,
          forkHeight: fork,
          finalizedHeight: cursor.finalizedHeight,
        },
      );
    }
    const forkBlock = await this.#blockAt(chainId, fork);
    if (!forkBlock) throw new NotFoundError(`no block at fork height ${fork} on chain ${chainId}`, { field, chainId });
    // Derived rows first (newest first), then the chain's own rows above the fork.
    const revertedWrites = await revertAbove(tx, chainId, fork);
    const h = enc(tx, T.blocks, 'height', fork);
    // Outputs have no index on height: reach them by the hashes of the transactions above the
    // fork (the position index) and the outputs' primary key, so the cost follows the rows
    // reverted, not the size of the chain (a height predicate on outputs scans all of them, and
    // MariaDB runs a DELETE … IN (subquery) as a dependent subquery, which scans them too).
    const reverted = await tx.db
      .selectFrom(T.txs)
      .select('tx_hash')
      .where('chain_id', '=', chainId)
      .where('block_height', '>', h)
      .execute();
    for (const part of chunks(
      reverted.map((r) => r.tx_hash as string),
      LOOKUP_CHUNK,
    ))
      await tx.db
        .deleteFrom(T.outputs)
        .where('chain_id', '=', chainId)
        .where(inValues(tx, T.outputs, 'tx_hash', part))
        .execute();
    await tx.db.deleteFrom(T.txs).where('chain_id', '=', chainId).where('block_height', '>', h).execute();
    const removed = await tx.db.deleteFrom(T.blocks).where('chain_id', '=', chainId).where('height', '>', h).executeTakeFirst();
    // The finalized height stays: it only ever rises, since the journal below it is gone.
    await this.#setTip(chainId, cursor, { height: fork, hash: forkBlock.hash }, cursor.finalizedHeight);
    return { forkHeight: fork, removedBlocks: Number(removed.numDeletedRows ?? 0n), revertedWrites };
  }

  // ---------------------------------------------------------------- reads

  async blockByHeight(chainId: string, height: bigint): Promise<StoredBlock | null> {
    const id = parse(chainIdSchema, chainId, 'chainId');
    const h = parse(heightSchema, height, 'height');
    await this.#requireChain(id);
    return (await this.#blockAt(id, h)) ?? null;
  }

  async blockByHash(chainId: string, hash: string): Promise<StoredBlock | null> {
    const id = parse(chainIdSchema, chainId, 'chainId');
    const h = parse(hash32Schema, hash, 'hash');
    await this.#requireChain(id);
    return (await this.#blockWithHash(id, h)) ?? null;
  }

  async #blockWithHash(chainId: string, hash: string): Promise<StoredBlock | undefined> {
    const r = await this.#tx.db
      .selectFrom(T.blocks)
      .selectAll()
      .where('chain_id', '=', chainId)
      .where('hash', '=', hash)
      .executeTakeFirst();
    return r ? toBlock(this.#tx, r) : undefined;
  }

  async transaction(chainId: string, txHash: string): Promise<StoredTransaction | null> {
    const tx = this.#tx;
    // The schemas' own patterns first (no zod per call); anything else gets the schema's error.
    const id = typeof chainId === 'string' && CHAIN_ID_RE.test(chainId) ? chainId : parse(chainIdSchema, chainId, 'chainId');
    const h = typeof txHash === 'string' && HASH32_RE.test(txHash) ? txHash : parse(hash32Schema, txHash, 'txHash');
    const codec = tx.codec(T.outputs);
    let r: Record<string, unknown> | undefined;
    let outputs: StoredOutput[] = [];
    if (tx.statementsCostRoundTrips) {
      // One round trip: the transaction's row and its outputs' rows in one statement.
      for (const row of await tx.query(GET_TX_WITH_OUTPUTS, [id, h])) {
        if (Number(row.part) === 0) r = row;
        else outputs.push(decodeOutput(codec, { address: row.out_address, value: row.out_value }));
      }
    } else {
      r = (await tx.query(GET_TX, [id, h]))[0];
      if (r) for (const row of await tx.query(GET_OUTPUTS_OF_TX, [id, h])) outputs.push(decodeOutput(codec, row));
    }
    if (!r) {
      // Only a miss needs the chain: a stored transaction proves its chain exists.
      await this.#requireChain(id);
      return null;
    }
    // Sorted here, not in SQL: collations differ between backends.
    if (outputs.length > 1) outputs.sort(byAddress);
    // toTransaction reads the transaction's columns by name (part and out_* are ignored).
    return toTransaction(tx, r, outputs);
  }

  /** Transactions with fromHeight <= height <= toHeight, in (height, index) order, keyset-paged. */
  async transactionsInRange(
    chainId: string,
    range: { fromHeight: bigint; toHeight: bigint },
    page: PageRequest = {},
  ): Promise<Page<StoredTransaction>> {
    const tx = this.#tx;
    const id = parse(chainIdSchema, chainId, 'chainId');
    const from = parse(heightSchema, range?.fromHeight, 'fromHeight');
    const to = parse(heightSchema, range?.toHeight, 'toHeight');
    if (to < from) invalid('toHeight', 'is below fromHeight');
    const p = parse(pageSchema, page, 'page');
    const limit = p.limit ?? DEFAULT_PAGE;
    await this.#requireChain(id);
    const rows = await tx.db
      .selectFrom(T.txs)
      .selectAll()
      .where('chain_id', '=', id)
      .where('block_height', '>=', enc(tx, T.txs, 'block_height', from))
      .where('block_height', '<=', enc(tx, T.txs, 'block_height', to))
      .$if(!!p.after, (q) => q.where(after(p.after!)))
      .orderBy('block_height')
      .orderBy('index_in_block')
      .limit(limit + 1)
      .execute();
    return this.#page(
      id,
      rows.map((r) => toTransaction(tx, r)),
      limit,
    );
  }

  /**
   * Transactions that involve an address, as the transaction's address or as an output, in
   * (height, index) order, keyset-paged. Addresses match exactly (no case folding).
   */
  async transactionsOfAddress(chainId: string, address: string, page: PageRequest = {}): Promise<Page<StoredTransaction>> {
    const tx = this.#tx;
    const id = parse(chainIdSchema, chainId, 'chainId');
    const addr = parse(addressSchema, address, 'address');
    const p = parse(pageSchema, page, 'page');
    const limit = p.limit ?? DEFAULT_PAGE;
    await this.#requireChain(id);
    // Two index range scans, each limited, merged here: the first `limit` of the union are
    // within the first `limit + 1` of each side.
    const asSender = await tx.db
      .selectFrom(T.txs)
      .select(['tx_hash', 'block_height', 'index_in_block'])
      .where('chain_id', '=', id)
      .where('address', '=', addr)
      .$if(!!p.after, (q) => q.where(after(p.after!)))
      .orderBy('block_height')
      .orderBy('index_in_block')
      .limit(limit + 1)
      .execute();
    const asOutput = await tx.db
      .selectFrom(T.outputs)
      .select(['tx_hash', 'block_height', 'index_in_block'])
      .where('chain_id', '=', id)
      .where('address', '=', addr)
      .$if(!!p.after, (q) => q.where(after(p.after!)))
      .orderBy('block_height')
      .orderBy('index_in_block')
      .limit(limit + 1)
      .execute();
    const merged = new Map<string, TxPosition>();
    for (const r of [...asSender, ...asOutput]) {
      merged.set(r.tx_hash as string, { height: BigInt(String(r.block_height)), index: Number(r.index_in_block) });
    }
    const ordered = [...merged.entries()].sort(([, a], [, b]) =>
      a.height === b.height ? a.index - b.index : a.height < b.height ? -1 : 1,
    );
    const wanted = ordered.slice(0, limit + 1).map(([h]) => h);
    const rows = wanted.length
      ? await tx.db.selectFrom(T.txs).selectAll().where('chain_id', '=', id).where('tx_hash', 'in', wanted).execute()
      : [];
    const txs = rows.map((r) => toTransaction(tx, r));
    txs.sort((a, b) => (a.blockHeight === b.blockHeight ? a.indexInBlock - b.indexInBlock : a.blockHeight < b.blockHeight ? -1 : 1));
    return this.#page(id, txs, limit);
  }

  async #page(chainId: string, rows: StoredTransaction[], limit: number): Promise<Page<StoredTransaction>> {
    let more = rows.length > limit;
    let page = rows.slice(0, limit);
    // A transaction may have 10,000 outputs, so a page of 1,000 could hold ten million: a page
    // ends early, with a cursor, before its outputs pass PAGE_OUTPUTS (its first transaction is
    // always in it). Counted from the index before any output is read.
    const fits = await this.#fittingOutputs(chainId, page);
    if (fits < page.length) {
      page = page.slice(0, fits);
      more = true;
    }
    const items = await this.#withOutputs(chainId, page);
    const last = items[items.length - 1];
    return { items, next: more && last ? { height: last.blockHeight, index: last.indexInBlock } : null };
  }

  /** How many of `txs`, from the first, fit in a page's PAGE_OUTPUTS outputs (at least one). */
  async #fittingOutputs(chainId: string, txs: readonly StoredTransaction[]): Promise<number> {
    if (txs.length <= 1) return txs.length;
    const counts = new Map<string, number>();
    for (const part of chunks(txs.map(hashOfTx))) {
      const rows = await this.#tx.db
        .selectFrom(T.outputs)
        .select((eb) => ['tx_hash', eb.fn.countAll().as('n')])
        .where('chain_id', '=', chainId)
        .where('tx_hash', 'in', part)
        .groupBy('tx_hash')
        .execute();
      for (const r of rows) counts.set(r.tx_hash as string, Number(r.n));
    }
    let total = 0;
    for (let i = 0; i < txs.length; i++) {
      total += counts.get(txs[i]!.txHash) ?? 0;
      if (total > PAGE_OUTPUTS && i > 0) return i;
    }
    return txs.length;
  }

  /** Fills in the outputs of `txs` (in place) and returns them. */
  async #withOutputs(chainId: string, txs: StoredTransaction[]): Promise<StoredTransaction[]> {
    const tx = this.#tx;
    const byHash = new Map<string, StoredOutput[]>(txs.map((t) => [t.txHash, t.outputs]));
    for (const part of chunks([...byHash.keys()])) {
      const rows = await tx.db
        .selectFrom(T.outputs)
        .select(['tx_hash', 'address', 'value'])
        .where('chain_id', '=', chainId)
        .where('tx_hash', 'in', part)
        .execute();
      for (const raw of rows) {
        const r = tx.codec(T.outputs).decode<{ tx_hash: string; address: string; value: bigint }>(raw);
        byHash.get(r.tx_hash)!.push({ address: r.address, value: r.value });
      }
    }
    // Sorted here, not in SQL: collations differ between backends.
    for (const t of txs) t.outputs.sort(byAddress);
    return txs;
  }
}

export type ChainWithState = ChainInfo & { cursor: ChainCursor; health: SyncHealth };

/** `ids` (those in `chains`) with their cursor and health rows, in the order of `ids`. */
function withState(
  tx: Tx,
  ids: readonly string[],
  chains: ReadonlyMap<string, ChainInfo>,
  cursors: readonly unknown[],
  health: readonly unknown[],
): ChainWithState[] {
  const cursorOf = new Map(cursors.map((r) => toCursor(tx, r)).map((c) => [c.chainId, c]));
  const healthOf = new Map(health.map((r) => toHealth(tx, r)).map((h) => [h.chainId, h]));
  const out: ChainWithState[] = [];
  for (const id of ids) {
    const c = chains.get(id);
    if (!c) continue;
    const cursor = cursorOf.get(id);
    const h = healthOf.get(id);
    // Written with the chain row in one transaction, so a chain without them is damage.
    if (!cursor || !h) throw new NotFoundError(`no cursor or sync health row for chain ${id}`, { chainId: id });
    out.push({ ...c, cursor, health: h });
  }
  return out;
}

// Module-level, not a closure per call: tsx runs the sources through esbuild with keepNames, which
// names every named closure with Object.defineProperty as it is created (about 1 µs each).
function decodeOutput(codec: TableCodec, raw: Record<string, unknown>): StoredOutput {
  const o = codec.decode<{ address: string; value: bigint }>(raw);
  return { address: o.address, value: o.value };
}

const hashOfTx = (t: StoredTransaction) => t.txHash;

const byAddress = (a: { address: string }, b: { address: string }) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0);

// Point reads from the compiled-query cache (db/prepared.ts). Columns are listed rather than
// selected with *, so a later migration adding a column does not change a prepared statement's
// result type.
const GET_TX = defineQuery('chain.transaction', (db, $) =>
  db
    .selectFrom(T.txs)
    .select(['chain_id', 'tx_hash', 'block_height', 'block_hash', 'index_in_block', 'action_type', 'action_version', 'payload', 'address'])
    .where('chain_id', '=', $(0))
    .where('tx_hash', '=', $(1)),
);
const GET_OUTPUTS_OF_TX = defineQuery('chain.transaction.outputs', (db, $) =>
  db.selectFrom(T.outputs).select(['tx_hash', 'address', 'value']).where('chain_id', '=', $(0)).where('tx_hash', '=', $(1)),
);
// Both in one statement, where a statement is a round trip (tx.statementsCostRoundTrips): the
// transaction's row (part 0) and each output's (part 1) in the same columns, nulls where a part
// has nothing. A JOIN would repeat the transaction's columns, its payload (unbounded bytes)
// included, for each of up to 10,000 outputs.
const GET_TX_WITH_OUTPUTS = defineQuery('chain.transaction.withOutputs', (db, $) =>
  db
    .selectFrom(T.txs)
    .select([
      sql<number>`0`.as('part'),
      'chain_id',
      'tx_hash',
      'block_height',
      'block_hash',
      'index_in_block',
      'action_type',
      'action_version',
      'payload',
      'address',
      sql`null`.as('out_address'),
      sql`null`.as('out_value'),
    ])
    .where('chain_id', '=', $(0))
    .where('tx_hash', '=', $(1))
    .unionAll(
      db
        .selectFrom(T.outputs)
        .select([
          sql<number>`1`.as('part'),
          'chain_id',
          'tx_hash',
          sql`null`.as('block_height'),
          sql`null`.as('block_hash'),
          sql`null`.as('index_in_block'),
          sql`null`.as('action_type'),
          sql`null`.as('action_version'),
          sql`null`.as('payload'),
          sql`null`.as('address'),
          'address as out_address',
          'value as out_value',
        ])
        .where('chain_id', '=', $(0))
        .where('tx_hash', '=', $(1)),
    ),
);

/** The chain store bound to one transaction. */
export function chain(tx: Tx, opts?: StoreOptions): ChainStore {
  return new ChainStore(tx, opts);
}
