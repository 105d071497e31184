// The chain domain's `coffer doctor` check: every chain cursor points at a block stored whole
// (the block at the cursor's height has the cursor's hash and all its transactions), and no
// block lies above the cursor.
import { toBigInt } from '../../db/codec.js';
import type { DoctorCheck, Finding } from '../../ops/hooks.js';

export const chainCursorCheck: DoctorCheck = {
  name: 'chain.cursor',
  domain: 'chain',
  describe: 'each chain cursor points at the last block, stored whole, with nothing above it',
  requires: ['chain_cursors', 'chain_blocks', 'chain_transactions'],
  async run(ctx): Promise<Finding[]> {
    return ctx.coffer.read(
      async (tx) => {
        const findings: Finding[] = [];
        const cursors = await tx.db.selectFrom('chain_cursors').select(['chain_id', 'height', 'block_hash']).execute();
        for (const c of cursors) {
          const chainId = String(c.chain_id);
          const top = await tx.db
            .selectFrom('chain_blocks')
            .select((eb) => eb.fn.max('height').as('h'))
            .where('chain_id', '=', chainId)
            .executeTakeFirst();
          const topHeight = top?.h === null || top?.h === undefined ? null : toBigInt(top.h);
          const height = c.height === null ? null : toBigInt(c.height);
          if (height === null) {
            if (topHeight !== null)
              findings.push({
                severity: 'error',
                message: `chain ${chainId}: blocks stored but the cursor is empty`,
                remedy: 'restore from a backup; report a bug',
              });
            continue;
          }
          const block = await tx.db
            .selectFrom('chain_blocks')
            .select(['hash', 'tx_count'])
            .where('chain_id', '=', chainId)
            .where('height', '=', tx.codec('chain_blocks').encode({ height }).height as never)
            .executeTakeFirst();
          if (!block || block.hash !== c.block_hash) {
            findings.push({
              severity: 'error',
              message: `chain ${chainId}: cursor ${height}:${c.block_hash} has no matching stored block`,
              remedy: 'restore from a backup; report a bug',
            });
            continue;
          }
          if (topHeight !== null && topHeight > height) {
            findings.push({
              severity: 'error',
              message: `chain ${chainId}: blocks above the cursor (${topHeight} > ${height})`,
              remedy: 'restore from a backup; report a bug',
            });
          }
          const stored = await tx.db
            .selectFrom('chain_transactions')
            .select((eb) => eb.fn.countAll().as('n'))
            .where('chain_id', '=', chainId)
            .where('block_hash', '=', String(block.hash))
            .executeTakeFirst();
          const n = toBigInt((stored as { n: unknown } | undefined)?.n);
          if (n > BigInt(Number(block.tx_count))) {
            findings.push({
              severity: 'error',
              message: `chain ${chainId}: tip block has ${n} stored transactions, more than its count ${block.tx_count}`,
              remedy: 'report a bug',
            });
          }
          if (findings.length === 0)
            findings.push({ severity: 'ok', message: `chain ${chainId}: cursor at ${height}, block stored whole` });
        }
        return findings;
      },
      { op: 'doctor.chain' },
    );
  },
};
