// tokens/0001_init: mints, offers, invoices, the balance ledger, escrow reservations and the
// on-chain token actions seen by the block processor. Amounts are int64 (`bigint`): fraction
// counts and quantities are bounded by int64 by definition, and payment values are base units
// of a UTXO chain whose per-transaction value is capped far below 2^63 (Dogecoin MAX_MONEY is
// 10^18 koinu), so no column needs uint256. Every content-addressed row is keyed by its hash.
// No foreign keys to other domains' tables (chain blocks are referenced by height and hash).
import { c, createTable, type ColSpec } from '../../schema/builder.js';
import { defineMigration } from '../../migrations/migration.js';

const D = 'tokens';

// The signed content of a mint (see validate.ts: mintContent), shared by both mint tables.
const mintContent = (): Record<string, ColSpec> => ({
  chain_id: c.varchar(64),
  title: c.varchar(200),
  description: c.text(),
  fraction_count: c.bigint(),
  tags: c.json(),
  metadata: c.json({ nullable: true }),
  requirements: c.json({ nullable: true }),
  lockup_options: c.json({ nullable: true }),
  feed_url: c.varchar(2048, { nullable: true }),
  public_key: c.hex(66),
  contract_of_sale: c.json({ nullable: true }),
  signature_rule: c.enum(['none', 'all', 'one', 'min']),
  min_signatures: c.int({ nullable: true }),
  asset_managers: c.json(),
  owner_address: c.varchar(128),
});

const mintChecks = (t: string) => ({
  [`ck_${t}_fraction_count`]: 'fraction_count > 0',
  [`ck_${t}_min_signatures`]: "(signature_rule = 'min' AND min_signatures >= 1) OR (signature_rule <> 'min' AND min_signatures IS NULL)",
});

// The signed content of an invoice, shared by both invoice tables.
const invoiceContent = (): Record<string, ColSpec> => ({
  chain_id: c.varchar(64),
  mint_hash: c.hex(64),
  seller_address: c.varchar(128),
  buyer_address: c.varchar(128),
  quantity: c.bigint(),
  /** Base units of the chain's coin per fraction; the unit is named in price_unit. */
  price: c.bigint(),
  price_unit: c.varchar(16),
  /** quantity × price, what the payment must pay to payment_address exactly. */
  total_price: c.bigint(),
  payment_address: c.varchar(128),
  public_key: c.hex(66),
  signature: c.hexUpTo(144),
  /** Signed by the seller (part of the hash); received_at is ours and drives retention. */
  created_at: c.timestamp(),
  received_at: c.timestamp(),
});

const invoiceChecks = (t: string) => ({
  [`ck_${t}_amounts`]: 'quantity > 0 AND price > 0 AND total_price = quantity * price',
  [`ck_${t}_parties`]: 'buyer_address <> seller_address',
});

const offerContent = (): Record<string, ColSpec> => ({
  chain_id: c.varchar(64),
  mint_hash: c.hex(64),
  offerer_address: c.varchar(128),
  quantity: c.bigint(),
  price: c.bigint(),
  price_unit: c.varchar(16),
  public_key: c.hex(66),
  signature: c.hexUpTo(144),
  created_at: c.timestamp(),
});

export default defineMigration(import.meta.url, {
  domain: D,
  version: 1,
  name: 'init',
  ops: [
    createTable('token_unconfirmed_mints', {
      domain: D,
      columns: { hash: c.hex(64), ...mintContent(), received_at: c.timestamp() },
      primaryKey: ['hash'],
      indexes: {
        ix_token_unconfirmed_mints_age: ['received_at', 'hash'],
        ix_token_unconfirmed_mints_chain: ['chain_id'],
      },
      checks: mintChecks('token_unconfirmed_mints'),
    }),
    createTable('token_mints', {
      domain: D,
      columns: {
        hash: c.hex(64),
        ...mintContent(),
        received_at: c.timestamp(),
        tx_hash: c.hex(64),
        /** Height of the anchoring transaction. */
        block_height: c.bigint(),
        block_hash: c.hex(64),
        /** The block whose processing matched the mint (later than block_height when the content arrived late). */
        matched_height: c.bigint(),
        matched_block_hash: c.hex(64),
        credited: c.bool({ default: false }),
      },
      primaryKey: ['hash'],
      unique: { uq_token_mints_tx: ['chain_id', 'tx_hash'] },
      indexes: {
        ix_token_mints_credit_due: ['chain_id', 'credited', 'matched_height'],
        ix_token_mints_owner: ['owner_address'],
      },
      checks: { ...mintChecks('token_mints'), ck_token_mints_heights: 'block_height >= 0 AND matched_height >= block_height' },
    }),
    createTable('token_sell_offers', {
      domain: D,
      columns: { hash: c.hex(64), ...offerContent() },
      primaryKey: ['hash'],
      indexes: { ix_token_sell_offers_mint: ['mint_hash', 'created_at', 'hash'] },
      checks: { ck_token_sell_offers_amounts: 'quantity > 0 AND price > 0' },
    }),
    createTable('token_buy_offers', {
      domain: D,
      columns: { hash: c.hex(64), ...offerContent(), seller_address: c.varchar(128) },
      primaryKey: ['hash'],
      indexes: { ix_token_buy_offers_mint: ['mint_hash', 'created_at', 'hash'] },
      checks: { ck_token_buy_offers_amounts: 'quantity > 0 AND price > 0' },
    }),
    createTable('token_unconfirmed_invoices', {
      domain: D,
      columns: { hash: c.hex(64), ...invoiceContent() },
      primaryKey: ['hash'],
      indexes: {
        ix_token_unconfirmed_invoices_age: ['received_at', 'hash'],
        ix_token_unconfirmed_invoices_mint: ['mint_hash'],
        ix_token_unconfirmed_invoices_chain: ['chain_id'],
      },
      checks: invoiceChecks('token_unconfirmed_invoices'),
    }),
    createTable('token_invoices', {
      domain: D,
      columns: {
        hash: c.hex(64),
        ...invoiceContent(),
        tx_hash: c.hex(64),
        block_height: c.bigint(),
        block_hash: c.hex(64),
        matched_height: c.bigint(),
        matched_block_hash: c.hex(64),
        /** Block-derived only; expiry is recorded on the reservation (see rows.ts invoiceStatus). */
        status: c.enum(['matched', 'paid']),
        paid_tx_hash: c.hex(64, { nullable: true }),
        paid_height: c.bigint({ nullable: true }),
      },
      primaryKey: ['hash'],
      unique: { uq_token_invoices_tx: ['chain_id', 'tx_hash'] },
      indexes: {
        ix_token_invoices_chain_status: ['chain_id', 'status'],
        ix_token_invoices_buyer: ['buyer_address'],
        ix_token_invoices_seller: ['seller_address'],
        ix_token_invoices_mint: ['mint_hash'],
      },
      checks: invoiceChecks('token_invoices'),
    }),
    createTable('token_invoice_signatures', {
      domain: D,
      columns: { invoice_hash: c.hex(64), public_key: c.hex(66), signature: c.hexUpTo(144), created_at: c.timestamp() },
      primaryKey: ['invoice_hash', 'public_key'],
    }),
    // Append-only: a row is never updated; only a reorg (through the undo journal) removes one.
    createTable('token_ledger', {
      domain: D,
      columns: {
        cause_kind: c.enum(['mint_credit', 'sale_credit', 'sale_debit']),
        /** The mint hash (mint_credit) or the invoice hash (sale_*). */
        cause_ref: c.varchar(128),
        chain_id: c.varchar(64),
        mint_hash: c.hex(64),
        address: c.varchar(128),
        delta: c.bigint(),
        tx_hash: c.hex(64),
        block_height: c.bigint(),
        block_hash: c.hex(64),
        created_at: c.timestamp(),
      },
      primaryKey: ['cause_kind', 'cause_ref'],
      indexes: { ix_token_ledger_holder: ['mint_hash', 'address'], ix_token_ledger_block: ['chain_id', 'block_height'] },
      checks: { ck_token_ledger_delta: 'delta <> 0' },
    }),
    // Cache of SUM(token_ledger.delta) per holder, written in the same transaction as the
    // ledger row; also the row reservations lock to serialise reserving the same tokens.
    createTable('token_balances', {
      domain: D,
      columns: { mint_hash: c.hex(64), address: c.varchar(128), chain_id: c.varchar(64), balance: c.bigint(), updated_height: c.bigint() },
      primaryKey: ['mint_hash', 'address'],
      indexes: { ix_token_balances_address: ['address'] },
      checks: { ck_token_balances_balance: 'balance >= 0' },
    }),
    createTable('token_reservations', {
      domain: D,
      columns: {
        invoice_hash: c.hex(64),
        chain_id: c.varchar(64),
        mint_hash: c.hex(64),
        seller_address: c.varchar(128),
        quantity: c.bigint(),
        state: c.enum(['reserved', 'settled', 'released', 'expired']),
        expires_at: c.timestamp(),
        created_at: c.timestamp(),
      },
      primaryKey: ['invoice_hash'],
      indexes: {
        ix_token_reservations_holder: ['mint_hash', 'seller_address', 'state'],
        ix_token_reservations_expiry: ['state', 'expires_at'],
      },
      checks: { ck_token_reservations_quantity: 'quantity > 0' },
    }),
    createTable('token_payments', {
      domain: D,
      columns: {
        invoice_hash: c.hex(64),
        chain_id: c.varchar(64),
        tx_hash: c.hex(64),
        /** Height of the paying transaction. */
        block_height: c.bigint(),
        block_hash: c.hex(64),
        /** The block whose processing accepted the payment; settlement waits for its depth. */
        recorded_height: c.bigint(),
        recorded_block_hash: c.hex(64),
        amount: c.bigint(),
        state: c.enum(['pending', 'settled']),
      },
      primaryKey: ['invoice_hash'],
      unique: { uq_token_payments_tx: ['chain_id', 'tx_hash'] },
      indexes: { ix_token_payments_due: ['chain_id', 'state', 'recorded_height'] },
      checks: { ck_token_payments_amount: 'amount > 0', ck_token_payments_heights: 'recorded_height >= block_height' },
    }),
    createTable('token_onchain_actions', {
      domain: D,
      columns: {
        chain_id: c.varchar(64),
        tx_hash: c.hex(64),
        action_type: c.enum(['mint', 'invoice', 'payment']),
        action_version: c.int({ nullable: true }),
        /** The content hash the payload names; null when the payload was malformed. */
        ref_hash: c.hex(64, { nullable: true }),
        block_height: c.bigint(),
        block_hash: c.hex(64),
        index_in_block: c.int(),
        /** Payments only: [{ address, value }] with values as decimal strings. */
        outputs: c.json({ nullable: true }),
        state: c.enum(['pending', 'applied', 'rejected']),
        reason: c.varchar(200, { nullable: true }),
      },
      primaryKey: ['chain_id', 'tx_hash'],
      indexes: {
        ix_token_onchain_actions_state: ['chain_id', 'state', 'block_height', 'index_in_block'],
        ix_token_onchain_actions_ref: ['ref_hash'],
        ix_token_onchain_actions_height: ['chain_id', 'block_height'],
      },
    }),
  ],
});
