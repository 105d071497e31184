// The token domain's block processor. Chain ingest calls it in the block's transaction; every
// row it writes goes through the undo journal, so a reorg reverts it exactly.
//
// On-chain actions (IngestedTransaction.actionType, version 1):
//   'mint'    payload = the 32-byte content hash of the mint it anchors
//   'invoice' payload = the 32-byte content hash of the invoice it anchors
//   'payment' payload = the 32-byte content hash of the invoice it pays; the outputs to the
//             invoice's payment address must sum to exactly quantity × price base units
// Other action types are not the token domain's and are ignored.
//
// Per block: this block's actions are recorded as pending; then every pending action of the
// chain that can progress (its content arrived, its invoice matched) is applied, oldest first,
// until none can (a payment whose invoice can no longer be matched is rejected); then mint credits and payment settlements whose block has become final.
// Processing a block twice changes nothing.
import { sql } from 'kysely';
import { CofferError } from '../../db/errors.js';
import { defineQuery, type PreparedQuery } from '../../db/prepared.js';
import type { Tx } from '../../db/tx.js';
import type { BlockContext, BlockProcessor, IngestedOutput, IngestedTransaction } from '../chain/processors.js';
import { journaledInsertUnlessPresent, withJournalBatch, type BlockRef, type JournaledWrite } from '../chain/undo.js';
import { newBlockMemo, type BlockMemo } from './block-memo.js';
import { mustWriteAll } from './ledger.js';
import { matchInvoice } from './invoices.js';
import { confirmMint, creditMint, type MatchOutcome } from './mints.js';
import { checkPayment, paymentRecord, settlePayment, unmatchablePayment } from './payments.js';
import { asRead, decode, type Row } from './rows.js';
import { T } from './types.js';

export const TOKEN_ACTIONS = ['mint', 'invoice', 'payment'] as const;
export type TokenActionType = (typeof TOKEN_ACTIONS)[number];
export const TOKEN_ACTION_VERSION = 1;

/** The processors to pass to chain ingest. */
export function tokenProcessors(): BlockProcessor[] {
  return [processTokenBlock];
}

interface Action {
  chainId: string;
  txHash: string;
  type: TokenActionType;
  refHash: string;
  blockHeight: bigint;
  blockHash: string;
  outputs: IngestedOutput[];
  /** The decoded row as read (the before image of its state change). */
  row: Row;
  /** A payment whose invoice has a reservation but was not matched when the actions were read. */
  waitsForMatch: boolean;
  /** For such a payment: its invoice's reservation state as read (null: none). */
  reservationState: string | null;
}

/** Decodes a payload, or says why it cannot be one of ours. */
export function decodePayload(t: Pick<IngestedTransaction, 'actionVersion' | 'payload'>): { refHash: string } | { reason: string } {
  if (t.actionVersion !== TOKEN_ACTION_VERSION) return { reason: `unsupported action version ${t.actionVersion ?? 'null'}` };
  if (!t.payload || t.payload.length !== 32)
    return { reason: `payload must be a 32-byte content hash, got ${t.payload?.length ?? 0} bytes` };
  return { refHash: t.payload.toString('hex') };
}

const isTokenAction = (t: string | null): t is TokenActionType => (TOKEN_ACTIONS as readonly (string | null)[]).includes(t);

/** The height at or below which a block has the confirmations needed (is final). */
export function finalHeightOf(ctx: Pick<BlockContext, 'tipHeight' | 'confirmationsNeeded'>): bigint {
  return ctx.tipHeight - BigInt(Math.max(1, ctx.confirmationsNeeded)) + 1n;
}

export const processTokenBlock: BlockProcessor = async (tx: Tx, ctx: BlockContext): Promise<void> => {
  tx.assertWritable('tokens block processor');
  // The block's journal entries are written together: with the writes that must all happen
  // (mustWriteAll, on PostgreSQL), and whatever is left in one multi-row INSERT at the end.
  await withJournalBatch(tx, () => processBlock(tx, ctx));
};

async function processBlock(tx: Tx, ctx: BlockContext): Promise<void> {
  const b = ctx.block;
  const ref: BlockRef = { chainId: b.chainId, height: b.height, blockHash: b.blockHash };
  // Rows read, locked or written by this block's steps, for its later steps (block-memo.ts).
  const memo = newBlockMemo();

  // Record this block's actions as pending (malformed ones as rejected), except those recorded
  // already (a replayed block): the primary key decides, in the insert itself where the backend
  // can. A transaction listed twice in the block counts once.
  const ours = [...b.transactions].filter((t) => isTokenAction(t.actionType)).sort((x, y) => x.indexInBlock - y.indexInBlock);
  const listed = new Set<string>();
  const rows: Row[] = [];
  for (const t of ours) {
    if (listed.has(t.txHash)) continue;
    listed.add(t.txHash);
    const decoded = decodePayload(t);
    rows.push({
      chain_id: b.chainId,
      tx_hash: t.txHash,
      action_type: t.actionType,
      action_version: t.actionVersion,
      ref_hash: 'refHash' in decoded ? decoded.refHash : null,
      block_height: b.height,
      block_hash: b.blockHash,
      index_in_block: t.indexInBlock,
      outputs: t.actionType === 'payment' ? t.outputs.map((o) => ({ address: o.address, value: o.value.toString() })) : null,
      state: 'refHash' in decoded ? 'pending' : 'rejected',
      reason: 'refHash' in decoded ? null : clip(decoded.reason),
    });
  }
  await journaledInsertUnlessPresent(tx, ref, T.actions, rows, ['chain_id', 'tx_hash']);

  // ...then apply every pending action that can progress, oldest first, until none can: an
  // invoice matched by this block unblocks a payment seen earlier (or earlier in this block).
  // Reaching this fixpoint is what makes processing the same block again a no-op. Matching an
  // invoice is the one change that can make a pending action eligible (a payment naming it):
  // applying or rejecting anything else changes no other action's eligibility, and an eligible
  // action that stayed pending (an invoice waiting for signatures) would stay pending if tried
  // again. So one read finds them all: the eligible actions, and the payments whose invoice
  // has a reservation but is not matched yet. Those wait for the end of the pass and are tried,
  // in their order, if the pass matched their invoice: exactly what a second read after the
  // pass would find, one round trip fewer. If it did not, and the reservation has ended, the
  // invoice never will be matched and the payment is rejected.
  // The same read returns what earlier blocks left due (pendingAndDueOf).
  const final = finalHeightOf(ctx);
  const { actions, due } = await pendingAndDue(tx, b.chainId, b.height, final);
  const pass = new PassWrites(tx, ref);
  const waiting: Action[] = [];
  for (const a of actions) {
    if (a.waitsForMatch) waiting.push(a);
    else await applyAction(tx, ref, a, memo, pass);
  }
  for (const a of waiting) {
    if (memo.matched.has(a.refHash)) await applyAction(tx, ref, a, memo, pass);
    else {
      // Not matched, and never will be if its reservation has ended: rejected now, rather than
      // left pending and read again by every later block. The state comes from the read above
      // (no statement of its own); an ended reservation never returns to reserved.
      const reason = unmatchablePayment(a.refHash, a.reservationState);
      if (reason !== undefined) await recordOutcome(a, { outcome: 'rejected', reason }, pass);
    }
  }
  await pass.flush();

  // Then what has become final: mint credits first (a settlement may sell credited tokens),
  // then settlements. The pass's own mints and payments join those read before it when this
  // block is final itself (one confirmation): they are the only rows of either table the pass
  // writes, so the read plus them is what a read after the pass would return.
  if (b.height <= final) {
    for (const m of pass.confirmedMints) due.mints.push(asRead(tx, T.mints, m));
    for (const p of pass.recordedPayments) due.payments.push(asRead(tx, T.payments, p));
  }
  sortDue(due);
  for (const m of due.mints) await creditMint(tx, b.chainId, m, b.time);
  for (const p of due.payments) await settlePayment(tx, p, b.time, memo);
}

/** Lowest height first, then lowest key (a string or a number). */
function byHeightThenKey(h1: unknown, k1: unknown, h2: unknown, k2: unknown): number {
  const a = h1 as bigint;
  const b = h2 as bigint;
  const x = k1 as string | number;
  const y = k2 as string | number;
  return a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0;
}

/** Due mints and payments oldest first, then by hash. */
function sortDue(due: { mints: Row[]; payments: Row[] }): void {
  due.mints.sort((x, y) => byHeightThenKey(x.matched_height, x.hash, y.matched_height, y.hash));
  due.payments.sort((x, y) => byHeightThenKey(x.recorded_height, x.invoice_hash, y.recorded_height, y.invoice_hash));
}

// On every block, one read: the pending actions that may progress (part 0), the mints to credit
// (part 1) and the payments to settle (part 2) of blocks now final. A part column, then the
// action's columns, then the due row's columns in the same positions for both kinds (a mint's
// owner where a payment has its chain; a mint's state column is null); each part has nulls in
// the others' columns, and reads its own index (chain, state, height). Taken before the pass,
// the due parts lack only what the pass itself writes, which processBlock adds.
// States and action types are literals, not parameters: PostgreSQL then knows them when it plans
// the named statement once for every value (its generic plan). With `state = $n`, once ANALYZE
// had run it costed the generic plan at an average state's row count, found the plan for each
// call's values cheaper, and planned the statement again on every block (0.3 ms of server CPU
// for the pending-actions read, more than running it).
// Compiled on first use (the action columns come from the table's definition).
const DUE_COLUMNS = ['k', 'who', 'd_tx_hash', 'at_height', 'at_hash', 'n', 'd_block_height', 'd_block_hash', 'd_state'] as const;
let pendingAndDueQuery: PreparedQuery | undefined;
function pendingAndDueOf(tx: Tx): PreparedQuery {
  if (pendingAndDueQuery) return pendingAndDueQuery;
  const actionColumns = tx.codec(T.actions).table.columns.map((c) => c.name);
  const nulls = (names: readonly string[]) => names.map((n) => sql`null`.as(n));
  return (pendingAndDueQuery = defineQuery('tokens.pendingAndDue', (db, $) => {
    // A due part: `table`'s rows of the chain whose `doneColumn` is still `notDone` (a literal),
    // at or below the final height ($2), its columns in the due positions (null: none).
    const duePart = (
      part: number,
      table: string,
      doneColumn: string,
      notDone: string | boolean,
      heightColumn: string,
      columns: Record<(typeof DUE_COLUMNS)[number], string | null>,
    ) =>
      db
        .selectFrom(table)
        .select([
          sql.lit(part).as('part'),
          ...nulls([...actionColumns, 'invoice_matched', 'reservation_state']),
          ...DUE_COLUMNS.map((c) => (columns[c] === null ? sql`null`.as(c) : sql.ref(columns[c]).as(c))),
        ])
        .where('chain_id', '=', $(0))
        .where(doneColumn, '=', sql.lit(notDone))
        .where(heightColumn, '<=', $(2));
    return db
      .selectFrom(T.actions)
      .select([
        sql<number>`0`.as('part'),
        ...actionColumns.map((c) => sql.ref(`${T.actions}.${c}`).as(c)),
        // 1 for a payment whose invoice is matched; 0 for one whose invoice has only arrived.
        sql<number>`case when exists (select 1 from ${sql.table(T.invoices)} m where m.hash = ${sql.ref(`${T.actions}.ref_hash`)}) then 1 else 0 end`.as(
          'invoice_matched',
        ),
        // A payment's invoice reservation state: an unmatched invoice whose reservation ended
        // (expired, released) can never be matched, so its payment is rejected (processBlock).
        sql<
          string | null
        >`case when ${sql.ref(`${T.actions}.action_type`)} = ${sql.lit('payment')} then (select r.state from ${sql.table(T.reservations)} r where r.invoice_hash = ${sql.ref(`${T.actions}.ref_hash`)}) end`.as(
          'reservation_state',
        ),
        ...nulls(DUE_COLUMNS),
      ])
      .where('chain_id', '=', $(0))
      .where('state', '=', sql.lit('pending'))
      .where('block_height', '<=', $(1))
      .where((eb) => {
        // Actions of `type` whose referenced content has arrived in `table`.
        const ready = (type: TokenActionType, table: string) =>
          eb.and([
            eb('action_type', '=', sql.lit(type)),
            eb.exists(
              eb
                .selectFrom(table)
                .select('hash')
                .whereRef('hash', '=', `${T.actions}.ref_hash` as never),
            ),
          ]);
        // A mint or invoice already confirmed (matched) is ready too: by another transaction, its
        // handler rejects the action, which would otherwise stay pending for good. A payment is
        // ready once its invoice is matched or has a reservation (every invoice received has one,
        // kept for good): while reserved it waits for the match; released (the invoice row goes
        // with it) or expired, the invoice can never match and the payment is rejected.
        return eb.or([
          ready('mint', T.unconfirmedMints),
          ready('mint', T.mints),
          ready('invoice', T.unconfirmedInvoices),
          ready('invoice', T.invoices),
          ready('payment', T.invoices),
          eb.and([
            eb('action_type', '=', sql.lit('payment')),
            eb.exists(
              eb
                .selectFrom(T.reservations)
                .select('invoice_hash')
                .whereRef('invoice_hash', '=', `${T.actions}.ref_hash` as never),
            ),
          ]),
        ]);
      })
      .unionAll(
        duePart(1, T.mints, 'credited', false, 'matched_height', {
          k: 'hash',
          who: 'owner_address',
          d_tx_hash: 'tx_hash',
          at_height: 'matched_height',
          at_hash: 'matched_block_hash',
          n: 'fraction_count',
          // The mint's own anchor, unused: a column both due parts fill keeps its type on
          // PostgreSQL, which types a union's columns pairwise (null with null is text).
          d_block_height: 'block_height',
          d_block_hash: 'block_hash',
          d_state: null,
        }),
      )
      .unionAll(
        duePart(2, T.payments, 'state', 'pending', 'recorded_height', {
          k: 'invoice_hash',
          who: 'chain_id',
          d_tx_hash: 'tx_hash',
          at_height: 'recorded_height',
          at_hash: 'recorded_block_hash',
          n: 'amount',
          d_block_height: 'block_height',
          d_block_hash: 'block_hash',
          d_state: 'state',
        }),
      );
  }));
}

/**
 * Pending actions (up to `upTo`) that may make progress now: their mint or invoice content has
 * arrived (or is confirmed already, which rejects an action of another transaction), or
 * (payments) their invoice is matched on chain; and the payments whose invoice has a
 * reservation but is unmatched (waitsForMatch), with that reservation's state. Oldest first, so a mint matches before an invoice of it, and an
 * invoice before its payment. With them, the mints matched and payments recorded at or below
 * `final` and not yet credited or settled, oldest first.
 */
async function pendingAndDue(
  tx: Tx,
  chainId: string,
  upTo: bigint,
  final: bigint,
): Promise<{ actions: Action[]; due: { mints: Row[]; payments: Row[] } }> {
  const codec = tx.codec(T.actions);
  const actionColumns = codec.table.columns;
  const upToHeight = codec.encode({ block_height: upTo }).block_height;
  const finalHeight = tx.codec(T.mints).encode({ matched_height: final }).matched_height;
  const actions: Action[] = [];
  const due: { mints: Row[]; payments: Row[] } = { mints: [], payments: [] };
  for (const r of await tx.query(pendingAndDueOf(tx), [chainId, upToHeight, finalHeight])) {
    const part = Number(r.part);
    if (part === 0) {
      const own: Row = {};
      for (const c of actionColumns) own[c.name] = r[c.name];
      const a: Row = decode(tx, T.actions, own);
      actions.push({
        chainId,
        txHash: a.tx_hash as string,
        type: a.action_type as TokenActionType,
        refHash: a.ref_hash as string,
        blockHeight: a.block_height as bigint,
        blockHash: a.block_hash as string,
        outputs: ((a.outputs ?? []) as { address: string; value: string }[]).map((o) => ({ address: o.address, value: BigInt(o.value) })),
        row: a,
        waitsForMatch: a.action_type === 'payment' && Number(r.invoice_matched) === 0,
        reservationState: r.reservation_state == null ? null : String(r.reservation_state),
      });
    } else if (part === 1) {
      due.mints.push(
        decode(tx, T.mints, {
          hash: r.k,
          owner_address: r.who,
          tx_hash: r.d_tx_hash,
          matched_height: r.at_height,
          matched_block_hash: r.at_hash,
          fraction_count: r.n,
        }),
      );
    } else {
      due.payments.push(
        decode(tx, T.payments, {
          invoice_hash: r.k,
          chain_id: r.who,
          tx_hash: r.d_tx_hash,
          block_height: r.d_block_height,
          block_hash: r.d_block_hash,
          recorded_height: r.at_height,
          recorded_block_hash: r.at_hash,
          amount: r.n,
          state: r.d_state,
        }),
      );
    }
  }
  // Ordered here, not by the statement: MariaDB sorts a union that has a JSON column in an
  // on-disk temporary table (0.8 ms a block, against 0.3 ms for the statement unsorted). The
  // due lists are sorted by processBlock, once the pass's own rows have joined them.
  actions.sort((x, y) => byHeightThenKey(x.blockHeight, x.row.index_in_block, y.blockHeight, y.row.index_in_block));
  return { actions, due };
}

/**
 * The pass's writes (each applied action's own and its state change), held and written together
 * (one statement on PostgreSQL, up to FLUSH_AT writes a statement) rather than one set per
 * action. This is sound because no handler reads, from the database, a row an earlier action of
 * the pass wrote: invoices matched and payments recorded by this block are read from the block
 * memo (block-memo.ts), and action rows are read once, before the pass. The one exception is a
 * mint's move to token_mints, which both the mint and the invoice handler read: the writes are
 * flushed before either runs after a mint was confirmed.
 */
class PassWrites {
  readonly #tx: Tx;
  readonly #ref: BlockRef;
  readonly #writes: JournaledWrite[] = [];
  #movesMint = false;
  /** The token_mints rows the pass inserted (confirmed mints) and the token_payments rows (recorded payments), as written. */
  readonly confirmedMints: Row[] = [];
  readonly recordedPayments: Row[] = [];
  constructor(tx: Tx, ref: BlockRef) {
    this.#tx = tx;
    this.#ref = ref;
  }

  async add(writes: readonly JournaledWrite[], movesMint: boolean): Promise<void> {
    this.#writes.push(...writes);
    this.#movesMint ||= movesMint;
    for (const w of writes) {
      if (!('insert' in w)) continue;
      if (w.insert === T.mints) this.confirmedMints.push(w.row);
      else if (w.insert === T.payments) this.recordedPayments.push(w.row);
    }
    if (this.#writes.length >= FLUSH_AT) await this.flush();
  }

  /** Before a handler that reads token_mints runs. */
  async beforeMintRead(): Promise<void> {
    if (this.#movesMint) await this.flush();
  }

  async flush(): Promise<void> {
    this.#movesMint = false;
    if (this.#writes.length) await mustWriteAll(this.#tx, this.#ref, this.#writes.splice(0));
  }
}

// Writes per statement of a pass (about 25 values each at most: well within MAX_BOUND).
const FLUSH_AT = 32;

/** Applies one action; its outcome (a pending one stays as it is) goes with the pass's writes. */
async function applyAction(tx: Tx, ref: BlockRef, a: Action, memo: BlockMemo, pass: PassWrites): Promise<void> {
  if (a.type !== 'payment') await pass.beforeMintRead();
  await recordOutcome(a, await apply(tx, ref, a, memo), pass);
}

/** An action's outcome: its writes and state change join the pass's (a pending one stays as it is). */
async function recordOutcome(a: Action, r: MatchOutcome, pass: PassWrites): Promise<void> {
  if (r.outcome === 'pending') return;
  // Pending rows change only here, under the chain's ingest lock; the UPDATE re-checks it.
  await pass.add(
    [
      ...(r.outcome === 'applied' ? (r.writes ?? []) : []),
      {
        update: T.actions,
        key: { chain_id: a.chainId, tx_hash: a.txHash },
        changes: { state: r.outcome, reason: reasonOf(r) },
        known: { before: a.row, guard: ['state', 'reason'] },
      },
    ],
    a.type === 'mint' && r.outcome === 'applied' && (r.writes?.length ?? 0) > 0,
  );
}

const reasonOf = (r: MatchOutcome) => (r.outcome === 'applied' ? null : clip(r.reason));
const clip = (s: string) => (s.length > 200 ? `${s.slice(0, 197)}...` : s);

/**
 * Applies one action. Checks come before writes in every handler, so a rejection (a typed
 * validation or state error) leaves nothing behind; any other error fails the block.
 */
async function apply(tx: Tx, ref: BlockRef, a: Action, memo: BlockMemo): Promise<MatchOutcome> {
  const anchor = { txHash: a.txHash, blockHeight: a.blockHeight, blockHash: a.blockHash };
  switch (a.type) {
    case 'mint':
      return confirmMint(tx, ref, a.refHash, anchor);
    case 'invoice':
      return matchInvoice(tx, ref, a.refHash, anchor, memo);
    case 'payment': {
      const p = { ...anchor, invoiceHash: a.refHash, outputs: a.outputs };
      let plan;
      try {
        plan = await checkPayment(tx, ref.chainId, p, memo);
      } catch (e) {
        if (e instanceof CofferError && (e.code === 'validation' || e.code === 'invalid_state_transition'))
          return { outcome: 'rejected', reason: e.message };
        throw e;
      }
      if (plan.kind === 'pending') return { outcome: 'pending', reason: plan.reason };
      return plan.kind === 'record' ? { outcome: 'applied', writes: [paymentRecord(ref, p, plan.amount, memo)] } : { outcome: 'applied' };
    }
  }
}
