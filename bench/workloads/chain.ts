// Workloads 1 (block ingest), 3 (point reads) and 5 (reorg), run on the growing chain fixture
// at each scaling stage. Coffer runs through its public store API (coffer.write/read with
// chain(tx)…); the raw side runs bench/raw/chain.ts on the same database and chain.
import { chain } from '../../src/domains/chain/store.js';
import type { IngestBlockInput } from '../../src/domains/chain/types.js';
import { BENCH_CHAIN, makeBlocks, txCount, type BlockShape } from '../lib/chain-data.js';
import { ChainFixture, CONFIRMATIONS, type Tip } from '../lib/chain-fixture.js';
import { now, stat, withCpu } from '../lib/stats.js';
import { ratioOf, type Measurement, type RunSettings } from '../lib/types.js';
import { rawGetTx, rawGetTxJoined, rawIngest, rawRollback } from '../raw/chain.js';

export interface ChainParams {
  shape: BlockShape;
  /** Blocks ingested per repetition and side. */
  ingestBlocks: number;
  /** Seconds per point-read repetition and side. */
  readSeconds: number;
  readClients: readonly number[];
  reorgDepths: readonly number[];
}

const tipOf = (b: IngestBlockInput): Tip => ({ height: b.height, hash: b.blockHash });

async function cofferIngest(f: ChainFixture, blocks: readonly IngestBlockInput[]): Promise<void> {
  for (const b of blocks) {
    const r = await f.bench.coffer.write((tx) => chain(tx).ingestBlock(b), { op: 'chain.ingestBlock' });
    if (r.status !== 'ingested') throw new Error(`block ${b.height} was ${r.status}`);
    f.advance(tipOf(b), b.transactions.length);
  }
}

async function rawIngestAll(f: ChainFixture, blocks: readonly IngestBlockInput[]): Promise<void> {
  for (const b of blocks) {
    await rawIngest(f.raw, b, CONFIRMATIONS);
    f.advance(tipOf(b), b.transactions.length);
  }
}

/** Workload 1: blocks of on-chain transactions with their outputs, cursor advanced and committed per block. */
export async function ingest(f: ChainFixture, stage: string, p: ChainParams, s: RunSettings): Promise<Measurement> {
  const tableRows = f.rows;
  const cofferRates: number[] = [];
  const rawRates: number[] = [];
  const cpu: { coffer: number[]; raw: number[] } = { coffer: [], raw: [] };
  for (let rep = 0; rep < s.reps; rep++) {
    // Alternate which side goes first, so neither always meets a freshly checkpointed WAL.
    for (const side of rep % 2 ? (['raw', 'coffer'] as const) : (['coffer', 'raw'] as const)) {
      const blocks = makeBlocks(BENCH_CHAIN, f.tip, p.ingestBlocks, p.shape);
      const r = await withCpu(() => (side === 'coffer' ? cofferIngest(f, blocks) : rawIngestAll(f, blocks)));
      (side === 'coffer' ? cofferRates : rawRates).push(txCount(blocks) / r.seconds);
      cpu[side].push(r.cpuPct);
    }
  }
  const coffer = stat(cofferRates);
  const raw = stat(rawRates);
  return {
    workload: 'ingest',
    case: `blocks of ${p.shape.txPerBlock} tx, ${p.shape.outputsPerTx} outputs each`,
    backend: f.backend,
    stage,
    tableRows,
    unit: 'tx/s',
    higherIsBetter: true,
    coffer,
    raw,
    ratio: ratioOf(coffer, raw, true),
    extra: { blocksPerRep: p.ingestBlocks, nodeCpuPctCoffer: stat(cpu.coffer).median, nodeCpuPctRaw: stat(cpu.raw).median },
    at: new Date().toISOString(),
  };
}

/** Runs `clients` loops calling `op` until `seconds` pass; returns operations per second. */
export async function closedLoop(
  clients: number,
  seconds: number,
  op: (i: number) => Promise<unknown>,
): Promise<{ rate: number; cpuPct: number }> {
  let done = 0;
  const r = await withCpu(async () => {
    const deadline = now() + seconds;
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = c; now() < deadline; i += clients) {
          await op(i);
          done++;
        }
      }),
    );
  });
  return { rate: done / r.seconds, cpuPct: r.cpuPct };
}

/** Workload 3: a transaction (with its outputs) by hash, from `clients` concurrent clients. */
export async function reads(f: ChainFixture, stage: string, clients: number, p: ChainParams, s: RunSettings): Promise<Measurement> {
  const keys = f.keys;
  if (keys.length === 0) throw new Error('no keys to read');
  const pick = () => keys[(Math.random() * keys.length) | 0]!;
  const cofferOp = async () => {
    const t = await f.bench.coffer.read((tx) => chain(tx).transaction(BENCH_CHAIN, pick()), { op: 'chain.transaction' });
    if (!t || t.outputs.length === 0) throw new Error('point read missed');
  };
  const rawOp = async () => {
    if (!(await rawGetTx(f.raw, BENCH_CHAIN, pick()))) throw new Error('raw point read missed');
  };
  const joinedOp = async () => {
    if (!(await rawGetTxJoined(f.raw, BENCH_CHAIN, pick()))) throw new Error('raw point read missed');
  };
  // Warm-up (not counted): caches, prepared statements, pool connections.
  if (!s.smoke) {
    await closedLoop(clients, 1, cofferOp);
    await closedLoop(clients, 1, rawOp);
    await closedLoop(clients, 0.5, joinedOp);
  }
  const c: number[] = [];
  const r: number[] = [];
  const j: number[] = [];
  const cpu: { coffer: number[]; raw: number[] } = { coffer: [], raw: [] };
  for (let rep = 0; rep < s.reps; rep++) {
    const a = await closedLoop(clients, p.readSeconds, cofferOp);
    const b = await closedLoop(clients, p.readSeconds, rawOp);
    const d = await closedLoop(clients, p.readSeconds / 2, joinedOp);
    (c.push(a.rate), r.push(b.rate), j.push(d.rate));
    (cpu.coffer.push(a.cpuPct), cpu.raw.push(b.cpuPct));
  }
  const coffer = stat(c);
  const raw = stat(r);
  const joined = stat(j);
  return {
    workload: 'reads',
    case: `${clients} client${clients > 1 ? 's' : ''}`,
    backend: f.backend,
    stage,
    tableRows: f.rows,
    unit: 'reads/s',
    higherIsBetter: true,
    coffer,
    raw,
    ratio: ratioOf(coffer, raw, true),
    extra: {
      rawOneStatement: joined.median,
      ratioVsOneStatement: coffer.median / joined.median,
      nodeCpuPctCoffer: stat(cpu.coffer).median,
      nodeCpuPctRaw: stat(cpu.raw).median,
    },
    at: new Date().toISOString(),
  };
}

/** Workload 5: roll back the top `depth` blocks (of `txPerBlock` tx) of the chain. */
export async function reorg(f: ChainFixture, stage: string, depth: number, p: ChainParams, s: RunSettings): Promise<Measurement> {
  const tableRows = f.rows;
  const c: number[] = [];
  const r: number[] = [];
  for (let rep = 0; rep < s.reps; rep++) {
    for (const side of ['coffer', 'raw'] as const) {
      // Set-up (not timed): `depth` blocks on top, identical rows from either path (the raw
      // one is faster).
      const fork = f.tip;
      const blocks = makeBlocks(BENCH_CHAIN, fork, depth, p.shape);
      await rawIngestAll(f, blocks);
      const t0 = now();
      if (side === 'coffer') {
        const res = await f.bench.coffer.write((tx) => chain(tx).reorg(BENCH_CHAIN, fork.height, []), { op: 'chain.reorg' });
        if (res.removedBlocks !== depth) throw new Error(`coffer reorg removed ${res.removedBlocks} blocks, not ${depth}`);
      } else {
        const removed = await rawRollback(f.raw, BENCH_CHAIN, fork.height);
        if (removed !== depth) throw new Error(`raw rollback removed ${removed} blocks, not ${depth}`);
      }
      (side === 'coffer' ? c : r).push(now() - t0);
      f.rollback(fork, txCount(blocks));
    }
  }
  const coffer = stat(c);
  const raw = stat(r);
  const reverted = depth * p.shape.txPerBlock;
  return {
    workload: 'reorg',
    case: `depth ${depth}`,
    backend: f.backend,
    stage,
    tableRows,
    unit: 's',
    higherIsBetter: false,
    coffer,
    raw,
    ratio: ratioOf(coffer, raw, false),
    extra: {
      txReverted: reverted,
      cofferMsPer1kTx: (coffer.median * 1000 * 1000) / reverted,
      rawMsPer1kTx: (raw.median * 1000 * 1000) / reverted,
    },
    at: new Date().toISOString(),
  };
}
