// The mempool on every backend: dedupe, eviction order, claims (order, byte limit, leases,
// release), drop on inclusion and restore on reorg, bad input; and, on PostgreSQL, MariaDB/MySQL
// and SQLite, concurrent workers on separate connections never claim the same transaction.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ConflictError, NotFoundError, ValidationError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { mempool } from './mempool.js';
import { chain } from './store.js';
import { CHAIN_TEST_MIGRATIONS, dumpDatabase, hashOf, makeBlock, ZERO_HASH } from './test-support.js';
import type { MempoolInput } from './types.js';

let seq = 0;
const newChainId = () => `m-${++seq}-${Math.random().toString(36).slice(2, 7)}`;
const T0 = Date.UTC(2030, 5, 1);
const at = (ms: number) => ({ clock: () => new Date(T0 + ms) });
const item = (chainId: string, n: number, fee: bigint, over: Partial<MempoolInput> = {}): MempoolInput => ({
  txHash: hashOf('mp', chainId, n),
  content: Buffer.from(`tx-${n}`),
  fee,
  sizeBytes: 100 + n,
  receivedAt: new Date(T0 + n * 1000),
  ...over,
});

async function setup(coffer: Coffer, capacity = 100): Promise<string> {
  const id = newChainId();
  await coffer.write((tx) =>
    chain(tx).registerChain({ chainId: id, name: id, network: 'test', confirmations: 6, mempoolCapacity: capacity }),
  );
  return id;
}

forEachBackend('chain mempool', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: CHAIN_TEST_MIGRATIONS });
  });
  const add = (id: string, i: MempoolInput) => coffer.write((tx) => mempool(tx, at(0)).add(id, i), { op: 'mempool.add' });

  test('add dedupes by hash, refuses different content under one hash, and skips confirmed transactions', async () => {
    const id = await setup(coffer);
    assert.deepEqual(await add(id, item(id, 1, 10n)), { status: 'added', evicted: [] });
    assert.deepEqual(await add(id, item(id, 1, 10n)), { status: 'duplicate' });
    await assert.rejects(
      add(id, item(id, 1, 10n, { content: Buffer.from('other') })),
      (e: unknown) => e instanceof ConflictError && e.details.field === 'content',
    );
    await coffer.write((tx) => chain(tx).ingestBlock(makeBlock(id, 0n, ZERO_HASH, [{ hash: hashOf('mp', id, 2) }])));
    assert.deepEqual(await add(id, item(id, 2, 10n)), { status: 'confirmed' });
    const got = await coffer.read((tx) => mempool(tx).get(id, hashOf('mp', id, 1)));
    assert.deepEqual(got, {
      chainId: id,
      txHash: hashOf('mp', id, 1),
      content: Buffer.from('tx-1'),
      fee: 10n,
      sizeBytes: 101,
      receivedAt: new Date(T0 + 1000),
      claimedBy: null,
      claimExpiresAt: null,
    });
    assert.equal(await coffer.read((tx) => mempool(tx).size(id)), 1);
  });

  test('when full, evicts the lowest fee then the oldest unclaimed transaction; a lower fee newcomer is refused', async () => {
    const id = await setup(coffer, 3);
    await add(id, item(id, 1, 5n));
    await add(id, item(id, 2, 5n));
    await add(id, item(id, 3, 9n));
    assert.deepEqual(await add(id, item(id, 4, 4n)), { status: 'rejected', reason: 'fee_too_low' });
    // Equal fee: the oldest of the lowest goes (tx 1, received first).
    assert.deepEqual(await add(id, item(id, 5, 5n)), { status: 'added', evicted: [hashOf('mp', id, 1)] });
    assert.deepEqual(await add(id, item(id, 6, 50n)), { status: 'added', evicted: [hashOf('mp', id, 2)] });
    // Claimed transactions are not evicted; when every one is claimed the pool is simply full.
    await coffer.write((tx) => mempool(tx, at(0)).claim(id, { worker: 'w', limit: 10, leaseMs: 60_000 }));
    assert.deepEqual(await add(id, item(id, 7, 1000n)), { status: 'rejected', reason: 'full' });
    // Once the leases expire they are evictable again.
    assert.deepEqual(await coffer.write((tx) => mempool(tx, at(120_000)).add(id, item(id, 7, 1000n))), {
      status: 'added',
      evicted: [hashOf('mp', id, 5)],
    });
    const left = await coffer.read((tx) => tx.db.selectFrom('chain_mempool').select('tx_hash').where('chain_id', '=', id).execute());
    assert.deepEqual(new Set(left.map((r) => r.tx_hash)), new Set([3, 6, 7].map((n) => hashOf('mp', id, n))));
  });

  test('a refused newcomer evicts nothing, also from a pool over capacity (rows a reorg put back); an accepted one evicts enough', async () => {
    const id = await setup(coffer, 2);
    const pool = async () =>
      new Set(
        (await coffer.read((tx) => tx.db.selectFrom('chain_mempool').select('tx_hash').where('chain_id', '=', id).execute())).map(
          (r) => r.tx_hash,
        ),
      );
    await add(id, item(id, 1, 10n));
    await add(id, item(id, 2, 20n));
    const b0 = makeBlock(id, 0n, ZERO_HASH);
    await coffer.write((tx) => chain(tx, at(0)).ingestBlock(b0));
    await coffer.write((tx) =>
      chain(tx, at(0)).ingestBlock(makeBlock(id, 1n, b0.blockHash, [{ hash: hashOf('mp', id, 1) }, { hash: hashOf('mp', id, 2) }])),
    );
    await add(id, item(id, 3, 5n));
    await add(id, item(id, 4, 30n));
    await coffer.write((tx) => chain(tx, at(0)).reorg(id, 0n, []));
    const four = new Set([1, 2, 3, 4].map((n) => hashOf('mp', id, n)));
    assert.deepEqual(await pool(), four);
    // Three must go for one to come in, and the third lowest pays 20: a fee of 15 is refused
    // and nothing is evicted.
    assert.deepEqual(await add(id, item(id, 5, 15n)), { status: 'rejected', reason: 'fee_too_low' });
    assert.deepEqual(await pool(), four);
    // Every row claimed but one: not enough to evict, nothing is.
    await coffer.write((tx) => mempool(tx, at(0)).claim(id, { worker: 'w', limit: 3, leaseMs: 60_000 }));
    assert.deepEqual(await add(id, item(id, 6, 1000n)), { status: 'rejected', reason: 'full' });
    assert.deepEqual(await pool(), four);
    // Leases expired: the three lowest go, lowest fee first.
    assert.deepEqual(await coffer.write((tx) => mempool(tx, at(120_000)).add(id, item(id, 6, 1000n))), {
      status: 'added',
      evicted: [3, 1, 2].map((n) => hashOf('mp', id, n)),
    });
    assert.deepEqual(await pool(), new Set([4, 6].map((n) => hashOf('mp', id, n))));
  });

  test('a transaction too large for the byte budget is skipped, not a stop: smaller ones behind it are claimed', async () => {
    const id = await setup(coffer);
    await add(id, item(id, 1, 100n, { sizeBytes: 1000 }));
    for (let n = 2; n <= 6; n++) await add(id, item(id, n, 50n, { sizeBytes: 10 }));
    const got = await coffer.write((tx) => mempool(tx, at(0)).claim(id, { worker: 'w', limit: 4, maxBytes: 35 }));
    assert.deepEqual(
      got.map((t) => t.txHash),
      [2, 3, 4].map((n) => hashOf('mp', id, n)),
    );
  });

  test('claim takes the highest fee, then oldest, within count and byte limits; leases expire; release gives back', async () => {
    const id = await setup(coffer);
    const fees = [3n, 9n, 9n, 1n, 7n];
    for (const [i, f] of fees.entries()) await add(id, item(id, i, f));
    const c1 = await coffer.write((tx) => mempool(tx, at(0)).claim(id, { worker: 'w1', limit: 2, leaseMs: 1000 }));
    assert.deepEqual(
      c1.map((t) => t.txHash),
      [hashOf('mp', id, 1), hashOf('mp', id, 2)],
    );
    assert.ok(c1.every((t) => t.claimedBy === 'w1' && t.claimExpiresAt!.getTime() === T0 + 1000));
    // Byte limit: tx 4 (104 bytes) fits, tx 0 (100 bytes) would exceed 150 in total.
    const c2 = await coffer.write((tx) => mempool(tx, at(10)).claim(id, { worker: 'w2', limit: 5, maxBytes: 150 }));
    assert.deepEqual(
      c2.map((t) => t.txHash),
      [hashOf('mp', id, 4)],
    );
    // w1's lease expires at +1000 ms: w3 then takes them over.
    const c3 = await coffer.write((tx) => mempool(tx, at(500)).claim(id, { worker: 'w3', limit: 10 }));
    assert.deepEqual(
      c3.map((t) => t.txHash),
      [hashOf('mp', id, 0), hashOf('mp', id, 3)],
    );
    const c4 = await coffer.write((tx) => mempool(tx, at(1000)).claim(id, { worker: 'w3', limit: 10 }));
    assert.deepEqual(
      c4.map((t) => t.txHash),
      [hashOf('mp', id, 1), hashOf('mp', id, 2)],
    );
    // Release only affects the worker's own claims.
    assert.equal(await coffer.write((tx) => mempool(tx).release(id, 'w1', [hashOf('mp', id, 1)])), 0);
    assert.equal(await coffer.write((tx) => mempool(tx).release(id, 'w2', [hashOf('mp', id, 4), hashOf('mp', id, 1)])), 1);
    const c5 = await coffer.write((tx) => mempool(tx, at(1001)).claim(id, { worker: 'w4', limit: 10 }));
    assert.deepEqual(
      c5.map((t) => t.txHash),
      [hashOf('mp', id, 4)],
    );
    assert.deepEqual(await coffer.write((tx) => mempool(tx, at(1002)).claim(id, { worker: 'w5', limit: 10 })), []);
    assert.equal(await coffer.write((tx) => mempool(tx).remove(id, [hashOf('mp', id, 0), hashOf('mp', id, 99)])), 1);
    assert.equal(await coffer.read((tx) => mempool(tx).size(id)), 4);
  });

  test('inclusion in a block drops the transaction; a reorg of that block puts it back as it was', async () => {
    const id = await setup(coffer);
    await add(id, item(id, 1, 5n));
    await add(id, item(id, 2, 6n));
    await coffer.write((tx) => mempool(tx, at(0)).claim(id, { worker: 'w', limit: 1, leaseMs: 5000 }));
    const b0 = makeBlock(id, 0n, ZERO_HASH);
    // A pinned clock, so the sync health's updated_at compares equal.
    await coffer.write((tx) => chain(tx, at(0)).ingestBlock(b0));
    const before = await dumpDatabase(coffer);
    await coffer.write((tx) =>
      chain(tx, at(0)).ingestBlock(
        makeBlock(id, 1n, b0.blockHash, [{ hash: hashOf('mp', id, 1) }, { hash: hashOf('mp', id, 2) }, { hash: hashOf('other') }]),
      ),
    );
    assert.equal(await coffer.read((tx) => mempool(tx).size(id)), 0);
    const r = await coffer.write((tx) => chain(tx, at(0)).reorg(id, 0n, []));
    assert.equal(r.revertedWrites, 2);
    assert.deepEqual(await dumpDatabase(coffer), before);
    assert.equal((await coffer.read((tx) => mempool(tx).get(id, hashOf('mp', id, 2))))!.claimedBy, 'w');
  });

  test('bad input gets a ValidationError naming the field (NotFoundError for an unknown chain) and writes nothing', async () => {
    const id = await setup(coffer);
    const before = await dumpDatabase(coffer);
    const cases: [Partial<MempoolInput> | Record<string, unknown>, string][] = [
      [{ txHash: 'A'.repeat(64) }, 'txHash'],
      [{ txHash: 'ab' }, 'txHash'],
      [{ txHash: 'x'.repeat(64) }, 'txHash'],
      [{ fee: -1n }, 'fee'],
      [{ fee: 1.5 }, 'fee'],
      [{ fee: 2n ** 63n }, 'fee'],
      [{ sizeBytes: -1 }, 'sizeBytes'],
      [{ content: 'not bytes' }, 'content'],
      [{ receivedAt: new Date('nope') }, 'receivedAt'],
    ];
    for (const [over, field] of cases) {
      await assert.rejects(
        add(id, { ...item(id, 1, 1n), ...over } as MempoolInput),
        (e: unknown) => e instanceof ValidationError && e.details.field === field,
        field,
      );
    }
    await assert.rejects(
      add('no-such-chain', item(id, 1, 1n)),
      (e: unknown) => e instanceof NotFoundError && e.details.field === 'chainId',
    );
    await assert.rejects(add('bad id!', item(id, 1, 1n)), (e: unknown) => e instanceof ValidationError && e.details.field === 'chainId');
    const claim = (o: Record<string, unknown>) => coffer.write((tx) => mempool(tx).claim(id, { worker: 'w', limit: 1, ...o } as never));
    await assert.rejects(claim({ limit: 0 }), (e: unknown) => e instanceof ValidationError && e.details.field === 'limit');
    await assert.rejects(claim({ worker: '' }), (e: unknown) => e instanceof ValidationError && e.details.field === 'worker');
    // Refused whether or not the pool holds anything (before, the database refused it, naming its column).
    await assert.rejects(claim({ worker: 'w\u0000' }), (e: unknown) => e instanceof ValidationError && e.details.field === 'worker');
    await assert.rejects(claim({ leaseMs: -5 }), (e: unknown) => e instanceof ValidationError && e.details.field === 'leaseMs');
    await assert.rejects(
      coffer.write((tx) => mempool(tx).release(id, 'w', ['nothex'])),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'txHashes[0]',
    );
    await assert.rejects(
      coffer.write((tx) => mempool(tx).remove(id, [hashOf(1), 'ABC'])),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'txHashes[1]',
    );
    assert.deepEqual(await dumpDatabase(coffer), before);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

forEachBackend(
  'chain mempool concurrency',
  (ctx) => {
    test('workers on separate connections claiming in parallel never take the same transaction', async () => {
      const db = await ctx.newDatabase();
      const first = await ctx.open({ url: db.url });
      const id = await setup(first, 1000);
      const total = 80;
      for (let i = 0; i < total; i++) await first.write((tx) => mempool(tx).add(id, item(id, i, BigInt(i % 7))));
      const workers = await Promise.all(Array.from({ length: 4 }, () => ctx.open({ url: db.url, settings: { busyTimeoutMs: 50 } })));
      const claimed = workers.map(() => [] as string[]);
      await Promise.all(
        workers.map(async (w, k) => {
          for (let round = 0; round < 200; round++) {
            const got = await w.write(
              async (tx) => {
                const c = await mempool(tx).claim(id, { worker: `w${k}`, limit: 3, leaseMs: 600_000 });
                // Hold the claim transaction open a moment so the others run into its locks.
                await sleep(3);
                return c;
              },
              { op: 'mempool.claim' },
            );
            if (!got.length) return;
            claimed[k]!.push(...got.map((t) => t.txHash));
          }
        }),
      );
      const all = claimed.flat();
      assert.equal(new Set(all).size, all.length, 'a transaction was claimed twice');
      assert.equal(all.length, total);
      assert.ok(claimed.filter((c) => c.length > 0).length >= 2, `work was spread: ${claimed.map((c) => c.length).join(',')}`);
      // The database agrees with what each worker was told.
      const rows = await first.read((tx) =>
        tx.db.selectFrom('chain_mempool').select(['tx_hash', 'claimed_by']).where('chain_id', '=', id).execute(),
      );
      const owner = new Map(rows.map((r) => [r.tx_hash as string, r.claimed_by as string]));
      claimed.forEach((hashes, k) => hashes.forEach((h) => assert.equal(owner.get(h), `w${k}`)));
    });

    test('a claim in progress does not block another worker: it skips the locked rows (SKIP LOCKED) or waits for the write lock (SQLite)', async () => {
      const db = await ctx.newDatabase();
      const a = await ctx.open({ url: db.url });
      const b = await ctx.open({ url: db.url, settings: { busyTimeoutMs: 20 } });
      const id = await setup(a, 100);
      for (let i = 0; i < 6; i++) await a.write((tx) => mempool(tx).add(id, item(id, i, 10n)));
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let claimedA!: (h: string[]) => void;
      const aClaimed = new Promise<string[]>((r) => (claimedA = r));
      const ta = a.write(async (tx) => {
        const got = await mempool(tx).claim(id, { worker: 'a', limit: 3 });
        claimedA(got.map((t) => t.txHash));
        await held;
        return got;
      });
      const hashesA = await aClaimed;
      if (ctx.backend === 'sqlite') {
        // One writer at a time: b waits (retrying on busy) until a commits, then sees a's claims.
        const tb = b.write((tx) => mempool(tx).claim(id, { worker: 'b', limit: 6 }), { op: 'mempool.claim' });
        setTimeout(release, 50);
        const [, gotB] = await Promise.all([ta, tb]);
        assert.deepEqual(new Set(gotB.map((t) => t.txHash)).size, 3);
        assert.ok(gotB.every((t) => !hashesA.includes(t.txHash)));
      } else {
        try {
          // a's transaction is still open: b must not wait for it, and must get the other rows.
          const gotB = await b.write((tx) => mempool(tx).claim(id, { worker: 'b', limit: 6 }));
          assert.equal(gotB.length, 3);
          assert.ok(gotB.every((t) => !hashesA.includes(t.txHash)));
        } finally {
          release();
          await ta;
        }
      }
    });

    test('a claim committed while a block including the transaction waits keeps its lease through a reorg of that block', async () => {
      const db = await ctx.newDatabase();
      const a = await ctx.open({ url: db.url });
      const b = await ctx.open({ url: db.url, settings: { busyTimeoutMs: 5000 } });
      const id = await setup(a, 100);
      await a.write((tx) => mempool(tx).add(id, item(id, 1, 10n)));
      const b0 = makeBlock(id, 0n, ZERO_HASH);
      await a.write((tx) => chain(tx).ingestBlock(b0));
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let claimed!: () => void;
      const isClaimed = new Promise<void>((r) => (claimed = r));
      const ta = a.write(async (tx) => {
        const got = await mempool(tx, at(0)).claim(id, { worker: 'w1', limit: 1, leaseMs: 3_600_000 });
        claimed();
        await held;
        return got;
      });
      await isClaimed;
      // The block reaches the mempool row while the claim is still open, then waits for it.
      const tb = b.write((tx) => chain(tx, at(0)).ingestBlock(makeBlock(id, 1n, b0.blockHash, [{ hash: hashOf('mp', id, 1) }])));
      await sleep(300);
      release();
      assert.equal((await ta).length, 1);
      await tb;
      assert.equal(await a.read((tx) => mempool(tx).size(id)), 0);
      await a.write((tx) => chain(tx, at(0)).reorg(id, 0n, []));
      const back = await a.read((tx) => mempool(tx).get(id, hashOf('mp', id, 1)));
      assert.equal(back?.claimedBy, 'w1', 'the reorg restored the row without the claim committed before the block deleted it');
      // So a second worker cannot take it while w1's lease runs.
      assert.deepEqual(await a.write((tx) => mempool(tx, at(1000)).claim(id, { worker: 'w2', limit: 1 })), []);
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
