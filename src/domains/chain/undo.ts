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
import type { ColumnType, ForeignKeyDef, TableDef } from '../../schema/model.js';
import { decodeValue } from '../../db/codec.js';
import { insertRowsInOrder, insertRowsUnlessPresent } from '../../db/bulk.js';
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

// Journal entries written inside withJournalBatch(), per transaction, in write order.
const batches = new WeakMap<Tx, Row[]>();

// The rows of each block whose first change this transaction has journaled. A later change of
// the same row in the same block needs no entry: a revert applies entries newest first, so the
// row ends as the oldest entry's image has it (deleted, if the block inserted it), whatever the
// block did to it in between. Except a change that sets a column of a unique index (other than
// the row's key): the revert must pass through that intermediate value, or a row restored in
// between can collide with it (a block that swaps a unique value between two rows through a
// temporary one could never be reorged). Forgotten when the journal is reverted or pruned, when
// a batch fails to flush, and when a savepoint rolls back (entries written under it are gone).
const journaledRows = new WeakMap<Tx, { rollbacks: number; rows: Set<string> }>();

function journaledRowsOf(tx: Tx): Set<string> {
  let j = journaledRows.get(tx);
  if (!j || j.rollbacks !== tx.savepointRollbacks) {
    j = { rollbacks: tx.savepointRollbacks, rows: new Set() };
    journaledRows.set(tx, j);
  }
  return j.rows;
}

const forgetJournaledRows = (tx: Tx) => void journaledRows.delete(tx);

/** A journal entry's block and row, as one string (key columns in name order). */
function rowIdentity(ref: BlockRef, table: string, rowKey: Row): string {
  const cols = Object.keys(rowKey).sort();
  let id = `${ref.chainId}\u0000${ref.height}\u0000${ref.blockHash}\u0000${table}`;
  for (const c of cols) id += `\u0000${c}=${String(rowKey[c])}`;
  return id;
}

/** The journal entry of one change: the row's key and its image before (null: inserted). */
function entryOf(tx: Tx, ref: BlockRef, table: string, rowKey: Row, before: Row | null): Row {
  return {
    chain_id: ref.chainId,
    height: ref.height,
    block_hash: ref.blockHash,
    table_name: table,
    row_key: rowKey,
    before_image: before ? serialise(tx, table, before) : null,
  };
}

// Per table: the columns of its unique indexes, which a journaled change must not skip over.
const uniqueColumnsByTable = new WeakMap<object, ReadonlySet<string>>();

function uniqueColumns(tx: Tx, table: string): ReadonlySet<string> {
  const def = tx.codec(table).table;
  let cols = uniqueColumnsByTable.get(def);
  if (!cols) {
    cols = new Set(def.indexes.filter((ix) => ix.unique).flatMap((ix) => ix.columns));
    uniqueColumnsByTable.set(def, cols);
  }
  return cols;
}

/** Whether `written` (an insert's row, an update's changes) sets a column of a unique index. */
function setsUniqueColumn(tx: Tx, table: string, written: Row | undefined): boolean {
  if (!written) return false;
  const unique = uniqueColumns(tx, table);
  if (unique.size === 0) return false;
  for (const c in written) if (written[c] !== undefined && unique.has(c)) return true;
  return false;
}

/**
 * The entry a change needs and its row's identity, or undefined when this transaction already
 * journaled a change of the row in this block and this one sets no unique column (`written`: an
 * insert's row or an update's changes; none for a delete, which frees its values). `repeat`: the
 * row had an entry already. The caller adds the identity to journaledRowsOf(tx) once the entry
 * is in the batch or written.
 */
function entryFor(
  tx: Tx,
  ref: BlockRef,
  table: string,
  key: Row,
  before: Row | null,
  written: Row | undefined,
): { entry: Row; id: string; repeat: boolean } | undefined {
  const rowKey = serialise(tx, table, key);
  const id = rowIdentity(ref, table, rowKey);
  const repeat = journaledRowsOf(tx).has(id);
  if (repeat && !setsUniqueColumn(tx, table, written)) return undefined;
  return { entry: entryOf(tx, ref, table, rowKey, before), id, repeat };
}

async function record(tx: Tx, ref: BlockRef, table: string, key: Row, before: Row | null, written?: Row): Promise<void> {
  const e = entryFor(tx, ref, table, key, before, written);
  if (!e) return;
  const batch = batches.get(tx);
  if (batch) batch.push(e.entry);
  else await tx.insert(UNDO_TABLE, e.entry);
  journaledRowsOf(tx).add(e.id);
}

async function flush(tx: Tx, batch: Row[]): Promise<void> {
  // Multi-row INSERTs in write order (insertRowsInOrder): the serial ids follow the rows, so
  // id order stays write order (revertAbove relies on it).
  try {
    await insertRowsInOrder(tx, UNDO_TABLE, batch.splice(0));
  } catch (e) {
    forgetJournaledRows(tx);
    throw e;
  }
}

/**
 * Runs `fn` with this transaction's journal entries buffered and written at the end as
 * multi-row INSERTs, in the order they were recorded, instead of one INSERT per journaled
 * write: a block processor's dozens of journal rows cost one round trip. The entries are
 * written before this returns, and also when `fn` throws (the data writes `fn` made are still
 * in the transaction, so their journal must be too if a caller goes on and commits; if the
 * transaction is already aborted the flush fails and `fn`'s own error is the one thrown).
 * Nested calls join the outermost batch. The journal is read only by revertAbove and
 * pruneFinalized, which flush a batch still open before they run.
 */
export async function withJournalBatch<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
  if (batches.has(tx)) return fn();
  const batch: Row[] = [];
  batches.set(tx, batch);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    batches.delete(tx);
    await flush(tx, batch).catch(() => {});
    throw e;
  }
  batches.delete(tx);
  await flush(tx, batch);
  return result;
}

async function flushOpenBatch(tx: Tx): Promise<void> {
  const batch = batches.get(tx);
  if (batch?.length) await flush(tx, batch);
}

/**
 * A row the caller already read in this transaction, so a journaled update or delete need not
 * read it again. `before` must be the whole row as the table codec decodes it (selectAll), read
 * while holding the row's lock or from a table whose other columns never change while the row
 * exists; the UPDATE/DELETE is conditional on the key and on each `guard` column still holding
 * its `before` value (checked by the database: no row affected means no write and no journal
 * entry), so the before image the journal keeps is exactly the row that was changed.
 */
export interface KnownRow {
  before: Row;
  guard?: readonly string[];
}

/** The WHERE of a conditional write: the key, and each guard column at its `before` value. */
function whereKnown(tx: Tx, table: string, key: Row, known: KnownRow): Row {
  const codec = tx.codec(table);
  const where: Row = { ...key };
  for (const c of known.guard ?? []) {
    if (!(c in known.before)) throw new Error(`guard column ${c} of ${table} is not in the before image`);
    if (codec.column(c).type.kind === 'json') throw new Error(`guard column ${c} of ${table} is JSON (not comparable on every backend)`);
    where[c] = known.before[c];
  }
  return where;
}

function assertWholeRow(tx: Tx, table: string, key: Row, known: KnownRow, what: string): void {
  const def = tx.codec(table).table;
  const missing = def.columns.filter((c) => !(c.name in known.before)).map((c) => c.name);
  if (missing.length) throw new Error(`${what}: the before image lacks column(s) ${missing.join(', ')}`);
  const a = serialise(tx, table, key);
  const b = serialise(tx, table, Object.fromEntries(Object.keys(key).map((k) => [k, known.before[k]])));
  if (Object.keys(a).some((k) => a[k] !== b[k])) throw new Error(`${what}: the before image is not the row of this key`);
}

async function selectRow(tx: Tx, table: string, key: Row, opts: { lock?: boolean } = {}): Promise<Row | undefined> {
  const [row] = await tx.selectWhere(table, key, opts);
  return row ? tx.codec(table).decode<Row>(row) : undefined;
}

// Per schema and table: the foreign keys that make the database change other rows when one of
// the table's rows is deleted (ON DELETE CASCADE / SET NULL), with their tables.
const cascadesByTable = new WeakMap<object, Map<string, { table: TableDef; fk: ForeignKeyDef }[]>>();

function cascadesOnDelete(tx: Tx, table: string): { table: TableDef; fk: ForeignKeyDef }[] {
  let bySchema = cascadesByTable.get(tx.schema);
  if (!bySchema) cascadesByTable.set(tx.schema, (bySchema = new Map()));
  let found = bySchema.get(table);
  if (!found) {
    found = [];
    for (const t of tx.schema.tables.values())
      for (const fk of t.foreignKeys)
        if (fk.refTable === table && (fk.onDelete === 'cascade' || fk.onDelete === 'set null')) found.push({ table: t, fk });
    bySchema.set(table, found);
  }
  return found;
}

/**
 * Before a journaled delete of `parent` (its whole row): the rows the database would delete or
 * set to NULL with it, through the journal first (deleted, or updated, as journaled writes), so
 * a revert restores them after their parent (newest first) and "ingest then reorg" equals
 * "never ingested". Recursive: a deleted child's own children go the same way.
 */
async function journalCascades(tx: Tx, ref: BlockRef, table: string, parent: Row): Promise<void> {
  for (const { table: child, fk } of cascadesOnDelete(tx, table)) {
    const where: Row = {};
    for (let i = 0; i < fk.columns.length; i++) where[fk.columns[i]!] = parent[fk.refColumns[i]!];
    if (Object.values(where).some((v) => v === null || v === undefined)) continue;
    for (const row of await tx.selectWhere(child.name, where, { lock: true })) {
      const before = tx.codec(child.name).decode<Row>(row);
      const key = Object.fromEntries(child.primaryKey.map((c) => [c, before[c]]));
      if (fk.onDelete === 'cascade') await journaledDelete(tx, ref, child.name, key, { before });
      else await journaledUpdate(tx, ref, child.name, key, Object.fromEntries(fk.columns.map((c) => [c, null])), { before });
    }
  }
}

/** The checks of a journaled delete, before it runs. */
function checkDelete(tx: Tx, table: string, key: Row, known: KnownRow | undefined): void {
  keyOf(tx, table, key, `journaled delete from ${table}`);
  if (known) assertWholeRow(tx, table, key, known, `journaled delete from ${table}`);
}

/** The checks of a journaled update, before it runs. */
function checkUpdate(tx: Tx, table: string, key: Row, changes: Row, known: KnownRow | undefined): void {
  const what = `journaled update of ${table}`;
  keyOf(tx, table, key, what);
  // Changing a key column would leave the journal pointing at a row that no longer exists.
  const moved = Object.keys(changes).filter((k) => k in key && changes[k] !== undefined);
  if (moved.length) throw new Error(`${what}: changes may not include key column(s) ${moved.join(', ')}`);
  if (known) assertWholeRow(tx, table, key, known, what);
}

/**
 * One write of journaledWriteAll: as journaledInsert (with `orIgnore`, unless a row with the same
 * key exists: then it writes and journals nothing), or as journaledUpdate or journaledDelete of a
 * row read before (`known`).
 */
export type JournaledWrite =
  | { readonly insert: string; readonly row: Row; readonly keyColumns: readonly string[]; readonly orIgnore?: boolean }
  | { readonly update: string; readonly key: Row; readonly changes: Row; readonly known: KnownRow }
  | { readonly delete: string; readonly key: Row; readonly known: KnownRow };

/** The table a journaled write names. */
export const tableOfWrite = (w: JournaledWrite): string => ('insert' in w ? w.insert : 'update' in w ? w.update : w.delete);
/** The row's image before a journaled write: none for an insert (the revert deletes it). */
const knownBefore = (w: JournaledWrite): Row | null => ('insert' in w ? null : w.known.before);
/** The values a journaled write sets: an insert's row, an update's changes; none for a delete. */
const writtenBy = (w: JournaledWrite): Row | undefined => ('insert' in w ? w.row : 'update' in w ? w.changes : undefined);

/**
 * journaledInsert, journaledUpdate and journaledDelete (of rows read before) of several rows, in
 * one round trip where the backend can (tx.writeAll: each write names its own row, and none may
 * depend on another's). Every check runs before anything is written. Returns, for each, whether
 * it wrote (an insert ignored, or an update or delete whose key or guard no longer matches, did
 * not, and is not journaled).
 */
export async function journaledWriteAll(
  tx: Tx,
  ref: BlockRef,
  writes: readonly JournaledWrite[],
  opts: { allMust?: boolean } = {},
): Promise<boolean[]> {
  const keys = writes.map((w) => {
    if ('insert' in w) {
      tx.assertWritable(`journaled insert into ${w.insert}`);
      return keyOf(tx, w.insert, Object.fromEntries(w.keyColumns.map((k) => [k, w.row[k]])), `journaled insert into ${w.insert}`);
    }
    if ('update' in w) {
      tx.assertWritable(`journaled update of ${w.update}`);
      checkUpdate(tx, w.update, w.key, w.changes, w.known);
    } else {
      tx.assertWritable(`journaled delete from ${w.delete}`);
      checkDelete(tx, w.delete, w.key, w.known);
      // Its rows are written together in one statement: the rows a cascade would change with
      // them cannot be journaled first there (journaledDelete does).
      const cascade = cascadesOnDelete(tx, w.delete)[0];
      if (cascade)
        throw new Error(
          `journaled delete from ${w.delete} in journaledWriteAll: ${cascade.table.name}.${cascade.fk.name} (ON DELETE ${cascade.fk.onDelete.toUpperCase()}) would change rows the journal does not see; use journaledDelete, which journals them first`,
        );
    }
    return w.key;
  });
  const rowWrites = writes.map((w) =>
    'insert' in w
      ? { insert: w.insert, row: w.row, ...(w.orIgnore ? { ignoreOn: w.keyColumns } : {}) }
      : 'update' in w
        ? { update: w.update, set: w.changes, where: whereKnown(tx, w.update, w.key, w.known) }
        : { delete: w.delete, where: whereKnown(tx, w.delete, w.key, w.known) },
  );
  // Writes that must all happen (the caller fails the transaction otherwise), inside a journal
  // batch: the batch so far and these writes' entries go in with the writes, in their statement
  // on PostgreSQL (one round trip fewer than the batch's own INSERT at the end), and only if
  // every write wrote; if one did not, the entries of those that did join the batch as usual.
  const batch = batches.get(tx);
  if (opts.allMust && batch && tx.writesInOneStatement) {
    const entries = writes.map((w, i) => entryFor(tx, ref, tableOfWrite(w), keys[i]!, knownBefore(w), writtenBy(w)));
    const fresh = entries.filter((e) => e !== undefined);
    const counts = await tx.writeAll(rowWrites, { thenInsert: { table: UNDO_TABLE, rows: [...batch, ...fresh.map((e) => e.entry)] } });
    const wrote = counts.map((n) => n > 0n);
    const rows = journaledRowsOf(tx);
    if (wrote.every(Boolean)) {
      batch.length = 0;
      for (const e of fresh) rows.add(e.id);
    } else {
      for (let i = 0; i < writes.length; i++) {
        const e = entries[i];
        if (wrote[i] && e && (e.repeat || !rows.has(e.id))) (batch.push(e.entry), rows.add(e.id));
      }
    }
    return wrote;
  }
  const wrote = (await tx.writeAll(rowWrites)).map((n) => n > 0n);
  for (let i = 0; i < writes.length; i++)
    if (wrote[i]) await record(tx, ref, tableOfWrite(writes[i]!), keys[i]!, knownBefore(writes[i]!), writtenBy(writes[i]!));
  return wrote;
}

/** Inserts a block-derived row; a reorg past `ref` deletes it. `keyColumns` names its primary (or a unique) key. */
export async function journaledInsert(tx: Tx, ref: BlockRef, table: string, row: Row, keyColumns: readonly string[]): Promise<void> {
  tx.assertWritable(`journaled insert into ${table}`);
  const what = `journaled insert into ${table}`;
  const key = keyOf(tx, table, Object.fromEntries(keyColumns.map((k) => [k, row[k]])), what);
  await tx.insert(table, row);
  await record(tx, ref, table, key, null, row);
}

/**
 * Inserts those of several block-derived rows of one table whose key (`keyColumns`) is not in
 * it yet (insertRowsUnlessPresent: one statement on PostgreSQL) and says for each whether it
 * inserted it; a reorg past `ref` deletes the ones inserted. Same rules as journaledInsert.
 */
export async function journaledInsertUnlessPresent(
  tx: Tx,
  ref: BlockRef,
  table: string,
  rows: readonly Row[],
  keyColumns: readonly string[],
): Promise<boolean[]> {
  tx.assertWritable(`journaled insert into ${table}`);
  const what = `journaled insert into ${table}`;
  const keys = rows.map((row) => keyOf(tx, table, Object.fromEntries(keyColumns.map((k) => [k, row[k]])), what));
  const inserted = await insertRowsUnlessPresent(tx, table, rows, keyColumns);
  for (let i = 0; i < keys.length; i++) if (inserted[i]) await record(tx, ref, table, keys[i]!, null, rows[i]);
  return inserted;
}

/** Updates one row because of a block; a reorg past `ref` restores the row as it was. Returns false if no row matched. */
export async function journaledUpdate(tx: Tx, ref: BlockRef, table: string, key: Row, changes: Row, known?: KnownRow): Promise<boolean> {
  tx.assertWritable(`journaled update of ${table}`);
  checkUpdate(tx, table, key, changes, known);
  if (known) {
    if ((await tx.updateWhere(table, changes, whereKnown(tx, table, key, known))) === 0n) return false;
    await record(tx, ref, table, key, known.before, changes);
    return true;
  }
  // Locked: at READ COMMITTED a plain read can return the version a concurrent transaction is
  // replacing (a mempool claim, say), and the write would then wait for it and overwrite its
  // result while the journal keeps the stale image for a reorg to restore.
  const before = await selectRow(tx, table, key, { lock: true });
  if (!before) return false;
  await tx.updateWhere(table, changes, key);
  await record(tx, ref, table, key, before, changes);
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
export async function journaledDelete(tx: Tx, ref: BlockRef, table: string, key: Row, known?: KnownRow): Promise<boolean> {
  tx.assertWritable(`journaled delete from ${table}`);
  checkDelete(tx, table, key, known);
  const cascades = cascadesOnDelete(tx, table).length > 0;
  if (known) {
    if (cascades) {
      // Its children go first only if the row is still as known (the delete's own condition).
      if ((await tx.selectWhere(table, whereKnown(tx, table, key, known), { lock: true })).length === 0) return false;
      await journalCascades(tx, ref, table, known.before);
    }
    if ((await tx.deleteWhere(table, whereKnown(tx, table, key, known))) === 0n) return false;
    await record(tx, ref, table, key, known.before);
    return true;
  }
  // Locked, as in journaledUpdate: the journal must keep the row as it was when deleted.
  const before = await selectRow(tx, table, key, { lock: true });
  if (!before) return false;
  if (cascades) await journalCascades(tx, ref, table, before);
  await tx.deleteWhere(table, key);
  await record(tx, ref, table, key, before);
  return true;
}

const REVERT_PAGE = 1000;

const idOf = (r: { id: unknown }) => r.id;

/** Puts one journaled row back as its entry's image has it (deleted when the entry has none). */
async function revertEntry(tx: Tx, e: { table_name: string; row_key: Row; before_image: Row | null }): Promise<void> {
  const key = deserialise(tx, e.table_name, e.row_key);
  if (!e.before_image) {
    await tx.deleteWhere(e.table_name, key);
    return;
  }
  const before = deserialise(tx, e.table_name, e.before_image);
  // Restore in place when the row is there (an update): deleting and re-inserting it would
  // fire ON DELETE actions of rows referencing it. Re-insert only what a delete removed.
  if ((await tx.selectWhere(e.table_name, key)).length) {
    const rest = Object.fromEntries(Object.entries(before).filter(([k]) => !(k in key)));
    if (Object.keys(rest).length) await tx.updateWhere(e.table_name, rest, key);
  } else {
    await tx.insert(e.table_name, before);
  }
}

/**
 * Reverts every journaled write of blocks above `forkHeight` on a chain, newest first, and
 * removes those journal entries. Returns how many writes were reverted.
 */
export async function revertAbove(tx: Tx, chainId: string, forkHeight: bigint): Promise<number> {
  tx.assertWritable('reorg revert');
  await flushOpenBatch(tx);
  forgetJournaledRows(tx);
  const undo = tx.codec(UNDO_TABLE);
  const above = undo.encode({ chain_id: chainId, height: forkHeight });
  // The ids first, the images a page at a time: a deep reorg's journal (hundreds of thousands
  // of entries with their JSON images) is never in memory at once, only its ids.
  // Ingest of one chain is serialised (cursor lock), so id order is write order; a row can be
  // journaled under an earlier block than one written before it, so height order is not.
  const ids = (
    await tx.db
      .selectFrom(UNDO_TABLE)
      .select('id')
      .where('chain_id', '=', above.chain_id as never)
      .where('height', '>', above.height as never)
      .orderBy('id', 'desc')
      .execute()
  ).map(idOf);
  for (let at = 0; at < ids.length; at += REVERT_PAGE) {
    const page = await tx.db
      .selectFrom(UNDO_TABLE)
      .select(['table_name', 'row_key', 'before_image'])
      .where('id', 'in', ids.slice(at, at + REVERT_PAGE) as never)
      .orderBy('id', 'desc')
      .execute();
    for (const raw of page) await revertEntry(tx, undo.decode(raw as Row));
  }
  if (ids.length) {
    await tx.db
      .deleteFrom(UNDO_TABLE)
      .where('chain_id', '=', above.chain_id as never)
      .where('height', '>', above.height as never)
      .execute();
  }
  return ids.length;
}

/** Drops journal entries of blocks at or below the finalized height: they can no longer be reorged. */
export async function pruneFinalized(tx: Tx, chainId: string, finalizedHeight: bigint): Promise<number> {
  tx.assertWritable('undo journal prune');
  await flushOpenBatch(tx);
  forgetJournaledRows(tx);
  const enc = tx.codec(UNDO_TABLE).encode({ chain_id: chainId, height: finalizedHeight });
  const r = await tx.db
    .deleteFrom(UNDO_TABLE)
    .where('chain_id', '=', enc.chain_id as never)
    .where('height', '<=', enc.height as never)
    .executeTakeFirst();
  return Number(r.numDeletedRows ?? 0n);
}
