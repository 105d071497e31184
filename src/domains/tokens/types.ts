// What the token domain takes and returns. Amounts are bigint (fractions, base units), hashes
// are lowercase hex, times are Date; rows are decoded through the table codecs, so these are
// exact on every backend.

/** Table names of the token domain. */
export const T = {
  unconfirmedMints: 'token_unconfirmed_mints',
  mints: 'token_mints',
  sellOffers: 'token_sell_offers',
  buyOffers: 'token_buy_offers',
  unconfirmedInvoices: 'token_unconfirmed_invoices',
  invoices: 'token_invoices',
  signatures: 'token_invoice_signatures',
  ledger: 'token_ledger',
  balances: 'token_balances',
  reservations: 'token_reservations',
  payments: 'token_payments',
  actions: 'token_onchain_actions',
} as const;

export type SignatureRule = 'none' | 'all' | 'one' | 'min';

export interface AssetManager {
  name: string;
  /** Compressed secp256k1 public key, 66 hex characters. */
  publicKey: string;
  url: string | null;
}

/** JSON documents carried by mints: canonical JSON values (no floats). */
export type JsonDoc = null | boolean | number | string | JsonDoc[] | { [key: string]: JsonDoc };

/** Amounts may be given as bigint, a safe integer number, or a decimal string. */
export type AmountInput = bigint | number | string;

export interface MintInput {
  chainId: string;
  title: string;
  description: string;
  fractionCount: AmountInput;
  tags?: string[];
  metadata?: JsonDoc;
  requirements?: JsonDoc;
  lockupOptions?: JsonDoc;
  feedUrl?: string | null;
  /** The minter's compressed public key. */
  publicKey: string;
  contractOfSale?: JsonDoc;
  signatureRule?: SignatureRule;
  /** Required with signatureRule 'min' (1..managers), absent otherwise. */
  minSignatures?: number | null;
  assetManagers?: AssetManager[];
  /** Credited with the full fraction count once the mint is confirmed; part of the signed content. */
  ownerAddress: string;
}

export interface MintContent {
  chainId: string;
  title: string;
  description: string;
  fractionCount: bigint;
  tags: string[];
  metadata: JsonDoc;
  requirements: JsonDoc;
  lockupOptions: JsonDoc;
  feedUrl: string | null;
  publicKey: string;
  contractOfSale: JsonDoc;
  signatureRule: SignatureRule;
  minSignatures: number | null;
  assetManagers: AssetManager[];
  ownerAddress: string;
}

export interface Mint extends MintContent {
  hash: string;
  status: 'unconfirmed' | 'confirmed';
  receivedAt: Date;
  /** Set once confirmed on chain. */
  onChain: {
    txHash: string;
    blockHeight: bigint;
    blockHash: string;
    matchedHeight: bigint;
    /** The owner has been credited (the matching block reached the required confirmations). */
    credited: boolean;
  } | null;
}

export type OfferSide = 'sell' | 'buy';

export interface OfferInput {
  chainId: string;
  mintHash: string;
  offererAddress: string;
  quantity: AmountInput;
  /** Base units per fraction. */
  price: AmountInput;
  /** The base unit price is counted in, e.g. "koinu". */
  priceUnit: string;
  publicKey: string;
  /** Signature over the offer's content hash (see signing.ts). */
  signature: string;
  /** Buy offers only: the holder the buyer wants to buy from. */
  sellerAddress?: string;
  /** Signed (part of the offer's hash), so required: the server cannot choose it. */
  createdAt: Date;
}

export interface Offer {
  side: OfferSide;
  hash: string;
  chainId: string;
  mintHash: string;
  offererAddress: string;
  sellerAddress: string | null;
  quantity: bigint;
  price: bigint;
  priceUnit: string;
  publicKey: string;
  signature: string;
  createdAt: Date;
}

export interface InvoiceInput {
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  buyerAddress: string;
  quantity: AmountInput;
  /** Base units per fraction. */
  price: AmountInput;
  priceUnit: string;
  /** Where the buyer pays quantity × price. */
  paymentAddress: string;
  /** The seller's key; the signature is over the invoice's content hash. */
  publicKey: string;
  signature: string;
  /** Part of the signed content: distinguishes otherwise identical invoices. */
  createdAt: Date;
}

/**
 * open: unconfirmed with an active reservation; matched: anchored on chain, awaiting payment;
 * paid: settled; expired / released: the reservation ended without payment.
 */
export type InvoiceStatus = 'open' | 'matched' | 'paid' | 'expired' | 'released';

export interface Invoice {
  hash: string;
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  buyerAddress: string;
  quantity: bigint;
  price: bigint;
  priceUnit: string;
  totalPrice: bigint;
  paymentAddress: string;
  publicKey: string;
  signature: string;
  createdAt: Date;
  status: InvoiceStatus;
  onChain: { txHash: string; blockHeight: bigint; blockHash: string; paidTxHash: string | null; paidHeight: bigint | null } | null;
  reservation: Reservation | null;
}

export type ReservationState = 'reserved' | 'settled' | 'released' | 'expired';

export interface Reservation {
  invoiceHash: string;
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  quantity: bigint;
  state: ReservationState;
  expiresAt: Date;
  createdAt: Date;
}

export interface Balance {
  mintHash: string;
  address: string;
  /** Sum of the holder's ledger entries. */
  balance: bigint;
  /** Held by active reservations (state reserved). */
  reserved: bigint;
  /** balance - reserved: what a new invoice may reserve. */
  available: bigint;
}

export type LedgerCauseKind = 'mint_credit' | 'sale_credit' | 'sale_debit';

export interface LedgerEntry {
  causeKind: LedgerCauseKind;
  causeRef: string;
  chainId: string;
  mintHash: string;
  address: string;
  delta: bigint;
  txHash: string;
  blockHeight: bigint;
  blockHash: string;
  createdAt: Date;
}

export interface SignatureStatus {
  rule: SignatureRule;
  /** Signatures needed (0 for none). */
  required: number;
  /** Valid signatures from distinct asset managers. */
  present: number;
  satisfied: boolean;
}

export interface ChainStats {
  chainId: string;
  mints: number;
  unconfirmedMints: number;
  invoices: number;
  unconfirmedInvoices: number;
  /** Token actions (mint, invoice, payment transactions) seen on chain. */
  onchainTransactions: number;
}

/** Verifies `signature` (hex) by `publicKey` (hex) over the 32-byte content hash `hash` (hex). */
export type SignatureVerifier = (publicKey: string, hash: string, signature: string) => boolean;

export interface TokenStoreOptions {
  /** Defaults to ECDSA secp256k1 over SHA-256 of the hash bytes (signing.ts). */
  verifySignature?: SignatureVerifier;
  /** Source of "now" (tests pin it). */
  clock?: () => Date;
}
