// Row counts per table of the logical schema, for `coffer status`.
import { introspect } from '../schema/introspect.js';
import { toBigInt } from '../db/codec.js';
import type { Coffer } from '../db/store.js';

/** table → row count, or null when the table does not exist (migrations pending). */
export async function tableRowCounts(coffer: Coffer): Promise<Record<string, string | null>> {
  return coffer.read(
    async (tx) => {
      const live = await introspect(tx.db, tx.dialect);
      const out: Record<string, string | null> = {};
      for (const name of [...coffer.schema.tables.keys()].sort()) {
        if (!live[name]) {
          out[name] = null;
          continue;
        }
        const r = await tx.db
          .selectFrom(name)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow();
        out[name] = toBigInt((r as { n: unknown }).n).toString();
      }
      return out;
    },
    { op: 'cli.status' },
  );
}
