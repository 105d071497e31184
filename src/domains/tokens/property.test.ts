// Property tests on every backend: random interleavings of invoices, on-chain matches, exact and
// wrong payments, empty blocks, expiry, release, reorgs shallower than the confirmations, and
// replays. After every step: supply per mint is conserved, the balance cache equals the ledger,
// no available balance is negative, escrow agrees with invoices and payments; every replay is a
// no-op (a replayed block only decides what became decidable since it was processed); an
// invoice reserves exactly when the available balance covers it.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { InsufficientBalanceError } from './errors.js';
import { tokens } from './store.js';
import { UNDO_TABLE } from '../chain/undo.js';
import { actionTx, checkInvariants, FakeChain, invoiceInput, mintInput, snapshot, unique } from './testkit.js';
import { T, type InvoiceInput } from './types.js';

const CONFIRMATIONS = 3;
const ADDRESSES = 4;

type Cmd =
  | { k: 'invoice'; mint: number; seller: number | 'owner'; buyer: number; qty: bigint; price: bigint; ttl: number }
  | { k: 'block'; acts: { type: 'match' | 'pay' | 'badpay' | 'matchpay'; idx: number }[] }
  | { k: 'expire'; advance: number }
  | { k: 'release'; idx: number }
  | { k: 'reorg'; depth: number; reinclude: boolean }
  | { k: 'replayBlock' }
  | { k: 'replayInvoice'; idx: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    arbitrary: fc.record({
      k: fc.constant('invoice' as const),
      mint: fc.nat(1),
      seller: fc.oneof({ arbitrary: fc.constant('owner' as const), weight: 2 }, { arbitrary: fc.nat(ADDRESSES - 1), weight: 1 }),
      buyer: fc.nat(ADDRESSES - 2),
      qty: fc.bigInt(1n, 20n),
      price: fc.bigInt(1n, 5n),
      ttl: fc.integer({ min: 1, max: 6 }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      k: fc.constant('block' as const),
      acts: fc.array(
        fc.record({ type: fc.constantFrom('match' as const, 'pay' as const, 'badpay' as const, 'matchpay' as const), idx: fc.nat(20) }),
        { maxLength: 3 },
      ),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant('expire' as const), advance: fc.integer({ min: 0, max: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('release' as const), idx: fc.nat(20) }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant('reorg' as const),
      depth: fc.integer({ min: 1, max: CONFIRMATIONS - 1 }),
      reinclude: fc.boolean(),
    }),
    weight: 1,
  },
  { arbitrary: fc.constant({ k: 'replayBlock' as const }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('replayInvoice' as const), idx: fc.nat(20) }), weight: 1 },
);

// Virtual time, increasing across runs so one run's expiry never reaches into another's future.
let clockMs = Date.UTC(2001, 0, 1);
const UNIT = 60_000;
const seen = { reorg: 0, replayBlock: 0, replayInvoice: 0, refused: 0, rejectedPayment: 0 };

/**
 * The chain's pending payments that a block would now reject, by transaction, with the reason:
 * their invoice is not matched and its reservation has ended (expired or released). An expiry
 * or release between a block and its replay makes them decidable, so the replay decides them.
 */
async function unmatchablePayments(coffer: Coffer, chainId: string): Promise<Map<string, string>> {
  return coffer.read(async (tx) => {
    const out = new Map<string, string>();
    const pending = await tx.db
      .selectFrom(T.actions)
      .select(['tx_hash', 'ref_hash'])
      .where('chain_id', '=', chainId)
      .where('state', '=', 'pending')
      .where('action_type', '=', 'payment')
      .execute();
    for (const a of pending as { tx_hash: string; ref_hash: string }[]) {
      const matched = await tx.db.selectFrom(T.invoices).select('hash').where('hash', '=', a.ref_hash).executeTakeFirst();
      const state = (await tokens(tx).getReservation(a.ref_hash))?.state;
      if (!matched && (state === 'expired' || state === 'released'))
        out.set(a.tx_hash, `the reservation of invoice ${a.ref_hash} is ${state}, not reserved`);
    }
    return out;
  });
}

forEachBackend('tokens properties', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  test('property: supply is conserved, no available balance goes negative, every replay is a no-op', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(fc.bigInt(10n, 60n), fc.bigInt(1n, 60n)),
        fc.array(cmd, { minLength: 8, maxLength: 30 }),
        async ([fc0, fc1], cmds) => {
          clockMs += 1000 * UNIT;
          const at = () => new Date(clockMs);
          const store = (tx: Parameters<typeof tokens>[0]) => tokens(tx, { clock: at });
          const chain = new FakeChain(unique('prop-'), CONFIRMATIONS);
          const addr = Array.from({ length: ADDRESSES }, () => unique('DAddr'));
          const mints: string[] = [];
          for (const [i, count] of [fc0, fc1].entries()) {
            const { hash } = await coffer.write((tx) =>
              store(tx).submitMint(mintInput({ chainId: chain.chainId, fractionCount: count, ownerAddress: addr[i]! })),
            );
            mints.push(hash);
          }
          await chain.mine(
            coffer,
            mints.map((h) => actionTx('mint', h)),
          );
          await chain.mineEmpty(coffer, CONFIRMATIONS - 1);
          await checkInvariants(coffer);

          const invoices: { hash: string; input: InvoiceInput; total: bigint }[] = [];
          const pick = (idx: number) => invoices[idx % Math.max(1, invoices.length)];

          for (const c of cmds) {
            switch (c.k) {
              case 'invoice': {
                const mint = mints[c.mint]!;
                // Mostly the mint's owner (addr[i] owns mint i); any address may hold tokens it bought.
                const s = c.seller === 'owner' ? c.mint : c.seller;
                const seller = addr[s]!;
                const buyer = addr[(s + 1 + c.buyer) % ADDRESSES]!;
                const input = invoiceInput({
                  chainId: chain.chainId,
                  mintHash: mint,
                  sellerAddress: seller,
                  buyerAddress: buyer,
                  quantity: c.qty,
                  price: c.price,
                  paymentAddress: `P${buyer}`,
                });
                const available = (await coffer.read((tx) => store(tx).balance(mint, seller))).available;
                const fraction = [fc0, fc1][c.mint]!;
                const res = await coffer.write((tx) => store(tx).createInvoice(input, { ttlMs: c.ttl * UNIT })).catch((e: unknown) => e);
                if (c.qty > fraction) {
                  assert.ok(!(res instanceof InsufficientBalanceError) && res instanceof Error, 'more than the supply is invalid input');
                } else if (available >= c.qty) {
                  assert.ok(!(res instanceof Error), `reserves when available ${available} ≥ ${c.qty}: ${String(res)}`);
                  invoices.push({ hash: (res as { hash: string }).hash, input, total: c.qty * c.price });
                } else {
                  assert.ok(res instanceof InsufficientBalanceError, `refused when available ${available} < ${c.qty}`);
                  seen.refused++;
                }
                break;
              }
              case 'block': {
                const txs = c.acts.flatMap((a) => {
                  const inv = pick(a.idx);
                  if (!inv) return [];
                  const match = actionTx('invoice', inv.hash);
                  if (a.type === 'match') return [match];
                  const value = a.type === 'badpay' ? inv.total + 1n : inv.total;
                  if (a.type === 'badpay') seen.rejectedPayment++;
                  const pay = actionTx('payment', inv.hash, [{ address: inv.input.paymentAddress, value }]);
                  return a.type === 'matchpay' ? [match, pay] : [pay];
                });
                await chain.mine(coffer, txs);
                break;
              }
              case 'expire': {
                clockMs += c.advance * UNIT;
                const first = await coffer.write((tx) => store(tx).expireReservations());
                const before = await snapshot(coffer);
                const second = await coffer.write((tx) => store(tx).expireReservations());
                assert.deepEqual(second, [], `expiry replayed expires nothing (first: ${first.length})`);
                assert.deepEqual(await snapshot(coffer), before);
                break;
              }
              case 'release': {
                const inv = pick(c.idx);
                if (!inv) break;
                const state = (await coffer.read((tx) => store(tx).getInvoice(inv.hash)))?.status;
                const res = await coffer.write((tx) => store(tx).releaseInvoice(inv.hash)).catch((e: unknown) => e);
                assert.equal(res instanceof Error, state !== 'open', `release of a ${state} invoice`);
                break;
              }
              case 'reorg': {
                // Within the model: never below the finalized height (chain ingest refuses that).
                let fork = chain.tip - BigInt(c.depth);
                if (fork < chain.finalized) fork = chain.finalized;
                if (fork >= chain.tip) break;
                const lost = chain.blocks.slice(Number(fork) + 1).map((b) => b.transactions);
                await chain.revert(coffer, fork);
                seen.reorg++;
                if (c.reinclude) await chain.mine(coffer, lost.flat());
                break;
              }
              case 'replayBlock': {
                const last = chain.blocks[chain.blocks.length - 1]!;
                const decided = await unmatchablePayments(coffer, chain.chainId);
                const before = await snapshot(coffer, { journal: true });
                await chain.replay(coffer, last);
                seen.replayBlock++;
                // Nothing changes but the rejection of those payments (a block after the expiry or
                // release would reject them too), each journaled once under the replayed block.
                const after = await snapshot(coffer, { journal: true });
                const actions = before[T.actions]!.map((row) => {
                  const a = JSON.parse(row) as { tx_hash: string };
                  const reason = decided.get(a.tx_hash);
                  return reason === undefined ? row : JSON.stringify({ ...a, state: 'rejected', reason });
                });
                const journaled = after[UNDO_TABLE]!.filter((e) => !before[UNDO_TABLE]!.includes(e));
                assert.deepEqual(
                  { ...after, [UNDO_TABLE]: after[UNDO_TABLE]!.filter((e) => before[UNDO_TABLE]!.includes(e)) },
                  { ...before, [T.actions]: actions.sort() },
                  'a replayed block changes nothing but what became decidable since',
                );
                assert.deepEqual(
                  journaled.map((e) => (JSON.parse(e) as { table_name: string }).table_name),
                  Array(decided.size).fill(T.actions),
                );
                break;
              }
              case 'replayInvoice': {
                const inv = pick(c.idx);
                if (!inv) break;
                const before = await snapshot(coffer, { journal: true });
                const res = await coffer.write((tx) => store(tx).createInvoice(inv.input)).catch((e: unknown) => e);
                seen.replayInvoice++;
                if (!(res instanceof Error)) assert.equal((res as { created: boolean }).created, false);
                assert.deepEqual(await snapshot(coffer, { journal: true }), before, 'a replayed invoice changes nothing');
                break;
              }
            }
            await checkInvariants(coffer);
          }
          // Let everything recorded settle, then check once more.
          await chain.mineEmpty(coffer, CONFIRMATIONS);
          await checkInvariants(coffer);
        },
      ),
      { numRuns: Number(process.env.COFFER_TOKENS_PROPERTY_RUNS ?? 20) },
    );
    // The runs must have exercised every path, or the property proves little.
    const states = await coffer.read((tx) =>
      tx.db
        .selectFrom('token_reservations')
        .select((eb) => ['state', eb.fn.countAll().as('n')])
        .groupBy('state')
        .execute(),
    );
    const byState = Object.fromEntries(states.map((x) => [x.state as string, Number(x.n)]));
    for (const st of ['settled', 'expired', 'released'])
      assert.ok((byState[st] ?? 0) > 0, `some reservation ended ${st}: ${JSON.stringify(byState)}`);
    for (const k of ['reorg', 'replayBlock', 'replayInvoice', 'refused', 'rejectedPayment'] as const)
      assert.ok(seen[k] > 0, `the runs included ${k}: ${JSON.stringify(seen)}`);
  });
});
