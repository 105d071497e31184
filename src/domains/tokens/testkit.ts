// Test support for the token domain (used by *.test.ts here; not part of the public API): keys
// that sign like real wallets, input builders, a fake chain that feeds the block processor
// directly (and reorgs through the undo journal), invariant checks and table snapshots.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { toBigInt } from '../../db/codec.js';
import type { Coffer } from '../../db/store.js';
import type { Tx } from '../../db/tx.js';
import type { BlockContext, IngestedBlock, IngestedOutput, IngestedTransaction } from '../chain/processors.js';
import { chain } from '../chain/store.js';
import { revertAbove, UNDO_TABLE } from '../chain/undo.js';
import { processTokenBlock, tokenProcessors } from './processors.js';
import { T, type InvoiceInput, type MintInput } from './types.js';
import { invoiceHash, offerHash, type OfferContent } from './validate.js';

export const CHAIN = 'dogetest';

export interface TestKey {
  publicKey: string;
  sign(hashHex: string): string;
}

export function newKey(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  const jwk = publicKey.export({ format: 'jwk' });
  const x = Buffer.from(jwk.x!, 'base64url');
  const y = Buffer.from(jwk.y!, 'base64url');
  const compressed = Buffer.concat([Buffer.from([y[31]! & 1 ? 3 : 2]), x]).toString('hex');
  return { publicKey: compressed, sign: (h) => signHash(privateKey, h) };
}

function signHash(key: KeyObject, hashHex: string): string {
  return sign('sha256', Buffer.from(hashHex, 'hex'), key).toString('hex');
}

let counter = 0;
export const unique = (p: string) => `${p}${++counter}${Math.random().toString(36).slice(2, 6)}`;
export const sha = (s: string) => createHash('sha256').update(s).digest('hex');

export function mintInput(over: Partial<MintInput> = {}): MintInput {
  return {
    chainId: CHAIN,
    title: unique('Tower '),
    description: 'A building, fractionalised',
    fractionCount: 1000n,
    tags: ['real-estate'],
    metadata: { floors: 12, city: 'Lisbon' },
    requirements: null,
    lockupOptions: { days: 30 },
    feedUrl: 'https://feed.example/tower',
    publicKey: minterKey.publicKey,
    contractOfSale: { law: 'PT' },
    ownerAddress: unique('DOwner'),
    ...over,
  };
}

export const minterKey = newKey();
export const sellerKey = newKey();

/** A signed invoice. */
export function invoiceInput(
  v: Omit<InvoiceInput, 'publicKey' | 'signature' | 'createdAt' | 'chainId' | 'priceUnit'> & Partial<InvoiceInput>,
  key = sellerKey,
): InvoiceInput {
  const base = { chainId: CHAIN, priceUnit: 'koinu', createdAt: new Date(1_700_000_000_000 + ++counter), publicKey: key.publicKey, ...v };
  const hash = invoiceHash({
    chainId: base.chainId,
    mintHash: base.mintHash,
    sellerAddress: base.sellerAddress,
    buyerAddress: base.buyerAddress,
    quantity: BigInt(base.quantity),
    price: BigInt(base.price),
    priceUnit: base.priceUnit,
    paymentAddress: base.paymentAddress,
    publicKey: base.publicKey,
    createdAt: base.createdAt,
  });
  return { ...base, signature: v.signature ?? key.sign(hash) };
}

export function signedOffer(c: Omit<OfferContent, 'publicKey'>, key = sellerKey) {
  const content = { ...c, publicKey: key.publicKey };
  return { content, signature: key.sign(offerHash(content)) };
}

// ---------------------------------------------------------------- fake chain

export function actionTx(
  type: 'mint' | 'invoice' | 'payment',
  hash: string,
  outputs: IngestedOutput[] = [],
  over: Partial<IngestedTransaction> = {},
): IngestedTransaction {
  return {
    txHash: sha(unique('tx')),
    indexInBlock: 0,
    actionType: type,
    actionVersion: 1,
    payload: Buffer.from(hash, 'hex'),
    address: null,
    outputs,
    ...over,
  };
}

/**
 * A chain of blocks fed straight to the token processor, one write transaction per block, as
 * chain ingest would. `revert(fork)` reverts the journal above the fork and forgets the blocks.
 * With `{ ingest: true }` the blocks go through chain ingest itself (the chain is registered
 * with the first block), so the chain's cursor and finalized height exist too, and `revert` is
 * chain reorg (which refuses to go below finality).
 */
export class FakeChain {
  readonly chainId: string;
  readonly confirmations: number;
  readonly blocks: IngestedBlock[] = [];
  /** Blocks at or below this height are final; like chain ingest's, it never decreases. */
  finalized = -1n;
  #fork = 0;
  readonly #ingest: boolean;

  constructor(chainId = CHAIN, confirmations = 1, opts: { ingest?: boolean } = {}) {
    this.chainId = chainId;
    this.confirmations = confirmations;
    this.#ingest = opts.ingest ?? false;
  }

  get tip(): bigint {
    return BigInt(this.blocks.length - 1);
  }

  next(transactions: IngestedTransaction[] = []): IngestedBlock {
    const height = BigInt(this.blocks.length);
    const parent = this.blocks[this.blocks.length - 1];
    return {
      chainId: this.chainId,
      height,
      blockHash: sha(`${this.chainId}:${height}:${this.#fork}`),
      parentHash: parent?.blockHash ?? '0'.repeat(64),
      time: new Date(1_700_000_000_000 + Number(height) * 60_000),
      transactions: transactions.map((t, i) => ({ ...t, indexInBlock: i })),
    };
  }

  context(block: IngestedBlock): BlockContext {
    return { block, tipHeight: block.height, confirmationsNeeded: this.confirmations };
  }

  /** Mines a block with these transactions and runs the processor on it. */
  async mine(coffer: Coffer, transactions: IngestedTransaction[] = []): Promise<IngestedBlock> {
    const block = this.next(transactions);
    if (this.#ingest) {
      await coffer.write(
        async (tx) => {
          const c = chain(tx);
          if (!this.blocks.length)
            await c.registerChain({ chainId: this.chainId, name: this.chainId, network: 'regtest', confirmations: this.confirmations });
          await c.ingestBlock(block, { processors: tokenProcessors() });
        },
        { op: 'test.chain.ingestBlock' },
      );
    } else await coffer.write((tx) => processTokenBlock(tx, this.context(block)), { op: 'test.tokens.block' });
    this.blocks.push(block);
    const candidate = block.height - BigInt(this.confirmations) + 1n;
    if (candidate > this.finalized) this.finalized = candidate;
    return block;
  }

  async mineEmpty(coffer: Coffer, n: number): Promise<void> {
    for (let i = 0; i < n; i++) await this.mine(coffer);
  }

  /** Runs the processor again on an already processed block (a replay). */
  async replay(coffer: Coffer, block: IngestedBlock): Promise<void> {
    await coffer.write((tx) => processTokenBlock(tx, { block, tipHeight: this.tip, confirmationsNeeded: this.confirmations }), {
      op: 'test.tokens.replay',
    });
  }

  /**
   * A reorg: everything derived from blocks above `fork` is reverted; those blocks are forgotten.
   * Like chain ingest, it refuses to go below the finalized height, unless `beyondFinality`
   * (tests that show the journal reverts exactly at any depth).
   */
  async revert(coffer: Coffer, fork: bigint, opts: { beyondFinality?: boolean } = {}): Promise<number> {
    if (fork < this.finalized && !opts.beyondFinality) throw new Error(`fork ${fork} is below the finalized height ${this.finalized}`);
    if (this.#ingest && opts.beyondFinality) throw new Error('chain reorg never goes below finality');
    const n = this.#ingest
      ? (await coffer.write((tx) => chain(tx).reorg(this.chainId, fork, [], { processors: tokenProcessors() }), { op: 'test.chain.reorg' }))
          .revertedWrites
      : await coffer.write((tx) => revertAbove(tx, this.chainId, fork), { op: 'test.tokens.revert' });
    this.blocks.length = Number(fork) + 1;
    this.#fork++;
    return n;
  }
}

// ---------------------------------------------------------------- snapshots and invariants

const SNAPSHOT_TABLES = [...Object.values(T), UNDO_TABLE];

/** Every token table (and the undo journal), rows sorted, values normalised: for equality checks. */
export async function snapshot(coffer: Coffer, opts: { journal?: boolean } = {}): Promise<Record<string, string[]>> {
  return coffer.read(async (tx) => {
    const out: Record<string, string[]> = {};
    for (const t of SNAPSHOT_TABLES) {
      if (t === UNDO_TABLE && !opts.journal) continue;
      const rows = await tx.db.selectFrom(t).selectAll().execute();
      out[t] = rows
        .map((r) => {
          const d = tx.codec(t).decode<Record<string, unknown>>(r as Record<string, unknown>);
          if (t === UNDO_TABLE) delete d.id;
          return JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v), 0);
        })
        .sort();
    }
    return out;
  });
}

export async function count(tx: Tx, table: string): Promise<number> {
  const r = await tx.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(toBigInt((r as { n: unknown }).n));
}

export async function counts(coffer: Coffer): Promise<Record<string, number>> {
  return coffer.read(async (tx) => {
    const out: Record<string, number> = {};
    for (const t of SNAPSHOT_TABLES) out[t] = await count(tx, t);
    return out;
  });
}

/**
 * The token invariants, checked in one snapshot:
 * - supply: per credited mint, SUM(balances) = fraction count (reserved tokens are part of the
 *   seller's balance, so balances minus reservations plus reservations is the same sum); an
 *   uncredited mint has no balances;
 * - the balance cache equals SUM(ledger.delta) for every holder, and no holder lacks a row;
 * - no available balance (balance - active reservations) is negative;
 * - escrow agrees with invoices and payments: settled ⇔ invoice paid ⇔ payment settled, and a
 *   settled invoice has exactly its two sale entries.
 */
export async function checkInvariants(coffer: Coffer): Promise<void> {
  await coffer.read(async (tx) => {
    const mints = (await tx.db.selectFrom(T.mints).selectAll().execute()).map((r) => tx.codec(T.mints).decode<Record<string, any>>(r));
    const balances = (await tx.db.selectFrom(T.balances).selectAll().execute()).map((r) =>
      tx.codec(T.balances).decode<Record<string, any>>(r),
    );
    const ledger = (await tx.db.selectFrom(T.ledger).selectAll().execute()).map((r) => tx.codec(T.ledger).decode<Record<string, any>>(r));
    const reservations = (await tx.db.selectFrom(T.reservations).selectAll().execute()).map((r) =>
      tx.codec(T.reservations).decode<Record<string, any>>(r),
    );
    const invoices = (await tx.db.selectFrom(T.invoices).selectAll().execute()).map((r) =>
      tx.codec(T.invoices).decode<Record<string, any>>(r),
    );
    const payments = (await tx.db.selectFrom(T.payments).selectAll().execute()).map((r) =>
      tx.codec(T.payments).decode<Record<string, any>>(r),
    );

    const key = (m: string, a: string) => `${m}/${a}`;
    const ledgerSums = new Map<string, bigint>();
    for (const e of ledger) ledgerSums.set(key(e.mint_hash, e.address), (ledgerSums.get(key(e.mint_hash, e.address)) ?? 0n) + e.delta);
    const cache = new Map(balances.map((b) => [key(b.mint_hash, b.address), b.balance as bigint]));
    for (const [k, sum] of ledgerSums) assert.equal(cache.get(k), sum, `balance cache of ${k} equals the ledger sum`);
    for (const [k, v] of cache) assert.equal(ledgerSums.get(k) ?? 0n, v, `cached balance ${k} has ledger entries`);

    const reserved = new Map<string, bigint>();
    for (const r of reservations) {
      if (r.state !== 'reserved') continue;
      const k = key(r.mint_hash, r.seller_address);
      reserved.set(k, (reserved.get(k) ?? 0n) + r.quantity);
    }
    for (const [k, q] of reserved)
      assert.ok((cache.get(k) ?? 0n) - q >= 0n, `available of ${k} is not negative (${cache.get(k) ?? 0n} - ${q})`);
    for (const b of balances) assert.ok(b.balance >= 0n, `balance of ${b.mint_hash}/${b.address} is not negative`);

    for (const m of mints) {
      const supply = balances.filter((b) => b.mint_hash === m.hash).reduce((s, b) => s + (b.balance as bigint), 0n);
      const held = [...reserved].filter(([k]) => k.startsWith(`${m.hash}/`)).reduce((s, [, q]) => s + q, 0n);
      assert.equal(supply, m.credited ? m.fraction_count : 0n, `supply of mint ${m.hash} is conserved`);
      assert.ok(held <= supply, `reservations of mint ${m.hash} do not exceed its supply`);
    }

    const invByHash = new Map(invoices.map((i) => [i.hash as string, i]));
    const payByHash = new Map(payments.map((p) => [p.invoice_hash as string, p]));
    for (const r of reservations) {
      const inv = invByHash.get(r.invoice_hash);
      const pay = payByHash.get(r.invoice_hash);
      const settled = r.state === 'settled';
      assert.equal(settled, inv?.status === 'paid', `reservation ${r.invoice_hash} settled ⇔ invoice paid`);
      assert.equal(settled, pay?.state === 'settled', `reservation ${r.invoice_hash} settled ⇔ payment settled`);
      if (pay?.state === 'pending') assert.equal(r.state, 'reserved', `a pending payment keeps reservation ${r.invoice_hash} reserved`);
      const sales = ledger.filter((e) => e.cause_ref === r.invoice_hash && e.cause_kind !== 'mint_credit');
      assert.equal(sales.length, settled ? 2 : 0, `invoice ${r.invoice_hash} has ${settled ? 'two' : 'no'} sale entries`);
      if (settled)
        assert.equal(
          sales.reduce((s, e) => s + (e.delta as bigint), 0n),
          0n,
        );
    }
  });
}
