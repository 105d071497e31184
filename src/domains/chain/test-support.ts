// Test support for the chain domain (and for domains whose block processors it runs): block
// builders, a block processor that writes derived rows through every journaled helper, its
// test-only tables, and a whole-database dump for "equals the database that never saw it".
import { createHash } from 'node:crypto';
import { c, createTable } from '../../schema/builder.js';
import { defineMigration, type Migration } from '../../migrations/migration.js';
import { HISTORY_TABLE } from '../../migrations/history.js';
import { MIGRATIONS } from '../registry.js';
import type { Coffer } from '../../db/store.js';
import type { Tx } from '../../db/tx.js';
import type { BlockProcessor, IngestedTransaction } from './processors.js';
import type { IngestBlockInput } from './types.js';
import { journaledDelete, journaledInsert, journaledUpdate, journaledUpsert, UNDO_TABLE } from './undo.js';

export const ZERO_HASH = '0'.repeat(64);

export function hashOf(...parts: unknown[]): string {
  return createHash('sha256').update(parts.map(String).join('\u0000')).digest('hex');
}

/** Test-only tables a processor derives from blocks. ct_notes hangs off ct_balances with ON DELETE CASCADE. */
export const chainTestMigration = defineMigration(import.meta.url, {
  domain: 'chain_test',
  version: 1,
  name: 'derived_rows',
  ops: [
    createTable('ct_balances', {
      domain: 'chain_test',
      columns: {
        chain_id: c.varchar(64),
        address: c.varchar(128),
        balance: c.uint256(),
        last_height: c.bigint(),
        last_seen: c.timestamp(),
      },
      primaryKey: ['chain_id', 'address'],
    }),
    createTable('ct_events', {
      domain: 'chain_test',
      columns: {
        chain_id: c.varchar(64),
        tx_hash: c.hex(64),
        seq: c.int(),
        kind: c.varchar(32),
        amount: c.uint256(),
        payload: c.bytes({ nullable: true }),
        at: c.timestamp(),
        meta: c.json({ nullable: true }),
        flag: c.bool(),
        status: c.enum(['new', 'seen']),
      },
      primaryKey: ['chain_id', 'tx_hash', 'seq'],
      unique: { uq_ct_events_kind: ['chain_id', 'kind', 'tx_hash'] },
    }),
    createTable('ct_notes', {
      domain: 'chain_test',
      columns: { chain_id: c.varchar(64), address: c.varchar(128), note: c.text() },
      primaryKey: ['chain_id', 'address'],
      foreignKeys: {
        fk_ct_notes_balance: {
          columns: ['chain_id', 'address'],
          references: 'ct_balances',
          refColumns: ['chain_id', 'address'],
          onDelete: 'cascade',
        },
      },
    }),
  ],
});

export const CHAIN_TEST_MIGRATIONS: readonly Migration[] = [...MIGRATIONS, chainTestMigration];

/**
 * A processor in the shape token flows have: credits each output to a balance (upsert),
 * deletes the sender's balance on a "burn" (delete), records one event per transaction
 * (insert) and marks the previous event of the same sender as seen (update).
 */
export const balanceProcessor: BlockProcessor = async (tx, ctx) => {
  const { block } = ctx;
  const ref = block;
  for (const t of block.transactions) {
    for (const o of t.outputs) {
      const cur = await tx.db
        .selectFrom('ct_balances')
        .select('balance')
        .where('chain_id', '=', block.chainId)
        .where('address', '=', o.address)
        .executeTakeFirst();
      const balance = (cur ? BigInt(String(cur.balance)) : 0n) + o.value;
      await journaledUpsert(
        tx,
        ref,
        'ct_balances',
        { chain_id: block.chainId, address: o.address, balance, last_height: block.height, last_seen: block.time },
        ['chain_id', 'address'],
      );
    }
    if (t.actionType === 'burn' && t.address)
      await journaledDelete(tx, ref, 'ct_balances', { chain_id: block.chainId, address: t.address });
    await journaledInsert(
      tx,
      ref,
      'ct_events',
      {
        chain_id: block.chainId,
        tx_hash: t.txHash,
        seq: 0,
        kind: t.actionType ?? 'none',
        amount: t.outputs.reduce((s, o) => s + o.value, 0n),
        payload: t.payload,
        at: block.time,
        meta: { height: String(block.height), index: t.indexInBlock, tip: String(ctx.tipHeight) },
        flag: t.outputs.length > 0,
        status: 'new',
      },
      ['chain_id', 'tx_hash', 'seq'],
    );
    if (t.address) {
      const prev = await tx.db
        .selectFrom('ct_events')
        .select(['tx_hash'])
        .where('chain_id', '=', block.chainId)
        .where('status', '=', 'new')
        .where('tx_hash', '!=', t.txHash)
        .orderBy('tx_hash')
        .limit(1)
        .executeTakeFirst();
      if (prev)
        await journaledUpdate(
          tx,
          ref,
          'ct_events',
          { chain_id: block.chainId, tx_hash: prev.tx_hash, seq: 0 },
          { status: 'seen', meta: { by: t.txHash } },
        );
    }
  }
};

export interface TxSpec {
  hash: string;
  action?: string | null;
  address?: string | null;
  outputs?: { address: string; value: bigint }[];
  payload?: Buffer | null;
}

export function makeTx(spec: TxSpec, index: number): IngestedTransaction {
  return {
    txHash: spec.hash,
    indexInBlock: index,
    actionType: spec.action ?? null,
    actionVersion: spec.action ? 1 : null,
    payload: spec.payload ?? null,
    address: spec.address ?? null,
    outputs: spec.outputs ?? [],
  };
}

/** A block whose hash is derived from (chain, branch label, height). */
export function makeBlock(chainId: string, height: bigint, parentHash: string, txs: TxSpec[] = [], label = 'main'): IngestBlockInput {
  return {
    chainId,
    height,
    blockHash: hashOf('block', chainId, label, height),
    parentHash,
    time: new Date(1_700_000_000_000 + Number(height) * 60_000),
    transactions: txs.map((t, i) => makeTx(t, i)),
  };
}

/** `count` linked blocks starting at `from` on top of `parentHash`. */
export function makeChain(
  chainId: string,
  from: bigint,
  count: number,
  parentHash: string,
  label = 'main',
  txsAt: (h: bigint) => TxSpec[] = () => [],
): IngestBlockInput[] {
  const out: IngestBlockInput[] = [];
  let parent = parentHash;
  for (let i = 0; i < count; i++) {
    const b = makeBlock(chainId, from + BigInt(i), parent, txsAt(from + BigInt(i)), label);
    out.push(b);
    parent = b.blockHash;
  }
  return out;
}

export type Dump = Record<string, Record<string, unknown>[]>;

/**
 * Every row of every table of the logical schema, decoded, in primary-key order. Left out:
 * the migration history (apply times differ between two databases by nature) and the serial
 * id of the undo journal (ids are never reused, so a journal that was written and reverted
 * leaves a gap); journal rows are kept in id order, so their sequence is still compared.
 */
export async function dumpDatabase(coffer: Coffer): Promise<Dump> {
  return coffer.read(async (tx: Tx) => {
    const out: Dump = {};
    for (const [name, def] of [...coffer.schema.tables.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (name === HISTORY_TABLE) continue;
      let q = tx.db.selectFrom(name).selectAll();
      for (const k of def.primaryKey) q = q.orderBy(k);
      const rows = (await q.execute()).map((r) => tx.codec(name).decode<Record<string, unknown>>(r));
      if (name === UNDO_TABLE) for (const r of rows) delete r.id;
      out[name] = rows;
    }
    return out;
  });
}
