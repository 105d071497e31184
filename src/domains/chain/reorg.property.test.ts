// Properties of ingest and reorg on every backend, compared table by table over the whole
// database (every table of the schema, block-processor rows included):
//  - any replay of stored blocks (and of mempool adds, registration, a no-op reorg) changes nothing;
//  - ingest a branch then reorg it away for one at least as long: the database equals one that
//    never saw the branch;
//  - reorg to a shorter branch (or a plain rollback): the same, except that the finalized height
//    keeps the watermark the orphaned branch reached, and the undo journal is pruned up to it.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { mempool } from './mempool.js';
import { chain } from './store.js';
import {
  balanceProcessor,
  CHAIN_TEST_MIGRATIONS,
  dumpDatabase,
  hashOf,
  makeBlock,
  ZERO_HASH,
  type Dump,
  type TxSpec,
} from './test-support.js';
import type { IngestBlockInput } from './types.js';

const ADDRS = ['addr1', 'addr2', 'addr3', 'addr4'] as const;
const POOL = 10;
const processors = [balanceProcessor];

const txArb = fc.record({
  pick: fc.integer({ min: 0, max: POOL - 1 }),
  action: fc.constantFrom('mint', 'burn', 'pay', null),
  sender: fc.option(fc.constantFrom(...ADDRS), { nil: null }),
  outputs: fc.uniqueArray(fc.record({ address: fc.constantFrom(...ADDRS), value: fc.bigInt({ min: 0n, max: 2n ** 70n }) }), {
    selector: (o) => o.address,
    maxLength: 3,
  }),
  payload: fc.option(fc.uint8Array({ maxLength: 6 }), { nil: null }),
});
type TxGen = typeof txArb extends fc.Arbitrary<infer T> ? T : never;
const branchArb = (min: number, max: number) => fc.array(fc.array(txArb, { maxLength: 3 }), { minLength: min, maxLength: max });

const commonArb = {
  start: fc.bigInt({ min: 0n, max: 5n }),
  base: branchArb(1, 4),
  pool: fc.uniqueArray(fc.record({ pick: fc.integer({ min: 0, max: POOL - 1 }), fee: fc.bigInt({ min: 0n, max: 50n }) }), {
    selector: (m) => m.pick,
    maxLength: 6,
  }),
  claims: fc.integer({ min: 0, max: 3 }),
  viaIngest: fc.boolean(),
};

/** conf >= 2 and |X| <= conf - 1, so the branch never makes the fork block final (that reorg is refused, tested elsewhere). */
const longerArb = fc
  .integer({ min: 2, max: 5 })
  .chain((conf) =>
    branchArb(1, conf - 1).chain((x) =>
      fc.record({ conf: fc.constant(conf), x: fc.constant(x), y: branchArb(x.length, x.length + 2), ...commonArb }),
    ),
  );
const shorterArb = fc
  .integer({ min: 2, max: 5 })
  .chain((conf) =>
    branchArb(1, conf - 1).chain((x) =>
      fc.record({ conf: fc.constant(conf), x: fc.constant(x), y: branchArb(0, x.length - 1), ...commonArb }),
    ),
  );

type Scenario = {
  conf: number;
  start: bigint;
  base: TxGen[][];
  x: TxGen[][];
  y: TxGen[][];
  pool: { pick: number; fee: bigint }[];
  claims: number;
  viaIngest: boolean;
};

let run = 0;

/** Turns generated transactions into linked blocks; pool picks may repeat across branches (the same transaction mined on both sides). */
function blocksOf(
  chainId: string,
  label: string,
  from: bigint,
  parent: string,
  txs: TxGen[][],
  poolHash: (n: number) => string,
): IngestBlockInput[] {
  const used = new Set<string>();
  const out: IngestBlockInput[] = [];
  txs.forEach((blockTxs, i) => {
    const specs: TxSpec[] = blockTxs.map((t, j) => {
      let hash = label === 'base' ? hashOf(chainId, 'base', i, j) : poolHash(t.pick);
      if (used.has(hash)) hash = hashOf(chainId, label, i, j);
      used.add(hash);
      return { hash, action: t.action, address: t.sender, outputs: t.outputs, payload: t.payload ? Buffer.from(t.payload) : null };
    });
    const b = makeBlock(chainId, from + BigInt(i), i === 0 ? parent : out[i - 1]!.blockHash, specs, label);
    out.push(b);
  });
  return out;
}

function plan(s: Scenario) {
  const chainId = `p${++run}-${Math.random().toString(36).slice(2, 6)}`;
  const poolHash = (n: number) => hashOf(chainId, 'pool', n);
  const base = blocksOf(chainId, 'base', s.start, ZERO_HASH, s.base, poolHash);
  const tip = base[base.length - 1]!;
  const fork = tip.height;
  const x = blocksOf(chainId, 'x', fork + 1n, tip.blockHash, s.x, poolHash);
  const y = blocksOf(chainId, 'y', fork + 1n, tip.blockHash, s.y, poolHash);
  const clock = () => new Date(Date.UTC(2030, 0, 1) + run * 1000);
  return { chainId, base, x, y, fork, poolHash, clock };
}

type Plan = ReturnType<typeof plan>;

async function prepare(c: Coffer, s: Scenario, p: Plan): Promise<void> {
  await c.write((tx) =>
    chain(tx, { clock: p.clock }).registerChain({ chainId: p.chainId, name: 'prop', network: 'test', confirmations: s.conf }),
  );
  for (const b of p.base) await c.write((tx) => chain(tx, { clock: p.clock }).ingestBlock(b, { processors }));
  for (const m of s.pool) {
    await c.write((tx) =>
      mempool(tx, { clock: p.clock }).add(p.chainId, {
        txHash: p.poolHash(m.pick),
        content: Buffer.from(`m${m.pick}`),
        fee: m.fee,
        sizeBytes: 10 + m.pick,
        receivedAt: new Date(1_000 * m.pick),
      }),
    );
  }
  if (s.claims) await c.write((tx) => mempool(tx, { clock: p.clock }).claim(p.chainId, { worker: 'prop', limit: s.claims }));
}

async function ingestAll(c: Coffer, p: Plan, blocks: IngestBlockInput[]): Promise<void> {
  for (const b of blocks) {
    const r = await c.write((tx) => chain(tx, { clock: p.clock }).ingestBlock(b, { processors }));
    assert.equal(r.status, 'ingested');
  }
}

/** Replaces branch X by branch Y: either one reorg call, or ingestBlock(reorg: true) and appends. */
async function reorgTo(c: Coffer, s: Scenario, p: Plan): Promise<number> {
  if (s.viaIngest && p.y.length) {
    const r = await c.write((tx) => chain(tx, { clock: p.clock }).ingestBlock(p.y[0]!, { processors, reorg: true }));
    assert.equal(r.reorg?.forkHeight, p.fork);
    assert.equal(r.reorg?.removedBlocks, p.x.length);
    await ingestAll(c, p, p.y.slice(1));
    return r.reorg!.revertedWrites;
  }
  const r = await c.write((tx) => chain(tx, { clock: p.clock }).reorg(p.chainId, p.fork, p.y, { processors }), { op: 'chain.reorg' });
  assert.equal(r.removedBlocks, p.x.length);
  assert.equal(r.ingestedBlocks, p.y.length);
  return r.revertedWrites;
}

const finOf = (d: Dump, chainId: string) => {
  const row = d.chain_cursors!.find((r) => r.chain_id === chainId);
  return (row?.finalized_height as bigint | null) ?? -1n;
};

forEachBackend('chain reorg properties', (ctx) => {
  const dbs: Record<'never' | 'reorged' | 'neverShort' | 'reorgedShort' | 'replay', Coffer> = {} as never;
  before(async () => {
    for (const k of ['never', 'reorged', 'neverShort', 'reorgedShort', 'replay'] as const)
      dbs[k] = await ctx.open({ migrations: CHAIN_TEST_MIGRATIONS });
  });

  test('property: replaying stored blocks (any subset, any order), mempool adds, registration or a no-op reorg changes nothing', async () => {
    let replayed = 0;
    await fc.assert(
      fc.asyncProperty(longerArb, fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), fc.boolean(), async (s, picks, withReorgFlag) => {
        const c = dbs.replay;
        const p = plan(s);
        await prepare(c, s, p);
        await ingestAll(c, p, p.x);
        const before = await dumpDatabase(c);
        const stored = [...p.base, ...p.x];
        for (const k of picks) {
          const r = await c.write((tx) =>
            chain(tx, { clock: () => new Date(0) }).ingestBlock(stored[k % stored.length]!, { processors, reorg: withReorgFlag }),
          );
          assert.equal(r.status, 'duplicate');
          replayed++;
        }
        for (const m of s.pool) {
          const r = await c.write((tx) =>
            mempool(tx).add(p.chainId, {
              txHash: p.poolHash(m.pick),
              content: Buffer.from(`m${m.pick}`),
              fee: m.fee,
              sizeBytes: 10 + m.pick,
            }),
          );
          assert.ok(r.status === 'duplicate' || r.status === 'confirmed', r.status);
        }
        assert.equal(
          (await c.write((tx) => chain(tx).registerChain({ chainId: p.chainId, name: 'prop', network: 'test', confirmations: s.conf })))
            .created,
          false,
        );
        const tip = stored[stored.length - 1]!;
        const r = await c.write((tx) => chain(tx, { clock: p.clock }).reorg(p.chainId, tip.height, [], { processors }));
        assert.deepEqual([r.removedBlocks, r.revertedWrites], [0, 0]);
        assert.deepEqual(await dumpDatabase(c), before);
      }),
      { numRuns: 20 },
    );
    assert.ok(replayed > 0);
  });

  test('property: ingest a branch, reorg it away for one at least as long: the whole database equals one that never saw it', async () => {
    let reverted = 0;
    await fc.assert(
      fc.asyncProperty(longerArb, async (s) => {
        const p = plan(s);
        await prepare(dbs.never, s, p);
        await ingestAll(dbs.never, p, p.y);
        await prepare(dbs.reorged, s, p);
        await ingestAll(dbs.reorged, p, p.x);
        reverted += await reorgTo(dbs.reorged, s, p);
        assert.deepEqual(await dumpDatabase(dbs.reorged), await dumpDatabase(dbs.never));
      }),
      { numRuns: 25 },
    );
    // The runs did exercise the journal: processor rows and mempool drops were reverted.
    assert.ok(reverted > 0, 'no derived write was ever reverted');
    const derived = await dumpDatabase(dbs.never);
    assert.ok(derived.ct_balances!.length > 0 && derived.ct_events!.length > 0 && derived.chain_undo!.length > 0);
  });

  test('property: reorg to a shorter branch or roll back: equal except the finalized watermark and the journal pruned below it', async () => {
    let watermarkKept = 0;
    await fc.assert(
      fc.asyncProperty(shorterArb, async (s) => {
        const p = plan(s);
        await prepare(dbs.neverShort, s, p);
        await ingestAll(dbs.neverShort, p, p.y);
        await prepare(dbs.reorgedShort, s, p);
        await ingestAll(dbs.reorgedShort, p, p.x);
        await reorgTo(dbs.reorgedShort, s, p);
        const a = await dumpDatabase(dbs.neverShort);
        const b = await dumpDatabase(dbs.reorgedShort);
        assert.deepEqual(Object.keys(b), Object.keys(a));
        for (const t of Object.keys(a)) {
          if (t === 'chain_cursors' || t === 'chain_undo') continue;
          assert.deepEqual(b[t], a[t], `table ${t}`);
        }
        const strip = (d: Dump) => d.chain_cursors!.map(({ finalized_height: _f, ...rest }) => rest);
        assert.deepEqual(strip(b), strip(a));
        for (const row of a.chain_cursors!) {
          const id = row.chain_id as string;
          assert.ok(finOf(b, id) >= finOf(a, id), `finalized height of ${id} went down`);
          if (finOf(b, id) > finOf(a, id)) watermarkKept++;
        }
        assert.deepEqual(
          b.chain_undo,
          a.chain_undo!.filter((r) => (r.height as bigint) > finOf(b, r.chain_id as string)),
        );
      }),
      { numRuns: 20 },
    );
    assert.ok(watermarkKept > 0, 'no run exercised a watermark above the never-ingested one');
  });
});
