// Counts per chain: confirmed and unconfirmed mints, invoices, and token transactions seen on
// chain. One read transaction, so the numbers are from one snapshot.
import { toBigInt } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';
import { T, type ChainStats } from './types.js';

const COUNTED = [
  ['mints', T.mints],
  ['unconfirmedMints', T.unconfirmedMints],
  ['invoices', T.invoices],
  ['unconfirmedInvoices', T.unconfirmedInvoices],
  ['onchainTransactions', T.actions],
] as const;

/** Stats of every chain with token rows (or of one chain), sorted by chain id. */
export async function stats(tx: Tx, chainId?: string): Promise<ChainStats[]> {
  const byChain = new Map<string, ChainStats>();
  const entry = (id: string) => {
    let s = byChain.get(id);
    if (!s) {
      s = { chainId: id, mints: 0, unconfirmedMints: 0, invoices: 0, unconfirmedInvoices: 0, onchainTransactions: 0 };
      byChain.set(id, s);
    }
    return s;
  };
  if (chainId !== undefined) entry(chainId);
  for (const [key, table] of COUNTED) {
    let q = tx.db
      .selectFrom(table)
      .select((eb) => ['chain_id', eb.fn.countAll().as('n')])
      .groupBy('chain_id');
    if (chainId !== undefined) q = q.where('chain_id', '=', chainId);
    for (const r of await q.execute()) entry(r.chain_id as string)[key] = Number(toBigInt(r.n));
  }
  return [...byChain.values()].sort((a, b) => (a.chainId < b.chainId ? -1 : a.chainId > b.chainId ? 1 : 0));
}
