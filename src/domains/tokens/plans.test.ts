// PostgreSQL keeps one generic plan for each statement the token processor and the invoice path
// run. They run as named statements on every block and every invoice, and a statement that
// PostgreSQL plans again on each call costs more server CPU than running it (the pending-actions
// read took 0.3 ms of planning per block when its states were parameters). The check runs after
// ANALYZE: statistics are what can tip the planner towards planning per call.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { forEachBackend } from '../../../test/harness.js';
import { tokens } from './store.js';
import { actionTx, FakeChain, invoiceInput, mintInput, unique } from './testkit.js';

/** PostgreSQL plans a named statement for its values on its first five runs, whatever it decides later. */
const FIRST_CUSTOM_PLANS = 5;

forEachBackend(
  'tokens statement plans',
  (ctx) => {
    test('after ANALYZE, the processor and invoice statements run on one generic plan', async () => {
      // One connection: every statement of the flow is prepared on the connection that reads the view.
      const coffer = await ctx.open({ settings: { poolMax: 1 } });
      const chain = new FakeChain(unique('plans-'), 1);
      const mint = mintInput({ chainId: chain.chainId, fractionCount: 1_000n });
      const { hash: mintHash } = await coffer.write((tx) => tokens(tx).submitMint(mint));
      await chain.mine(coffer, [actionTx('mint', mintHash)]);
      const sale = async () => {
        const pay = unique('DPay');
        const inv = invoiceInput({
          chainId: chain.chainId,
          mintHash,
          sellerAddress: mint.ownerAddress,
          buyerAddress: unique('DBuyer'),
          quantity: 1n,
          price: 5n,
          paymentAddress: pay,
        });
        const { hash } = await coffer.write((tx) => tokens(tx).createInvoice(inv));
        await chain.mine(coffer, [actionTx('invoice', hash), actionTx('payment', hash, [{ address: pay, value: 5n }])]);
        return hash;
      };
      for (let i = 0; i < 20; i++) await sale();
      await coffer.write((tx) => sql`analyze`.execute(tx.db));
      let last = '';
      for (let i = 0; i < 12; i++) last = await sale();
      assert.equal((await coffer.read((tx) => tokens(tx).getInvoice(last)))?.status, 'paid', 'the sales settled');

      const rows = await coffer.read(
        async (tx) =>
          (
            await sql<{ statement: string; generic_plans: string; custom_plans: string }>`
              select statement, generic_plans::text, custom_plans::text from pg_prepared_statements`.execute(tx.db)
          ).rows,
      );
      const hot = rows.filter((r) => Number(r.generic_plans) + Number(r.custom_plans) >= 30);
      assert.ok(hot.length >= 10, `the flow's statements are named (${hot.length} ran 30 times or more)`);
      const replanned = hot.filter((r) => Number(r.custom_plans) > FIRST_CUSTOM_PLANS);
      assert.deepEqual(
        replanned.map((r) => `${r.custom_plans} custom plans: ${r.statement.replace(/\s+/g, ' ').slice(0, 160)}`),
        [],
        'statements PostgreSQL plans again on every call',
      );
    });
  },
  ['postgres'],
);
