// Journaled writes for block-derived rows, and their reversal on a reorg. Domains that derive
// rows from a block (token ledger entries, confirmed mints, payments…) write them through
// journaledInsert/Update/Upsert/Delete; chain reorg calls revertAbove() in the same
// transaction, and pruneFinalized() drops entries once their block is past the finality depth.
//
// Rules for callers (each one keeps "ingest then reorg" equal to "never ingested"):
// - `key` is the table's primary key or one of its unique keys, with every column given;
// - rows have natural keys (no serial id): a re-ingested block must produce identical rows;
// - a row touched by a block belongs to that block's chain (its key includes the chain id) and
//   is changed only through these helpers while the block can still be reorged.
import type { ColumnType, TableDef } from '../../schema/model.js';
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

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));

// A key that is not the primary key or a unique key could match several rows while the journal
// keeps one before-image, and a reorg would then restore the wrong thing: refuse it up front.
function assertKey(def: TableDef, columns: readonly string[], what: string): void {
  const ok = sameSet(columns, def.primaryKey) || def.indexes.some((ix) => ix.unique && sameSet(columns, ix.columns));
  if (!ok) {
    throw new Error(
      `${what}: key (${columns.join(', ')}) is not the primary key (${def.primaryKey.join(', ')}) or a unique key of ${def.name}`,
    );
  }
}

function keyOf(tx: Tx, table: string, key: Row, what: string): Row {
  const def = tx.codec(table).table;
  const columns = Object.keys(key);
  assertKey(def, columns, what);
  for (const k of columns) {
    if (key[k] === null || key[k] === undefined) {
      throw new Error(`${what}: key column ${k} has no value (block-derived rows need natural keys, not serial ids)`);
    }
  }
  return key;
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

/** Inserts a block-derived row; a reorg past `ref` deletes it. `keyColumns` names its primary (or a unique) key. */
export async function journaledInsert(tx: Tx, ref: BlockRef, table: string, row: Row, keyColumns: readonly string[]): Promise<void> {
  tx.assertWritable(`journaled insert into ${table}`);
  const what = `journaled insert into ${table}`;
  const key = keyOf(tx, table, Object.fromEntries(keyColumns.map((k) => [k, row[k]])), what);
  await tx.insert(table, row);
  await record(tx, ref, table, key, null);
}

/** Updates one row because of a block; a reorg past `ref` restores the row as it was. Returns false if no row matched. */
export async function journaledUpdate(tx: Tx, ref: BlockRef, table: string, key: Row, changes: Row): Promise<boolean> {
  tx.assertWritable(`journaled update of ${table}`);
  const what = `journaled update of ${table}`;
  keyOf(tx, table, key, what);
  // Changing a key column would leave the journal pointing at a row that no longer exists.
  const moved = Object.keys(changes).filter((k) => k in key && changes[k] !== undefined);
  if (moved.length) throw new Error(`${what}: changes may not include key column(s) ${moved.join(', ')}`);
  const before = await selectRow(tx, table, key);
  if (!before) return false;
  await whereKey(tx, table, key)(tx.db.updateTable(table).set(tx.codec(table).encode(changes))).execute();
  await record(tx, ref, table, key, before);
  return true;
}

/**
 * Inserts the row, or updates the existing row with the same key to the given values; either
 * way a reorg past `ref` restores what was there before. Returns whether it inserted.
 */
export async function journaledUpsert(tx: Tx, ref: BlockRef, table: string, row: Row, keyColumns: readonly string[]): Promise<boolean> {
  tx.assertWritable(`journaled upsert into ${table}`);
  const key = Object.fromEntries(keyColumns.map((k) => [k, row[k]]));
  keyOf(tx, table, key, `journaled upsert into ${table}`);
  const changes = Object.fromEntries(Object.entries(row).filter(([k]) => !keyColumns.includes(k)));
  if (Object.keys(changes).length && (await journaledUpdate(tx, ref, table, key, changes))) return false;
  if (!Object.keys(changes).length && (await selectRow(tx, table, key))) return false;
  await journaledInsert(tx, ref, table, row, keyColumns);
  return true;
}

/** Deletes one row because of a block; a reorg past `ref` puts it back. */
export async function journaledDelete(tx: Tx, ref: BlockRef, table: string, key: Row): Promise<boolean> {
  tx.assertWritable(`journaled delete from ${table}`);
  keyOf(tx, table, key, `journaled delete from ${table}`);
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
  const undo = tx.codec(UNDO_TABLE);
  const above = undo.encode({ chain_id: chainId, height: forkHeight });
  const entries = await tx.db
    .selectFrom(UNDO_TABLE)
    .selectAll()
    .where('chain_id', '=', above.chain_id as never)
    .where('height', '>', above.height as never)
    // Ingest of one chain is serialised (cursor lock), so id order is write order.
    .orderBy('id', 'desc')
    .execute();
  for (const raw of entries) {
    const e = undo.decode<{ table_name: string; row_key: Row; before_image: Row | null }>(raw as Row);
    const key = deserialise(tx, e.table_name, e.row_key);
    const by = whereKey(tx, e.table_name, key);
    if (!e.before_image) {
      await by(tx.db.deleteFrom(e.table_name)).execute();
      continue;
    }
    const before = deserialise(tx, e.table_name, e.before_image);
    // Restore in place when the row is there (an update): deleting and re-inserting it would
    // fire ON DELETE actions of rows referencing it. Re-insert only what a delete removed.
    const exists = await by(tx.db.selectFrom(e.table_name).select(Object.keys(key)[0]!)).executeTakeFirst();
    if (exists) {
      const rest = Object.fromEntries(Object.entries(before).filter(([k]) => !(k in key)));
      if (Object.keys(rest).length) await by(tx.db.updateTable(e.table_name).set(tx.codec(e.table_name).encode(rest))).execute();
    } else {
      await tx.insert(e.table_name, before);
    }
  }
  if (entries.length) {
    await tx.db
      .deleteFrom(UNDO_TABLE)
      .where('chain_id', '=', above.chain_id as never)
      .where('height', '>', above.height as never)
      .execute();
  }
  return entries.length;
}

/** Drops journal entries of blocks at or below the finalized height: they can no longer be reorged. */
export async function pruneFinalized(tx: Tx, chainId: string, finalizedHeight: bigint): Promise<number> {
  tx.assertWritable('undo journal prune');
  const enc = tx.codec(UNDO_TABLE).encode({ chain_id: chainId, height: finalizedHeight });
  const r = await tx.db
    .deleteFrom(UNDO_TABLE)
    .where('chain_id', '=', enc.chain_id as never)
    .where('height', '<=', enc.height as never)
    .executeTakeFirst();
  return Number(r.numDeletedRows ?? 0n);
}
