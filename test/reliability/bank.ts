// Jepsen's bank test, on Coffer's token model. The accounts are holders of one mint; a transfer
// is an invoice (reserving the seller's tokens, or refused) that a block then matches and pays,
// settling it at once (the chain needs one confirmation). Clients transfer concurrently while
// miners race to ingest blocks and readers read every account in one read transaction; an
// expirer frees reservations of invoices that were paid wrongly. The same workload runs through
// the store API and through HTTP (BankClient); the checker reads the database directly.
import { ConflictError, InvalidStateTransitionError } from '../../src/db/errors.js';
import type { Coffer } from '../../src/db/store.js';
import type { IngestedTransaction } from '../../src/domains/chain/processors.js';
import { chain } from '../../src/domains/chain/store.js';
import type { IngestBlockInput } from '../../src/domains/chain/types.js';
import { InsufficientBalanceError } from '../../src/domains/tokens/errors.js';
import { tokens } from '../../src/domains/tokens/store.js';
import { actionTx, checkInvariants, invoiceInput, mintInput, newKey, sha, unique } from '../../src/domains/tokens/testkit.js';
import type { InvoiceInput, MintInput } from '../../src/domains/tokens/types.js';
import { invoiceHash } from '../../src/domains/tokens/validate.js';
import { BLOCK_PROCESSORS } from '../../src/server/domains.js';
import { Http, rnd, sleep } from './support.js';

export interface Tip {
  height: bigint;
  hash: string;
}

export interface Holding {
  address: string;
  balance: bigint;
  reserved: bigint;
}

/** What the workload does, through the store API or through HTTP. Anything but the named outcomes throws. */
export interface BankClient {
  readonly kind: 'store' | 'http';
  registerChain(chainId: string, confirmations: number): Promise<void>;
  submitMint(input: MintInput): Promise<string>;
  tip(chainId: string): Promise<Tip | null>;
  /** `conflict`: another block took this height first (nothing written). */
  ingest(block: IngestBlockInput): Promise<'ingested' | 'duplicate' | 'conflict'>;
  createInvoice(input: InvoiceInput, ttlMs: number): Promise<'created' | 'refused'>;
  release(chainId: string, hash: string): Promise<'released' | 'refused'>;
  invoiceStatus(chainId: string, hash: string): Promise<string | undefined>;
  /** Every account's balance and reservations, read in one read transaction. */
  readAccounts(chainId: string, mintHash: string, accounts: readonly string[]): Promise<Holding[]>;
  expire(chainId: string): Promise<number>;
}

// ---------------------------------------------------------------- through the store API

export function storeClient(coffer: Coffer): BankClient {
  return {
    kind: 'store',
    registerChain: async (chainId, confirmations) => {
      await coffer.write((tx) => chain(tx).registerChain({ chainId, name: chainId, network: 'test', confirmations }), {
        op: 'chain.registerChain',
      });
    },
    submitMint: async (input) => (await coffer.write((tx) => tokens(tx).submitMint(input), { op: 'tokens.submitMint' })).hash,
    tip: async (chainId) => {
      const c = await coffer.read((tx) => chain(tx).getCursor(chainId), { op: 'chain.getCursor' });
      return c.height === null ? null : { height: c.height, hash: c.blockHash! };
    },
    ingest: async (block) => {
      try {
        return (await coffer.write((tx) => chain(tx).ingestBlock(block, { processors: BLOCK_PROCESSORS }), { op: 'chain.ingestBlock' }))
          .status;
      } catch (e) {
        if (e instanceof ConflictError && !String(e.details.field ?? '').startsWith('transactions')) return 'conflict';
        throw e;
      }
    },
    createInvoice: async (input, ttlMs) => {
      try {
        await coffer.write((tx) => tokens(tx).createInvoice(input, { ttlMs }), { op: 'tokens.createInvoice' });
        return 'created';
      } catch (e) {
        if (e instanceof InsufficientBalanceError) return 'refused';
        throw e;
      }
    },
    release: async (_chainId, hash) => {
      try {
        await coffer.write((tx) => tokens(tx).releaseInvoice(hash), { op: 'tokens.releaseInvoice' });
        return 'released';
      } catch (e) {
        if (e instanceof InvalidStateTransitionError) return 'refused';
        throw e;
      }
    },
    invoiceStatus: async (_chainId, hash) => (await coffer.read((tx) => tokens(tx).getInvoice(hash), { op: 'tokens.getInvoice' }))?.status,
    // Jepsen's read: each account on its own, all in one read transaction.
    readAccounts: (_chainId, mintHash, accounts) =>
      coffer.read(
        async (tx) => {
          const out: Holding[] = [];
          for (const a of accounts) {
            const b = await tokens(tx).balance(mintHash, a);
            out.push({ address: a, balance: b.balance, reserved: b.reserved });
          }
          return out;
        },
        { op: 'bank.read' },
      ),
    expire: async () =>
      (await coffer.write((tx) => tokens(tx).expireReservations({ limit: 100 }), { op: 'tokens.expireReservations' })).length,
  };
}

// ---------------------------------------------------------------- through HTTP

export class HttpFailure extends Error {
  constructor(what: string, r: { status: number; body: unknown; error?: string }) {
    super(`${what}: HTTP ${r.status} ${r.error ?? JSON.stringify(r.body)}`);
  }
}

export function wireBlock(b: IngestBlockInput) {
  return {
    height: b.height.toString(),
    hash: b.blockHash,
    parentHash: b.parentHash,
    time: b.time.toISOString(),
    transactions: b.transactions.map((t) => ({
      txHash: t.txHash,
      indexInBlock: t.indexInBlock,
      actionType: t.actionType,
      actionVersion: t.actionVersion,
      payload: t.payload ? t.payload.toString('hex') : null,
      address: t.address,
      outputs: t.outputs.map((o) => ({ address: o.address, value: o.value.toString() })),
    })),
  };
}

export const wireInvoice = (i: InvoiceInput) => ({
  ...i,
  quantity: String(i.quantity),
  price: String(i.price),
  createdAt: i.createdAt.toISOString(),
});
export const wireMint = (m: MintInput) => ({ ...m, fractionCount: String(m.fractionCount) });

export function httpClient(http: Http): BankClient {
  return {
    kind: 'http',
    registerChain: async (chainId, confirmations) => {
      const r = await http.call('POST', '/v1/chains', { chainId, name: chainId, network: 'test', confirmations });
      if (r.status !== 201) throw new HttpFailure('register chain', r);
    },
    submitMint: async (input) => {
      const r = await http.call('POST', '/v1/tokens/mints', wireMint(input));
      if (r.status !== 201) throw new HttpFailure('submit mint', r);
      return r.body.hash as string;
    },
    tip: async (chainId) => {
      const r = await http.call('GET', `/v1/chains/${chainId}`);
      if (r.status !== 200) throw new HttpFailure('get chain', r);
      const c = r.body.cursor as { height: string | null; blockHash: string | null };
      return c.height === null ? null : { height: BigInt(c.height), hash: c.blockHash! };
    },
    ingest: async (block) => {
      const r = await http.call('POST', `/v1/chains/${block.chainId}/blocks`, wireBlock(block));
      if (r.status === 200 || r.status === 201) return r.body.status;
      if (r.status === 409 && r.body?.error?.code === 'conflict' && !String(r.body.error.field ?? '').includes('transactions'))
        return 'conflict';
      throw new HttpFailure('ingest', r);
    },
    createInvoice: async (input, ttlMs) => {
      const r = await http.call('POST', `/v1/tokens/invoices?ttlMs=${ttlMs}`, wireInvoice(input));
      if (r.status === 201) return 'created';
      if (r.status === 422 && r.body?.error?.code === 'invalid_state_transition' && r.body.error.field === 'quantity') return 'refused';
      throw new HttpFailure('create invoice', r);
    },
    release: async (chainId, hash) => {
      const r = await http.call('POST', `/v1/tokens/invoices/${hash}/release?chainId=${chainId}`);
      if (r.status === 200) return 'released';
      if (r.status === 422) return 'refused';
      throw new HttpFailure('release', r);
    },
    invoiceStatus: async (chainId, hash) => {
      const r = await http.call('GET', `/v1/tokens/invoices/${hash}?chainId=${chainId}`);
      if (r.status === 404) return undefined;
      if (r.status !== 200) throw new HttpFailure('get invoice', r);
      return r.body.status as string;
    },
    // One request, one read transaction: the mint's holders (the cap table).
    readAccounts: async (chainId, mintHash) => {
      const r = await http.call('GET', `/v1/tokens/mints/${mintHash}/balances?chainId=${chainId}&limit=500`);
      if (r.status !== 200) throw new HttpFailure('holders', r);
      if (r.body.nextCursor) throw new Error('more holders than one page');
      return (r.body.items as { address: string; balance: string; reserved: string }[]).map((h) => ({
        address: h.address,
        balance: BigInt(h.balance),
        reserved: BigInt(h.reserved),
      }));
    },
    expire: async (chainId) => {
      const r = await http.call('POST', `/v1/tokens/reservations/expire?chainId=${chainId}&limit=100`);
      if (r.status !== 200) throw new HttpFailure('expire', r);
      return (r.body.expired as string[]).length;
    },
  };
}

// ---------------------------------------------------------------- the workload

export interface BankOptions {
  accounts: number;
  /** Tokens each account starts with. */
  perAccount: bigint;
  transferClients: number;
  miners: number;
  readers: number;
  durationMs: number;
  /** Upper bound on transfers attempted. */
  maxTransfers: number;
}

type Path = 'pay' | 'release' | 'overpay';
type Outcome = 'ok' | 'refused' | 'released' | 'unpaid' | 'unknown';

interface Transfer {
  hash: string;
  from: string;
  to: string;
  quantity: bigint;
  path: Path;
  outcome: Outcome;
}

export interface BankResult {
  backend: string;
  api: 'store' | 'http';
  durationMs: number;
  accounts: number;
  supply: string;
  transfers: { attempted: number } & Record<Outcome, number>;
  reads: number;
  blocks: number;
  ingestRacesLost: number;
  expired: number;
  checked: { transfers: number; ledgerEntries: number; accounts: number };
  violations: string[];
  unexpectedErrors: string[];
  verdict: 'valid' | 'INVALID';
}

export function buildBlock(chainId: string, tip: Tip | null, txs: IngestedTransaction[], time = new Date()): IngestBlockInput {
  const height = tip ? tip.height + 1n : 0n;
  return {
    chainId,
    height,
    blockHash: sha(unique(`${chainId}:${height}:`)),
    parentHash: tip?.hash ?? '0'.repeat(64),
    time,
    transactions: txs.map((t, i) => ({ ...t, indexInBlock: i })),
  };
}

export async function runBank(client: BankClient, auditor: Coffer, backend: string, o: BankOptions): Promise<BankResult> {
  const chainId = unique('bank-');
  const key = newKey();
  const accounts = Array.from({ length: o.accounts }, (_, i) => `DAcct${i}x${chainId}`);
  const supply = o.perAccount * BigInt(o.accounts);
  const violations: string[] = [];
  const unexpected: string[] = [];
  const transfers: Transfer[] = [];
  const stats = { reads: 0, blocks: 0, racesLost: 0, expired: 0 };
  const note = (list: string[], s: string) => {
    if (list.length < 50) list.push(s);
  };

  // Setup: the chain (one confirmation), the mint credited to account 0, then one block of
  // transfers giving every other account its share.
  await client.registerChain(chainId, 1);
  const mintHash = await client.submitMint(mintInput({ chainId, fractionCount: supply, ownerAddress: accounts[0]! }));
  const mineNow = async (txs: IngestedTransaction[]) => {
    const r = await client.ingest(buildBlock(chainId, await client.tip(chainId), txs));
    if (r !== 'ingested') throw new Error(`setup block: ${r}`);
  };
  await mineNow([actionTx('mint', mintHash)]);
  const setupTxs: IngestedTransaction[] = [];
  for (const to of accounts.slice(1)) {
    const input = invoiceInput(
      { chainId, mintHash, sellerAddress: accounts[0]!, buyerAddress: to, quantity: o.perAccount, price: 1n, paymentAddress: `P${to}` },
      key,
    );
    const hash = hashOf(input);
    if ((await client.createInvoice(input, 600_000)) !== 'created') throw new Error('setup invoice refused');
    transfers.push({ hash, from: accounts[0]!, to, quantity: o.perAccount, path: 'pay', outcome: 'ok' });
    setupTxs.push(actionTx('invoice', hash), actionTx('payment', hash, [{ address: `P${to}`, value: o.perAccount }]));
  }
  await mineNow(setupTxs);
  const setupCount = transfers.length;
  for (const t of transfers)
    if ((await client.invoiceStatus(chainId, t.hash)) !== 'paid') throw new Error(`setup transfer ${t.hash} not paid`);

  // The concurrent phase.
  const pending: { txs: IngestedTransaction[]; done: (fate: 'mined' | 'unknown') => void }[] = [];
  let stopping = false;
  let clientsDone = false;
  const hardDeadline = Date.now() + o.durationMs + 120_000;

  // On SQLite and memory:// a store call completes without I/O, so a loop of them would starve
  // the timers (the end of the run included): every loop yields to the event loop each turn.
  const transferClient = async () => {
    while (!stopping && transfers.length - setupCount < o.maxTransfers) {
      await yieldNow();
      const from = accounts[rnd(accounts.length)]!;
      let to = accounts[rnd(accounts.length)]!;
      if (to === from) to = accounts[(accounts.indexOf(from) + 1) % accounts.length]!;
      const quantity = BigInt(1 + rnd(Number(o.perAccount) / 2));
      const price = BigInt(1 + rnd(3));
      const roll = rnd(100);
      const path: Path = roll < 84 ? 'pay' : roll < 92 ? 'release' : 'overpay';
      const input = invoiceInput(
        { chainId, mintHash, sellerAddress: from, buyerAddress: to, quantity, price, paymentAddress: `P${to}` },
        key,
      );
      const t: Transfer = { hash: hashOf(input), from, to, quantity, path, outcome: 'unknown' };
      transfers.push(t);
      try {
        // An invoice paid wrongly is never settled: its reservation expires after a second.
        if ((await client.createInvoice(input, path === 'overpay' ? 1000 : 600_000)) === 'refused') {
          t.outcome = 'refused';
          continue;
        }
        if (path === 'release') {
          const r = await client.release(chainId, t.hash);
          if (r === 'released') t.outcome = 'released';
          else note(violations, `releasing open invoice ${t.hash} was refused`);
          continue;
        }
        const total = quantity * price + (path === 'overpay' ? 1n : 0n);
        const fate = await new Promise<'mined' | 'unknown'>((done) =>
          pending.push({ txs: [actionTx('invoice', t.hash), actionTx('payment', t.hash, [{ address: `P${to}`, value: total }])], done }),
        );
        if (fate === 'unknown') continue;
        const status = await client.invoiceStatus(chainId, t.hash);
        t.outcome = status === 'paid' ? 'ok' : 'unpaid';
        if (path === 'pay' && status !== 'paid')
          note(violations, `transfer ${t.hash} paid exactly in a mined block is ${status}, not paid`);
        if (path === 'overpay' && status === 'paid') note(violations, `transfer ${t.hash} paid 1 unit too much was settled`);
      } catch (e) {
        note(unexpected, String(e));
      }
    }
  };

  const miner = async () => {
    while (!(clientsDone && pending.length === 0)) {
      if (Date.now() > hardDeadline) {
        for (const p of pending.splice(0)) p.done('unknown');
        note(unexpected, 'miners ran past the deadline');
        return;
      }
      if (!pending.length) {
        await sleep(1);
        continue;
      }
      await yieldNow();
      const batch = pending.splice(0, 32);
      let block: IngestBlockInput;
      try {
        block = buildBlock(
          chainId,
          await client.tip(chainId),
          batch.flatMap((b) => b.txs),
        );
      } catch (e) {
        note(unexpected, String(e));
        pending.unshift(...batch);
        await sleep(10);
        continue;
      }
      let r: 'ingested' | 'duplicate' | 'conflict';
      try {
        r = await client.ingest(block);
      } catch (e) {
        note(unexpected, String(e));
        for (const b of batch) b.done('unknown');
        continue;
      }
      if (r === 'conflict') {
        // Another miner took this height: nothing of ours was written; try again on the new tip.
        stats.racesLost++;
        pending.unshift(...batch);
        continue;
      }
      if (r === 'duplicate') note(violations, `a new block at height ${block.height} was reported as a duplicate`);
      stats.blocks++;
      for (const b of batch) b.done('mined');
    }
  };

  const reader = async () => {
    while (!stopping) {
      await yieldNow();
      try {
        const rows = await client.readAccounts(chainId, mintHash, accounts);
        stats.reads++;
        const sum = rows.reduce((s, r) => s + r.balance, 0n);
        if (sum !== supply) note(violations, `read ${stats.reads}: balances sum to ${sum}, not the supply ${supply}`);
        for (const r of rows) {
          if (r.balance < 0n) note(violations, `read ${stats.reads}: ${r.address} has a negative balance ${r.balance}`);
          if (r.balance - r.reserved < 0n) note(violations, `read ${stats.reads}: ${r.address} has reserved ${r.reserved} of ${r.balance}`);
        }
      } catch (e) {
        note(unexpected, String(e));
      }
    }
  };

  const expirer = async () => {
    while (!stopping) {
      try {
        stats.expired += await client.expire(chainId);
      } catch (e) {
        note(unexpected, String(e));
      }
      await sleep(100);
    }
  };

  const started = Date.now();
  const clients = Array.from({ length: o.transferClients }, transferClient);
  const background = [...Array.from({ length: o.miners }, miner), ...Array.from({ length: o.readers }, reader), expirer()];
  await Promise.race([sleep(o.durationMs), Promise.all(clients)]);
  stopping = true;
  await Promise.all(clients);
  clientsDone = true;
  await Promise.all(background);
  const durationMs = Date.now() - started;

  // The checker: the final state, then every transfer against the ledger.
  const checked = await check(auditor, { chainId, mintHash, supply, accounts, transfers }, violations);
  const count = (x: Outcome) => transfers.slice(setupCount).filter((t) => t.outcome === x).length;
  return {
    backend,
    api: client.kind,
    durationMs,
    accounts: o.accounts,
    supply: supply.toString(),
    transfers: {
      attempted: transfers.length - setupCount,
      ok: count('ok'),
      refused: count('refused'),
      released: count('released'),
      unpaid: count('unpaid'),
      unknown: count('unknown'),
    },
    reads: stats.reads,
    blocks: stats.blocks,
    ingestRacesLost: stats.racesLost,
    expired: stats.expired,
    checked,
    violations,
    unexpectedErrors: unexpected,
    verdict: violations.length === 0 ? 'valid' : 'INVALID',
  };
}

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

function hashOf(i: InvoiceInput): string {
  return invoiceHash({ ...i, quantity: BigInt(i.quantity), price: BigInt(i.price) });
}

interface Row {
  [k: string]: any;
}

/**
 * Checks the database against what the clients saw:
 * - the final balances sum to the supply, none negative, reservations within balances;
 * - a transfer seen to succeed is paid: its reservation and payment settled and exactly two
 *   ledger entries (−q from the seller, +q to the buyer); one refused left no row at all; one
 *   released or paid wrongly has no ledger entry and was never settled; an unknown one is
 *   either whole or absent;
 * - no ledger entry belongs to a transfer no client made, and each account's balance is its
 *   start plus the transfers the clients saw succeed (and the unknown ones found whole);
 * - the token invariants (cache = ledger, escrow agrees) hold.
 */
async function check(
  coffer: Coffer,
  w: { chainId: string; mintHash: string; supply: bigint; accounts: string[]; transfers: Transfer[] },
  violations: string[],
): Promise<{ transfers: number; ledgerEntries: number; accounts: number }> {
  const v = (s: string) => {
    if (violations.length < 50) violations.push(s);
  };
  const data = await coffer.read(async (tx) => {
    const all = async (table: string, where: (q: any) => any): Promise<Row[]> =>
      ((await where(tx.db.selectFrom(table).selectAll()).execute()) as Row[]).map((r) => tx.codec(table).decode<Row>(r));
    return {
      balances: await all('token_balances', (q) => q.where('mint_hash', '=', w.mintHash)),
      ledger: await all('token_ledger', (q) => q.where('mint_hash', '=', w.mintHash)),
      reservations: await all('token_reservations', (q) => q.where('mint_hash', '=', w.mintHash)),
      invoices: await all('token_invoices', (q) => q.where('mint_hash', '=', w.mintHash)),
      unconfirmed: await all('token_unconfirmed_invoices', (q) => q.where('mint_hash', '=', w.mintHash)),
      payments: await all('token_payments', (q) => q.where('chain_id', '=', w.chainId)),
    };
  });
  const byHash = <T extends Row>(rows: T[], k: string) => new Map(rows.map((r) => [r[k] as string, r]));
  const reservations = byHash(data.reservations, 'invoice_hash');
  const invoices = byHash(data.invoices, 'hash');
  const unconfirmed = byHash(data.unconfirmed, 'hash');
  const payments = byHash(data.payments, 'invoice_hash');
  const entries = new Map<string, Row[]>();
  for (const e of data.ledger) if (e.cause_kind !== 'mint_credit') entries.set(e.cause_ref, [...(entries.get(e.cause_ref) ?? []), e]);

  const sum = data.balances.reduce((s, b) => s + (b.balance as bigint), 0n);
  if (sum !== w.supply) v(`final balances sum to ${sum}, not ${w.supply}`);
  for (const b of data.balances) if ((b.balance as bigint) < 0n) v(`final balance of ${b.address} is negative`);

  const whole = (t: Transfer): string | undefined => {
    const es = entries.get(t.hash) ?? [];
    const debit = es.find((e) => e.cause_kind === 'sale_debit');
    const credit = es.find((e) => e.cause_kind === 'sale_credit');
    if (es.length !== 2 || !debit || !credit) return `has ${es.length} ledger entries (${es.map((e) => e.cause_kind).join(', ')})`;
    if (debit.address !== t.from || debit.delta !== -t.quantity) return `debit is ${debit.delta} from ${debit.address}`;
    if (credit.address !== t.to || credit.delta !== t.quantity) return `credit is ${credit.delta} to ${credit.address}`;
    if (invoices.get(t.hash)?.status !== 'paid') return `invoice is ${invoices.get(t.hash)?.status ?? 'missing'}`;
    if (reservations.get(t.hash)?.state !== 'settled') return `reservation is ${reservations.get(t.hash)?.state ?? 'missing'}`;
    if (payments.get(t.hash)?.state !== 'settled') return `payment is ${payments.get(t.hash)?.state ?? 'missing'}`;
    return undefined;
  };
  const untouched = (t: Transfer): string | undefined => {
    if (entries.has(t.hash)) return `has ${entries.get(t.hash)!.length} ledger entries`;
    if (invoices.get(t.hash)?.status === 'paid') return 'invoice is paid';
    if (reservations.get(t.hash)?.state === 'settled') return 'reservation is settled';
    if (payments.get(t.hash)?.state === 'settled') return 'payment is settled';
    return undefined;
  };

  const expected = new Map<string, bigint>([[w.accounts[0]!, w.supply]]);
  const move = (t: Transfer) => {
    expected.set(t.from, (expected.get(t.from) ?? 0n) - t.quantity);
    expected.set(t.to, (expected.get(t.to) ?? 0n) + t.quantity);
  };
  const known = new Set<string>();
  for (const t of w.transfers) {
    known.add(t.hash);
    switch (t.outcome) {
      case 'ok': {
        const bad = whole(t);
        if (bad) v(`transfer ${t.hash} succeeded for its client but ${bad}`);
        move(t);
        break;
      }
      case 'refused':
        for (const [name, m] of [
          ['reservation', reservations],
          ['invoice', invoices],
          ['unconfirmed invoice', unconfirmed],
          ['payment', payments],
        ] as const)
          if (m.has(t.hash)) v(`refused transfer ${t.hash} left a ${name} row`);
        if (entries.has(t.hash)) v(`refused transfer ${t.hash} has ledger entries`);
        break;
      case 'released': {
        const bad = untouched(t);
        if (bad) v(`released transfer ${t.hash} ${bad}`);
        if (reservations.get(t.hash)?.state !== 'released')
          v(`released transfer ${t.hash} has reservation ${reservations.get(t.hash)?.state ?? 'missing'}`);
        break;
      }
      case 'unpaid': {
        const bad = untouched(t);
        if (bad) v(`transfer ${t.hash} seen unpaid ${bad}`);
        break;
      }
      case 'unknown': {
        // The client never learnt the outcome: it must be all or nothing.
        if (entries.has(t.hash)) {
          const bad = whole(t);
          if (bad) v(`transfer ${t.hash} of unknown outcome is partial: ${bad}`);
          else move(t);
        }
        break;
      }
    }
  }
  for (const ref of entries.keys()) if (!known.has(ref)) v(`ledger entries for ${ref}, a transfer no client made`);
  const actual = new Map(data.balances.map((b) => [b.address as string, b.balance as bigint]));
  for (const a of new Set([...expected.keys(), ...actual.keys()])) {
    if ((expected.get(a) ?? 0n) !== (actual.get(a) ?? 0n))
      v(`account ${a} holds ${actual.get(a) ?? 0n}, the acknowledged transfers give ${expected.get(a) ?? 0n}`);
  }
  try {
    await checkInvariants(coffer);
  } catch (e) {
    v(`token invariants: ${(e as Error).message}`);
  }
  return { transfers: w.transfers.length, ledgerEntries: data.ledger.length, accounts: actual.size };
}
