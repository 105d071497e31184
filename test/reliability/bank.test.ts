// The bank test on every backend, through the store API and through HTTP (a real listening
// server on loopback): concurrent transfers (reserve, then settle on chain) and reads for a
// fixed time. Every read and the final state sum to the supply, no balance goes negative,
// every transfer a client saw succeed is in the ledger exactly and every one it saw fail is
// not. See bank.ts for the workload and the checker.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../src/db/store.js';
import { forEachBackend } from '../harness.js';
import { testService } from '../service-support.js';
import { httpClient, runBank, storeClient, type BankOptions, type BankResult } from './bank.js';
import { Http, pick, report } from './support.js';

const OPTIONS: BankOptions = {
  accounts: 8,
  perAccount: 1000n,
  transferClients: pick(12, 16),
  miners: 2,
  readers: 2,
  durationMs: pick(2500, 60_000),
  maxTransfers: pick(3000, 200_000),
};

function verdict(name: string, r: BankResult): void {
  report(name, { ...r, mode: process.env.COFFER_RELIABILITY ?? 'short' });
  assert.deepEqual(r.violations, [], `${name}: the checker found violations`);
  assert.deepEqual(r.unexpectedErrors, [], `${name}: only the model's own refusals may fail`);
  // The run must have seen transfers succeed and fail, or it proves little.
  assert.ok(
    r.transfers.ok > 0 && r.transfers.refused + r.transfers.released + r.transfers.unpaid > 0,
    `${name}: transfers ${JSON.stringify(r.transfers)}`,
  );
  assert.ok(r.reads > 0 && r.blocks > 0, `${name}: ${r.reads} reads, ${r.blocks} blocks`);
}

forEachBackend('reliability: bank test', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ settings: { lockTimeoutMs: 20_000 } });
  });

  test('store API: concurrent transfers and reads; the checker finds no violation', { timeout: OPTIONS.durationMs + 180_000 }, async () => {
    verdict(`bank-${ctx.backend}-store`, await runBank(storeClient(coffer), coffer, ctx.backend, OPTIONS));
  });

  test('HTTP: concurrent transfers and reads; the checker finds no violation', { timeout: OPTIONS.durationMs + 180_000 }, async () => {
    const svc = await testService(coffer);
    const base = await svc.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { authorization } = await svc.key(['*:admin']);
      verdict(`bank-${ctx.backend}-http`, await runBank(httpClient(new Http(base, authorization)), coffer, ctx.backend, OPTIONS));
    } finally {
      await svc.app.close();
    }
  });
});
