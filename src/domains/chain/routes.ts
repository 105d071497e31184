// HTTP routes of the chain domain. Each write is one transaction on the chain's database that
// also appends its audit entry; the block processors (token flows) run inside ingest.
import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import { CofferError, NotFoundError } from '../../db/errors.js';
import { fromEach, Unavailable, unavailableOut } from '../../server/databases.js';
import { route, type RouteSpec } from '../../server/route.js';
import { encodeCursor, decodeCursor, pageQuery } from '../../server/pagination.js';
import { actorOf, type Services } from '../../server/services.js';
import { labelSchema } from '../../util/zod-parse.js';
import { amount, amountOut, chainIdParam, hashOut, height, hex32, hexBytes, isoTime, withinInt64 } from '../../server/wire.js';
import { audit } from '../audit/log.js';
import { mempool } from './mempool.js';
import { chain } from './store.js';
import type { IngestBlockInput, Page, StoredTransaction, TxPosition } from './types.js';

const chainParams = z.object({ chainId: chainIdParam }).strict();

const outputIn = z.object({ address: z.string().min(1).max(128), value: amount }).strict();
const transactionIn = z
  .object({
    txHash: hex32,
    indexInBlock: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1),
    actionType: labelSchema(32).nullable().default(null),
    actionVersion: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .nullable()
      .default(null),
    payload: hexBytes(1024 * 1024)
      .nullable()
      .default(null),
    address: z.string().min(1).max(128).nullable().default(null),
    outputs: z.array(outputIn).max(10_000).default([]),
  })
  .strict();
const blockIn = z
  .object({
    height,
    hash: hex32,
    parentHash: hex32,
    time: isoTime,
    txCount: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .optional(),
    transactions: z.array(transactionIn).max(20_000),
  })
  .strict();

const txOut = z.object({
  chainId: z.string(),
  txHash: hashOut,
  blockHeight: z.string(),
  blockHash: hashOut,
  indexInBlock: z.number(),
  actionType: z.string().nullable(),
  actionVersion: z.number().nullable(),
  payload: hashOut.nullable(),
  address: z.string().nullable(),
  outputs: z.array(z.object({ address: z.string(), value: amountOut })),
});
const pageOut = z.object({ items: z.array(txOut), nextCursor: z.string().optional() });
const blockOut = z.object({
  chainId: z.string(),
  height: z.string(),
  hash: hashOut,
  parentHash: hashOut,
  time: z.string(),
  txCount: z.number(),
});

const positionCursor = z.object({
  h: z
    .string()
    .regex(/^[0-9]{1,19}$/)
    .refine(withinInt64),
  i: z.number().int().min(0),
});
function toPage(p: Page<StoredTransaction>): { items: StoredTransaction[]; nextCursor?: string } {
  return p.next ? { items: p.items, nextCursor: encodeCursor({ h: p.next.height.toString(), i: p.next.index }) } : { items: p.items };
}
function fromCursor(cursor: string | undefined): TxPosition | null {
  const c = decodeCursor(cursor, positionCursor);
  return c ? { height: BigInt(c.h), index: c.i } : null;
}

// The store names its own fields (blockHash, newBranch[1], forkHeight); the body calls them
// hash, blocks[1], forkHeight. Errors leave the API naming what the caller sent.
const BLOCK_FIELD = /^(height|blockHash|parentHash|time|txCount|transactions)(?![A-Za-z])/;
function bodyField(field: string): string {
  if (field === 'forkHeight') return 'body.forkHeight';
  if (field === 'newBranch') return 'body.blocks';
  const branch = /^newBranch(\[\d+\])\.(.*)$/.exec(field);
  const [prefix, rest] = branch ? [`body.blocks${branch[1]}`, branch[2]!] : ['body', field];
  if (!BLOCK_FIELD.test(rest)) return branch ? `${prefix}.${rest}` : field;
  return `${prefix}.${rest.replace(/^blockHash/, 'hash')}`;
}
/** `p`, with a failure's field renamed by `rename` from the store's terms into the request's. */
async function inRequestTerms<T>(p: Promise<T>, rename: (field: string) => string): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof CofferError && typeof e.details.field === 'string') (e.details as { field: string }).field = rename(e.details.field);
    throw e;
  }
}
const inBodyTerms = <T>(p: Promise<T>): Promise<T> => inRequestTerms(p, bodyField);

/** A paged read's fields: its range in the query, its page position in the cursor it came from. */
function pageField(field: string): string {
  if (field === 'page.after' || field.startsWith('page.after.')) return 'query.cursor';
  if (field.startsWith('page.')) return `query.${field.slice('page.'.length)}`;
  if (field === 'fromHeight' || field === 'toHeight') return `query.${field}`;
  if (field === 'address' || field === 'chainId') return `params.${field}`;
  return field;
}
const inPageTerms = <T>(p: Promise<T>): Promise<T> => inRequestTerms(p, pageField);
/** The mempool's input is the body as sent. */
const inMempoolBody = <T>(p: Promise<T>): Promise<T> =>
  inRequestTerms(p, (f) => (f === 'chainId' ? 'params.chainId' : f.startsWith('body.') ? f : `body.${f}`));

function toBlock(chainId: string, b: z.infer<typeof blockIn>): IngestBlockInput {
  const { hash, ...rest } = b;
  return { ...rest, chainId, blockHash: hash };
}

type ListedChain = { chainId: string };

/**
 * A page of GET /v1/chains: the chains of every database, each from the database it is routed to,
 * in byte order of the id. Each database gives at most limit + 1 ids after the cursor, in that
 * order (chainIdPage); the merge keeps the first `limit`, and there is a next page when more were
 * given. Then the page's rows are read from each database that holds some. A database that fails
 * either read is left out and named in `unavailable`; when none answers, the request fails.
 */
async function chainList(services: Services, limit: number, after: string | undefined, log: FastifyBaseLogger) {
  const databases = services.chains.databases();
  // A chain routed to a database of its own is listed from there only, not from a stale row of it
  // in the default database (written before it was mapped).
  const elsewhere = databases.flatMap((db) => (db.isDefault ? [] : db.chains));
  const unavailable = new Unavailable(log);
  const idLists = await fromEach(
    databases,
    (db) =>
      db.coffer.read(
        (tx) =>
          chain(tx).chainIdPage({
            limit: limit + 1,
            ...(after !== undefined ? { after } : {}),
            ...(db.isDefault ? { except: elsewhere } : { only: db.chains }),
          }),
        { op: 'chain.listChainIds' },
      ),
    unavailable,
    'chain.listChainIds',
  );
  const ids: { chainId: string; db: number }[] = [];
  for (let i = 0; i < idLists.length; i++) for (const chainId of idLists[i] ?? []) ids.push({ chainId, db: i });
  // Byte order: ids are ASCII, where comparing UTF-16 code units is comparing bytes.
  ids.sort((a, b) => (a.chainId < b.chainId ? -1 : a.chainId > b.chainId ? 1 : 0));
  const page = ids.slice(0, limit);
  const rows = new Map<string, ListedChain>();
  await fromEach(
    databases,
    async (db, i) => {
      const named = page.filter((p) => p.db === i).map((p) => p.chainId);
      if (named.length === 0) return;
      for (const c of await db.coffer.read((tx) => chain(tx).chainsWithState(named), { op: 'chain.listChains' })) rows.set(c.chainId, c);
    },
    unavailable,
    'chain.listChains',
  );
  unavailable.throwIfAllOf(databases);
  // A chain removed between the two reads is left out; the cursor is the page's last id all the same.
  const items = page.flatMap((p) => rows.get(p.chainId) ?? []);
  const listed = {
    items,
    ...(ids.length > limit ? { nextCursor: encodeCursor({ c: page[page.length - 1]!.chainId }) } : {}),
  };
  const missing = unavailable.list;
  return missing.length > 0 ? { ...listed, unavailable: missing } : listed;
}

export function chainRoutes(): RouteSpec[] {
  return [
    route({
      method: 'POST',
      url: '/v1/chains',
      summary: 'Register a chain (idempotent for identical settings)',
      tag: 'chain',
      auth: { domain: 'chain', level: 'admin' },
      body: z
        .object({
          chainId: chainIdParam,
          name: z.string().min(1).max(128),
          network: z.string().min(1).max(64),
          confirmations: z.number().int().min(1).max(10_000),
          mempoolCapacity: z.number().int().min(1).max(10_000_000).optional(),
        })
        .strict(),
      response: z.object({ chain: z.object({}).passthrough(), created: z.boolean() }),
      status: 201,
      handler: ({ body, services, principal }) =>
        services.chains.write(
          body.chainId,
          async (tx) => {
            const r = await chain(tx).registerChain(body);
            if (r.created) {
              await audit(tx).record({
                actor: actorOf(principal),
                action: 'chain.chain.register',
                domain: 'chain',
                entity: 'chain',
                entityId: body.chainId,
                after: { ...body },
              });
            }
            return r;
          },
          { op: 'chain.registerChain' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/chains',
      summary: 'List chains with their cursor and sync health, in chain id order (byte order), cursor-paginated',
      tag: 'chain',
      auth: { domain: 'chain', level: 'read' },
      query: z.object(pageQuery).strict(),
      response: z.object({
        items: z.array(z.object({}).passthrough()),
        nextCursor: z.string().optional(),
        unavailable: unavailableOut.optional(),
      }),
      handler: ({ query, services, log }) =>
        chainList(services, query.limit, decodeCursor(query.cursor, z.object({ c: chainIdParam }))?.c, log),
    }),
    route({
      method: 'GET',
      url: '/v1/chains/:chainId',
      summary: 'A chain with its sync cursor and health',
      tag: 'chain',
      auth: { domain: 'chain', level: 'read' },
      params: chainParams,
      response: z.object({}).passthrough(),
      handler: ({ params, services }) =>
        services.chains.read(
          params.chainId,
          async (tx) => {
            const store = chain(tx);
            const c = await store.getChain(params.chainId);
            if (!c) throw new NotFoundError(`chain ${params.chainId} is not registered`, { field: 'chainId' });
            return { ...c, cursor: await store.getCursor(params.chainId), health: await store.getHealth(params.chainId) };
          },
          { op: 'chain.getChain' },
        ),
    }),
    route({
      method: 'POST',
      url: '/v1/chains/:chainId/blocks',
      summary: 'Ingest a block with its transactions; replaying a stored block is a no-op (?reorg=true to replace a branch)',
      tag: 'chain',
      auth: { domain: 'chain', level: 'write' },
      params: chainParams,
      query: z.object({ reorg: z.enum(['true', 'false']).default('false') }).strict(),
      body: blockIn,
      response: z.object({
        status: z.enum(['ingested', 'duplicate']),
        height: z.string(),
        hash: hashOut,
        reorg: z.object({}).passthrough().optional(),
      }),
      handler: ({ params, query, body, services, principal }) =>
        services.chains.write(
          params.chainId,
          async (tx) => {
            const r = await inBodyTerms(
              chain(tx).ingestBlock(toBlock(params.chainId, body), {
                processors: services.blockProcessors,
                reorg: query.reorg === 'true',
              }),
            );
            if (r.status === 'ingested') {
              await audit(tx).record({
                actor: actorOf(principal),
                action: 'chain.block.ingest',
                domain: 'chain',
                entity: 'block',
                entityId: `${params.chainId}:${r.height}`,
                details: { hash: r.hash, transactions: body.transactions.length, ...(r.reorg ? { reorg: r.reorg } : {}) },
              });
            }
            return r;
          },
          { op: 'chain.ingestBlock' },
        ),
    }),
    route({
      method: 'POST',
      url: '/v1/chains/:chainId/reorg',
      summary: 'Roll back to a fork height (reverting every derived row) and ingest the new branch, in one transaction',
      tag: 'chain',
      auth: { domain: 'chain', level: 'write' },
      params: chainParams,
      body: z.object({ forkHeight: height, blocks: z.array(blockIn).max(1000) }).strict(),
      response: z.object({}).passthrough(),
      handler: ({ params, body, services, principal }) =>
        services.chains.write(
          params.chainId,
          async (tx) => {
            const r = await inBodyTerms(
              chain(tx).reorg(
                params.chainId,
                body.forkHeight,
                body.blocks.map((b) => toBlock(params.chainId, b)),
                { processors: services.blockProcessors },
              ),
            );
            await audit(tx).record({
              actor: actorOf(principal),
              action: 'chain.chain.reorg',
              domain: 'chain',
              entity: 'chain',
              entityId: params.chainId,
              details: {
                forkHeight: r.forkHeight,
                removedBlocks: r.removedBlocks,
                revertedWrites: r.revertedWrites,
                ingestedBlocks: r.ingestedBlocks,
              },
            });
            return r;
          },
          { op: 'chain.reorg' },
        ),
    }),
    route({
      method: 'PUT',
      url: '/v1/chains/:chainId/latest-height',
      summary: 'Report the latest height known on the network (drives sync lag)',
      tag: 'chain',
      auth: { domain: 'chain', level: 'write' },
      params: chainParams,
      body: z.object({ height }).strict(),
      response: z.object({}).passthrough(),
      handler: ({ params, body, services }) =>
        services.chains.write(params.chainId, (tx) => chain(tx).reportLatestHeight(params.chainId, body.height), {
          op: 'chain.reportLatestHeight',
        }),
    }),
    route({
      method: 'GET',
      url: '/v1/chains/:chainId/blocks/:ref',
      summary: 'A block by height (digits) or hash (64 hex)',
      tag: 'chain',
      auth: { domain: 'chain', level: 'read' },
      params: z
        .object({
          chainId: chainIdParam,
          ref: z.union([
            hex32,
            z
              .string()
              .regex(/^(0|[1-9][0-9]{0,18})$/, 'a height or a 64-hex block hash')
              .refine(withinInt64, 'a height out of the 64-bit range'),
          ]),
        })
        .strict(),
      response: blockOut,
      handler: ({ params, services }) =>
        services.chains.read(
          params.chainId,
          async (tx) => {
            const store = chain(tx);
            const b =
              params.ref.length === 64
                ? await store.blockByHash(params.chainId, params.ref)
                : await store.blockByHeight(params.chainId, BigInt(params.ref));
            if (!b) throw new NotFoundError(`block ${params.ref} not found on ${params.chainId}`, { field: 'ref' });
            return b;
          },
          { op: 'chain.block' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/chains/:chainId/transactions/:txHash',
      summary: 'An on-chain transaction by hash',
      tag: 'chain',
      auth: { domain: 'chain', level: 'read' },
      params: z.object({ chainId: chainIdParam, txHash: hex32 }).strict(),
      response: txOut,
      handler: ({ params, services }) =>
        services.chains.read(
          params.chainId,
          async (tx) => {
            const t = await chain(tx).transaction(params.chainId, params.txHash);
            if (!t) throw new NotFoundError(`transaction ${params.txHash} not found on ${params.chainId}`, { field: 'txHash' });
            return t;
          },
          { op: 'chain.transaction' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/chains/:chainId/transactions',
      summary: 'Transactions in a height range, ordered by (height, index), cursor-paginated',
      tag: 'chain',
      auth: { domain: 'chain', level: 'read' },
      params: chainParams,
      query: z.object({ fromHeight: height, toHeight: height, ...pageQuery }).strict(),
      response: pageOut,
      handler: ({ params, query, services }) =>
        services.chains.read(
          params.chainId,
          async (tx) =>
            toPage(
              await inPageTerms(
                chain(tx).transactionsInRange(
                  params.chainId,
                  { fromHeight: query.fromHeight, toHeight: query.toHeight },
                  { after: fromCursor(query.cursor), limit: query.limit },
                ),
              ),
            ),
          { op: 'chain.transactionsInRange' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/chains/:chainId/addresses/:address/transactions',
      summary: 'Transactions of an address (sender or output), newest position last, cursor-paginated',
      tag: 'chain',
      auth: { domain: 'chain', level: 'read' },
      params: z.object({ chainId: chainIdParam, address: z.string().min(1).max(128) }).strict(),
      query: z.object(pageQuery).strict(),
      response: pageOut,
      handler: ({ params, query, services }) =>
        services.chains.read(
          params.chainId,
          async (tx) =>
            toPage(
              await inPageTerms(
                chain(tx).transactionsOfAddress(params.chainId, params.address, {
                  after: fromCursor(query.cursor),
                  limit: query.limit,
                }),
              ),
            ),
          { op: 'chain.transactionsOfAddress' },
        ),
    }),
    route({
      method: 'POST',
      url: '/v1/chains/:chainId/mempool',
      summary: 'Add a transaction to the mempool (deduplicated; evicts lowest fee, then oldest, when full)',
      tag: 'chain',
      auth: { domain: 'chain', level: 'write' },
      params: chainParams,
      body: z
        .object({
          txHash: hex32,
          content: hexBytes(4 * 1024 * 1024),
          fee: amount,
          sizeBytes: z
            .number()
            .int()
            .min(1)
            .max(2 ** 31 - 1),
        })
        .strict(),
      response: z.object({ status: z.string() }).passthrough(),
      handler: ({ params, body, services }) =>
        services.chains.write(params.chainId, (tx) => inMempoolBody(mempool(tx).add(params.chainId, body)), { op: 'chain.mempoolAdd' }),
    }),
    route({
      method: 'POST',
      url: '/v1/chains/:chainId/mempool/claim',
      summary: 'Claim a batch of mempool transactions for a worker (never the same transaction to two workers)',
      tag: 'chain',
      auth: { domain: 'chain', level: 'write' },
      params: chainParams,
      body: z
        .object({
          worker: labelSchema(64),
          limit: z.number().int().min(1).max(1000),
          maxBytes: z.number().int().min(1).optional(),
          leaseMs: z.number().int().min(1000).max(3_600_000).optional(),
        })
        .strict(),
      response: z.object({ items: z.array(z.object({}).passthrough()) }),
      handler: ({ params, body, services }) =>
        services.chains.write(params.chainId, async (tx) => ({ items: await mempool(tx).claim(params.chainId, body) }), {
          op: 'chain.mempoolClaim',
        }),
    }),
  ];
}
