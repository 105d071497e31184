// The chain store on every backend: registration, ingest, replay, refusals, reorgs, finality,
// reads with keyset pagination, isolation between chains, and bad input writing nothing.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ConflictError, InvalidStateTransitionError, NotFoundError, ReadOnlyError, ValidationError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { BlockGapError, FinalityViolationError, ReorgRequiredError } from './errors.js';
import type { BlockProcessor } from './processors.js';
import { chain } from './store.js';
import {
  balanceProcessor,
  CHAIN_TEST_MIGRATIONS,
  dumpDatabase,
  hashOf,
  makeBlock,
  makeChain,
  ZERO_HASH,
  type TxSpec,
} from './test-support.js';
import type { IngestBlockInput, StoredTransaction } from './types.js';

const NOW = new Date('2030-01-02T03:04:05.678Z');
const clock = () => NOW;

let seq = 0;
const newChainId = (p = 'c') => `${p}-${++seq}-${Math.random().toString(36).slice(2, 7)}`;

forEachBackend('chain store', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: CHAIN_TEST_MIGRATIONS });
  });

  const register = (chainId: string, confirmations = 3) =>
    coffer.write((tx) => chain(tx, { clock }).registerChain({ chainId, name: `Chain ${chainId}`, network: 'regtest', confirmations }), {
      op: 'chain.registerChain',
    });
  const ingest = (b: IngestBlockInput, opts: Parameters<ReturnType<typeof chain>['ingestBlock']>[1] = { processors: [balanceProcessor] }) =>
    coffer.write((tx) => chain(tx, { clock }).ingestBlock(b, opts), { op: 'chain.ingestBlock' });
  const read = <T>(fn: (s: ReturnType<typeof chain>) => Promise<T>) => coffer.read((tx) => fn(chain(tx)));

  test('registerChain creates the chain with an empty cursor and health; again is a no-op; other settings conflict', async () => {
    const id = newChainId();
    const r1 = await register(id);
    assert.equal(r1.created, true);
    assert.deepEqual(r1.chain, {
      chainId: id,
      name: `Chain ${id}`,
      network: 'regtest',
      confirmations: 3,
      mempoolCapacity: 10_000,
      createdAt: NOW,
    });
    const r2 = await register(id);
    assert.equal(r2.created, false);
    await assert.rejects(register(id, 6), (e: unknown) => e instanceof ConflictError && e.details.field === 'confirmations');
    assert.deepEqual(await read((s) => s.getCursor(id)), {
      chainId: id,
      height: null,
      blockHash: null,
      waitingForNextHash: false,
      finalizedHeight: null,
    });
    assert.deepEqual(await read((s) => s.getHealth(id)), {
      chainId: id,
      currentHeight: null,
      latestHeight: null,
      lag: null,
      updatedAt: NOW,
    });
    assert.ok((await read((s) => s.listChains())).some((c) => c.chainId === id));
    await assert.rejects(
      read((s) => s.getCursor('no-such-chain')),
      (e: unknown) => e instanceof NotFoundError && e.details.field === 'chainId',
    );
  });

  test('ingest stores the block, its transactions and outputs, and advances cursor and health in one transaction', async () => {
    const id = newChainId();
    await register(id, 2);
    await coffer.write((tx) => chain(tx, { clock }).reportLatestHeight(id, 110n));
    await coffer.write((tx) => chain(tx).setWaitingForNextHash(id, true));
    const big = 2n ** 200n + 7n;
    const b100 = makeBlock(id, 100n, ZERO_HASH, [
      {
        hash: hashOf(id, 't1'),
        action: 'mint',
        address: 'addrA',
        outputs: [
          { address: 'addrB', value: 5n },
          { address: 'addrA', value: big },
        ],
        payload: Buffer.from([1, 2, 0, 255]),
      },
      { hash: hashOf(id, 't2') },
    ]);
    b100.txCount = 5;
    b100.transactions[1]!.indexInBlock = 4;
    const r = await ingest(b100);
    assert.deepEqual(r, { status: 'ingested', height: 100n, hash: b100.blockHash });
    assert.deepEqual(await read((s) => s.blockByHeight(id, 100n)), {
      chainId: id,
      height: 100n,
      hash: b100.blockHash,
      parentHash: ZERO_HASH,
      time: b100.time,
      txCount: 5,
    });
    assert.deepEqual(await read((s) => s.blockByHash(id, b100.blockHash)), await read((s) => s.blockByHeight(id, 100n)));
    const t1 = await read((s) => s.transaction(id, hashOf(id, 't1')));
    assert.deepEqual(t1, {
      chainId: id,
      txHash: hashOf(id, 't1'),
      blockHeight: 100n,
      blockHash: b100.blockHash,
      indexInBlock: 0,
      actionType: 'mint',
      actionVersion: 1,
      payload: Buffer.from([1, 2, 0, 255]),
      address: 'addrA',
      outputs: [
        { address: 'addrA', value: big },
        { address: 'addrB', value: 5n },
      ],
    } satisfies StoredTransaction);
    assert.equal((await read((s) => s.transaction(id, hashOf(id, 't2'))))!.indexInBlock, 4);
    assert.equal(await read((s) => s.transaction(id, hashOf(id, 'nope'))), null);
    assert.deepEqual(await read((s) => s.getCursor(id)), {
      chainId: id,
      height: 100n,
      blockHash: b100.blockHash,
      waitingForNextHash: false,
      finalizedHeight: 99n,
    });
    assert.deepEqual(await read((s) => s.getHealth(id)), {
      chainId: id,
      currentHeight: 100n,
      latestHeight: 110n,
      lag: 10n,
      updatedAt: NOW,
    });
    // Processor rows were written in the same transaction.
    const bal = await coffer.read((tx) =>
      tx.db.selectFrom('ct_balances').selectAll().where('chain_id', '=', id).orderBy('address').execute(),
    );
    assert.deepEqual(
      bal.map((b) => [b.address, String(b.balance)]),
      [
        ['addrA', big.toString()],
        ['addrB', '5'],
      ],
    );
    const b101 = makeBlock(id, 101n, b100.blockHash);
    await ingest(b101);
    assert.deepEqual(await read((s) => s.getCursor(id)), {
      chainId: id,
      height: 101n,
      blockHash: b101.blockHash,
      waitingForNextHash: false,
      finalizedHeight: 100n,
    });
    assert.equal((await read((s) => s.getHealth(id))).lag, 9n);
    await coffer.write((tx) => chain(tx, { clock }).reportLatestHeight(id, 90n));
    assert.equal((await read((s) => s.getHealth(id))).lag, 0n, 'lag never goes negative');
  });

  test('replaying a stored block is a no-op that runs no processor; different content under its hash is a conflict', async () => {
    const id = newChainId();
    await register(id);
    const blocks = makeChain(id, 0n, 3, ZERO_HASH, 'main', (h) => [
      { hash: hashOf(id, 'tx', h), outputs: [{ address: 'a', value: h + 1n }] },
    ]);
    for (const b of blocks) await ingest(b);
    const before = await dumpDatabase(coffer);
    let calls = 0;
    const counting: BlockProcessor = async () => {
      calls++;
    };
    for (const b of [blocks[2]!, blocks[0]!, blocks[1]!, blocks[2]!]) {
      const r = await ingest(b, { processors: [counting, balanceProcessor] });
      assert.equal(r.status, 'duplicate');
    }
    assert.equal(calls, 0);
    assert.deepEqual(await dumpDatabase(coffer), before);
    const changed = { ...blocks[1]!, txCount: 1, transactions: [] };
    await assert.rejects(ingest(changed), (e: unknown) => e instanceof ConflictError && e.details.field === 'transactions');
    await assert.rejects(
      ingest({ ...blocks[1]!, txCount: 9 }),
      (e: unknown) => e instanceof ConflictError && e.details.field === 'txCount',
    );
    // Every stored column takes part: the block's time, each transaction's fields, each output.
    const b1 = blocks[1]!;
    const t0 = b1.transactions[0]!;
    const withTx = (over: Partial<typeof t0>) => ({ ...b1, transactions: [{ ...t0, ...over }] });
    const variants: [string, unknown, string][] = [
      ['time', { ...b1, time: new Date(0) }, 'time'],
      ['output value', withTx({ outputs: [{ address: 'a', value: 999n }] }), 'transactions[0].outputs'],
      ['output address', withTx({ outputs: [{ address: 'evil', value: 2n }] }), 'transactions[0].outputs'],
      ['an output more', withTx({ outputs: [...t0.outputs, { address: 'b', value: 1n }] }), 'transactions[0].outputs'],
      ['an output fewer', withTx({ outputs: [] }), 'transactions'],
      ['address', withTx({ address: 'someone' }), 'transactions[0].address'],
      ['action', withTx({ actionType: 'mint', actionVersion: 1 }), 'transactions[0].actionType'],
      ['payload', withTx({ payload: Buffer.from('x') }), 'transactions[0].payload'],
    ];
    for (const [what, block, field] of variants) {
      await assert.rejects(
        ingest(block as typeof b1),
        (e: unknown) => e instanceof ConflictError && e.details.field === field,
        `a replay with another ${what} must be refused naming ${field}`,
      );
    }
    // The same hash claimed at another height is refused too.
    await assert.rejects(
      ingest({ ...blocks[1]!, height: 3n, parentHash: blocks[2]!.blockHash }),
      (e: unknown) => e instanceof ConflictError && e.details.field === 'blockHash',
    );
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a block that does not extend the tip is refused with a typed error and nothing is written', async () => {
    const id = newChainId();
    await register(id);
    const main = makeChain(id, 10n, 3, ZERO_HASH);
    for (const b of main) await ingest(b);
    const before = await dumpDatabase(coffer);
    const forkAt11 = makeBlock(id, 12n, hashOf('elsewhere'), [], 'fork');
    await assert.rejects(
      ingest(forkAt11),
      (e: unknown) => e instanceof ReorgRequiredError && e instanceof ConflictError && e.details.reason === 'reorg_required',
    );
    const sibling = makeBlock(id, 12n, main[1]!.blockHash, [], 'sibling');
    await assert.rejects(ingest(sibling), (e: unknown) => e instanceof ReorgRequiredError && e.details.tipHeight === 12n);
    const next = makeBlock(id, 13n, hashOf('wrong parent'), [], 'x');
    await assert.rejects(ingest(next), ReorgRequiredError);
    const gap = makeBlock(id, 15n, hashOf('whatever'), [], 'gap');
    await assert.rejects(ingest(gap), (e: unknown) => e instanceof BlockGapError && e.details.field === 'height');
    // reorg: true with an unknown parent still needs the caller to find the real fork.
    await assert.rejects(ingest(forkAt11, { processors: [balanceProcessor], reorg: true }), ReorgRequiredError);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('ingestBlock with reorg: true replaces the branch above the parent', async () => {
    const id = newChainId();
    await register(id, 1);
    const main = makeChain(id, 0n, 4, ZERO_HASH, 'main', (h) => [{ hash: hashOf(id, 'm', h), outputs: [{ address: 'x', value: 10n }] }]);
    for (const b of main) await ingest(b);
    // Finality with 1 confirmation is immediate, so lift it: register a chain with depth 3 instead.
    const id2 = newChainId();
    await register(id2, 3);
    const m2 = makeChain(id2, 0n, 4, ZERO_HASH, 'main', (h) => [{ hash: hashOf(id2, 'm', h), outputs: [{ address: 'x', value: 10n }] }]);
    for (const b of m2) await ingest(b);
    const side = makeBlock(id2, 3n, m2[2]!.blockHash, [{ hash: hashOf(id2, 's'), outputs: [{ address: 'x', value: 1n }] }], 'side');
    const r = await ingest(side, { processors: [balanceProcessor], reorg: true });
    assert.equal(r.status, 'ingested');
    assert.deepEqual(r.reorg, { forkHeight: 2n, removedBlocks: 1, revertedWrites: 2 });
    assert.equal((await read((s) => s.getCursor(id2))).blockHash, side.blockHash);
    assert.equal(await read((s) => s.transaction(id2, hashOf(id2, 'm', 3n))), null);
    const bal = await coffer.read((tx) =>
      tx.db.selectFrom('ct_balances').select('balance').where('chain_id', '=', id2).where('address', '=', 'x').executeTakeFirstOrThrow(),
    );
    assert.equal(String(bal.balance), '31');
    // On the 1-confirmation chain every block is final at once: no reorg is possible. The error
    // names the ingested block's height (the input has no fork height).
    const side1 = makeBlock(id, 3n, main[2]!.blockHash, [], 'side');
    await assert.rejects(
      ingest(side1, { reorg: true }),
      (e: unknown) => e instanceof FinalityViolationError && e instanceof InvalidStateTransitionError && e.details.field === 'height',
    );
  });

  test('reorg rolls back every block above the fork and every derived row, then ingests the new branch', async () => {
    const id = newChainId();
    // Deep finality, so nothing here becomes final (the watermark has its own test).
    await register(id, 10);
    const base = makeChain(id, 0n, 3, ZERO_HASH, 'base', (h) => [
      { hash: hashOf(id, 'b', h), address: 'alice', outputs: [{ address: 'bob', value: 100n + h }] },
    ]);
    for (const b of base) await ingest(b);
    // A note hanging off bob's balance row (ON DELETE CASCADE) must survive the reorg untouched.
    await coffer.write((tx) => tx.insert('ct_notes', { chain_id: id, address: 'bob', note: 'kyc ok' }));
    const afterBase = await dumpDatabase(coffer);
    const x = makeChain(id, 3n, 2, base[2]!.blockHash, 'x', (h) => [
      {
        hash: hashOf(id, 'x', h),
        action: h === 4n ? 'burn' : 'pay',
        address: 'carol',
        outputs: [
          { address: 'bob', value: 7n },
          { address: 'carol', value: 1n },
        ],
      },
    ]);
    for (const b of x) await ingest(b);
    const y = makeChain(id, 3n, 3, base[2]!.blockHash, 'y', (h) => [
      { hash: hashOf(id, 'y', h), outputs: [{ address: 'dave', value: h }] },
    ]);
    const r = await coffer.write((tx) => chain(tx, { clock }).reorg(id, 2n, y, { processors: [balanceProcessor] }), { op: 'chain.reorg' });
    assert.equal(r.forkHeight, 2n);
    assert.equal(r.removedBlocks, 2);
    assert.ok(r.revertedWrites >= 6, `reverted ${r.revertedWrites}`);
    assert.equal(r.ingestedBlocks, 3);
    assert.deepEqual(r.tip, { height: 5n, hash: y[2]!.blockHash });
    for (const b of x) assert.equal(await read((s) => s.blockByHash(id, b.blockHash)), null);
    // Rolling back the new branch again gives exactly the state after the base.
    const back = await coffer.write((tx) => chain(tx, { clock }).reorg(id, 2n, []), { op: 'chain.reorg' });
    assert.equal(back.ingestedBlocks, 0);
    assert.deepEqual(back.tip, { height: 2n, hash: base[2]!.blockHash });
    assert.deepEqual(await dumpDatabase(coffer), afterBase);
  });

  test('reorg refuses a fork below the finalized height, above the tip, or a branch that does not attach', async () => {
    const id = newChainId();
    await register(id, 2);
    const main = makeChain(id, 0n, 5, ZERO_HASH, 'main', (h) => [{ hash: hashOf(id, 'm', h), outputs: [{ address: 'x', value: 1n }] }]);
    for (const b of main) await ingest(b);
    assert.equal((await read((s) => s.getCursor(id))).finalizedHeight, 3n);
    const before = await dumpDatabase(coffer);
    // Journal entries at or below the finalized height were pruned.
    const heights = await coffer.read((tx) => tx.db.selectFrom('chain_undo').select('height').where('chain_id', '=', id).execute());
    assert.ok(
      heights.length > 0 && heights.every((h) => BigInt(String(h.height)) > 3n),
      JSON.stringify(heights.map((h) => String(h.height))),
    );
    const reorg = (fork: bigint, branch: IngestBlockInput[]) => coffer.write((tx) => chain(tx, { clock }).reorg(id, fork, branch));
    await assert.rejects(
      reorg(2n, makeChain(id, 3n, 3, main[2]!.blockHash, 'f')),
      (e: unknown) => e instanceof FinalityViolationError && e.details.field === 'forkHeight',
    );
    await assert.rejects(reorg(9n, []), (e: unknown) => e instanceof InvalidStateTransitionError && e.details.field === 'forkHeight');
    await assert.rejects(
      reorg(3n, makeChain(id, 4n, 1, hashOf('other'), 'f')),
      (e: unknown) => e instanceof ReorgRequiredError && e.details.field === 'newBranch[0].parentHash',
    );
    await assert.rejects(
      reorg(3n, makeChain(id, 5n, 1, main[3]!.blockHash, 'f')),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'newBranch[0].height',
    );
    const broken = makeChain(id, 4n, 2, main[3]!.blockHash, 'f');
    broken[1]!.parentHash = hashOf('broken');
    await assert.rejects(reorg(3n, broken), (e: unknown) => e instanceof ValidationError && e.details.field === 'newBranch[1].parentHash');
    await assert.rejects(
      reorg(3n, [{ ...makeBlock('other-chain', 4n, main[3]!.blockHash) }]),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'newBranch[0].chainId',
    );
    // A branch block reusing the hash of a block that stays (at or below the fork), or of an
    // earlier branch block, is a conflict naming it, not the unique key's untyped refusal.
    const reused = makeChain(id, 4n, 2, main[3]!.blockHash, 'f');
    reused[1] = { ...reused[1]!, blockHash: main[1]!.blockHash };
    await assert.rejects(reorg(3n, reused), (e: unknown) => e instanceof ConflictError && e.details.field === 'newBranch[1].blockHash');
    const looped = makeChain(id, 4n, 3, main[3]!.blockHash, 'f');
    looped[2] = { ...looped[2]!, blockHash: looped[0]!.blockHash };
    await assert.rejects(reorg(3n, looped), (e: unknown) => e instanceof ConflictError && e.details.field === 'newBranch[2].blockHash');
    // A processor failing half-way through the new branch undoes the rollback too.
    const failing: BlockProcessor = async (_tx, c) => {
      if (c.block.height === 5n) throw new Error('processor failed');
    };
    await assert.rejects(
      coffer.write((tx) =>
        chain(tx, { clock }).reorg(id, 3n, makeChain(id, 4n, 2, main[3]!.blockHash, 'f'), { processors: [balanceProcessor, failing] }),
      ),
      /processor failed/,
    );
    assert.deepEqual(await dumpDatabase(coffer), before);
    // At the finalized height itself the reorg is allowed.
    const ok = await reorg(3n, makeChain(id, 4n, 2, main[3]!.blockHash, 'f'));
    assert.equal(ok.removedBlocks, 1);
    assert.equal((await read((s) => s.getCursor(id))).finalizedHeight, 4n);
    // Rolling back to a shorter chain keeps the watermark: the journal below it is gone.
    await reorg(4n, []);
    assert.deepEqual(await read((s) => s.getCursor(id)), {
      chainId: id,
      height: 4n,
      blockHash: makeBlock(id, 4n, main[3]!.blockHash, [], 'f').blockHash,
      waitingForNextHash: false,
      finalizedHeight: 4n,
    });
  });

  test('reads: by address (sender or output) and by height range, keyset-paged on (height, index)', async () => {
    const id = newChainId();
    await register(id, 10);
    const specs = (h: bigint): TxSpec[] =>
      Array.from({ length: 3 }, (_, i) => ({
        hash: hashOf(id, h, i),
        address: i === 0 ? 'alice' : 'bob',
        outputs: i === 2 ? [{ address: 'alice', value: 1n }] : [{ address: 'carol', value: 2n }],
      }));
    const blocks = makeChain(id, 0n, 6, ZERO_HASH, 'main', specs);
    for (const b of blocks) await ingest(b, {});
    const collect = async (
      page: (
        after: { height: bigint; index: number } | null,
      ) => Promise<{ items: StoredTransaction[]; next: { height: bigint; index: number } | null }>,
    ) => {
      const seen: string[] = [];
      let after: { height: bigint; index: number } | null = null;
      for (let i = 0; i < 100; i++) {
        const p = await page(after);
        seen.push(...p.items.map((t) => `${t.blockHeight}:${t.indexInBlock}`));
        if (!p.next) break;
        after = p.next;
      }
      return seen;
    };
    const range = await collect((after) => read((s) => s.transactionsInRange(id, { fromHeight: 1n, toHeight: 4n }, { after, limit: 4 })));
    assert.deepEqual(range, ['1:0', '1:1', '1:2', '2:0', '2:1', '2:2', '3:0', '3:1', '3:2', '4:0', '4:1', '4:2']);
    const alice = await collect((after) => read((s) => s.transactionsOfAddress(id, 'alice', { after, limit: 5 })));
    assert.deepEqual(
      alice,
      blocks.flatMap((b) => [`${b.height}:0`, `${b.height}:2`]),
    );
    const carol = await collect((after) => read((s) => s.transactionsOfAddress(id, 'carol', { after, limit: 1 })));
    assert.equal(carol.length, 12);
    const page = await read((s) => s.transactionsOfAddress(id, 'alice', { limit: 2 }));
    assert.deepEqual(page.next, { height: 0n, index: 2 });
    assert.deepEqual(page.items[1]!.outputs, [{ address: 'alice', value: 1n }]);
    assert.deepEqual(await read((s) => s.transactionsOfAddress(id, 'nobody')), { items: [], next: null });
    await assert.rejects(
      read((s) => s.transactionsInRange(id, { fromHeight: 5n, toHeight: 1n })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'toHeight',
    );
    await assert.rejects(
      read((s) => s.transactionsInRange(id, { fromHeight: 0n, toHeight: 1n }, { limit: 0 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'page.limit',
    );
  });

  test('a page of transactions ends before its outputs pass 10,000, with a cursor to the rest', async () => {
    const id = newChainId();
    await register(id, 10);
    // Three transactions of 4,000 outputs each and a small one: a page of 10 holds the first two
    // (8,000), the next the third and the small one; the first transaction always fits.
    const wide = (n: number): TxSpec => ({
      hash: hashOf(id, 'wide', n),
      address: 'dave',
      outputs: Array.from({ length: 4000 }, (_, k) => ({ address: `o${n}-${k}`, value: BigInt(k + 1) })),
    });
    const [block] = makeChain(id, 0n, 1, ZERO_HASH, 'main', () => [
      wide(0),
      wide(1),
      wide(2),
      { hash: hashOf(id, 'small'), address: 'dave' },
    ]);
    await ingest(block!, {});
    const first = await read((s) => s.transactionsInRange(id, { fromHeight: 0n, toHeight: 0n }, { limit: 10 }));
    assert.deepEqual(
      first.items.map((t) => t.outputs.length),
      [4000, 4000],
    );
    assert.deepEqual(first.next, { height: 0n, index: 1 });
    const rest = await read((s) => s.transactionsInRange(id, { fromHeight: 0n, toHeight: 0n }, { after: first.next, limit: 10 }));
    assert.deepEqual(
      rest.items.map((t) => [t.indexInBlock, t.outputs.length]),
      [
        [2, 4000],
        [3, 0],
      ],
    );
    assert.equal(rest.next, null);
    const byAddress = await read((s) => s.transactionsOfAddress(id, 'dave', { limit: 10 }));
    assert.equal(byAddress.items.length, 2);
    assert.deepEqual(byAddress.next, { height: 0n, index: 1 });
  });
  test('keyset paging stays correct while a reorg deletes rows between pages', async () => {
    const id = newChainId();
    await register(id, 10);
    const specs =
      (label: string) =>
      (h: bigint): TxSpec[] =>
        Array.from({ length: 2 }, (_, i) => ({ hash: hashOf(id, label, h, i) }));
    const main = makeChain(id, 0n, 5, ZERO_HASH, 'main', specs('m'));
    for (const b of main) await ingest(b, {});
    const p1 = await read((s) => s.transactionsInRange(id, { fromHeight: 0n, toHeight: 10n }, { limit: 5 }));
    assert.deepEqual(p1.next, { height: 2n, index: 0 });
    // Blocks 3 and 4 are replaced by a three-block branch between the two page reads.
    await coffer.write((tx) => chain(tx, { clock }).reorg(id, 2n, makeChain(id, 3n, 3, main[2]!.blockHash, 'y', specs('y'))));
    const p2 = await read((s) => s.transactionsInRange(id, { fromHeight: 0n, toHeight: 10n }, { after: p1.next, limit: 100 }));
    assert.deepEqual(
      p2.items.map((t) => [`${t.blockHeight}:${t.indexInBlock}`, t.txHash]),
      [['2:1', hashOf(id, 'm', 2n, 1)], ...[3n, 4n, 5n].flatMap((h) => [0, 1].map((i) => [`${h}:${i}`, hashOf(id, 'y', h, i)]))],
    );
  });

  test('chains are isolated by chain id: the same hashes on two chains, and a reorg of one leaves the other', async () => {
    const a = newChainId('iso');
    const b = newChainId('iso');
    await register(a, 5);
    await register(b, 5);
    const tx = (h: bigint): TxSpec[] => [{ hash: hashOf('shared', h), address: 'same', outputs: [{ address: 'same', value: 3n }] }];
    const blocksA = makeChain(a, 0n, 3, ZERO_HASH, 'shared', tx).map((blk) => ({ ...blk, blockHash: hashOf('shared-block', blk.height) }));
    blocksA.forEach((blk, i) => (blk.parentHash = i === 0 ? ZERO_HASH : blocksA[i - 1]!.blockHash));
    const blocksB = blocksA.map((blk) => ({ ...blk, chainId: b }));
    for (const blk of blocksA) await ingest(blk);
    for (const blk of blocksB) await ingest(blk);
    const snapshotB = async () =>
      coffer.read(async (t) => ({
        blocks: await t.db.selectFrom('chain_blocks').selectAll().where('chain_id', '=', b).orderBy('height').execute(),
        txs: await t.db.selectFrom('chain_transactions').selectAll().where('chain_id', '=', b).orderBy('tx_hash').execute(),
        balances: await t.db.selectFrom('ct_balances').selectAll().where('chain_id', '=', b).execute(),
        undo: (await t.db.selectFrom('chain_undo').selectAll().where('chain_id', '=', b).orderBy('id').execute()).length,
      }));
    const beforeB = await snapshotB();
    await coffer.write((t) => chain(t, { clock }).reorg(a, 0n, [], { processors: [balanceProcessor] }));
    assert.deepEqual(await snapshotB(), beforeB);
    assert.equal(await read((s) => s.transaction(a, hashOf('shared', 1n))), null);
    assert.equal((await read((s) => s.transaction(b, hashOf('shared', 1n))))!.chainId, b);
  });

  test('a transaction already stored in another block of the chain is a ConflictError naming it', async () => {
    const id = newChainId();
    await register(id);
    const b0 = makeBlock(id, 0n, ZERO_HASH, [{ hash: hashOf(id, 'dup') }]);
    await ingest(b0);
    const before = await dumpDatabase(coffer);
    const b1 = makeBlock(id, 1n, b0.blockHash, [{ hash: hashOf(id, 'new') }, { hash: hashOf(id, 'dup') }]);
    await assert.rejects(ingest(b1), (e: unknown) => e instanceof ConflictError && e.details.field === 'transactions[1].txHash');
    assert.deepEqual(await dumpDatabase(coffer), before);
    // A caller that catches the refusal and commits its transaction commits nothing of the
    // block: its rows were undone with the refusal, and the transaction is still usable.
    const caught = await coffer.write(async (t) => {
      const e = await chain(t, { clock })
        .ingestBlock(b1)
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      await t.db.selectFrom('chain_chains').select('chain_id').where('chain_id', '=', id).execute();
      return e;
    });
    assert.ok(caught instanceof ConflictError && caught.details.field === 'transactions[1].txHash');
    // The field is the caller's position, not the position in block order.
    const reversed = { ...b1, transactions: [...b1.transactions].reverse() };
    await assert.rejects(ingest(reversed), (e: unknown) => e instanceof ConflictError && e.details.field === 'transactions[0].txHash');
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('a failing processor rolls back the block, the cursor and every derived row', async () => {
    const id = newChainId();
    await register(id);
    const b0 = makeBlock(id, 0n, ZERO_HASH, [{ hash: hashOf(id, 'a'), outputs: [{ address: 'z', value: 1n }] }]);
    const before = await dumpDatabase(coffer);
    const boom: BlockProcessor = async () => {
      throw new Error('boom');
    };
    await assert.rejects(ingest(b0, { processors: [balanceProcessor, boom] }), /boom/);
    assert.deepEqual(await dumpDatabase(coffer), before);
  });

  test('writes refuse a read transaction', async () => {
    const id = newChainId();
    await register(id);
    await assert.rejects(
      coffer.read((tx) => chain(tx).ingestBlock(makeBlock(id, 0n, ZERO_HASH))),
      ReadOnlyError,
    );
    await assert.rejects(
      coffer.read((tx) => chain(tx).reorg(id, 0n, [])),
      ReadOnlyError,
    );
  });

  test('bad input gets a ValidationError naming the field (or NotFoundError for an unknown chain) and writes nothing', async () => {
    const id = newChainId();
    await register(id);
    const b0 = makeBlock(id, 0n, ZERO_HASH, [{ hash: hashOf(id, 'g') }]);
    await ingest(b0);
    const good = () =>
      makeBlock(id, 1n, b0.blockHash, [
        { hash: hashOf(id, 't0'), address: 'addr', outputs: [{ address: 'o1', value: 1n }] },
        { hash: hashOf(id, 't1') },
      ]);
    const mutate = (f: (b: any) => void): IngestBlockInput => {
      const b = good();
      f(b);
      return b;
    };
    const cases: [string, IngestBlockInput, string][] = [
      ['uppercase block hash', mutate((b) => (b.blockHash = b.blockHash.toUpperCase())), 'blockHash'],
      ['short block hash', mutate((b) => (b.blockHash = b.blockHash.slice(1))), 'blockHash'],
      ['0x-prefixed parent', mutate((b) => (b.parentHash = '0x' + b.parentHash.slice(2))), 'parentHash'],
      ['non-hex tx hash', mutate((b) => (b.transactions[0].txHash = 'g'.repeat(64))), 'transactions[0].txHash'],
      ['65-char tx hash', mutate((b) => (b.transactions[1].txHash += 'a')), 'transactions[1].txHash'],
      ['negative output value', mutate((b) => (b.transactions[0].outputs[0].value = -1n)), 'transactions[0].outputs[0].value'],
      ['number output value', mutate((b) => (b.transactions[0].outputs[0].value = 1)), 'transactions[0].outputs[0].value'],
      ['output above 2^256-1', mutate((b) => (b.transactions[0].outputs[0].value = 2n ** 256n)), 'transactions[0].outputs[0].value'],
      ['negative height', mutate((b) => (b.height = -1n)), 'height'],
      ['number height', mutate((b) => (b.height = 1)), 'height'],
      ['invalid time', mutate((b) => (b.time = new Date('nope'))), 'time'],
      ['time after year 9999 (MySQL cannot store it)', mutate((b) => (b.time = new Date(Date.UTC(10000, 0, 1)))), 'time'],
      ['time before year 1000', mutate((b) => (b.time = new Date(Date.UTC(999, 11, 31)))), 'time'],
      ['bad chain id', mutate((b) => (b.chainId = 'bad chain')), 'chainId'],
      ['empty address', mutate((b) => (b.transactions[0].address = '')), 'transactions[0].address'],
      ['NUL in action type', mutate((b) => (b.transactions[0].actionType = 'mi\u0000nt')), 'transactions[0].actionType'],
      ['lone surrogate in action type', mutate((b) => (b.transactions[0].actionType = 'mint\ud800')), 'transactions[0].actionType'],
      ['address with space', mutate((b) => (b.transactions[0].outputs[0].address = 'a b')), 'transactions[0].outputs[0].address'],
      [
        'duplicate output address',
        mutate((b) => b.transactions[0].outputs.push({ address: 'o1', value: 2n })),
        'transactions[0].outputs[1].address',
      ],
      ['duplicate tx hash', mutate((b) => (b.transactions[1].txHash = b.transactions[0].txHash)), 'transactions[1].txHash'],
      ['duplicate index', mutate((b) => (b.transactions[1].indexInBlock = 0)), 'transactions[1].indexInBlock'],
      ['negative index', mutate((b) => (b.transactions[1].indexInBlock = -1)), 'transactions[1].indexInBlock'],
      ['index beyond txCount', mutate((b) => (b.transactions[1].indexInBlock = 7)), 'transactions[1].indexInBlock'],
      ['txCount below transactions', mutate((b) => (b.txCount = 1)), 'txCount'],
      [
        'negative action version',
        mutate((b) => ((b.transactions[0].actionType = 'mint'), (b.transactions[0].actionVersion = -2))),
        'transactions[0].actionVersion',
      ],
      ['payload not bytes', mutate((b) => (b.transactions[0].payload = 'abc')), 'transactions[0].payload'],
      ['parent equals hash', mutate((b) => (b.parentHash = b.blockHash)), 'parentHash'],
      ['transactions not an array', mutate((b) => (b.transactions = null)), 'transactions'],
    ];
    const before = await dumpDatabase(coffer);
    for (const [name, block, field] of cases) {
      await assert.rejects(
        ingest(block),
        (e: unknown) => e instanceof ValidationError && e.details.field === field,
        `${name}: expected ValidationError on ${field}`,
      );
    }
    await assert.rejects(
      ingest({ ...good(), chainId: 'unknown-chain' }),
      (e: unknown) => e instanceof NotFoundError && e.details.field === 'chainId',
    );
    await assert.rejects(
      coffer.write((tx) => chain(tx).reorg('unknown-chain', 0n, [])),
      NotFoundError,
    );
    await assert.rejects(
      coffer.write((tx) => chain(tx).reorg(id, -1n, [])),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'forkHeight',
    );
    await assert.rejects(
      coffer.write((tx) => chain(tx).setWaitingForNextHash('unknown-chain', true)),
      (e: unknown) => e instanceof NotFoundError && e.details.field === 'chainId',
    );
    await assert.rejects(
      coffer.write((tx) => chain(tx).reportLatestHeight(id, -5n)),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'latestHeight',
    );
    await assert.rejects(
      coffer.write((tx) => chain(tx).registerChain({ chainId: id + 'x', name: 'n', network: 'r', confirmations: 0 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'confirmations',
    );
    await assert.rejects(
      read((s) => s.transaction(id, 'ABC')),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'txHash',
    );
    await assert.rejects(
      read((s) => s.blockByHash(id, 'zz')),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'hash',
    );
    await assert.rejects(
      read((s) => s.blockByHeight(id, -3n)),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'height',
    );
    await assert.rejects(
      read((s) => s.transaction('unknown-chain', hashOf('x'))),
      (e: unknown) => e instanceof NotFoundError,
    );
    await assert.rejects(
      read((s) => s.transactionsOfAddress(id, 'a', { after: { height: -1n, index: 0 } })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'page.after.height',
    );
    assert.deepEqual(await dumpDatabase(coffer), before);
    // And the good block still goes in afterwards.
    assert.equal((await ingest(good())).status, 'ingested');
  });
});

// Two followers racing on one chain through separate connections: the cursor lock (SQLite: the
// write lock) serialises them, so the same block lands once and competing siblings cannot both win.
forEachBackend(
  'chain ingest concurrency',
  (ctx) => {
    test('racing ingests of one block store it once; racing siblings: one wins, the other must reorg', async () => {
      const db = await ctx.newDatabase();
      const a = await ctx.open({ url: db.url, migrations: CHAIN_TEST_MIGRATIONS });
      const b = await ctx.open({ url: db.url, migrations: CHAIN_TEST_MIGRATIONS, settings: { busyTimeoutMs: 50 } });
      const id = newChainId('race');
      await a.write((tx) => chain(tx).registerChain({ chainId: id, name: id, network: 'n', confirmations: 10 }));
      const blocks = makeChain(id, 0n, 6, ZERO_HASH, 'main', (h) => [{ hash: hashOf(id, h), outputs: [{ address: 'w', value: 1n }] }]);
      for (const blk of blocks) {
        const rs = await Promise.all(
          [a, b, a, b].map((c) =>
            c.write((tx) => chain(tx).ingestBlock(blk, { processors: [balanceProcessor] }), { op: 'chain.ingestBlock' }),
          ),
        );
        assert.deepEqual(rs.map((r) => r.status).sort(), ['duplicate', 'duplicate', 'duplicate', 'ingested']);
      }
      const bal = await a.read((tx) =>
        tx.db.selectFrom('ct_balances').select('balance').where('chain_id', '=', id).executeTakeFirstOrThrow(),
      );
      assert.equal(String(bal.balance), '6', 'processors ran once per block');
      const tip = blocks[5]!;
      const siblings = [a, b].map((c, k) => ({ c, blk: makeBlock(id, 6n, tip.blockHash, [{ hash: hashOf(id, 'sib', k) }], `sib${k}`) }));
      const settled = await Promise.allSettled(
        siblings.map(({ c, blk }) => c.write((tx) => chain(tx).ingestBlock(blk), { op: 'chain.ingestBlock' })),
      );
      assert.equal(settled.filter((r) => r.status === 'fulfilled').length, 1);
      const lost = settled.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(lost.reason instanceof ReorgRequiredError, String(lost.reason));
      assert.equal((await a.read((tx) => chain(tx).transactionsInRange(id, { fromHeight: 6n, toHeight: 6n }))).items.length, 1);
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
