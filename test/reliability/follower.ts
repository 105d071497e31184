// A chain follower and token clients driving `coffer serve` over HTTP, for the fault tests
// (process kills, database restarts, a full disk, sustained load). The follower ingests blocks
// in order; each height's content is fixed the first time it is built and re-sent unchanged until
// the server has it, as a real follower replays the chain after a failure. Token clients create
// invoices and retry the very same invoice after a failure (it is idempotent), and blocks anchor
// and pay the acknowledged ones. Every response is logged; verifyDatabase then checks the
// database against what the server acknowledged.
import type { Coffer } from '../../src/db/store.js';
import { toBigInt } from '../../src/db/codec.js';
import type { IngestedTransaction } from '../../src/domains/chain/processors.js';
import type { IngestBlockInput } from '../../src/domains/chain/types.js';
import { verifyAuditLog } from '../../src/domains/audit/verify.js';
import { actionTx, checkInvariants, invoiceInput, mintInput, newKey, sha, unique, type TestKey } from '../../src/domains/tokens/testkit.js';
import type { InvoiceInput } from '../../src/domains/tokens/types.js';
import { invoiceHash } from '../../src/domains/tokens/validate.js';
import { BUILTIN_CHECKS, runDoctor } from '../../src/ops/doctor.js';
import { DOCTOR_CHECKS } from '../../src/ops/registry.js';
import { wireBlock, wireInvoice, wireMint } from './bank.js';
import { Http, rnd, sleep, type Reply } from './support.js';

export interface Logged {
  /** Date.now() when the request started and ended. */
  start: number;
  end: number;
  /** Latency, measured with the monotonic clock. */
  ms: number;
  op: string;
  status: number;
  code?: string;
  message?: string;
}

interface SentBlock {
  block: IngestBlockInput;
  /** A 2xx came back for it, or the server's cursor showed it stored. */
  acked: boolean;
  invoices: string[];
}

interface ClientInvoice {
  input: InvoiceInput;
  hash: string;
  state: 'acked' | 'refused' | 'unknown';
  anchoredAt?: bigint;
}

export interface FollowerOptions {
  /** Plain (non-token) transactions per block, and payload bytes of each. */
  txsPerBlock?: number;
  payloadBytes?: number;
  /** Most invoices anchored and paid per block. */
  invoicesPerBlock?: number;
  /** Pause after a failed request before retrying. */
  backoffMs?: number;
  /** Keep every response in `log` (the restart test analyses windows). */
  keepLog?: boolean;
}

export class Follower {
  readonly chainId = unique('rel-');
  readonly http: Http;
  readonly seller = `DSeller${this.chainId}`;
  readonly key: TestKey = newKey();
  readonly o: Required<FollowerOptions>;
  mintHash = '';
  readonly blocks = new Map<bigint, SentBlock>();
  readonly invoices = new Map<string, ClientInvoice>();
  readonly log: Logged[] = [];
  /** Responses by operation and status, e.g. { "chain.ingest 200": 12 }. */
  readonly counts: Record<string, number> = {};
  readonly violations: string[] = [];
  /** Hashes of the invoices the server acknowledged, in order. */
  readonly ackedHashes: string[] = [];
  next = 0n;
  #needSync = true;
  #retry: ClientInvoice[] = [];
  #unanchored: string[] = [];

  constructor(http: Http, o: FollowerOptions = {}) {
    this.http = http;
    this.o = { txsPerBlock: 20, payloadBytes: 64, invoicesPerBlock: 10, backoffMs: 50, keepLog: false, ...o };
  }

  violation(s: string): void {
    if (this.violations.length < 50) this.violations.push(s);
  }

  /** Requests under way, by operation. */
  readonly inFlight: Record<string, number> = {};

  async call(method: string, path: string, body: unknown, op: string): Promise<Reply> {
    const start = Date.now();
    this.inFlight[op] = (this.inFlight[op] ?? 0) + 1;
    const r = await this.http.call(method, path, body);
    this.inFlight[op]!--;
    const key = `${op} ${r.status || r.error}`;
    this.counts[key] = (this.counts[key] ?? 0) + 1;
    if (this.o.keepLog) {
      const err = r.body && typeof r.body === 'object' ? (r.body as { error?: { code?: string; message?: string } }).error : undefined;
      this.log.push({
        start,
        end: Date.now(),
        ms: r.ms,
        op,
        status: r.status,
        ...(err?.code ? { code: err.code, message: err.message } : {}),
        ...(r.error ? { message: r.error } : {}),
      });
    }
    return r;
  }

  /** Registers the chain (one confirmation), submits the mint and ingests block 0 with it. */
  async setup(): Promise<void> {
    const reg = await this.call(
      'POST',
      '/v1/chains',
      { chainId: this.chainId, name: this.chainId, network: 'test', confirmations: 1 },
      'chain.register',
    );
    if (reg.status !== 201) throw new Error(`register chain: ${reg.status} ${JSON.stringify(reg.body)}`);
    const mint = await this.call(
      'POST',
      '/v1/tokens/mints',
      wireMint(mintInput({ chainId: this.chainId, fractionCount: 10n ** 15n, ownerAddress: this.seller })),
      'tokens.submitMint',
    );
    if (mint.status !== 201) throw new Error(`submit mint: ${mint.status} ${JSON.stringify(mint.body)}`);
    this.mintHash = mint.body.hash;
    const b0 = this.build(0n, [actionTx('mint', this.mintHash)]);
    const r = await this.call('POST', `/v1/chains/${this.chainId}/blocks`, wireBlock(b0.block), 'chain.ingest');
    if (r.status !== 200) throw new Error(`block 0: ${r.status} ${JSON.stringify(r.body)}`);
    b0.acked = true;
    this.next = 1n;
    this.#needSync = false;
  }

  build(height: bigint, extra: IngestedTransaction[] = []): SentBlock {
    const existing = this.blocks.get(height);
    if (existing) return existing;
    const parent = height === 0n ? '0'.repeat(64) : this.blocks.get(height - 1n)!.block.blockHash;
    const invoices = height === 0n ? [] : this.#unanchored.splice(0, this.o.invoicesPerBlock);
    const txs: IngestedTransaction[] = [...extra];
    for (const h of invoices) {
      const inv = this.invoices.get(h)!;
      inv.anchoredAt = height;
      txs.push(
        actionTx('invoice', h),
        actionTx('payment', h, [{ address: inv.input.paymentAddress, value: BigInt(inv.input.quantity) * BigInt(inv.input.price) }]),
      );
    }
    for (let i = 0; i < this.o.txsPerBlock; i++) {
      txs.push({
        txHash: sha(unique('ptx')),
        indexInBlock: 0,
        actionType: null,
        actionVersion: null,
        payload: Buffer.from(Array.from({ length: this.o.payloadBytes }, () => rnd(256))),
        address: `DFrom${rnd(50)}`,
        outputs: [
          { address: `DTo${rnd(50)}`, value: BigInt(1 + rnd(1_000_000)) },
          { address: `DChange${rnd(50)}`, value: BigInt(rnd(1000)) },
        ],
      });
    }
    const block: IngestBlockInput = {
      chainId: this.chainId,
      height,
      blockHash: sha(unique(`${this.chainId}:${height}:`)),
      parentHash: parent,
      time: new Date(Date.UTC(2030, 0, 1) + Number(height) * 60_000),
      transactions: txs.map((t, i) => ({ ...t, indexInBlock: i })),
    };
    const sent = { block, acked: false, invoices };
    this.blocks.set(height, sent);
    return sent;
  }

  /** Learns the server's tip: every block up to it is stored (and must be the one we sent). */
  async #sync(): Promise<boolean> {
    const r = await this.call('GET', `/v1/chains/${this.chainId}`, undefined, 'chain.get');
    if (r.status !== 200) return false;
    const c = r.body.cursor as { height: string | null; blockHash: string | null };
    const tip = c.height === null ? -1n : BigInt(c.height);
    for (let h = 0n; h <= tip; h++) {
      const b = this.blocks.get(h);
      if (!b) this.violation(`the server's tip ${tip} is above any block sent (${h})`);
      else b.acked = true;
    }
    if (tip >= 0n && this.blocks.get(tip)?.block.blockHash !== c.blockHash)
      this.violation(`the cursor's hash at ${tip} is not the block sent for that height`);
    for (const [h, b] of this.blocks) if (b.acked && h > tip) this.violation(`block ${h} was acknowledged but the cursor is at ${tip}`);
    this.next = tip + 1n;
    return true;
  }

  /** The follower: one block at a time, the same content for a height until the server has it. */
  async ingestLoop(stop: () => boolean, opts: { onStorageFull?: () => void } = {}): Promise<void> {
    while (!stop()) {
      if (this.#needSync) {
        if (!(await this.#sync())) {
          await sleep(this.o.backoffMs);
          continue;
        }
        this.#needSync = false;
      }
      const b = this.build(this.next);
      const r = await this.call('POST', `/v1/chains/${this.chainId}/blocks`, wireBlock(b.block), 'chain.ingest');
      if (r.status === 200) {
        if (r.body.height !== b.block.height.toString() || r.body.hash !== b.block.blockHash)
          this.violation(`ingest of ${b.block.height} answered ${JSON.stringify(r.body)}`);
        b.acked = true;
        this.next++;
        continue;
      }
      this.#needSync = true;
      if (r.status === 507) opts.onStorageFull?.();
      else if (r.status !== 503 && r.status !== 0)
        this.violation(`ingest of block ${b.block.height}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      await sleep(this.o.backoffMs);
    }
  }

  #newInvoice(): ClientInvoice {
    const quantity = BigInt(1 + rnd(5));
    const price = BigInt(1 + rnd(3));
    const buyer = `DBuyer${rnd(20)}`;
    const input = invoiceInput(
      {
        chainId: this.chainId,
        mintHash: this.mintHash,
        sellerAddress: this.seller,
        buyerAddress: buyer,
        quantity,
        price,
        paymentAddress: `P${buyer}`,
      },
      this.key,
    );
    const inv: ClientInvoice = { input, hash: invoiceHash({ ...input, quantity, price }), state: 'unknown' };
    this.invoices.set(inv.hash, inv);
    return inv;
  }

  /** A token client: creates invoices; after a failure it sends the same invoice again. */
  async invoiceLoop(stop: () => boolean): Promise<void> {
    while (!stop()) {
      const inv = this.#retry.shift() ?? this.#newInvoice();
      const r = await this.call('POST', '/v1/tokens/invoices', wireInvoice(inv.input), 'tokens.createInvoice');
      if (r.status === 201) {
        if (inv.state !== 'acked') {
          this.#unanchored.push(inv.hash);
          this.ackedHashes.push(inv.hash);
        }
        inv.state = 'acked';
      } else if (r.status === 422 && r.body?.error?.field === 'quantity') {
        inv.state = 'refused';
      } else {
        if (r.status !== 503 && r.status !== 0 && r.status !== 507)
          this.violation(`create invoice: HTTP ${r.status} ${JSON.stringify(r.body)}`);
        this.#retry.push(inv);
        await sleep(this.o.backoffMs);
      }
    }
  }

  /** A reader: the chain, the mint's holders, the seller's balance. */
  async readLoop(stop: () => boolean): Promise<void> {
    const reads: [string, string][] = [
      [`/v1/chains/${this.chainId}`, 'chain.get'],
      [`/v1/tokens/mints/${this.mintHash}/balances?chainId=${this.chainId}`, 'tokens.holders'],
      [`/v1/tokens/mints/${this.mintHash}/balances/${this.seller}?chainId=${this.chainId}`, 'tokens.balance'],
    ];
    for (let i = 0; !stop(); i++) {
      const [path, op] = reads[i % reads.length]!;
      const r = await this.call('GET', path, undefined, op);
      if (r.status !== 200 && r.status !== 503 && r.status !== 0) this.violation(`${op}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      if (r.status !== 200) await sleep(this.o.backoffMs);
    }
  }

  ackedBlocks(): number {
    return [...this.blocks.values()].filter((b) => b.acked).length;
  }

  ackedInvoices(): number {
    return [...this.invoices.values()].filter((i) => i.state === 'acked').length;
  }
}

export interface VerifyFigures {
  storedBlocks: number;
  storedTransactions: number;
  reservations: number;
  auditEntries: number;
  violations: string[];
}

/**
 * Checks the database against what the server acknowledged: the cursor is the last block stored,
 * every stored block is one that was sent and is whole (its transactions, outputs, token actions
 * and audit entry), every acknowledged block and invoice is there, every invoice anchored in a
 * stored block is paid, an invoice of unknown outcome is whole or absent, the token invariants
 * hold, `coffer doctor`'s checks pass and the audit chain verifies.
 */
export async function verifyDatabase(coffer: Coffer, f: Follower): Promise<VerifyFigures> {
  const out: string[] = [];
  const v = (s: string) => {
    if (out.length < 50) out.push(s);
  };
  const d = await coffer.read(async (tx) => {
    const cursor = await tx.db.selectFrom('chain_cursors').selectAll().where('chain_id', '=', f.chainId).executeTakeFirstOrThrow();
    const blocks = await tx.db
      .selectFrom('chain_blocks')
      .select(['height', 'hash'])
      .where('chain_id', '=', f.chainId)
      .orderBy('height')
      .execute();
    const txs = await tx.db
      .selectFrom('chain_transactions')
      .select((eb) => ['block_height', eb.fn.countAll().as('n')])
      .where('chain_id', '=', f.chainId)
      .groupBy('block_height')
      .execute();
    const outputs = await tx.db
      .selectFrom('chain_tx_outputs as o')
      .innerJoin('chain_transactions as t', (j) => j.onRef('t.chain_id', '=', 'o.chain_id').onRef('t.tx_hash', '=', 'o.tx_hash'))
      .select((eb) => ['t.block_height as block_height', eb.fn.countAll().as('n')])
      .where('o.chain_id', '=', f.chainId)
      .groupBy('t.block_height')
      .execute();
    const actions = await tx.db
      .selectFrom('token_onchain_actions')
      .select((eb) => ['block_height', eb.fn.countAll().as('n')])
      .where('chain_id', '=', f.chainId)
      .groupBy('block_height')
      .execute();
    const audit = await tx.db
      .selectFrom('audit_log')
      .select(['action', 'entity_id'])
      .where('action', 'in', ['chain.block.ingest', 'tokens.invoice.create'])
      .execute();
    const reservations = await tx.db
      .selectFrom('token_reservations')
      .select(['invoice_hash', 'state'])
      .where('chain_id', '=', f.chainId)
      .execute();
    const invoices = await tx.db.selectFrom('token_invoices').select(['hash', 'status']).where('chain_id', '=', f.chainId).execute();
    return { cursor, blocks, txs, outputs, actions, audit, reservations, invoices };
  });
  const n = (rows: Record<string, unknown>[]) => new Map(rows.map((r) => [toBigInt(r.block_height), Number(toBigInt(r.n))]));
  const txCount = n(d.txs);
  const outCount = n(d.outputs);
  const actionCount = n(d.actions);
  const ingestAudits = new Map<string, number>();
  const invoiceAudits = new Set<string>();
  for (const a of d.audit) {
    if (a.action === 'chain.block.ingest') ingestAudits.set(a.entity_id as string, (ingestAudits.get(a.entity_id as string) ?? 0) + 1);
    else invoiceAudits.add(a.entity_id as string);
  }

  // The cursor is the last block stored, and the blocks are contiguous from 0.
  const heights = d.blocks.map((b) => toBigInt(b.height));
  const top = heights.length ? heights[heights.length - 1]! : null;
  const cursorHeight = d.cursor.height === null ? null : toBigInt(d.cursor.height);
  if (cursorHeight !== top) v(`cursor at ${cursorHeight}, highest stored block ${top}`);
  if (top !== null && d.cursor.block_hash !== d.blocks[d.blocks.length - 1]!.hash) v(`cursor hash is not the hash of block ${top}`);
  heights.forEach((h, i) => {
    if (h !== BigInt(i)) v(`blocks are not contiguous: position ${i} holds height ${h}`);
  });

  // Every stored block is one that was sent, whole.
  for (const b of d.blocks) {
    const h = toBigInt(b.height);
    const sent = f.blocks.get(h);
    if (!sent) {
      v(`block ${h} is stored but was never sent`);
      continue;
    }
    if (sent.block.blockHash !== b.hash) v(`block ${h} stored with another hash than the one sent`);
    const want = sent.block.transactions;
    const tokenTxs = want.filter((t) => t.actionType !== null).length;
    const outs = want.reduce((s, t) => s + t.outputs.length, 0);
    if ((txCount.get(h) ?? 0) !== want.length) v(`block ${h} has ${txCount.get(h) ?? 0} of its ${want.length} transactions`);
    if ((outCount.get(h) ?? 0) !== outs) v(`block ${h} has ${outCount.get(h) ?? 0} of its ${outs} outputs`);
    if ((actionCount.get(h) ?? 0) !== tokenTxs) v(`block ${h} has ${actionCount.get(h) ?? 0} of its ${tokenTxs} token actions`);
    if (ingestAudits.get(`${f.chainId}:${h}`) !== 1) v(`block ${h} has ${ingestAudits.get(`${f.chainId}:${h}`) ?? 0} audit entries, not 1`);
  }
  // Every acknowledged block is there.
  for (const [h, sent] of f.blocks) if (sent.acked && (top === null || h > top)) v(`acknowledged block ${h} is missing (tip ${top})`);

  // Invoices: acknowledged ones exist with their audit entry; refused ones do not; unknown ones are whole or absent.
  const resv = new Map(d.reservations.map((r) => [r.invoice_hash as string, r.state as string]));
  const paid = new Map(d.invoices.map((i) => [i.hash as string, i.status as string]));
  for (const inv of f.invoices.values()) {
    const has = resv.has(inv.hash);
    const audited = invoiceAudits.has(inv.hash);
    if (inv.state === 'acked' && !has) v(`acknowledged invoice ${inv.hash} is missing`);
    if (inv.state === 'refused' && has) v(`refused invoice ${inv.hash} has a reservation`);
    if (has !== audited)
      v(`invoice ${inv.hash}: reservation ${has ? 'present' : 'absent'} but audit entry ${audited ? 'present' : 'absent'}`);
    if (inv.anchoredAt !== undefined && top !== null && inv.anchoredAt <= top && paid.get(inv.hash) !== 'paid')
      v(`invoice ${inv.hash} paid in stored block ${inv.anchoredAt} is ${paid.get(inv.hash) ?? 'not matched'}`);
  }
  for (const h of resv.keys()) if (!f.invoices.has(h)) v(`reservation ${h} belongs to no invoice a client sent`);

  try {
    await checkInvariants(coffer);
  } catch (e) {
    v(`token invariants: ${(e as Error).message}`);
  }
  // Every check but upkeep: whether statistics are current is maintenance (the CI server runs
  // without autovacuum), not something a fault can break.
  const only = [...BUILTIN_CHECKS.filter((c) => c !== 'upkeep'), ...DOCTOR_CHECKS.map((c) => c.name)];
  const doctor = await runDoctor(coffer, { longQuerySeconds: 600, only });
  for (const x of doctor.findings) if (x.severity === 'error' || x.severity === 'warning') v(`doctor ${x.check}: ${x.message}`);
  const auditReport = await verifyAuditLog(coffer);
  if (!auditReport.ok) v(`audit chain: ${JSON.stringify(auditReport.firstBad, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}`);

  return {
    storedBlocks: d.blocks.length,
    storedTransactions: [...txCount.values()].reduce((s, x) => s + x, 0),
    reservations: d.reservations.length,
    auditEntries: Number(auditReport.verified),
    violations: out,
  };
}
