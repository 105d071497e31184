// Retention rule: the chain undo journal below finality. A journal entry exists so a reorg can
// revert a block-derived row; once its block is at or below the chain cursor's finalized height
// it can never be reorged, and the entry is dead weight. The chain domain advances
// chain_cursors.finalized_height; this rule removes what lies at or below it, a window of
// blocks per transaction (through the chain domain's own pruneFinalized).
import { toBigInt } from '../db/codec.js';
import type { Tx } from '../db/tx.js';
import { pruneFinalized, UNDO_TABLE } from '../domains/chain/undo.js';
import { positiveSetting, type RetentionCount, type RetentionOptions, type RetentionRule } from './hooks.js';

const CURSORS = 'chain_cursors';

async function finalizedHeights(tx: Tx): Promise<Map<string, bigint>> {
  const rows = await tx.db.selectFrom(CURSORS).select(['chain_id', 'finalized_height']).where('finalized_height', 'is not', null).execute();
  return new Map(rows.map((r) => [String(r.chain_id), toBigInt(r.finalized_height)]));
}

async function lowestHeight(tx: Tx, chainId: string): Promise<bigint | null> {
  const r = await tx.db
    .selectFrom(UNDO_TABLE)
    .select((eb) => eb.fn.min('height').as('h'))
    .where('chain_id', '=', chainId)
    .executeTakeFirst();
  const h = (r as { h: unknown } | undefined)?.h;
  return h === null || h === undefined ? null : toBigInt(h);
}

export const undoJournalRule: RetentionRule = {
  name: 'chain.undo_finalized',
  domain: 'chain',
  describe: "undo-journal entries of blocks at or below each chain cursor's finalized height (they can no longer be reorged)",
  requires: [UNDO_TABLE, `${CURSORS}.chain_id`, `${CURSORS}.finalized_height`],
  settings: [
    { key: 'chain.undo.blocksPerBatch', describe: 'blocks of journal removed per transaction', default: '1000', positive: 'integer' },
  ],

  async count(tx: Tx, opts: RetentionOptions): Promise<RetentionCount[]> {
    void opts;
    const out: RetentionCount[] = [];
    for (const [chainId, h] of await finalizedHeights(tx)) {
      const enc = tx.codec(UNDO_TABLE).encode({ chain_id: chainId, height: h });
      const r = await tx.db
        .selectFrom(UNDO_TABLE)
        .select((eb) => eb.fn.countAll().as('n'))
        .where('chain_id', '=', enc.chain_id as never)
        .where('height', '<=', enc.height as never)
        .executeTakeFirst();
      const n = toBigInt((r as { n: unknown } | undefined)?.n);
      if (n > 0n)
        out.push({ table: UNDO_TABLE, rows: n, detail: `chain ${JSON.stringify(chainId)}: entries at or below finalized height ${h}` });
    }
    return out;
  },

  async apply(tx: Tx, opts: RetentionOptions): Promise<number> {
    const window = BigInt(positiveSetting(undoJournalRule, opts, 'chain.undo.blocksPerBatch', true));
    for (const [chainId, finalized] of await finalizedHeights(tx)) {
      const low = await lowestHeight(tx, chainId);
      if (low === null || low > finalized) continue;
      // One window of blocks per transaction, so no single delete grows without bound.
      const upTo = low + window - 1n < finalized ? low + window - 1n : finalized;
      const n = await pruneFinalized(tx, chainId, upTo);
      if (n > 0) return n;
    }
    return 0;
  },
};
