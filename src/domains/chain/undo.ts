// Journaled writes for block-derived rows, and their reversal on a reorg. Domains that derive
// rows from a block (token ledger entries, confirmed mints, payments…) write them through
// journaledInsert/Update/Delete; chain reorg calls revertAbove() in the same transaction, and
// pruneFinalized() drops entries once their block is past the finality depth.
import type { ColumnType } from '../../schema/model.js';
import { decodeValue } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';

export const UNDO_TABLE = 'chain_undo';

/** Which block a derived write belongs to. */
export interface BlockRef {
  chainId: string;
  height: bigint;
  blockHash: string;
}

type Row = Record<string, unknown>;

// JSON-safe form of a decoded value, reversible given the column type.
function toJsonSafe(t: ColumnType, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'bigint':
    case 'serial':
    case 'uint256':
      return String(v);
    case 'bytes':
      return Buffer.from(v as Uint8Array).toString('hex');
    case 'timestamp':
      return (v as Date).getTime();
    default:
      return v;
  }
}

function fromJsonSafe(t: ColumnType, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'bytes':
      return Buffer.from(String(v), 'hex');
    case 'timestamp':
      return new Date(Number(v));
    case 'json':
      return v;
    default:
      return decodeValue(t, v);
  }
}

function serialise(tx: Tx, table: string, row: Row): Row {
  const codec = tx.codec(table);
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, toJsonSafe(codec.column(k).type, v)]));
}

function deserialise(tx: Tx, table: string, row: Row): Row {
  const codec = tx.codec(table);
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, fromJsonSafe(codec.column(k).type, v)]));
}

function whereKey(tx: Tx, table: string, key: Row) {
  const enc = tx.codec(table).encode(key);
  return <QB extends { where: (...a: any[]) => QB }>(qb: QB): QB => {
    let q = qb;
    for (const [k, v] of Object.entries(enc)) q = q.where(k, '=', v);
    return q;
  };
}

async function record(tx: Tx, ref: BlockRef, table: string, key: Row, before: Row | null): Promise<void> {
  await tx.insert(UNDO_TABLE, {
    chain_id: ref.chainId,
    height: ref.height,
    block_hash: ref.blockHash,
    table_name: table,
    row_key: serialise(tx, table, key),
    before_image: before ? serialise(tx, table, before) : null,
  });
}

async function selectRow(tx: Tx, table: string, key: Row): Promise<Row | undefined> {
  const row = await whereKey(tx, table, key)(tx.db.selectFrom(table).selectAll()).executeTakeFirst();
  return row ? tx.codec(table).decode<Row>(row as Row) : undefined;
}

/** Inserts a block-derived row; a reorg past `ref` deletes it. `key` names its primary key. */
export async function journaledInsert(tx: Tx, ref: BlockRef, table: string, row: Row, keyColumns: readonly string[]): Promise<void> {
  tx.assertWritable(`journaled insert into ${table}`);
  await tx.insert(table, row);
  const key = Object.fromEntries(keyColumns.map((k) => [k, row[k]]));
  await record(tx, ref, table, key, null);
}

/** Updates one row because of a block; a reorg past `ref` restores the row as it was. Returns false if no row matched. */
export async function journaledUpdate(tx: Tx, ref: BlockRef, table: string, key: Row, changes: Row): Promise<boolean> {
  tx.assertWritable(`journaled update of ${table}`);
  const before = await selectRow(tx, table, key);
  if (!before) return false;
  await whereKey(tx, table, key)(tx.db.updateTable(table).set(tx.codec(table).encode(changes))).execute();
  await record(tx, ref, table, key, before);
  return true;
}

/** Deletes one row because of a block; a reorg past `ref` puts it back. */
export async function journaledDelete(tx: Tx, ref: BlockRef, table: string, key: Row): Promise<boolean> {
  tx.assertWritable(`journaled delete from ${table}`);
  const before = await selectRow(tx, table, key);
  if (!before) return false;
  await whereKey(tx, table, key)(tx.db.deleteFrom(table)).execute();
  await record(tx, ref, table, key, before);
  return true;
}

/**
 * Reverts every journaled write of blocks above `forkHeight` on a chain, newest first, and
 * removes those journal entries. Returns how many writes were reverted.
 */
export async function revertAbove(tx: Tx, chainId: string, forkHeight: bigint): Promise<number> {
  tx.assertWritable('reorg revert');
  const entries = await tx.db
    .selectFrom(UNDO_TABLE)
    .selectAll()
    .where('chain_id', '=', chainId)
    .where('height', '>', tx.codec(UNDO_TABLE).encode({ height: forkHeight }).height as never)
    .orderBy('id', 'desc')
    .execute();
  for (const raw of entries) {
    const e = tx.codec(UNDO_TABLE).decode<{ table_name: string; row_key: Row; before_image: Row | null }>(raw as Row);
    const key = deserialise(tx, e.table_name, e.row_key);
    await whereKey(tx, e.table_name, key)(tx.db.deleteFrom(e.table_name)).execute();
    if (e.before_image) await tx.insert(e.table_name, deserialise(tx, e.table_name, e.before_image));
  }
  if (entries.length) {
    await tx.db
      .deleteFrom(UNDO_TABLE)
      .where('chain_id', '=', chainId)
      .where('height', '>', tx.codec(UNDO_TABLE).encode({ height: forkHeight }).height as never)
      .execute();
  }
  return entries.length;
}

/** Drops journal entries of blocks at or below the finalized height: they can no longer be reorged. */
export async function pruneFinalized(tx: Tx, chainId: string, finalizedHeight: bigint): Promise<number> {
  tx.assertWritable('undo journal prune');
  const r = await tx.db
    .deleteFrom(UNDO_TABLE)
    .where('chain_id', '=', chainId)
    .where('height', '<=', tx.codec(UNDO_TABLE).encode({ height: finalizedHeight }).height as never)
    .executeTakeFirst();
  return Number(r.numDeletedRows ?? 0n);
}
