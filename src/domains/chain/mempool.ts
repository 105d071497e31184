// The mempool of each chain: add with dedupe and eviction, and claims that two workers can never
// both win. A claim is a lease stored on the row (claimed_by, claim_expires_at), taken with
// FOR UPDATE SKIP LOCKED on PostgreSQL and MySQL/MariaDB (SQLite's write lock serialises it),
// so it holds across processes, unlike a process-local lock. Inclusion in a block drops the
// row (chain ingest, through the undo journal so a reorg restores it).
import { ConflictError, NotFoundError } from '../../db/errors.js';
import { keysetAfter } from '../../db/keyset.js';
import type { Tx } from '../../db/tx.js';
import { z } from 'zod';
import { chunks, enc, T, toMempoolTx } from './rows.js';
import type { ClaimOptions, MempoolAddResult, MempoolInput, MempoolTx, StoreOptions } from './types.js';
import { chainIdSchema, claimSchema, hash32Schema, mempoolInputSchema, parse } from './validate.js';

const DEFAULT_LEASE_MS = 60_000;
/** Rows no worker holds: never claimed, or the lease ran out by `now`. */
const claimableAt = (tx: Tx, now: Date) => {
  const nowEnc = enc(tx, T.mempool, 'claim_expires_at', now);
  return (eb: any) => eb.or([eb('claimed_by', 'is', null), eb('claim_expires_at', '<=', nowEnc)]);
};
const hashList = () => z.array(hash32Schema, { error: 'expected an array' }).max(10_000, 'more than 10 000 hashes');

export class MempoolStore {
  readonly #tx: Tx;
  readonly #clock: () => Date;

  constructor(tx: Tx, opts: StoreOptions = {}) {
    this.#tx = tx;
    this.#clock = opts.clock ?? (() => new Date());
  }

  // Locking the chain row serialises adds of one chain, so the capacity check cannot be raced
  // at READ COMMITTED; claims do not take it, so they never wait on adds.
  async #lockChain(chainId: string): Promise<{ capacity: number }> {
    const tx = this.#tx;
    const r = await tx
      .lockRows(tx.db.selectFrom(T.chains).select(['chain_id', 'mempool_capacity']).where('chain_id', '=', chainId))
      .executeTakeFirst();
    if (!r) throw new NotFoundError(`unknown chain ${chainId}`, { field: 'chainId', chainId });
    return { capacity: Number(r.mempool_capacity) };
  }

  async #requireChain(chainId: string): Promise<void> {
    const r = await this.#tx.db.selectFrom(T.chains).select('chain_id').where('chain_id', '=', chainId).executeTakeFirst();
    if (!r) throw new NotFoundError(`unknown chain ${chainId}`, { field: 'chainId', chainId });
  }

  /**
   * Adds a transaction. Same hash again: 'duplicate' (a different content under the same hash
   * is a ConflictError). Already in a block: 'confirmed'. When full, evicts the lowest fee,
   * then the oldest, among unclaimed transactions; a newcomer paying less than that is refused.
   */
  async add(chainId: string, input: MempoolInput): Promise<MempoolAddResult> {
    const tx = this.#tx;
    tx.assertWritable('mempool.add');
    const id = parse(chainIdSchema, chainId, 'chainId');
    const v = parse(mempoolInputSchema, input);
    const { capacity } = await this.#lockChain(id);
    const existing = await tx.db
      .selectFrom(T.mempool)
      .select('content')
      .where('chain_id', '=', id)
      .where('tx_hash', '=', v.txHash)
      .executeTakeFirst();
    if (existing) {
      if (!Buffer.from(existing.content as Uint8Array).equals(v.content)) {
        throw new ConflictError(`transaction ${v.txHash} is already in the mempool with different content`, {
          field: 'content',
          chainId: id,
        });
      }
      return { status: 'duplicate' };
    }
    const confirmed = await tx.db
      .selectFrom(T.txs)
      .select('tx_hash')
      .where('chain_id', '=', id)
      .where('tx_hash', '=', v.txHash)
      .executeTakeFirst();
    if (confirmed) return { status: 'confirmed' };

    const now = this.#clock();
    const counted = await tx.db
      .selectFrom(T.mempool)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('chain_id', '=', id)
      .executeTakeFirstOrThrow();
    // Victims are chosen and locked before anything is deleted: a newcomer refused (fee too
    // low, or every row claimed) leaves the pool exactly as it was.
    const need = Number(counted.n) - capacity + 1;
    let evicted: string[] = [];
    if (need > 0) {
      const victims = await this.#lockClaimable(id, now, 'evict', need);
      if (victims.length < need) return { status: 'rejected', reason: 'full' };
      // The newcomer is the newest, so at equal fee the older victim goes ("lowest fee, then oldest").
      if (victims.some((t) => v.fee < t.fee)) return { status: 'rejected', reason: 'fee_too_low' };
      evicted = victims.map((t) => t.txHash);
      let gone = 0;
      for (const part of chunks(evicted)) {
        const r = await tx.db.deleteFrom(T.mempool).where('chain_id', '=', id).where('tx_hash', 'in', part).executeTakeFirst();
        gone += Number(r.numDeletedRows);
      }
      // Locked by us, so all of them are still there.
      if (gone !== evicted.length)
        throw new ConflictError(`mempool eviction on chain ${id} lost ${evicted.length - gone} row(s) to another transaction`, {
          chainId: id,
        });
    }
    await tx.insert(T.mempool, {
      chain_id: id,
      tx_hash: v.txHash,
      content: v.content,
      fee: v.fee,
      size_bytes: v.sizeBytes,
      received_at: v.receivedAt ?? now,
      claimed_by: null,
      claim_expires_at: null,
    });
    return { status: 'added', evicted };
  }

  /**
   * Claimable rows (unclaimed or lease-expired) of a chain, locked, in claim order (highest fee,
   * then oldest) or eviction order (lowest fee, then oldest), up to `limit` of them and, when
   * `maxBytes` is given, only rows that still fit (a row too large is skipped, not a stop: one
   * large transaction at the top must not starve every worker with a byte budget).
   * Candidates are read without locking, then locked by primary key with SKIP LOCKED, only as
   * many as are still wanted. A single "ORDER BY fee LIMIT n FOR UPDATE SKIP LOCKED" is not
   * enough on MySQL/MariaDB: when it sorts, InnoDB locks every row it read before the LIMIT
   * applies, so one claimer would lock the whole pool and starve the others.
   */
  async #lockClaimable(id: string, now: Date, order: 'claim' | 'evict', limit: number, maxBytes?: number): Promise<MempoolTx[]> {
    const tx = this.#tx;
    const claimable = claimableAt(tx, now);
    const feeDesc = order === 'claim';
    const window = Math.min(1000, limit * 2 + 8);
    const picked: MempoolTx[] = [];
    let bytes = 0;
    let last: { fee: bigint; receivedAt: Date; txHash: string } | undefined;
    for (let round = 0; round < 64 && picked.length < limit; round++) {
      const cands = (
        await tx.db
          .selectFrom(T.mempool)
          .select(['tx_hash', 'fee', 'received_at', 'size_bytes'])
          .where('chain_id', '=', id)
          .where(claimable)
          .$if(!!last, (q) =>
            q.where((eb: any) =>
              // Keyset "after the last candidate" in (fee, received_at, tx_hash) order.
              keysetAfter(eb, [
                { column: 'fee', value: enc(tx, T.mempool, 'fee', last!.fee), desc: feeDesc },
                { column: 'received_at', value: enc(tx, T.mempool, 'received_at', last!.receivedAt) },
                { column: 'tx_hash', value: last!.txHash },
              ]),
            ),
          )
          .orderBy('fee', feeDesc ? 'desc' : 'asc')
          .orderBy('received_at', 'asc')
          .orderBy('tx_hash', 'asc')
          .limit(window)
          .execute()
      ).map((r) => tx.codec(T.mempool).decode<{ tx_hash: string; fee: bigint; received_at: Date; size_bytes: number }>(r));
      if (!cands.length) break;
      const tail = cands[cands.length - 1]!;
      last = { fee: tail.fee, receivedAt: tail.received_at, txHash: tail.tx_hash };
      let i = 0;
      while (i < cands.length && picked.length < limit) {
        const batch: string[] = [];
        let batchBytes = 0;
        for (; i < cands.length && batch.length < limit - picked.length; i++) {
          const size = cands[i]!.size_bytes;
          if (maxBytes !== undefined && bytes + batchBytes + size > maxBytes) continue;
          batch.push(cands[i]!.tx_hash);
          batchBytes += size;
        }
        if (!batch.length) break;
        const locked = await tx
          .lockRows(tx.db.selectFrom(T.mempool).selectAll().where('chain_id', '=', id).where('tx_hash', 'in', batch).where(claimable), {
            skipLocked: true,
          })
          .execute();
        const rank = new Map(batch.map((h, k) => [h, k]));
        for (const row of locked.map((x) => toMempoolTx(tx, x)).sort((a, b) => rank.get(a.txHash)! - rank.get(b.txHash)!)) {
          picked.push(row);
          bytes += row.sizeBytes;
        }
      }
      if (cands.length < window) break;
    }
    return picked;
  }

  /**
   * Claims up to `limit` unclaimed (or lease-expired) transactions, highest fee first, then
   * oldest, for `worker`. Rows another transaction is claiming are skipped, not waited for.
   */
  async claim(chainId: string, options: ClaimOptions): Promise<MempoolTx[]> {
    const tx = this.#tx;
    tx.assertWritable('mempool.claim');
    const id = parse(chainIdSchema, chainId, 'chainId');
    const o = parse(claimSchema, options);
    await this.#requireChain(id);
    const now = this.#clock();
    const picked = await this.#lockClaimable(id, now, 'claim', o.limit, o.maxBytes);
    if (!picked.length) return [];
    const expires = new Date(now.getTime() + (o.leaseMs ?? DEFAULT_LEASE_MS));
    const r = await tx.db
      .updateTable(T.mempool)
      .set(tx.codec(T.mempool).encode({ claimed_by: o.worker, claim_expires_at: expires }))
      .where('chain_id', '=', id)
      .where(
        'tx_hash',
        'in',
        picked.map((p) => p.txHash),
      )
      .where(claimableAt(tx, now))
      .executeTakeFirst();
    // The rows are locked by us, so every one must still be claimable; anything else means the
    // locking did not hold and two workers could hold the same transaction.
    if (Number(r.numUpdatedRows) !== picked.length) {
      throw new ConflictError(`mempool claim on chain ${id} lost ${picked.length - Number(r.numUpdatedRows)} row(s) to another worker`, {
        chainId: id,
      });
    }
    return picked.map((p) => ({ ...p, claimedBy: o.worker, claimExpiresAt: expires }));
  }

  /** Gives back claims `worker` holds, so other workers can take them. Returns how many. */
  async release(chainId: string, worker: string, txHashes: readonly string[]): Promise<number> {
    const tx = this.#tx;
    tx.assertWritable('mempool.release');
    const id = parse(chainIdSchema, chainId, 'chainId');
    const w = parse(claimSchema.shape.worker, worker, 'worker');
    const hashes = parse(hashList(), txHashes, 'txHashes');
    await this.#requireChain(id);
    let n = 0;
    for (const part of chunks(hashes)) {
      if (!part.length) continue;
      const r = await tx.db
        .updateTable(T.mempool)
        .set(tx.codec(T.mempool).encode({ claimed_by: null, claim_expires_at: null }))
        .where('chain_id', '=', id)
        .where('tx_hash', 'in', part)
        .where('claimed_by', '=', w)
        .executeTakeFirst();
      n += Number(r.numUpdatedRows);
    }
    return n;
  }

  /** Removes transactions (e.g. found invalid by a worker). Not journaled: no block caused it. */
  async remove(chainId: string, txHashes: readonly string[]): Promise<number> {
    const tx = this.#tx;
    tx.assertWritable('mempool.remove');
    const id = parse(chainIdSchema, chainId, 'chainId');
    const hashes = parse(hashList(), txHashes, 'txHashes');
    await this.#requireChain(id);
    let n = 0;
    for (const part of chunks(hashes)) {
      if (!part.length) continue;
      const r = await tx.db.deleteFrom(T.mempool).where('chain_id', '=', id).where('tx_hash', 'in', part).executeTakeFirst();
      n += Number(r.numDeletedRows);
    }
    return n;
  }

  async get(chainId: string, txHash: string): Promise<MempoolTx | null> {
    const tx = this.#tx;
    const id = parse(chainIdSchema, chainId, 'chainId');
    const h = parse(hash32Schema, txHash, 'txHash');
    await this.#requireChain(id);
    const r = await tx.db.selectFrom(T.mempool).selectAll().where('chain_id', '=', id).where('tx_hash', '=', h).executeTakeFirst();
    return r ? toMempoolTx(tx, r) : null;
  }

  async size(chainId: string): Promise<number> {
    const id = parse(chainIdSchema, chainId, 'chainId');
    await this.#requireChain(id);
    const r = await this.#tx.db
      .selectFrom(T.mempool)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('chain_id', '=', id)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }
}

/** The mempool store bound to one transaction. */
export function mempool(tx: Tx, opts?: StoreOptions): MempoolStore {
  return new MempoolStore(tx, opts);
}
