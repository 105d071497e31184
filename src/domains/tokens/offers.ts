// Sell and buy offers: signed trading intents on a confirmed and final (credited) mint, unique
// by content hash and listed by mint. They reserve nothing; an invoice does.
import { keysetAfter } from '../../db/keyset.js';
import type { Tx } from '../../db/tx.js';
import { enc, toOffer, type Ctx } from './rows.js';
import { getConfirmedMint } from './mints.js';
import { T, type Offer, type OfferInput, type OfferSide } from './types.js';
import { invalid, offerHash, offerInputSchema, parse } from './validate.js';

const table = (side: OfferSide) => (side === 'sell' ? T.sellOffers : T.buyOffers);

export async function createOffer(ctx: Ctx, side: OfferSide, input: OfferInput): Promise<{ hash: string; created: boolean }> {
  const { tx } = ctx;
  tx.assertWritable(`tokens.create${side === 'sell' ? 'Sell' : 'Buy'}Offer`);
  const v = parse(offerInputSchema, input);
  if (side === 'buy' && v.sellerAddress === undefined) invalid('sellerAddress', 'is required on a buy offer');
  if (side === 'sell' && v.sellerAddress !== undefined) invalid('sellerAddress', 'is only allowed on a buy offer');
  const content = {
    side,
    chainId: v.chainId,
    mintHash: v.mintHash,
    offererAddress: v.offererAddress,
    sellerAddress: v.sellerAddress ?? null,
    quantity: v.quantity,
    price: v.price,
    priceUnit: v.priceUnit,
    publicKey: v.publicKey,
    // Signed, so required (validate.ts): a time chosen here could not match any signature.
    createdAt: v.createdAt,
  };
  const hash = offerHash(content);
  if (!ctx.verify(v.publicKey, hash, v.signature)) invalid('signature', `does not verify against publicKey over the offer hash ${hash}`);
  const mint = await getConfirmedMint(tx, v.mintHash);
  if (!mint) invalid('mintHash', `unknown mint ${v.mintHash} (not confirmed on chain)`);
  // Final, as for an invoice (whose reservation needs the owner's credit): offers are not
  // journaled, so one on a mint a reorg can still take back would be left pointing at an
  // unconfirmed mint.
  if (!mint.onChain?.credited)
    invalid('mintHash', `mint ${v.mintHash} is not final yet (its block lacks the chain's required confirmations)`);
  if (mint.chainId !== v.chainId) invalid('chainId', `mint ${v.mintHash} is on chain ${mint.chainId}`);
  if (v.quantity > mint.fractionCount) invalid('quantity', `exceeds the mint's fraction count ${mint.fractionCount}`);
  const row: Record<string, unknown> = {
    hash,
    chain_id: v.chainId,
    mint_hash: v.mintHash,
    offerer_address: v.offererAddress,
    quantity: v.quantity,
    price: v.price,
    price_unit: v.priceUnit,
    public_key: v.publicKey,
    signature: v.signature,
    created_at: v.createdAt,
  };
  if (side === 'buy') row.seller_address = v.sellerAddress;
  const created = await tx.insertOrIgnore(table(side), row, ['hash']);
  return { hash, created };
}

export async function getOffer(tx: Tx, side: OfferSide, hash: string): Promise<Offer | undefined> {
  const raw = await tx.db.selectFrom(table(side)).selectAll().where('hash', '=', hash).executeTakeFirst();
  return raw ? toOffer(tx, side, raw) : undefined;
}

export interface ListOffersOptions {
  /** Keyset: offers strictly after this (createdAt, hash), the last one of the previous page. */
  after?: { createdAt: Date; hash: string };
  /** 1..1000, default 100. */
  limit?: number;
}

/** Offers on one mint, oldest first. */
export async function listOffers(tx: Tx, side: OfferSide, mintHash: string, o: ListOffersOptions = {}): Promise<Offer[]> {
  const t = table(side);
  let q = tx.db
    .selectFrom(t)
    .selectAll()
    .where('mint_hash', '=', mintHash)
    .orderBy('created_at')
    .orderBy('hash')
    .limit(o.limit ?? 100);
  if (o.after) {
    const at = enc(tx, t, 'created_at', o.after.createdAt);
    const h = o.after.hash;
    q = q.where((eb) =>
      keysetAfter(eb, [
        { column: 'created_at', value: at },
        { column: 'hash', value: h },
      ]),
    );
  }
  return (await q.execute()).map((r) => toOffer(tx, side, r));
}
