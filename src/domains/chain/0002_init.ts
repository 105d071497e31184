// chain/0002_init: chains, their sync cursor and health, blocks, on-chain transactions with
// their per-address output values, and the mempool. Every table is keyed by chain_id first, so
// chains are isolated by key and a chain can move to its own database unchanged.
import { c, createTable } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

export default defineMigration(import.meta.url, {
  domain: 'chain',
  version: 2,
  name: 'init',
  ops: [
    createTable('chain_chains', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        name: c.varchar(128),
        network: c.varchar(64),
        // A block with this many confirmations (itself included) is final: never reorged.
        confirmations: c.int(),
        mempool_capacity: c.int(),
        created_at: c.timestamp(),
      },
      primaryKey: ['chain_id'],
      checks: {
        ck_chain_chains_confirmations: 'confirmations >= 1',
        ck_chain_chains_mempool_capacity: 'mempool_capacity >= 1',
      },
    }),
    createTable('chain_cursors', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        // NULL until the first block is ingested.
        height: c.bigint({ nullable: true }),
        block_hash: c.hex(64, { nullable: true }),
        waiting_for_next_hash: c.bool({ default: false }),
        // Monotonic watermark: blocks at or below it are final and their undo journal is pruned.
        finalized_height: c.bigint({ nullable: true }),
      },
      primaryKey: ['chain_id'],
      foreignKeys: { fk_chain_cursors_chain: { columns: ['chain_id'], references: 'chain_chains' } },
      checks: {
        ck_chain_cursors_height: 'height >= 0',
        ck_chain_cursors_tip: '(height IS NULL AND block_hash IS NULL) OR (height IS NOT NULL AND block_hash IS NOT NULL)',
        ck_chain_cursors_finalized: 'finalized_height >= 0',
      },
    }),
    createTable('chain_sync_health', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        current_height: c.bigint({ nullable: true }),
        latest_height: c.bigint({ nullable: true }),
        // latest - current (never negative); NULL while either is unknown.
        lag: c.bigint({ nullable: true }),
        updated_at: c.timestamp(),
      },
      primaryKey: ['chain_id'],
      foreignKeys: { fk_chain_sync_health_chain: { columns: ['chain_id'], references: 'chain_chains' } },
      checks: {
        ck_chain_sync_health_current: 'current_height >= 0',
        ck_chain_sync_health_latest: 'latest_height >= 0',
        ck_chain_sync_health_lag: 'lag >= 0',
      },
    }),
    createTable('chain_blocks', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        height: c.bigint(),
        hash: c.hex(64),
        parent_hash: c.hex(64),
        block_time: c.timestamp(),
        tx_count: c.int(),
      },
      primaryKey: ['chain_id', 'height'],
      unique: { uq_chain_blocks_hash: ['chain_id', 'hash'] },
      foreignKeys: { fk_chain_blocks_chain: { columns: ['chain_id'], references: 'chain_chains' } },
      checks: { ck_chain_blocks_height: 'height >= 0', ck_chain_blocks_tx_count: 'tx_count >= 0' },
    }),
    createTable('chain_transactions', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        tx_hash: c.hex(64),
        block_height: c.bigint(),
        block_hash: c.hex(64),
        index_in_block: c.int(),
        action_type: c.varchar(32, { nullable: true }),
        action_version: c.int({ nullable: true }),
        payload: c.bytes({ nullable: true }),
        address: c.varchar(128, { nullable: true }),
      },
      primaryKey: ['chain_id', 'tx_hash'],
      // (chain, height, index) is both the height index and the keyset-pagination order.
      unique: { uq_chain_transactions_position: ['chain_id', 'block_height', 'index_in_block'] },
      indexes: { ix_chain_transactions_address: ['chain_id', 'address', 'block_height', 'index_in_block'] },
      foreignKeys: {
        fk_chain_transactions_block: {
          columns: ['chain_id', 'block_height'],
          references: 'chain_blocks',
          refColumns: ['chain_id', 'height'],
        },
      },
      checks: {
        ck_chain_transactions_index: 'index_in_block >= 0',
        ck_chain_transactions_action_version: 'action_version >= 0',
      },
    }),
    createTable('chain_tx_outputs', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        tx_hash: c.hex(64),
        address: c.varchar(128),
        // Integer base units (sats, koinu, wei): exact on every backend.
        value: c.uint256(),
        // Copied from the transaction so "transactions of an address" pages on one index.
        block_height: c.bigint(),
        index_in_block: c.int(),
      },
      primaryKey: ['chain_id', 'tx_hash', 'address'],
      indexes: { ix_chain_tx_outputs_address: ['chain_id', 'address', 'block_height', 'index_in_block'] },
      foreignKeys: {
        fk_chain_tx_outputs_tx: { columns: ['chain_id', 'tx_hash'], references: 'chain_transactions', refColumns: ['chain_id', 'tx_hash'] },
      },
    }),
    createTable('chain_mempool', {
      domain: 'chain',
      columns: {
        chain_id: c.varchar(64),
        tx_hash: c.hex(64),
        content: c.bytes(),
        // bigint, not uint256, so eviction and claims can order by fee in SQL on every backend.
        fee: c.bigint(),
        size_bytes: c.int(),
        received_at: c.timestamp(),
        // A claim is a lease: another worker may take the row once it expires.
        claimed_by: c.varchar(128, { nullable: true }),
        claim_expires_at: c.timestamp({ nullable: true }),
      },
      primaryKey: ['chain_id', 'tx_hash'],
      indexes: { ix_chain_mempool_fee: ['chain_id', 'fee', 'received_at'] },
      foreignKeys: { fk_chain_mempool_chain: { columns: ['chain_id'], references: 'chain_chains' } },
      checks: {
        ck_chain_mempool_fee: 'fee >= 0',
        ck_chain_mempool_size: 'size_bytes >= 0',
        ck_chain_mempool_claim:
          '(claimed_by IS NULL AND claim_expires_at IS NULL) OR (claimed_by IS NOT NULL AND claim_expires_at IS NOT NULL)',
      },
    }),
  ],
});
