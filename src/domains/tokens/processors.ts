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
// until none can; then mint credits and payment settlements whose block has become final.
// Processing a block twice changes nothing.
import { sql } from 'kysely';
import { CofferError } from '../../db/errors.js';
import { defineQuery } from '../../db/prepared.js';
import type { Tx } from '../../db/tx.js';
import type { BlockContext, BlockProcessor, IngestedOutput, IngestedTransaction } from '../chain/processors.js';
import { journaledInsertUnlessPresent, withJournalBatch, type BlockRef, type JournaledWrite } from '../chain/undo.js';
import { newBlockMemo, type BlockMemo } from './block-memo.js';
import { mustWriteAll } from './ledger.js';
import { matchInvoice } from './invoices.js';
import { confirmMint, creditMint, type MatchOutcome } from './mints.js';
import { checkPayment, paymentRecord, settlePayment } from './payments.js';
import { decode, type Row } from './rows.js';
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
  /** A payment whose invoice has arrived but was not matched when the actions were read. */
  waitsForMatch: boolean;
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
  // has arrived but is not matched yet. Those wait for the end of the pass and are tried, in
  // their order, if the pass matched their invoice: exactly what a second read after the pass
  // would find, one round trip fewer.
  const pass = new PassWrites(tx, ref);
  const waiting: Action[] = [];
  for (const a of await retryablePending(tx, b.chainId, b.height)) {
    if (a.waitsForMatch) waiting.push(a);
    else await applyAction(tx, ref, a, memo, pass);
  }
  for (const a of waiting) if (memo.matched.has(a.refHash)) await applyAction(tx, ref, a, memo, pass);
  await pass.flush();

  // Then what has become final: mint credits first (a settlement may sell credited tokens),
  // then settlements.
  const due = await dueAt(tx, b.chainId, finalHeightOf(ctx));
  for (const m of due.mints) await creditMint(tx, b.chainId, m, b.time);
  for (const p of due.payments) await settlePayment(tx, p, b.time, memo);
}

// Mints to credit and payments to settle, in one read on every block: a part column, then the
// columns of each in the same positions (a mint's owner where a payment has its chain; nulls
// where a mint has nothing). Each part reads its own index (chain, state, height).
// The states are literals, not parameters, here and in RETRYABLE_PENDING: PostgreSQL then knows
// them when it plans the named statement once for every value (its generic plan). With
// `state = $n`, once ANALYZE had run it costed the generic plan at an average state's row count,
// found the plan for each call's values cheaper, and planned the statement again on every block
// (0.3 ms of server CPU for the pending-actions read, more than running it).
const DUE = defineQuery('tokens.due', (db, $) =>
  db
    .selectFrom(T.mints)
    .select([
      sql<number>`0`.as('part'),
      'hash as k',
      'owner_address as who',
      'tx_hash',
      'matched_height as at_height',
      'matched_block_hash as at_hash',
      'fraction_count as n',
      sql`null`.as('block_height'),
      sql`null`.as('block_hash'),
      sql`null`.as('state'),
    ])
    .where('chain_id', '=', $(0))
    .where('credited', '=', sql.lit(false))
    .where('matched_height', '<=', $(1))
    .unionAll(
      db
        .selectFrom(T.payments)
        .select([
          sql<number>`1`.as('part'),
          'invoice_hash as k',
          'chain_id as who',
          'tx_hash',
          'recorded_height as at_height',
          'recorded_block_hash as at_hash',
          'amount as n',
          'block_height',
          'block_hash',
          'state',
        ])
        .where('chain_id', '=', $(0))
        .where('state', '=', sql.lit('pending'))
        .where('recorded_height', '<=', $(1)),
    )
    .orderBy('part')
    .orderBy('at_height')
    .orderBy('k'),
);

/** Mints matched and payments recorded at or below `final` and not yet credited or settled, oldest first. */
async function dueAt(tx: Tx, chainId: string, final: bigint): Promise<{ mints: Row[]; payments: Row[] }> {
  const height = tx.codec(T.mints).encode({ matched_height: final }).matched_height;
  const out: { mints: Row[]; payments: Row[] } = { mints: [], payments: [] };
  for (const r of await tx.query(DUE, [chainId, height])) {
    if (Number(r.part) === 0) {
      out.mints.push(
        decode(tx, T.mints, {
          hash: r.k,
          owner_address: r.who,
          tx_hash: r.tx_hash,
          matched_height: r.at_height,
          matched_block_hash: r.at_hash,
          fraction_count: r.n,
        }),
      );
    } else {
      out.payments.push(
        decode(tx, T.payments, {
          invoice_hash: r.k,
          chain_id: r.who,
          tx_hash: r.tx_hash,
          block_height: r.block_height,
          block_hash: r.block_hash,
          recorded_height: r.at_height,
          recorded_block_hash: r.at_hash,
          amount: r.n,
          state: r.state,
        }),
      );
    }
  }
  return out;
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
  constructor(tx: Tx, ref: BlockRef) {
    this.#tx = tx;
    this.#ref = ref;
  }

  async add(writes: readonly JournaledWrite[], movesMint: boolean): Promise<void> {
    this.#writes.push(...writes);
    this.#movesMint ||= movesMint;
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
  const r = await apply(tx, ref, a, memo);
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

// Runs on every block: compiled once (literal states and types: see DUE).
const RETRYABLE_PENDING = defineQuery('tokens.retryablePending', (db, $) =>
  db
    .selectFrom(T.actions)
    .selectAll()
    // 1 for a payment whose invoice is matched; 0 for one whose invoice has only arrived.
    .select(
      sql<number>`case when exists (select 1 from ${sql.table(T.invoices)} m where m.hash = ${sql.ref(`${T.actions}.ref_hash`)}) then 1 else 0 end`.as(
        'invoice_matched',
      ),
    )
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
      // handler rejects the action, which would otherwise stay pending for good.
      return eb.or([
        ready('mint', T.unconfirmedMints),
        ready('mint', T.mints),
        ready('invoice', T.unconfirmedInvoices),
        ready('invoice', T.invoices),
        ready('payment', T.invoices),
        ready('payment', T.unconfirmedInvoices),
      ]);
    })
    .orderBy('block_height')
    .orderBy('index_in_block'),
);

/**
 * Pending actions (up to this block) that may make progress now: their mint or invoice content
 * has arrived (or is confirmed already, which rejects an action of another transaction), or
 * (payments) their invoice is matched on chain; and the payments whose invoice has arrived
 * unmatched (waitsForMatch). Oldest first, so a mint matches before an invoice of
 * it, and an invoice before its payment.
 */
async function retryablePending(tx: Tx, chainId: string, upTo: bigint): Promise<Action[]> {
  const upToHeight = tx.codec(T.actions).encode({ block_height: upTo }).block_height;
  const rows = await tx.query(RETRYABLE_PENDING, [chainId, upToHeight]);
  return rows.map(({ invoice_matched, ...raw }) => {
    const r: Row = decode(tx, T.actions, raw);
    return {
      chainId,
      txHash: r.tx_hash as string,
      type: r.action_type as TokenActionType,
      refHash: r.ref_hash as string,
      blockHeight: r.block_height as bigint,
      blockHash: r.block_hash as string,
      outputs: ((r.outputs ?? []) as { address: string; value: string }[]).map((o) => ({ address: o.address, value: BigInt(o.value) })),
      row: r,
      waitsForMatch: r.action_type === 'payment' && Number(invoice_matched) === 0,
    };
  });
}
