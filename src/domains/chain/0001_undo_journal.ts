// chain/0001_undo_journal: the undo journal of block-derived rows. Every row any domain writes
// because of a block is journaled here (before image, or "did not exist"), so a reorg can
// revert it in the same transaction on every backend, without PostgreSQL-only triggers.
import { c, createTable } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

export default defineMigration(import.meta.url, {
  domain: 'chain',
  version: 1,
  name: 'undo_journal',
  ops: [
    createTable('chain_undo', {
      domain: 'chain',
      columns: {
        id: c.serial(),
        chain_id: c.varchar(64),
        height: c.bigint(),
        block_hash: c.hex(64),
        table_name: c.varchar(63),
        row_key: c.json(),
        before_image: c.json({ nullable: true }),
      },
      primaryKey: ['id'],
      indexes: { ix_chain_undo_chain_height: ['chain_id', 'height'] },
      checks: { ck_chain_undo_height: 'height >= 0' },
    }),
  ],
});
