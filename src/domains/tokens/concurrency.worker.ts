// A separate OS process for the SQLite concurrency test: opens the same database file and
// submits invoices, so the contention goes through SQLite's file lock, busy_timeout and the
// retry loop (instances in one process share a connection and never see SQLITE_BUSY).
// argv[2]: JSON { url, busyTimeoutMs, invoices: InvoiceInput with amounts as strings, dates as ISO };
// prints "ready", waits for a line on stdin, then prints "result <json>".
import { Coffer } from '../../db/store.js';
import { InsufficientBalanceError } from './errors.js';
import { tokens } from './store.js';
import type { InvoiceInput } from './types.js';

interface Args {
  url: string;
  busyTimeoutMs: number;
  invoices: (Omit<InvoiceInput, 'createdAt'> & { createdAt: string })[];
}

const args = JSON.parse(process.argv[2]!) as Args;
const coffer = await Coffer.open({ url: args.url, settings: { busyTimeoutMs: args.busyTimeoutMs } });
const out = { reserved: [] as string[], refused: 0, errors: [] as string[], retries: 0 };
try {
  // Barrier: say ready, start when the parent says go, so both processes contend at once.
  process.stdout.write('ready\n');
  await new Promise((r) => process.stdin.once('data', r));
  await Promise.all(
    args.invoices.map(async (inv) => {
      try {
        const r = await coffer.write((tx) => tokens(tx).createInvoice({ ...inv, createdAt: new Date(inv.createdAt) }), {
          op: 'tokens.createInvoice',
        });
        out.reserved.push(r.hash);
      } catch (e) {
        if (e instanceof InsufficientBalanceError) out.refused++;
        else out.errors.push(String(e));
      }
    }),
  );
  for (const v of (await coffer.metrics.txRetries.get()).values) out.retries += v.value;
} finally {
  await coffer.close();
}
process.stdout.write(`result ${JSON.stringify(out)}\n`);
process.stdin.destroy();
