// Row history for every mutable table: inserts, updates and deletes alike, with the actor.
// Stores write mutable tables only through rowHistory(tx, actor), which makes the change and
// records it in audit_row_history in the same statement sequence of the same transaction.
//
// Nothing here lists columns: before and after images are whole rows (SELECT * under the row
// lock, merged with the change), so a column added by a later migration is in the history from
// the first write after it (captaind's hand-written trigger column lists drifted). Secret
// columns are redacted from the images using src/domains/audit/policy.ts, the same list the
// audit log and `coffer secrets rotate` use.
import type { Expression, ExpressionBuilder, SqlBool } from 'kysely';
import { toBigInt } from '../../db/codec.js';
import type { Tx } from '../../db/tx.js';
import { canonicalJson } from '../../util/canonical-json.js';
import { checkActor, type Actor, type ActorType } from './actor.js';
import { rowJson, type JsonValue } from './json.js';
import { isMutable, redactRow } from './policy.js';

export const ROW_HISTORY = 'audit_row_history';

type Row = Record<string, unknown>;

export interface UpdateOptions {
  /** Column values the row must still have (compare-and-set), e.g. { status: 'unused' }. */
  expect?: Row;
  /** Shorthand for expect: { version }. */
  expectVersion?: number;
  /** Any further condition, evaluated by the database in the UPDATE itself. */
  where?: (eb: ExpressionBuilder<any, any>) => Expression<SqlBool>;
}

/** ok: the row changed; otherwise `before` is the row as it is (undefined: no such row), so the caller can say why. */
export type WriteResult = { ok: true; before: Row; after: Row } | { ok: false; before: Row | undefined };
export type DeleteResult = { ok: true; before: Row } | { ok: false; before: Row | undefined };

export interface HistoryEntry {
  id: bigint;
  at: Date;
  table: string;
  rowKey: string;
  op: 'insert' | 'update' | 'delete';
  before: Record<string, JsonValue> | null;
  after: Record<string, JsonValue> | null;
  actor: Actor;
}

function mustBeMutable(table: string): void {
  if (!isMutable(table)) {
    throw new Error(`rowHistory: ${table} is not classified as mutable in src/domains/audit/policy.ts`);
  }
}

/** The canonical JSON of a row's primary key, as stored in audit_row_history.row_key. */
export function rowKeyOf(tx: Tx, table: string, row: Row): string {
  const codec = tx.codec(table);
  const key: Row = {};
  for (const c of codec.table.primaryKey) {
    if (row[c] === undefined || row[c] === null) throw new Error(`rowHistory: ${table}.${c} (primary key) is missing`);
    key[c] = row[c];
  }
  // Through the codec first, so 5, 5n and "5" give the same key for a bigint column.
  return canonicalJson(rowJson(tx, table, codec.decode<Row>(codec.encode(key))));
}

function keyOnly(tx: Tx, table: string, key: Row): Row {
  const pk = tx.codec(table).table.primaryKey;
  const extra = Object.keys(key).filter((k) => !pk.includes(k));
  if (extra.length) throw new Error(`rowHistory: ${extra.join(', ')} not part of the primary key of ${table} (${pk.join(', ')})`);
  for (const c of pk) if (key[c] === undefined || key[c] === null) throw new Error(`rowHistory: ${table}.${c} (primary key) is missing`);
  return key;
}

function whereAll<QB extends { where: (...a: any[]) => QB }>(qb: QB, encoded: Row): QB {
  let q = qb;
  for (const [k, v] of Object.entries(encoded)) q = v === null ? q.where(k, 'is', null) : q.where(k, '=', v);
  return q;
}

export class RowHistory {
  readonly #tx: Tx;
  readonly actor: Actor;
  readonly #now: () => Date;

  constructor(tx: Tx, actor: Actor, opts: { now?: () => Date } = {}) {
    this.#tx = tx;
    this.actor = checkActor(actor);
    this.#now = opts.now ?? (() => new Date());
  }

  /** Reads one row by primary key (decoded); `lock` takes the row lock (FOR UPDATE) first. */
  async get(table: string, key: Row, opts: { lock?: boolean } = {}): Promise<Row | undefined> {
    const tx = this.#tx;
    const q = whereAll(tx.db.selectFrom(table).selectAll(), tx.codec(table).encode(keyOnly(tx, table, key)));
    const raw = await (opts.lock ? tx.lockRows(q) : q).executeTakeFirst();
    return raw ? tx.codec(table).decode<Row>(raw as Row) : undefined;
  }

  async #record(table: string, op: HistoryEntry['op'], before: Row | null, after: Row | null): Promise<void> {
    const tx = this.#tx;
    const image = (r: Row | null) => (r ? redactRow(table, rowJson(tx, table, r)) : null);
    await tx.insert(ROW_HISTORY, {
      at: new Date(this.#now().getTime()),
      table_name: table,
      row_key: rowKeyOf(tx, table, (after ?? before)!),
      op,
      before_image: image(before),
      after_image: image(after),
      actor_type: this.actor.type,
      actor_id: this.actor.id,
    });
  }

  /** Inserts a row (a serial key is filled in) and returns the whole row as stored, defaults included. */
  async insert(table: string, row: Row): Promise<Row> {
    mustBeMutable(table);
    const tx = this.#tx;
    tx.assertWritable(`insert into ${table}`);
    const def = tx.codec(table).table;
    const serial = def.columns.find((c) => c.type.kind === 'serial');
    const full: Row = { ...row };
    if (serial && (row[serial.name] === undefined || row[serial.name] === null)) {
      full[serial.name] = await tx.insertReturningId(table, row, serial.name);
    } else {
      await tx.insert(table, row);
    }
    const key = Object.fromEntries(def.primaryKey.map((c) => [c, full[c]]));
    const after = await this.get(table, key);
    if (!after) throw new Error(`rowHistory: the row just inserted into ${table} cannot be read back`);
    await this.#record(table, 'insert', null, after);
    return after;
  }

  /**
   * Updates one row by primary key under its row lock, if `expect`/`where` still hold. A table's
   * `version` column is incremented and `updated_at` set unless the change sets them.
   */
  async update(table: string, key: Row, changes: Row, opts: UpdateOptions = {}): Promise<WriteResult> {
    mustBeMutable(table);
    const tx = this.#tx;
    tx.assertWritable(`update of ${table}`);
    const codec = tx.codec(table);
    const pk = keyOnly(tx, table, key);
    const before = await this.get(table, pk, { lock: true });
    if (!before) return { ok: false, before: undefined };
    const set: Row = { ...changes };
    const cols = new Set(codec.table.columns.map((c) => c.name));
    if (cols.has('version') && set.version === undefined) set.version = Number(before.version) + 1;
    if (cols.has('updated_at') && set.updated_at === undefined) set.updated_at = new Date(this.#now().getTime());
    const encodedSet = codec.encode(set);
    const cond: Row = { ...pk, ...(opts.expect ?? {}) };
    if (opts.expectVersion !== undefined) cond.version = opts.expectVersion;
    let q = whereAll(tx.db.updateTable(table).set(encodedSet), codec.encode(cond));
    if (opts.where) q = q.where(opts.where);
    const r = await q.executeTakeFirst();
    if (toBigInt(r.numUpdatedRows) !== 1n) return { ok: false, before };
    const after = { ...before, ...codec.decode<Row>(encodedSet) };
    await this.#record(table, 'update', before, after);
    return { ok: true, before, after };
  }

  /** Deletes one row by primary key under its row lock, if `expect`/`where` still hold. */
  async delete(table: string, key: Row, opts: UpdateOptions = {}): Promise<DeleteResult> {
    mustBeMutable(table);
    const tx = this.#tx;
    tx.assertWritable(`delete from ${table}`);
    const codec = tx.codec(table);
    const pk = keyOnly(tx, table, key);
    const before = await this.get(table, pk, { lock: true });
    if (!before) return { ok: false, before: undefined };
    const cond: Row = { ...pk, ...(opts.expect ?? {}) };
    if (opts.expectVersion !== undefined) cond.version = opts.expectVersion;
    let q = whereAll(tx.db.deleteFrom(table), codec.encode(cond));
    if (opts.where) q = q.where(opts.where);
    const r = await q.executeTakeFirst();
    if (toBigInt(r.numDeletedRows) !== 1n) return { ok: false, before };
    await this.#record(table, 'delete', before, null);
    return { ok: true, before };
  }
}

/** The history-keeping writer for mutable tables: `rowHistory(tx, actor).update(...)`. */
export function rowHistory(tx: Tx, actor: Actor, opts?: { now?: () => Date }): RowHistory {
  return new RowHistory(tx, actor, opts);
}

/** The history of one row (or of a whole table when key is omitted), oldest first. */
export async function readRowHistory(
  tx: Tx,
  table: string,
  key?: Row,
  opts: { limit?: number; afterId?: bigint } = {},
): Promise<HistoryEntry[]> {
  let q = tx.db.selectFrom(ROW_HISTORY).selectAll().where('table_name', '=', table);
  if (key) q = q.where('row_key', '=', rowKeyOf(tx, table, key));
  if (opts.afterId !== undefined) q = q.where('id', '>', tx.codec(ROW_HISTORY).encode({ id: opts.afterId }).id as never);
  const rows = await q
    .orderBy('id')
    .limit(opts.limit ?? 1000)
    .execute();
  return rows.map((raw) => {
    const r = tx.codec(ROW_HISTORY).decode<Row>(raw as Row);
    return {
      id: r.id as bigint,
      at: r.at as Date,
      table: String(r.table_name),
      rowKey: String(r.row_key),
      op: r.op as HistoryEntry['op'],
      before: (r.before_image ?? null) as HistoryEntry['before'],
      after: (r.after_image ?? null) as HistoryEntry['after'],
      actor: { type: r.actor_type as ActorType, id: String(r.actor_id) },
    };
  });
}
