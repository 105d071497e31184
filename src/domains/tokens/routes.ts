// HTTP routes of the token domain. Token rows live in the database of their chain (the
// per-chain map), so writes route by the body's chainId and reads by ?chainId= (default
// database when absent). Every write appends its audit entry in the same transaction.
import { z } from 'zod';
import { NotFoundError } from '../../db/errors.js';
import type { Tx } from '../../db/tx.js';
import { decodeCursor, pageOf, pageQuery } from '../../server/pagination.js';
import { route, type RouteContext, type RouteSpec } from '../../server/route.js';
import { actorOf, type Services } from '../../server/services.js';
import { chainIdParam, hex32, int64Text, isoTime } from '../../server/wire.js';
import { audit, type AuditInput } from '../audit/log.js';
import { tokens } from './store.js';

/** Amounts arrive as decimal strings; the store validates range and sign, naming the field. */
const amountIn = z.string().max(80);
const jsonDoc: z.ZodType<unknown> = z.unknown();
const address = z.string().min(1).max(128);

const mintIn = z
  .object({
    chainId: chainIdParam,
    title: z.string(),
    description: z.string(),
    fractionCount: amountIn,
    tags: z.array(z.string()).optional(),
    metadata: jsonDoc.optional(),
    requirements: jsonDoc.optional(),
    lockupOptions: jsonDoc.optional(),
    feedUrl: z.string().nullable().optional(),
    publicKey: z.string(),
    contractOfSale: jsonDoc.optional(),
    signatureRule: z.enum(['none', 'all', 'one', 'min']).optional(),
    minSignatures: z.number().int().nullable().optional(),
    assetManagers: z.array(z.object({ name: z.string(), publicKey: z.string(), url: z.string().nullable() }).strict()).optional(),
    ownerAddress: address,
  })
  .strict();

const offerIn = z
  .object({
    chainId: chainIdParam,
    mintHash: hex32,
    offererAddress: address,
    quantity: amountIn,
    price: amountIn,
    priceUnit: z.string(),
    publicKey: z.string(),
    signature: z.string(),
    sellerAddress: address.optional(),
    createdAt: isoTime,
  })
  .strict();

const invoiceIn = z
  .object({
    chainId: chainIdParam,
    mintHash: hex32,
    sellerAddress: address,
    buyerAddress: address,
    quantity: amountIn,
    price: amountIn,
    priceUnit: z.string(),
    paymentAddress: address,
    publicKey: z.string(),
    signature: z.string(),
    createdAt: isoTime,
  })
  .strict();

const chainQuery = { chainId: chainIdParam.optional() };
const hashParams = z.object({ hash: hex32 }).strict();
const any = z.object({}).passthrough();
const hashCursor = z.object({ h: hex32 });
/**
 * A ledger entry's sort key: block height (int64 text), cause kind and cause ref (a content
 * hash: the mint's for mint_credit, the invoice's for a sale).
 */
const ledgerCursor = z.object({
  h: int64Text('a block height'),
  k: z.enum(['mint_credit', 'sale_credit', 'sale_debit']),
  r: hex32,
});

/** The database holding a chain's token rows. */
function db(services: Services, chainId: string | undefined) {
  return chainId ? services.chains.for(chainId) : services.coffer;
}

async function audited<T>(
  tx: Tx,
  ctx: Pick<RouteContext<unknown, unknown, unknown>, 'principal'>,
  entry: Omit<AuditInput, 'actor' | 'domain'>,
  result: T,
): Promise<T> {
  await audit(tx).record({ ...entry, actor: actorOf(ctx.principal), domain: 'tokens' });
  return result;
}

function notFound(what: string, hash: string): never {
  throw new NotFoundError(`${what} ${hash} not found`, { field: 'hash' });
}

export function tokenRoutes(): RouteSpec[] {
  return [
    route({
      method: 'POST',
      url: '/v1/tokens/mints',
      summary: 'Submit a signed mint (unconfirmed until its on-chain transaction); idempotent on its content hash',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'write' },
      body: mintIn,
      response: z.object({ hash: z.string(), status: z.string(), created: z.boolean() }),
      status: 201,
      handler: (ctx) =>
        db(ctx.services, ctx.body.chainId).write(
          async (tx) => {
            const r = await tokens(tx).submitMint(ctx.body as Parameters<ReturnType<typeof tokens>['submitMint']>[0]);
            return r.created
              ? audited(
                  tx,
                  ctx,
                  {
                    action: 'tokens.mint.submit',
                    entity: 'mint',
                    entityId: r.hash,
                    details: { chainId: ctx.body.chainId, title: ctx.body.title },
                  },
                  r,
                )
              : r;
          },
          { op: 'tokens.submitMint' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/mints',
      summary: 'List mints (optionally of a chain or owner), cursor-paginated by hash',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      query: z.object({ ...chainQuery, ownerAddress: address.optional(), ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ query, services }) =>
        db(services, query.chainId).read(
          async (tx) => {
            const after = decodeCursor(query.cursor, hashCursor)?.h;
            const rows = await tokens(tx).listMints({
              ...(query.chainId ? { chainId: query.chainId } : {}),
              ...(query.ownerAddress ? { ownerAddress: query.ownerAddress } : {}),
              ...(after ? { after } : {}),
              limit: Math.min(1000, query.limit + 1),
            });
            return pageOf(rows, query.limit, (m) => ({ h: m.hash }));
          },
          { op: 'tokens.listMints' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/mints/:hash',
      summary: 'A mint by content hash',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: hashParams,
      query: z.object(chainQuery).strict(),
      response: any,
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(async (tx) => (await tokens(tx).getMint(params.hash)) ?? notFound('mint', params.hash), {
          op: 'tokens.getMint',
        }),
    }),
    route({
      method: 'POST',
      url: '/v1/tokens/offers/:side',
      summary: 'Create a signed sell or buy offer; idempotent on its hash',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'write' },
      params: z.object({ side: z.enum(['sell', 'buy']) }).strict(),
      body: offerIn,
      response: z.object({ hash: z.string(), created: z.boolean() }),
      status: 201,
      handler: (ctx) =>
        db(ctx.services, ctx.body.chainId).write(
          async (tx) => {
            const store = tokens(tx);
            const r = ctx.params.side === 'sell' ? await store.createSellOffer(ctx.body) : await store.createBuyOffer(ctx.body);
            return r.created
              ? audited(
                  tx,
                  ctx,
                  {
                    action: `tokens.${ctx.params.side}_offer.create`,
                    entity: 'offer',
                    entityId: r.hash,
                    details: { mintHash: ctx.body.mintHash },
                  },
                  r,
                )
              : r;
          },
          { op: 'tokens.createOffer' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/mints/:hash/offers/:side',
      summary: 'Offers of a mint, oldest first, cursor-paginated',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: z.object({ hash: hex32, side: z.enum(['sell', 'buy']) }).strict(),
      query: z.object({ ...chainQuery, ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(
          async (tx) => {
            const c = decodeCursor(query.cursor, z.object({ t: z.number().int(), h: hex32 }));
            const rows = await tokens(tx).listOffers(params.side, params.hash, {
              ...(c ? { after: { createdAt: new Date(c.t), hash: c.h } } : {}),
              limit: Math.min(1000, query.limit + 1),
            });
            return pageOf(rows, query.limit, (o) => ({ t: o.createdAt.getTime(), h: o.hash }));
          },
          { op: 'tokens.listOffers' },
        ),
    }),
    route({
      method: 'POST',
      url: '/v1/tokens/invoices',
      summary: "Create a signed invoice and reserve the seller's tokens (409/422 when the available balance does not cover it)",
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'write' },
      body: invoiceIn,
      query: z
        .object({
          ttlMs: z.coerce
            .number()
            .int()
            .min(1000)
            .max(30 * 86_400_000)
            .optional(),
        })
        .strict(),
      response: any,
      status: 201,
      handler: (ctx) =>
        db(ctx.services, ctx.body.chainId).write(
          async (tx) => {
            const r = await tokens(tx).createInvoice(ctx.body, ctx.query.ttlMs ? { ttlMs: ctx.query.ttlMs } : undefined);
            return r.created
              ? audited(
                  tx,
                  ctx,
                  {
                    action: 'tokens.invoice.create',
                    entity: 'invoice',
                    entityId: r.hash,
                    details: { mintHash: ctx.body.mintHash, quantity: ctx.body.quantity, seller: ctx.body.sellerAddress },
                  },
                  r,
                )
              : r;
          },
          { op: 'tokens.createInvoice' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/invoices',
      summary: 'List invoices (by chain, buyer, seller or mint), cursor-paginated by hash',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      query: z
        .object({
          ...chainQuery,
          buyerAddress: address.optional(),
          sellerAddress: address.optional(),
          mintHash: hex32.optional(),
          ...pageQuery,
        })
        .strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ query, services }) =>
        db(services, query.chainId).read(
          async (tx) => {
            const after = decodeCursor(query.cursor, hashCursor)?.h;
            const { cursor: _c, limit, ...filters } = query;
            const rows = await tokens(tx).listInvoices({
              ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined)),
              ...(after ? { after } : {}),
              limit: Math.min(1000, limit + 1),
            });
            return pageOf(rows, limit, (i) => ({ h: i.hash }));
          },
          { op: 'tokens.listInvoices' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/invoices/:hash',
      summary: 'An invoice with its reservation and on-chain state',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: hashParams,
      query: z.object(chainQuery).strict(),
      response: any,
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(async (tx) => (await tokens(tx).getInvoice(params.hash)) ?? notFound('invoice', params.hash), {
          op: 'tokens.getInvoice',
        }),
    }),
    route({
      method: 'POST',
      url: '/v1/tokens/invoices/:hash/signatures',
      summary: "Add an asset manager's signature to an invoice (unique per invoice and key)",
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'write' },
      params: hashParams,
      query: z.object(chainQuery).strict(),
      body: z.object({ publicKey: z.string(), signature: z.string() }).strict(),
      response: any,
      handler: (ctx) =>
        db(ctx.services, ctx.query.chainId).write(
          async (tx) => {
            const r = await tokens(tx).addInvoiceSignature({ invoiceHash: ctx.params.hash, ...ctx.body });
            return r.created
              ? audited(
                  tx,
                  ctx,
                  {
                    action: 'tokens.invoice.sign',
                    entity: 'invoice',
                    entityId: ctx.params.hash,
                    details: { publicKey: ctx.body.publicKey },
                  },
                  r,
                )
              : r;
          },
          { op: 'tokens.addInvoiceSignature' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/invoices/:hash/signatures',
      summary: "Whether the invoice has the signatures its mint's rule requires",
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: hashParams,
      query: z.object(chainQuery).strict(),
      response: any,
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read((tx) => tokens(tx).signatureStatus(params.hash), { op: 'tokens.signatureStatus' }),
    }),
    route({
      method: 'POST',
      url: '/v1/tokens/invoices/:hash/release',
      summary: 'Cancel an unconfirmed invoice and release its reservation',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'write' },
      params: hashParams,
      query: z.object(chainQuery).strict(),
      response: z.object({ released: z.boolean() }),
      handler: (ctx) =>
        db(ctx.services, ctx.query.chainId).write(
          async (tx) => {
            await tokens(tx).releaseInvoice(ctx.params.hash);
            return audited(tx, ctx, { action: 'tokens.invoice.release', entity: 'invoice', entityId: ctx.params.hash }, { released: true });
          },
          { op: 'tokens.releaseInvoice' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/reservations/:hash',
      summary: 'The escrow reservation of an invoice',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: hashParams,
      query: z.object(chainQuery).strict(),
      response: any,
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(
          async (tx) => (await tokens(tx).getReservation(params.hash)) ?? notFound('reservation of invoice', params.hash),
          { op: 'tokens.getReservation' },
        ),
    }),
    route({
      method: 'POST',
      url: '/v1/tokens/reservations/expire',
      summary: 'Expire reservations past their expiry whose invoice was never paid',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'admin' },
      query: z.object({ ...chainQuery, limit: z.coerce.number().int().min(1).max(10_000).default(1000) }).strict(),
      response: z.object({ expired: z.array(z.string()) }),
      handler: (ctx) =>
        db(ctx.services, ctx.query.chainId).write(
          async (tx) => {
            const expired = await tokens(tx).expireReservations({ limit: ctx.query.limit });
            return expired.length
              ? audited(
                  tx,
                  ctx,
                  {
                    action: 'tokens.reservation.expire',
                    entity: 'reservation',
                    entityId: `batch:${expired.length}`,
                    details: { invoices: expired },
                  },
                  { expired },
                )
              : { expired };
          },
          { op: 'tokens.expireReservations' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/balances/:address',
      summary: 'Balances of an address in every mint it holds (balance, reserved, available), in mint-hash order, cursor-paginated',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: z.object({ address }).strict(),
      query: z.object({ ...chainQuery, ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(
          async (tx) => {
            const after = decodeCursor(query.cursor, hashCursor)?.h;
            const rows = await tokens(tx).balances(params.address, { ...(after ? { after } : {}), limit: query.limit + 1 });
            return pageOf(rows, query.limit, (b) => ({ h: b.mintHash }));
          },
          { op: 'tokens.balances' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/mints/:hash/balances',
      summary: 'Every holder of a mint (balance, reserved, available), in address order, cursor-paginated; one page is one consistent read',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: hashParams,
      query: z.object({ ...chainQuery, ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(
          async (tx) => {
            const after = decodeCursor(query.cursor, z.object({ a: address }))?.a;
            const rows = await tokens(tx).holders(params.hash, { ...(after ? { after } : {}), limit: Math.min(1000, query.limit + 1) });
            return pageOf(rows, query.limit, (b) => ({ a: b.address }));
          },
          { op: 'tokens.holders' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/mints/:hash/balances/:address',
      summary: 'Balance of an address in one mint',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: z.object({ hash: hex32, address }).strict(),
      query: z.object(chainQuery).strict(),
      response: any,
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read((tx) => tokens(tx).balance(params.hash, params.address), { op: 'tokens.balance' }),
    }),
    route({
      method: 'GET',
      url: '/v1/tokens/mints/:hash/ledger/:address',
      summary: 'Ledger entries (with their causes) of an address in one mint, oldest block first, cursor-paginated',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      params: z.object({ hash: hex32, address }).strict(),
      query: z.object({ ...chainQuery, ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ params, query, services }) =>
        db(services, query.chainId).read(
          async (tx) => {
            const c = decodeCursor(query.cursor, ledgerCursor);
            const after = c && { blockHeight: BigInt(c.h), causeKind: c.k, causeRef: c.r };
            const rows = await tokens(tx).ledger(params.hash, params.address, { ...(after ? { after } : {}), limit: query.limit + 1 });
            return pageOf(rows, query.limit, (e) => ({ h: e.blockHeight.toString(), k: e.causeKind, r: e.causeRef }));
          },
          { op: 'tokens.ledger' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/stats',
      summary: 'Counts of mints, unconfirmed mints, invoices and on-chain token transactions, per chain',
      tag: 'tokens',
      auth: { domain: 'tokens', level: 'read' },
      query: z.object(chainQuery).strict(),
      response: z.object({ items: z.array(any) }),
      handler: async ({ query, services }) => {
        if (query.chainId)
          return { items: await db(services, query.chainId).read((tx) => tokens(tx).stats(query.chainId), { op: 'tokens.stats' }) };
        const items = [];
        for (const d of services.chains.databases())
          items.push(...(await d.coffer.read((tx) => tokens(tx).stats(), { op: 'tokens.stats' })));
        return { items };
      },
    }),
  ];
}
