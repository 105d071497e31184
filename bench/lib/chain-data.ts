// Synthetic chain data: blocks of on-chain transactions with random 32-byte hashes, a sender
// address and two outputs each (payment and change), addresses drawn from a pool of 100 000
// Dogecoin-like addresses, values in koinu. The same generated blocks feed Coffer and the raw
// driver, so both write identical rows.
import { randomBytes } from 'node:crypto';
import type { IngestBlockInput } from '../../src/domains/chain/types.js';

export const BENCH_CHAIN = 'bench-main';
export const PAYLOAD_BYTES = 64;
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

export function randomHashes(n: number): string[] {
  const buf = randomBytes(32 * n);
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = buf.toString('hex', 32 * i, 32 * i + 32);
  return out;
}

let pool: string[] | undefined;
/** 100 000 distinct D-addresses (34 characters), generated once per process. */
export function addressPool(): string[] {
  if (pool) return pool;
  const n = 100_000;
  const set = new Set<string>();
  while (set.size < n) {
    const b = randomBytes(34);
    b[0] = 0x44; // 'D'
    for (let i = 1; i < 34; i++) b[i] = B58.charCodeAt(b[i]! % 58);
    // A flat string, as JSON.parse or a socket would give: one built by += is a rope, and
    // whichever side first ran a regex over it or bound it paid for flattening it.
    set.add(b.toString('latin1'));
  }
  pool = [...set];
  return pool;
}

export interface BlockShape {
  txPerBlock: number;
  outputsPerTx: number;
}

export const DEFAULT_SHAPE: BlockShape = { txPerBlock: 1000, outputsPerTx: 2 };

/** A block on top of (height - 1, parentHash) with random transactions. */
export function makeBlock(chainId: string, height: bigint, parentHash: string, shape: BlockShape = DEFAULT_SHAPE): IngestBlockInput {
  const addrs = addressPool();
  const n = shape.txPerBlock;
  const hashes = randomHashes(n + 1);
  const rnd = randomBytes(4 * n * (shape.outputsPerTx + 1));
  const payloads = randomBytes(PAYLOAD_BYTES * n);
  const transactions = new Array(n);
  let k = 0;
  const pick = () => addrs[rnd.readUInt32LE(4 * k++) % addrs.length]!;
  for (let i = 0; i < n; i++) {
    const sender = pick();
    const outputs: { address: string; value: bigint }[] = [];
    const seen = new Set<string>([]);
    for (let j = 0; j < shape.outputsPerTx; j++) {
      let a = pick();
      while (seen.has(a)) a = addrs[(addrs.indexOf(a) + 1) % addrs.length]!;
      seen.add(a);
      outputs.push({ address: a, value: BigInt(1 + ((i * 7919 + j * 104729) % 5_000_000)) * 100_000n });
    }
    transactions[i] = {
      txHash: hashes[i + 1]!,
      indexInBlock: i,
      actionType: null,
      actionVersion: null,
      payload: payloads.subarray(PAYLOAD_BYTES * i, PAYLOAD_BYTES * (i + 1)),
      address: sender,
      outputs,
    };
  }
  return { chainId, height, blockHash: hashes[0]!, parentHash, time: new Date(1_700_000_000_000 + Number(height) * 60_000), transactions };
}

/** `count` consecutive blocks on top of the tip (height, hash). */
export function makeBlocks(
  chainId: string,
  tip: { height: bigint; hash: string },
  count: number,
  shape: BlockShape = DEFAULT_SHAPE,
): IngestBlockInput[] {
  const out: IngestBlockInput[] = [];
  let h = tip.height;
  let parent = tip.hash;
  for (let i = 0; i < count; i++) {
    h += 1n;
    const b = makeBlock(chainId, h, parent, shape);
    out.push(b);
    parent = b.blockHash;
  }
  return out;
}

export function txCount(blocks: readonly IngestBlockInput[]): number {
  return blocks.reduce((n, b) => n + b.transactions.length, 0);
}
