// Row mapping of the token domain: the store context, single-value encoding for WHERE clauses,
// and decoding DB rows into the domain types through the table codecs.
import { sql } from 'kysely';
import { defineQuery, type PreparedQuery } from '../../db/prepared.js';
import type { Tx } from '../../db/tx.js';
import type {
  AssetManager,
  Invoice,
  InvoiceStatus,
  JsonDoc,
  LedgerCauseKind,
  LedgerEntry,
  Mint,
  MintContent,
  Offer,
  OfferSide,
  Reservation,
  ReservationState,
  SignatureRule,
  SignatureVerifier,
} from './types.js';
import { T } from './types.js';

export type Row = Record<string, unknown>;

/** What every module of the store works with: the transaction and the injected policies. */
export interface Ctx {
  tx: Tx;
  verify: SignatureVerifier;
  now: () => Date;
}

/** The encoded (driver) form of one column value, for WHERE clauses. */
export function enc(tx: Tx, table: string, column: string, value: unknown): any {
  return tx.codec(table).encode({ [column]: value })[column];
}

export function decode(tx: Tx, table: string, raw: unknown): Row {
  return tx.codec(table).decode<Row>(raw as Row);
}

/** A row about to be written, as a read of it would return it (encoded, then decoded). */
export function asRead(tx: Tx, table: string, row: Row): Row {
  const codec = tx.codec(table);
  return codec.decode<Row>(codec.encode(row));
}

// ---------------------------------------------------------------- either table

// Mints and invoices live in an unconfirmed table until a block moves them to the confirmed one
// (which has the same columns plus the on-chain ones), and a reorg moves them back. Under READ
// COMMITTED (PostgreSQL, MySQL/MariaDB) two statements see two snapshots, so a move committed
// between them makes both miss the row. Reading in the direction rows move would not do: a reorg
// moves them the other way. One UNION ALL statement reads both tables in one snapshot; each part
// is a primary-key lookup. Compiled on first use (the columns come from the table definitions).
const CONFIRMED_FLAG = 'confirmed__';
const eitherQueries = new Map<string, PreparedQuery>();

function eitherQuery(tx: Tx, confirmed: string, unconfirmed: string): PreparedQuery {
  const known = eitherQueries.get(confirmed);
  if (known) return known;
  const columns = tx.codec(confirmed).table.columns.map((c) => c.name);
  const own = new Set(tx.codec(unconfirmed).table.columns.map((c) => c.name));
  const q = defineQuery(`tokens.either.${confirmed}`, (db, $) =>
    db
      .selectFrom(confirmed)
      .select([sql<number>`1`.as(CONFIRMED_FLAG), ...columns])
      .where('hash', '=', $(0))
      .unionAll(
        db
          .selectFrom(unconfirmed)
          .select([sql<number>`0`.as(CONFIRMED_FLAG), ...columns.map((c) => (own.has(c) ? c : sql<null>`null`.as(c)))])
          .where('hash', '=', $(0)) as never,
      ),
  );
  eitherQueries.set(confirmed, q);
  return q;
}

/**
 * The row of `hash` in the confirmed table or else the unconfirmed one, read in one statement
 * (see above), and which table it came from. The unconfirmed row carries the confirmed table's
 * extra columns as null.
 */
export async function readEither(
  tx: Tx,
  confirmed: typeof T.mints | typeof T.invoices,
  unconfirmed: typeof T.unconfirmedMints | typeof T.unconfirmedInvoices,
  hash: string,
): Promise<{ row: Row; confirmed: boolean } | undefined> {
  const rows = await tx.query(eitherQuery(tx, confirmed, unconfirmed), [hash]);
  // Never in both tables (a move is one transaction); should a stale copy exist, confirmed wins.
  const raw = rows.find((r) => Number(r[CONFIRMED_FLAG]) === 1) ?? rows[0];
  if (!raw) return undefined;
  const { [CONFIRMED_FLAG]: flag, ...row } = raw;
  return { row, confirmed: Number(flag) === 1 };
}

// ---------------------------------------------------------------- mints

export function mintContentRow(m: MintContent): Row {
  return {
    chain_id: m.chainId,
    title: m.title,
    description: m.description,
    fraction_count: m.fractionCount,
    tags: m.tags,
    metadata: m.metadata,
    requirements: m.requirements,
    lockup_options: m.lockupOptions,
    feed_url: m.feedUrl,
    public_key: m.publicKey,
    contract_of_sale: m.contractOfSale,
    signature_rule: m.signatureRule,
    min_signatures: m.minSignatures,
    asset_managers: m.assetManagers.map((a) => ({ name: a.name, public_key: a.publicKey, url: a.url })),
    owner_address: m.ownerAddress,
  };
}

export function toMint(tx: Tx, table: typeof T.mints | typeof T.unconfirmedMints, raw: unknown): Mint {
  const r = decode(tx, table, raw);
  const managers = (r.asset_managers as { name: string; public_key: string; url: string | null }[]).map((a): AssetManager => ({
    name: a.name,
    publicKey: a.public_key,
    url: a.url ?? null,
  }));
  const confirmed = table === T.mints;
  return {
    hash: r.hash as string,
    status: confirmed ? 'confirmed' : 'unconfirmed',
    chainId: r.chain_id as string,
    title: r.title as string,
    description: r.description as string,
    fractionCount: r.fraction_count as bigint,
    tags: r.tags as string[],
    metadata: (r.metadata ?? null) as JsonDoc,
    requirements: (r.requirements ?? null) as JsonDoc,
    lockupOptions: (r.lockup_options ?? null) as JsonDoc,
    feedUrl: (r.feed_url ?? null) as string | null,
    publicKey: r.public_key as string,
    contractOfSale: (r.contract_of_sale ?? null) as JsonDoc,
    signatureRule: r.signature_rule as SignatureRule,
    minSignatures: (r.min_signatures ?? null) as number | null,
    assetManagers: managers,
    ownerAddress: r.owner_address as string,
    receivedAt: r.received_at as Date,
    onChain: confirmed
      ? {
          txHash: r.tx_hash as string,
          blockHeight: r.block_height as bigint,
          blockHash: r.block_hash as string,
          matchedHeight: r.matched_height as bigint,
          credited: r.credited as boolean,
        }
      : null,
  };
}

// ---------------------------------------------------------------- offers

export function toOffer(tx: Tx, side: OfferSide, raw: unknown): Offer {
  const r = decode(tx, side === 'sell' ? T.sellOffers : T.buyOffers, raw);
  return {
    side,
    hash: r.hash as string,
    chainId: r.chain_id as string,
    mintHash: r.mint_hash as string,
    offererAddress: r.offerer_address as string,
    sellerAddress: (r.seller_address ?? null) as string | null,
    quantity: r.quantity as bigint,
    price: r.price as bigint,
    priceUnit: r.price_unit as string,
    publicKey: r.public_key as string,
    signature: r.signature as string,
    createdAt: r.created_at as Date,
  };
}

// ---------------------------------------------------------------- invoices and escrow

export function toReservation(tx: Tx, raw: unknown): Reservation {
  const r = decode(tx, T.reservations, raw);
  return {
    invoiceHash: r.invoice_hash as string,
    chainId: r.chain_id as string,
    mintHash: r.mint_hash as string,
    sellerAddress: r.seller_address as string,
    quantity: r.quantity as bigint,
    state: r.state as ReservationState,
    expiresAt: r.expires_at as Date,
    createdAt: r.created_at as Date,
  };
}

/**
 * An invoice's status: the stored one once on chain (matched, paid), otherwise the state of
 * its reservation. Expiry and release are recorded on the reservation only, so a reorg that
 * removes the on-chain match never leaves two disagreeing copies of the status.
 */
export function invoiceStatus(stored: 'matched' | 'paid' | null, reservation: Reservation | null): InvoiceStatus {
  if (stored === 'paid') return 'paid';
  const s = reservation?.state;
  if (s === 'expired') return 'expired';
  if (s === 'released') return 'released';
  if (s === 'settled') return 'paid';
  return stored ?? 'open';
}

export function toInvoice(
  tx: Tx,
  table: typeof T.invoices | typeof T.unconfirmedInvoices,
  raw: unknown,
  reservation: Reservation | null,
): Invoice {
  const r = decode(tx, table, raw);
  const onChain = table === T.invoices;
  return {
    hash: r.hash as string,
    chainId: r.chain_id as string,
    mintHash: r.mint_hash as string,
    sellerAddress: r.seller_address as string,
    buyerAddress: r.buyer_address as string,
    quantity: r.quantity as bigint,
    price: r.price as bigint,
    priceUnit: r.price_unit as string,
    totalPrice: r.total_price as bigint,
    paymentAddress: r.payment_address as string,
    publicKey: r.public_key as string,
    signature: r.signature as string,
    createdAt: r.created_at as Date,
    status: invoiceStatus(onChain ? (r.status as 'matched' | 'paid') : null, reservation),
    onChain: onChain
      ? {
          txHash: r.tx_hash as string,
          blockHeight: r.block_height as bigint,
          blockHash: r.block_hash as string,
          paidTxHash: (r.paid_tx_hash ?? null) as string | null,
          paidHeight: (r.paid_height ?? null) as bigint | null,
        }
      : null,
    reservation,
  };
}

export function toLedgerEntry(tx: Tx, raw: unknown): LedgerEntry {
  const r = decode(tx, T.ledger, raw);
  return {
    causeKind: r.cause_kind as LedgerCauseKind,
    causeRef: r.cause_ref as string,
    chainId: r.chain_id as string,
    mintHash: r.mint_hash as string,
    address: r.address as string,
    delta: r.delta as bigint,
    txHash: r.tx_hash as string,
    blockHeight: r.block_height as bigint,
    blockHash: r.block_hash as string,
    createdAt: r.created_at as Date,
  };
}
