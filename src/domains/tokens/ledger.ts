// The balance ledger: append-only entries that each name their cause (kind, ref — the primary
// key, so a cause applies once however often it is replayed), and the per-holder balance cache
// written in the same transaction. Ledger writes come only from blocks, through the undo
// journal, so a reorg removes the entry and restores the cached balance together.
import { InvalidStateTransitionError } from '../../db/errors.js';
import { toBigInt } from '../../db/codec.js';
import { keysetAfter } from '../../db/keyset.js';
import { defineQuery } from '../../db/prepared.js';
import type { Tx } from '../../db/tx.js';
import { journaledUpdate, journaledWriteAll, tableOfWrite, type BlockRef, type JournaledWrite, type KnownRow } from '../chain/undo.js';
import { decode, enc, toLedgerEntry, type Row } from './rows.js';
import { T, type Balance, type LedgerCauseKind, type LedgerEntry } from './types.js';

export interface LedgerWrite {
  causeKind: LedgerCauseKind;
  causeRef: string;
  chainId: string;
  mintHash: string;
  address: string;
  delta: bigint;
  txHash: string;
  createdAt: Date;
}

/**
 * Locks and returns a holder's balance row (the row reservations of these tokens serialise on):
 * its balance, and the whole decoded row, which the lock keeps exact until commit (the before
 * image of a journaled update).
 */
export async function lockBalance(tx: Tx, mintHash: string, address: string): Promise<{ balance: bigint; row: Row } | undefined> {
  const [raw] = await tx.selectWhere(T.balances, { mint_hash: mintHash, address }, { lock: true });
  if (!raw) return undefined;
  const row = decode(tx, T.balances, raw);
  return { balance: row.balance as bigint, row };
}

/**
 * Locks several holders' balance rows of one mint in one statement, in address order (so two
 * settlements locking the same pair cannot deadlock), and returns each as lockBalance would:
 * absent from the map when the holder has no row yet.
 */
export async function lockBalances(
  tx: Tx,
  mintHash: string,
  addresses: readonly string[],
): Promise<Map<string, { balance: bigint; row: Row }>> {
  const rows = await tx.selectWhereIn(T.balances, { mint_hash: mintHash }, 'address', addresses, { lock: true });
  const out = new Map<string, { balance: bigint; row: Row }>();
  for (const raw of rows) {
    const row = decode(tx, T.balances, raw);
    out.set(row.address as string, { balance: row.balance as bigint, row });
  }
  return out;
}

/**
 * Appends one entry under `ref` and moves the cached balance by its delta. Returns false (and
 * writes nothing) when an entry with the same cause exists: replays are no-ops. `locked`: the
 * holder's balance as lockBalance(s) returned it (null: no row), when the caller already holds
 * that lock in this transaction.
 */
export async function appendEntry(tx: Tx, ref: BlockRef, e: LedgerWrite, locked?: { balance: bigint; row: Row } | null): Promise<boolean> {
  // Lock the holder first, then insert the entry unless its cause is already recorded (the
  // primary key decides, in the same statement): a replay writes nothing and changes no balance.
  // (The lock a replay takes is harmless: the caller's transaction holds its other locks too.)
  const current = locked === undefined ? ((await lockBalance(tx, e.mintHash, e.address)) ?? null) : locked;
  const [balance] = await insertEntries(tx, ref, [{ entry: e, locked: current }]);
  if (!balance) return false;
  await mustWriteAll(tx, ref, [balance]);
  return true;
}

/** An entry to append, and its holder's balance as locked in this transaction (null: no row yet). */
export interface EntryWrite {
  entry: LedgerWrite;
  locked: { balance: bigint; row: Row } | null;
}

/**
 * The first half of appendEntry for entries of distinct holders: inserts those whose cause is
 * not recorded yet (one round trip where the backend can) and returns, for each one inserted,
 * the write of its holder's cached balance that must go with it in this transaction (for
 * mustWriteAll, alone or with other writes of the block). A replayed entry gets no write.
 */
export async function insertEntries(tx: Tx, ref: BlockRef, entries: readonly EntryWrite[]): Promise<JournaledWrite[]> {
  requireDistinctHolders(entries);
  const fresh: { e: LedgerWrite; locked: EntryWrite['locked']; next: bigint }[] = [];
  for (const { entry: e, locked } of entries) {
    const next = (locked?.balance ?? 0n) + e.delta;
    if (next < 0n) {
      // A replay of an entry already recorded is still a no-op, whatever the balance is now.
      const exists = await tx.db
        .selectFrom(T.ledger)
        .select('cause_ref')
        .where('cause_kind', '=', e.causeKind)
        .where('cause_ref', '=', e.causeRef)
        .executeTakeFirst();
      if (exists) continue;
      throw negativeBalance(e);
    }
    fresh.push({ e, locked, next });
  }
  if (!fresh.length) return [];
  const inserted = await journaledWriteAll(
    tx,
    ref,
    fresh.map(({ e }) => entryInsert(ref, e)),
  );
  return fresh.filter((_, i) => inserted[i]).map(({ e, locked, next }) => balanceWrite(ref, e, locked, next));
}

/**
 * The writes of entries of distinct holders whose causes cannot be recorded yet (a sale is
 * entered once, when its payment settles): each entry and its holder's cached balance, for
 * mustWriteAll together with the caller's other writes (one round trip where the backend can).
 * An entry whose cause is recorded after all makes mustWriteAll fail the transaction.
 */
export function newEntryWrites(ref: BlockRef, entries: readonly EntryWrite[]): JournaledWrite[] {
  requireDistinctHolders(entries);
  const writes: JournaledWrite[] = [];
  for (const { entry: e, locked } of entries) {
    const next = (locked?.balance ?? 0n) + e.delta;
    if (next < 0n) throw negativeBalance(e);
    writes.push(entryInsert(ref, e), balanceWrite(ref, e, locked, next));
  }
  return writes;
}

function requireDistinctHolders(entries: readonly EntryWrite[]): void {
  if (new Set(entries.map(({ entry: e }) => `${e.mintHash}/${e.address}`)).size !== entries.length)
    throw new Error('ledger: two entries of one holder (each balance write starts from the balance locked before)');
}

// Debits only ever settle reserved tokens, which the balance covers; a negative result is a
// broken invariant, refused here before the CHECK would refuse it.
const negativeBalance = (e: LedgerWrite) =>
  new InvalidStateTransitionError(`ledger entry ${e.causeKind}/${e.causeRef} would make the balance of ${e.address} negative`, {
    field: 'delta',
    mintHash: e.mintHash,
    address: e.address,
  });

/** An entry's row, inserted unless its cause is recorded (the primary key decides). */
const entryInsert = (ref: BlockRef, e: LedgerWrite): JournaledWrite => ({
  insert: T.ledger,
  row: {
    cause_kind: e.causeKind,
    cause_ref: e.causeRef,
    chain_id: e.chainId,
    mint_hash: e.mintHash,
    address: e.address,
    delta: e.delta,
    tx_hash: e.txHash,
    block_height: ref.height,
    block_hash: ref.blockHash,
    created_at: e.createdAt,
  },
  keyColumns: ['cause_kind', 'cause_ref'],
  orIgnore: true,
});

/** The holder's cached balance moved to `next`: an update guarded by the locked balance, or the first row. */
function balanceWrite(ref: BlockRef, e: LedgerWrite, locked: EntryWrite['locked'], next: bigint): JournaledWrite {
  const key = { mint_hash: e.mintHash, address: e.address };
  return locked
    ? {
        update: T.balances,
        key,
        changes: { balance: next, updated_height: ref.height },
        known: { before: locked.row, guard: ['balance'] },
      }
    : {
        insert: T.balances,
        row: { ...key, chain_id: e.chainId, balance: next, updated_height: ref.height },
        keyColumns: ['mint_hash', 'address'],
      };
}

// On every invoice created (the reservation check), so compiled once rather than built per call.
const RESERVED_OF = defineQuery('tokens.reservedOf', (db, $) =>
  db
    .selectFrom(T.reservations)
    .select((eb) => eb.fn.sum<string>('quantity').as('n'))
    .where('mint_hash', '=', $(0))
    .where('seller_address', '=', $(1))
    .where('state', '=', $(2)),
);

/** Tokens held by active reservations of a seller. */
export async function reservedOf(tx: Tx, mintHash: string, address: string): Promise<bigint> {
  const [r] = await tx.query(RESERVED_OF, [mintHash, address, 'reserved']);
  return toBigInt(r?.n);
}

export async function balanceOf(tx: Tx, mintHash: string, address: string): Promise<Balance> {
  const raw = await tx.db
    .selectFrom(T.balances)
    .select(['balance'])
    .where('mint_hash', '=', mintHash)
    .where('address', '=', address)
    .executeTakeFirst();
  const balance = raw ? (decode(tx, T.balances, raw).balance as bigint) : 0n;
  const reserved = await reservedOf(tx, mintHash, address);
  return { mintHash, address, balance, reserved, available: balance - reserved };
}

/**
 * An address's balances in mint-hash order, keyset-paged by mint hash (`after`), each with its
 * reserved and available amounts.
 */
export function balancesOf(tx: Tx, address: string, o: { after?: string; limit?: number } = {}): Promise<Balance[]> {
  return balancePage(tx, { address }, o);
}

/**
 * Every holder of a mint in address order (keyset-paged by address), each with its reserved and
 * available amounts: a cap table. Read in the caller's one transaction, so a page is a
 * consistent snapshot (its balances sum to the supply when it holds every holder).
 */
export function holdersOf(tx: Tx, mintHash: string, o: { after?: string; limit?: number } = {}): Promise<Balance[]> {
  return balancePage(tx, { mintHash }, o);
}

/**
 * A page of balances with one side fixed (an address, or a mint) and paged by the other, then
 * the reserved amounts of the whole page in one grouped read (not one per row).
 */
async function balancePage(
  tx: Tx,
  fixed: { address: string } | { mintHash: string },
  o: { after?: string; limit?: number },
): Promise<Balance[]> {
  // A balance's address is a reservation's seller_address.
  const [col, value, pageCol, heldFixed, heldPage] =
    'address' in fixed
      ? (['address', fixed.address, 'mint_hash', 'seller_address', 'mint_hash'] as const)
      : (['mint_hash', fixed.mintHash, 'address', 'mint_hash', 'seller_address'] as const);
  let q = tx.db
    .selectFrom(T.balances)
    .select([pageCol, 'balance'])
    .where(col, '=', value)
    .orderBy(pageCol)
    .limit(o.limit ?? 100);
  if (o.after !== undefined) q = q.where(pageCol, '>', o.after);
  const rows = (await q.execute()).map((raw) => decode(tx, T.balances, raw));
  if (!rows.length) return [];
  const held = await tx.db
    .selectFrom(T.reservations)
    .select((eb) => [heldPage, eb.fn.sum<string>('quantity').as('n')])
    .where(heldFixed, '=', value)
    .where('state', '=', 'reserved')
    .where(
      heldPage,
      'in',
      rows.map((r) => r[pageCol] as string),
    )
    .groupBy(heldPage)
    .execute();
  const reservedBy = new Map(held.map((h) => [(h as Row)[heldPage] as string, toBigInt((h as Row).n)]));
  return rows.map((r) => {
    const key = r[pageCol] as string;
    const balance = r.balance as bigint;
    const reserved = reservedBy.get(key) ?? 0n;
    return 'address' in fixed
      ? { mintHash: key, address: fixed.address, balance, reserved, available: balance - reserved }
      : { mintHash: fixed.mintHash, address: key, balance, reserved, available: balance - reserved };
  });
}

/** Where a page of a holder's ledger entries starts: strictly after this entry's sort key. */
export interface LedgerKey {
  blockHeight: bigint;
  causeKind: LedgerCauseKind;
  causeRef: string;
}

/**
 * The ledger entries of one holder, oldest block first (then by cause, the primary key, so the
 * order is total), keyset-paged on that order (`after`).
 */
export async function entriesOf(
  tx: Tx,
  mintHash: string,
  address: string,
  o: { after?: LedgerKey; limit?: number } = {},
): Promise<LedgerEntry[]> {
  let q = tx.db
    .selectFrom(T.ledger)
    .selectAll()
    .where('mint_hash', '=', mintHash)
    .where('address', '=', address)
    .orderBy('block_height')
    .orderBy('cause_kind')
    .orderBy('cause_ref')
    .limit(o.limit ?? 100);
  const after = o.after;
  if (after) {
    const height = enc(tx, T.ledger, 'block_height', after.blockHeight);
    q = q.where((eb) =>
      keysetAfter(eb, [
        { column: 'block_height', value: height },
        { column: 'cause_kind', value: after.causeKind },
        { column: 'cause_ref', value: after.causeRef },
      ]),
    );
  }
  return (await q.execute()).map((r) => toLedgerEntry(tx, r));
}

/** SUM(delta) of a holder's ledger entries: what the balance cache must equal. */
export async function ledgerSum(tx: Tx, mintHash: string, address: string): Promise<bigint> {
  const r = await tx.db
    .selectFrom(T.ledger)
    .select((eb) => eb.fn.sum<string>('delta').as('n'))
    .where('mint_hash', '=', mintHash)
    .where('address', '=', address)
    .executeTakeFirst();
  return toBigInt((r as Row | undefined)?.n);
}

/**
 * A journaled update of a row this transaction holds or just read; a missing row (or, with
 * `known`, a row whose guard columns changed) is a broken invariant.
 */
export async function mustUpdate(tx: Tx, ref: BlockRef, table: string, key: Row, changes: Row, known?: KnownRow): Promise<void> {
  if (!(await journaledUpdate(tx, ref, table, key, changes, known))) throw vanished(table, key);
}

/**
 * Journaled writes of distinct rows (journaledWriteAll: one round trip where the backend can),
 * each of which must happen: an update that finds its row gone or changed is a broken invariant,
 * as for mustUpdate.
 */
export async function mustWriteAll(tx: Tx, ref: BlockRef, writes: readonly JournaledWrite[]): Promise<void> {
  const wrote = await journaledWriteAll(tx, ref, writes, { allMust: true });
  const i = wrote.indexOf(false);
  if (i < 0) return;
  const w = writes[i]!;
  if ('insert' in w) {
    const key = Object.fromEntries(w.keyColumns.map((k) => [k, w.row[k]]));
    throw new InvalidStateTransitionError(`${w.insert} row ${keyText(key)} exists already`, { table: w.insert });
  }
  throw vanished(tableOfWrite(w), w.key);
}

const keyText = (key: Row) => JSON.stringify(key, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
const vanished = (table: string, key: Row) =>
  new InvalidStateTransitionError(`${table} row ${keyText(key)} vanished during the transition`, { table });
