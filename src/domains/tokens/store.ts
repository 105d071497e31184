// The token store: mints, offers, invoices with escrow, balances, expiry, retention and stats.
// Construct it with a Tx inside coffer.write/read; every method is part of that one transaction:
//   await coffer.write((tx) => tokens(tx).createInvoice(input), { op: 'tokens.createInvoice' })
// Bad input is a ValidationError naming the field, thrown before the first write. The on-chain
// flows (mint confirmation, invoice match, payment settlement) run in the block processor
// (processors.ts), inside chain ingest.
import type { Tx } from '../../db/tx.js';
import { expireReservations as expire, getReservation } from './escrow.js';
import {
  addInvoiceSignature,
  createInvoice,
  getInvoice,
  listInvoices,
  releaseInvoice,
  signatureStatus,
  type AddSignatureInput,
  type CreateInvoiceOptions,
  type CreateInvoiceResult,
  type ListInvoicesOptions,
} from './invoices.js';
import { balanceOf, balancesOf, entriesOf, holdersOf, type LedgerKey } from './ledger.js';
import { getConfirmedMint, getMint, listMints, submitMint, type ListMintsOptions, type SubmitMintResult } from './mints.js';
import { createOffer, getOffer, listOffers, type ListOffersOptions } from './offers.js';
import { trimOnchainActions, trimUnconfirmedInvoices, trimUnconfirmedMints, type TrimOptions } from './retention.js';
import type { Ctx } from './rows.js';
import { verifySecp256k1 } from './signing.js';
import { stats } from './stats.js';
import type {
  Balance,
  ChainStats,
  Invoice,
  InvoiceInput,
  LedgerEntry,
  Mint,
  MintInput,
  Offer,
  OfferInput,
  OfferSide,
  Reservation,
  SignatureStatus,
  TokenStoreOptions,
} from './types.js';
import {
  addressSchema,
  chainIdSchema,
  dateSchema,
  expireSchema,
  hashSchema,
  invalid,
  ledgerKeySchema,
  offerSideSchema,
  parse,
} from './validate.js';
import { z } from 'zod';
import { pageLimitSchema } from '../../util/zod-parse.js';

const DEFAULT_EXPIRE_LIMIT = 1000;

export class TokenStore {
  readonly #ctx: Ctx;

  constructor(tx: Tx, opts: TokenStoreOptions = {}) {
    const clock = opts.clock ?? (() => new Date());
    this.#ctx = { tx, verify: opts.verifySignature ?? verifySecp256k1, now: clock };
  }

  get #tx(): Tx {
    return this.#ctx.tx;
  }

  // ---------------------------------------------------------------- mints

  /** Stores a signed mint received off chain (unconfirmed until its on-chain transaction). Idempotent. */
  submitMint(input: MintInput): Promise<SubmitMintResult> {
    return submitMint(this.#ctx, input);
  }

  getMint(hash: string): Promise<Mint | undefined> {
    return getMint(this.#tx, parse(hashSchema, hash, 'hash'));
  }

  // The list methods pass on what parse returns, not their input: hashes are normalised to
  // lowercase there, and an uppercase `after` or filter would otherwise repeat rows or find none.
  listMints(o: ListMintsOptions = {}): Promise<Mint[]> {
    const v = parse(
      z
        .object({
          chainId: chainIdSchema.optional(),
          ownerAddress: addressSchema.optional(),
          after: hashSchema.optional(),
          limit: pageLimitSchema,
        })
        .strict(),
      o,
    );
    return listMints(this.#tx, v);
  }

  // ---------------------------------------------------------------- offers

  createSellOffer(input: OfferInput): Promise<{ hash: string; created: boolean }> {
    return createOffer(this.#ctx, 'sell', input);
  }

  createBuyOffer(input: OfferInput): Promise<{ hash: string; created: boolean }> {
    return createOffer(this.#ctx, 'buy', input);
  }

  getOffer(side: OfferSide, hash: string): Promise<Offer | undefined> {
    return getOffer(this.#tx, parse(offerSideSchema, side, 'side'), parse(hashSchema, hash, 'hash'));
  }

  listOffers(side: OfferSide, mintHash: string, o: ListOffersOptions = {}): Promise<Offer[]> {
    const s = parse(offerSideSchema, side, 'side');
    const v = parse(
      z.object({ after: z.object({ createdAt: dateSchema, hash: hashSchema }).strict().optional(), limit: pageLimitSchema }).strict(),
      o,
    );
    return listOffers(this.#tx, s, parse(hashSchema, mintHash, 'mintHash'), v);
  }

  // ---------------------------------------------------------------- invoices and escrow

  /** Stores an invoice and reserves the seller's tokens, or throws InsufficientBalanceError and writes nothing. */
  createInvoice(input: InvoiceInput, opts?: CreateInvoiceOptions): Promise<CreateInvoiceResult> {
    return createInvoice(this.#ctx, input, opts);
  }

  getInvoice(hash: string): Promise<Invoice | undefined> {
    return getInvoice(this.#tx, parse(hashSchema, hash, 'hash'));
  }

  listInvoices(o: ListInvoicesOptions = {}): Promise<Invoice[]> {
    const v = parse(
      z
        .object({
          chainId: chainIdSchema.optional(),
          buyerAddress: addressSchema.optional(),
          sellerAddress: addressSchema.optional(),
          mintHash: hashSchema.optional(),
          after: hashSchema.optional(),
          limit: pageLimitSchema,
        })
        .strict(),
      o,
    );
    return listInvoices(this.#tx, v);
  }

  addInvoiceSignature(input: AddSignatureInput): Promise<{ created: boolean; status: SignatureStatus }> {
    return addInvoiceSignature(this.#ctx, input);
  }

  async signatureStatus(invoiceHash: string): Promise<SignatureStatus> {
    const invoice = await this.getInvoice(invoiceHash);
    if (!invoice) invalid('invoiceHash', `unknown invoice ${invoiceHash}`);
    const mint = await getConfirmedMint(this.#tx, invoice.mintHash);
    if (!mint) invalid('invoiceHash', `the invoice's mint ${invoice.mintHash} is not confirmed`);
    return signatureStatus(this.#tx, invoice.hash, mint);
  }

  /** Cancels an unconfirmed invoice and releases its reservation. */
  releaseInvoice(hash: string): Promise<void> {
    return releaseInvoice(this.#ctx, parse(hashSchema, hash, 'hash'));
  }

  async getReservation(invoiceHash: string): Promise<Reservation | undefined> {
    return getReservation(this.#tx, parse(hashSchema, invoiceHash, 'invoiceHash'));
  }

  /**
   * Expires reservations past their expiry whose invoice was never paid (unconfirmed or matched
   * on chain). Returns the invoice hashes expired; run it periodically from any number of workers.
   */
  async expireReservations(o: { now?: Date; limit?: number } = {}): Promise<string[]> {
    this.#tx.assertWritable('tokens.expireReservations');
    const v = parse(expireSchema, o);
    return expire(this.#tx, v.now ?? this.#ctx.now(), v.limit ?? DEFAULT_EXPIRE_LIMIT);
  }

  // ---------------------------------------------------------------- balances

  balance(mintHash: string, address: string): Promise<Balance> {
    return balanceOf(this.#tx, parse(hashSchema, mintHash, 'mintHash'), parse(addressSchema, address, 'address'));
  }

  /** An address's balance in each mint it holds, in mint-hash order, keyset-paged by mint hash (`after`), 1..1000 per page. */
  balances(address: string, o: { after?: string; limit?: number } = {}): Promise<Balance[]> {
    const v = parse(z.object({ after: hashSchema.optional(), limit: pageLimitSchema }).strict(), o);
    return balancesOf(this.#tx, parse(addressSchema, address, 'address'), v);
  }

  /** Every holder of a mint, in address order, keyset-paged by address (`after`), 1..1000 per page. */
  holders(mintHash: string, o: { after?: string; limit?: number } = {}): Promise<Balance[]> {
    const v = parse(z.object({ after: addressSchema.optional(), limit: pageLimitSchema }).strict(), o);
    return holdersOf(this.#tx, parse(hashSchema, mintHash, 'mintHash'), v);
  }

  /** A holder's ledger entries, oldest block first, keyset-paged by (block height, cause) (`after`), 1..1000 per page. */
  ledger(mintHash: string, address: string, o: { after?: LedgerKey; limit?: number } = {}): Promise<LedgerEntry[]> {
    const v = parse(z.object({ after: ledgerKeySchema.optional(), limit: pageLimitSchema }).strict(), o);
    return entriesOf(this.#tx, parse(hashSchema, mintHash, 'mintHash'), parse(addressSchema, address, 'address'), v);
  }

  // ---------------------------------------------------------------- retention and stats

  trimUnconfirmedMints(o: TrimOptions): Promise<number> {
    return trimUnconfirmedMints(this.#tx, o);
  }

  trimUnconfirmedInvoices(o: TrimOptions): Promise<number> {
    return trimUnconfirmedInvoices(this.#tx, o);
  }

  trimOnchainActions(o: { chainId: string; belowHeight: bigint; limit?: number }): Promise<number> {
    return trimOnchainActions(this.#tx, o);
  }

  stats(chainId?: string): Promise<ChainStats[]> {
    return stats(this.#tx, chainId === undefined ? undefined : parse(chainIdSchema, chainId, 'chainId'));
  }
}

export function tokens(tx: Tx, opts?: TokenStoreOptions): TokenStore {
  return new TokenStore(tx, opts);
}
