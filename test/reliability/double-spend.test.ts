// Double-spend race on every backend, through the store API (several Coffer instances, so
// several connection pools) and through HTTP: many clients try, at the same moment, to reserve
// the same seller's tokens for different invoices. Exactly the affordable ones succeed:
// - equal amounts: balance B, quantity q → exactly floor(B / q) reservations;
// - mixed amounts: what was reserved fits the balance, every refused request asked for more than
//   what is left, a refused request left no row, and a granted one holds its reservation.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../src/db/store.js';
import { tokens } from '../../src/domains/tokens/store.js';
import { actionTx, checkInvariants, invoiceInput, mintInput, newKey, unique } from '../../src/domains/tokens/testkit.js';
import type { InvoiceInput } from '../../src/domains/tokens/types.js';
import { invoiceHash } from '../../src/domains/tokens/validate.js';
import { forEachBackend } from '../harness.js';
import { testService } from '../service-support.js';
import { buildBlock, httpClient, storeClient, type BankClient } from './bank.js';
import { Http, pick, report, rnd } from './support.js';

const ROUNDS = pick(3, 25);
const CLIENTS = pick(16, 32);
const INSTANCES = 4;

interface Figures {
  rounds: number;
  attempts: number;
  reserved: number;
  refused: number;
  violations: string[];
}

async function raceRounds(clients: BankClient[], auditor: Coffer, figures: Figures): Promise<void> {
  const chainId = unique('race-');
  const key = newKey();
  await clients[0]!.registerChain(chainId, 1);
  // One mint per round and kind, each credited to its own seller in the first block.
  const rounds: { kind: 'equal' | 'mixed'; balance: bigint; seller: string; mintHash: string }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const kind of ['equal', 'mixed'] as const) {
      const balance = kind === 'equal' ? 10n : 20n;
      const seller = `DSeller${i}${kind}x${chainId}`;
      rounds.push({
        kind,
        balance,
        seller,
        mintHash: await clients[0]!.submitMint(mintInput({ chainId, fractionCount: balance, ownerAddress: seller })),
      });
    }
  }
  const r = await clients[0]!.ingest(
    buildBlock(
      chainId,
      null,
      rounds.map((x) => actionTx('mint', x.mintHash)),
    ),
  );
  assert.equal(r, 'ingested');

  for (const round of rounds) {
    const asks: { input: InvoiceInput; hash: string; q: bigint; client: BankClient }[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const q = round.kind === 'equal' ? 3n : BigInt(1 + rnd(8));
      const input = invoiceInput(
        {
          chainId,
          mintHash: round.mintHash,
          sellerAddress: round.seller,
          buyerAddress: `DBuyer${i}`,
          quantity: q,
          price: 1n,
          paymentAddress: `DPay${i}`,
        },
        key,
      );
      asks.push({ input, hash: invoiceHash({ ...input, quantity: q, price: 1n }), q, client: clients[i % clients.length]! });
    }
    // Every request is built and signed first, then all are sent at once.
    const results = await Promise.allSettled(asks.map((a) => a.client.createInvoice(a.input, 600_000)));
    const v = (s: string) => figures.violations.push(`${round.kind} round of ${round.mintHash.slice(0, 8)}: ${s}`);
    const granted = asks.filter(
      (_, i) => results[i]!.status === 'fulfilled' && (results[i] as PromiseFulfilledResult<string>).value === 'created',
    );
    const refused = asks.filter(
      (_, i) => results[i]!.status === 'fulfilled' && (results[i] as PromiseFulfilledResult<string>).value === 'refused',
    );
    for (const x of results) if (x.status === 'rejected') v(`unexpected error ${String(x.reason)}`);
    figures.rounds++;
    figures.attempts += asks.length;
    figures.reserved += granted.length;
    figures.refused += refused.length;

    const held = granted.reduce((s, a) => s + a.q, 0n);
    if (held > round.balance) v(`reserved ${held} of a balance of ${round.balance}`);
    if (round.kind === 'equal' && BigInt(granted.length) !== round.balance / 3n) v(`${granted.length} reservations of 3 from 10, not 3`);
    for (const a of refused)
      if (a.q <= round.balance - held) v(`a request for ${a.q} was refused with ${round.balance - held} still available`);

    const db = await auditor.read(async (tx) => ({
      balance: await tokens(tx).balance(round.mintHash, round.seller),
      rows: await tx.db
        .selectFrom('token_reservations')
        .select(['invoice_hash', 'state', 'quantity'])
        .where('mint_hash', '=', round.mintHash)
        .execute(),
    }));
    if (db.balance.reserved !== held) v(`the database holds ${db.balance.reserved} reserved, the clients were granted ${held}`);
    if (db.balance.available < 0n) v(`available is ${db.balance.available}`);
    const rowOf = new Map(db.rows.map((x) => [x.invoice_hash as string, x]));
    for (const a of granted) if (rowOf.get(a.hash)?.state !== 'reserved') v(`granted ${a.hash} has no active reservation`);
    for (const a of refused) if (rowOf.has(a.hash)) v(`refused ${a.hash} left a reservation row`);
    if (db.rows.length !== granted.length) v(`${db.rows.length} reservation rows for ${granted.length} granted requests`);
  }
  await checkInvariants(auditor);
}

forEachBackend('reliability: double-spend race', (ctx) => {
  let coffers: Coffer[];
  before(async () => {
    // memory:// is one connection in one instance; the other backends get separate pools.
    const first = await ctx.open({ settings: { lockTimeoutMs: 20_000 } });
    coffers = [first];
    if (ctx.backend !== 'memory')
      for (let i = 1; i < INSTANCES; i++) coffers.push(await ctx.open({ url: first.target.url, settings: { lockTimeoutMs: 20_000 } }));
  });

  test('store API: concurrent reservations of the same tokens; exactly the affordable ones succeed', { timeout: 300_000 }, async () => {
    const figures: Figures = { rounds: 0, attempts: 0, reserved: 0, refused: 0, violations: [] };
    await raceRounds(coffers.map(storeClient), coffers[0]!, figures);
    report(`double-spend-${ctx.backend}-store`, {
      backend: ctx.backend,
      api: 'store',
      instances: coffers.length,
      clientsPerRound: CLIENTS,
      ...figures,
    });
    assert.deepEqual(figures.violations, []);
  });

  test('HTTP: concurrent reservations of the same tokens; exactly the affordable ones succeed', { timeout: 300_000 }, async () => {
    const svc = await testService(coffers[0]!);
    const base = await svc.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { authorization } = await svc.key(['*:admin']);
      const figures: Figures = { rounds: 0, attempts: 0, reserved: 0, refused: 0, violations: [] };
      await raceRounds([httpClient(new Http(base, authorization))], coffers[0]!, figures);
      report(`double-spend-${ctx.backend}-http`, { backend: ctx.backend, api: 'http', clientsPerRound: CLIENTS, ...figures });
      assert.deepEqual(figures.violations, []);
    } finally {
      await svc.app.close();
    }
  });
});
