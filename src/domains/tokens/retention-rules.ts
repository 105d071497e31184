// The token domain's rules for `coffer trim`: unconfirmed mints and invoices older than a
// maximum age (oldest first; an old unconfirmed invoice's reservation is released with it).
import { toBigInt } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';
import { positiveSetting, settingOf, type RetentionOptions, type RetentionRule } from '../../ops/hooks.js';
import { trimUnconfirmedInvoices, trimUnconfirmedMints } from './retention.js';
import { T } from './types.js';

function cutoff(rule: RetentionRule, opts: RetentionOptions, key: string): Date {
  const hours = positiveSetting(rule, opts, key);
  return new Date(opts.now.getTime() - hours * 3_600_000);
}

function rule(
  name: string,
  table: string,
  key: string,
  what: string,
  trim: (tx: Tx, o: { olderThan: Date; limit: number }) => Promise<number>,
): RetentionRule {
  const r: RetentionRule = {
    name,
    domain: 'tokens',
    describe: `${what} received more than ${key} hours ago and never confirmed on chain`,
    requires: [`${table}.received_at`],
    settings: [{ key, describe: `maximum age in hours of ${what}`, default: '168', positive: 'number' }],
    async count(tx, opts) {
      const c = await tx.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll().as('n'))
        .where('received_at', '<', tx.codec(table).encode({ received_at: cutoff(r, opts, key) }).received_at as never)
        .executeTakeFirst();
      const n = toBigInt((c as { n: unknown } | undefined)?.n);
      return n > 0n ? [{ table, rows: n, detail: `older than ${settingOf(r, opts, key)} h` }] : [];
    },
    apply: (tx, opts) => trim(tx, { olderThan: cutoff(r, opts, key), limit: Math.max(1, Math.min(opts.batchSize, 10_000)) }),
  };
  return r;
}

export const unconfirmedMintsRule = rule(
  'tokens.unconfirmed_mints',
  T.unconfirmedMints,
  'tokens.unconfirmedMints.maxAgeHours',
  'unconfirmed mints',
  trimUnconfirmedMints,
);
export const unconfirmedInvoicesRule = rule(
  'tokens.unconfirmed_invoices',
  T.unconfirmedInvoices,
  'tokens.unconfirmedInvoices.maxAgeHours',
  'unconfirmed invoices',
  trimUnconfirmedInvoices,
);
