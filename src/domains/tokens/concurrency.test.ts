// Concurrency on PostgreSQL, MariaDB/MySQL and SQLite: several Coffer instances on one database
// (on SQLite, one file) with workers reserving, matching and paying on chain, settling, expiring,
// releasing and trimming at once. Afterwards every invariant holds, and the only errors any
// worker saw are the domain's own refusals: no retryable conflict surfaced as a failure.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { InvalidStateTransitionError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { InsufficientBalanceError } from './errors.js';
import { tokens } from './store.js';
import { actionTx, checkInvariants, FakeChain, invoiceInput, mintInput, unique } from './testkit.js';
import type { InvoiceInput } from './types.js';
import type { IngestedTransaction } from '../chain/processors.js';

const rnd = (n: number) => Math.floor(Math.random() * n);

/** Retried transactions (deadlocks, serialization failures, busy) across instances: retried, not failed. */
async function retries(coffers: Coffer[]): Promise<number> {
  let n = 0;
  for (const c of coffers) for (const v of (await c.metrics.txRetries.get()).values) n += v.value;
  return n;
}

forEachBackend(
  'tokens concurrency',
  (ctx) => {
    async function instances(n: number): Promise<Coffer[]> {
      const db = await ctx.newDatabase();
      const out: Coffer[] = [];
      // The first one migrates; the others find the schema in place.
      for (let i = 0; i < n; i++) out.push(await ctx.open({ url: db.url, settings: { lockTimeoutMs: 20_000 } }));
      return out;
    }

    async function fundedMints(coffer: Coffer, chain: FakeChain, n: number, fractionCount: bigint) {
      const out: { hash: string; owner: string }[] = [];
      for (let i = 0; i < n; i++) {
        const input = mintInput({ chainId: chain.chainId, fractionCount });
        out.push({ hash: (await coffer.write((tx) => tokens(tx).submitMint(input))).hash, owner: input.ownerAddress });
      }
      await chain.mine(
        coffer,
        out.map((m) => actionTx('mint', m.hash)),
      );
      await chain.mineEmpty(coffer, chain.confirmations - 1);
      return out;
    }

    test('invoices racing for the same tokens from separate instances: exactly one reserves', async () => {
      const coffers = await instances(4);
      const chain = new FakeChain(unique('race-'), 1);
      const mints = await fundedMints(coffers[0]!, chain, 6, 10n);
      for (let round = 0; round < 3; round++) {
        const attempts = mints.flatMap((m) =>
          coffers.map((c) => ({
            c,
            inv: invoiceInput({
              chainId: chain.chainId,
              mintHash: m.hash,
              sellerAddress: m.owner,
              buyerAddress: unique('DB'),
              quantity: 6n,
              price: 1n,
              paymentAddress: 'DPay',
            }),
          })),
        );
        const results = await Promise.allSettled(
          attempts.map(({ c, inv }) => c.write((tx) => tokens(tx).createInvoice(inv), { op: 'tokens.createInvoice' })),
        );
        for (const r of results)
          if (r.status === 'rejected') assert.ok(r.reason instanceof InsufficientBalanceError, `only refusals: ${String(r.reason)}`);
        for (const m of mints) {
          const b = await coffers[0]!.read((tx) => tokens(tx).balance(m.hash, m.owner));
          assert.equal(b.reserved, 6n, `round ${round}: exactly one invoice of mint ${m.hash} reserved`);
          // Free it for the next round.
          const held = await coffers[0]!.read((tx) =>
            tx.db
              .selectFrom('token_reservations')
              .select('invoice_hash')
              .where('mint_hash', '=', m.hash)
              .where('state', '=', 'reserved')
              .execute(),
          );
          for (const h of held) await coffers[0]!.write((tx) => tokens(tx).releaseInvoice(h.invoice_hash as string));
        }
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, mints.length);
      }
      await checkInvariants(coffers[0]!);
    });

    test('many workers reserving, settling on chain, expiring, releasing and trimming at once keep every invariant', async (t) => {
      const coffers = await instances(7);
      const [setup, minerA, minerB, ...workers] = coffers as [Coffer, Coffer, Coffer, ...Coffer[]];
      // Two chains, each mined by its own instance: settlements of both run concurrently too.
      const chains = [new FakeChain(unique('loadA-'), 2), new FakeChain(unique('loadB-'), 2)];
      const mints: { hash: string; owner: string; chain: FakeChain }[] = [];
      for (const ch of chains) for (const m of await fundedMints(setup, ch, 2, 150n)) mints.push({ ...m, chain: ch });
      const holders = [...mints.map((m) => m.owner), ...Array.from({ length: 4 }, () => unique('DHolder'))];
      const created: { hash: string; input: InvoiceInput; chain: FakeChain }[] = [];
      const unexpected: unknown[] = [];
      const tally = { reserved: 0, refused: 0, released: 0, expired: 0, trimmed: 0, blocks: 0 };
      let running = true;

      const guard = async (fn: () => Promise<void>, allowed: (e: unknown) => boolean) => {
        try {
          await fn();
        } catch (e) {
          if (!allowed(e)) unexpected.push(e);
        }
      };

      const reserver = async (c: Coffer) => {
        for (let i = 0; i < 40; i++) {
          const m = mints[rnd(mints.length)]!;
          const seller = rnd(3) === 0 ? holders[rnd(holders.length)]! : m.owner;
          let buyer = holders[rnd(holders.length)]!;
          if (buyer === seller) buyer = unique('DB');
          const input = invoiceInput({
            chainId: m.chain.chainId,
            mintHash: m.hash,
            sellerAddress: seller,
            buyerAddress: buyer,
            quantity: BigInt(1 + rnd(15)),
            price: BigInt(1 + rnd(3)),
            paymentAddress: `P${buyer}`,
          });
          await guard(
            async () => {
              const r = await c.write((tx) => tokens(tx).createInvoice(input, { ttlMs: 100 + rnd(900) }), { op: 'tokens.createInvoice' });
              created.push({ hash: r.hash, input, chain: m.chain });
              tally.reserved++;
            },
            (e) => {
              tally.refused++;
              return e instanceof InsufficientBalanceError;
            },
          );
        }
      };

      const expirer = async (c: Coffer) => {
        while (running) {
          await guard(
            async () => {
              tally.expired += (
                await c.write((tx) => tokens(tx).expireReservations({ limit: 5 }), { op: 'tokens.expireReservations' })
              ).length;
            },
            () => false,
          );
          await sleep(rnd(15));
        }
      };

      const releaser = async (c: Coffer) => {
        while (running) {
          const inv = created[rnd(Math.max(1, created.length))];
          if (inv && rnd(4) === 0) {
            await guard(
              async () => {
                await c.write((tx) => tokens(tx).releaseInvoice(inv.hash), { op: 'tokens.releaseInvoice' });
                tally.released++;
              },
              (e) => e instanceof InvalidStateTransitionError,
            );
          }
          await guard(
            async () => {
              tally.trimmed += await c.write(
                (tx) => tokens(tx).trimUnconfirmedInvoices({ olderThan: new Date(Date.now() - 700), limit: 3 }),
                { op: 'tokens.trim' },
              );
            },
            () => false,
          );
          await sleep(rnd(20));
        }
      };

      // Chain ingest is serialised per chain (its cursor lock), so one worker mines each chain; the
      // processors race each other and every API worker above.
      const miner = async (chain: FakeChain, c: Coffer) => {
        while (running) {
          const txs: IngestedTransaction[] = [];
          const mine = created.filter((x) => x.chain === chain);
          for (let k = 0; k < 3 && mine.length; k++) {
            // Mostly recent invoices, which are more likely still reserved.
            const inv = mine[Math.max(0, mine.length - 1 - rnd(12))]!;
            const total = BigInt(inv.input.quantity) * BigInt(inv.input.price);
            const kind = rnd(3);
            if (kind !== 1) txs.push(actionTx('invoice', inv.hash));
            if (kind !== 0) txs.push(actionTx('payment', inv.hash, [{ address: inv.input.paymentAddress, value: total }]));
          }
          await guard(
            async () => {
              await chain.mine(c, txs);
              tally.blocks++;
            },
            () => false,
          );
          await sleep(rnd(10));
        }
      };

      const bg = [miner(chains[0]!, minerA), miner(chains[1]!, minerB), expirer(workers[0]!), expirer(workers[1]!), releaser(workers[2]!)];
      await Promise.all([reserver(workers[0]!), reserver(workers[1]!), reserver(workers[2]!), reserver(workers[3]!)]);
      await sleep(100);
      running = false;
      await Promise.all(bg);
      // Let everything recorded settle.
      for (const ch of chains) await ch.mineEmpty(setup, ch.confirmations);

      assert.deepEqual(unexpected.map(String), [], "no worker saw anything but the domain's own refusals");
      await checkInvariants(setup);
      const states = await setup.read((tx) =>
        tx.db
          .selectFrom('token_reservations')
          .select((eb) => ['state', eb.fn.countAll().as('n')])
          .groupBy('state')
          .execute(),
      );
      const byState = Object.fromEntries(states.map((s) => [s.state as string, Number(s.n)]));
      assert.ok((byState.settled ?? 0) > 0, `some invoices settled: ${JSON.stringify({ byState, tally })}`);
      assert.ok(
        (byState.expired ?? 0) + (byState.released ?? 0) > 0,
        `some reservations ended unpaid: ${JSON.stringify({ byState, tally })}`,
      );
      assert.ok(tally.refused > 0 && tally.reserved > 0, `both outcomes of reserving happened: ${JSON.stringify(tally)}`);
      t.diagnostic(
        `${ctx.backend}: ${JSON.stringify(tally)}, reservations ${JSON.stringify(byState)}, transaction retries ${await retries(coffers)}`,
      );
    });
  },
  ['postgres', 'mysql', 'sqlite'],
);

interface WorkerResult {
  reserved: string[];
  refused: number;
  errors: string[];
  retries: number;
}

/** Starts a worker process; resolves `ready` once it has opened the database. */
function startWorker(args: unknown): { ready: Promise<void>; go: () => void; result: Promise<WorkerResult> } {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      fileURLToPath(new URL('./concurrency.worker.ts', import.meta.url)),
      JSON.stringify(args, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
    ],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  let onReady!: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes('ready\n')) onReady();
  });
  child.stderr.on('data', (d) => (err += d));
  const result = new Promise<WorkerResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('result '));
      if (code === 0 && line) resolve(JSON.parse(line.slice('result '.length)));
      else reject(new Error(`worker exited ${code}: ${err}`));
    });
  });
  return { ready, go: () => child.stdin.write('go\n'), result };
}

// Two OS processes on one SQLite file, each with its own connections and a short busy_timeout:
// writers that find the file locked back off and retry, and exactly one invoice per seller wins.
forEachBackend(
  'tokens concurrency across processes',
  (ctx) => {
    test('two processes racing invoices on one SQLite file: exactly one reserves per seller, and no busy error surfaces', async (t) => {
      const db = await ctx.newDatabase();
      const coffer = await ctx.open({ url: db.url });
      const chain = new FakeChain(unique('proc-'), 1);
      const sellers: { hash: string; owner: string }[] = [];
      for (let i = 0; i < 8; i++) {
        const input = mintInput({ chainId: chain.chainId, fractionCount: 10n });
        sellers.push({ hash: (await coffer.write((tx) => tokens(tx).submitMint(input))).hash, owner: input.ownerAddress });
      }
      await chain.mine(
        coffer,
        sellers.map((m) => actionTx('mint', m.hash)),
      );
      const batch = () =>
        sellers.flatMap((m) =>
          [0, 1, 2, 3, 4].map(() =>
            invoiceInput({
              chainId: chain.chainId,
              mintHash: m.hash,
              sellerAddress: m.owner,
              buyerAddress: unique('DB'),
              quantity: 6n,
              price: 2n,
              paymentAddress: 'DPay',
            }),
          ),
        );
      const workers = [0, 1].map(() => startWorker({ url: db.url, busyTimeoutMs: 5, invoices: batch() }));
      await Promise.all(workers.map((w) => w.ready));
      for (const w of workers) w.go();
      const results = await Promise.all(workers.map((w) => w.result));
      assert.deepEqual(
        results.flatMap((r) => r.errors),
        [],
        'only refusals, no busy or other error surfaced',
      );
      assert.equal(
        results.reduce((n, r) => n + r.reserved.length, 0),
        sellers.length,
      );
      for (const m of sellers) assert.equal((await coffer.read((tx) => tokens(tx).balance(m.hash, m.owner))).reserved, 6n);
      await checkInvariants(coffer);
      t.diagnostic(`retries after SQLITE_BUSY: ${results.map((r) => r.retries).join(' + ')}`);
    });
  },
  ['sqlite'],
);
