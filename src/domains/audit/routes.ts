// HTTP routes of the audit log: read it (keyset pagination on seq), an entity's trail, the
// head hash to anchor elsewhere, and a streaming verification of the whole chain.
import { z } from 'zod';
import { decodeCursor, pageOf, pageQuery } from '../../server/pagination.js';
import { route, type RouteSpec } from '../../server/route.js';
import type { Services } from '../../server/services.js';
import { chainIdParam, int64Text } from '../../server/wire.js';
import type { Coffer } from '../../db/store.js';
import { auditHead, EntityIdSchema, entityTrail, readEntries } from './log.js';
import { verifyAuditLog } from './verify.js';

const any = z.object({}).passthrough();
const seqCursor = z.object({ s: int64Text('a sequence number') });
const name = z
  .string()
  .regex(/^[a-z][a-z0-9_]*$/)
  .max(64);

/**
 * An anchor is both halves or neither: half of one used to be dropped and the chain reported
 * ok:true without the check the caller asked for. Sequence numbers start at 1.
 */
const anchorQuery = z
  .object({
    chainId: chainIdParam.optional(),
    anchorSeq: z
      .string()
      .regex(/^[1-9][0-9]{0,18}$/, 'a sequence number (1 or more)')
      .optional(),
    anchorHash: z
      .string()
      .regex(/^[0-9a-f]{64}$/, '64 lowercase hex characters')
      .optional(),
  })
  .strict()
  .superRefine((q, ctx) => {
    if ((q.anchorSeq === undefined) === (q.anchorHash === undefined)) return;
    const missing = q.anchorSeq === undefined ? 'anchorSeq' : 'anchorHash';
    ctx.addIssue({ code: 'custom', path: [missing], message: 'anchorSeq and anchorHash go together: give both or neither' });
  });

/**
 * Which database's log: a chain kept in its own database (config database.chains) records its
 * entries there, in the same transaction as its change, so that log is read with ?chainId=.
 */
const database = { chainId: chainIdParam.optional() };
const logOf = (services: Services, coffer: Coffer, chainId: string | undefined): Coffer =>
  chainId === undefined ? coffer : services.chains.for(chainId);

export function auditRoutes(): RouteSpec[] {
  return [
    route({
      method: 'GET',
      url: '/v1/audit/entries',
      summary: 'Audit entries in sequence order, cursor-paginated',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      query: z.object({ ...pageQuery, ...database }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ query, coffer, services }) =>
        logOf(services, coffer, query.chainId).read(
          async (tx) => {
            const after = decodeCursor(query.cursor, seqCursor);
            const rows = await readEntries(tx, { afterSeq: after ? BigInt(after.s) : 0n, limit: query.limit + 1 });
            return pageOf(rows, query.limit, (e) => ({ s: e.seq.toString() }));
          },
          { op: 'audit.entries' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/audit/trail/:domain/:entity/:entityId',
      summary: 'Every audit entry about one entity, oldest first, cursor-paginated',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      // The writer's own rule: an id it could never have recorded is a 400, not a driver error.
      params: z.object({ domain: name, entity: name, entityId: EntityIdSchema }).strict(),
      query: z.object({ ...pageQuery, ...database }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ params, query, coffer, services }) =>
        logOf(services, coffer, query.chainId).read(
          async (tx) => {
            const after = decodeCursor(query.cursor, seqCursor);
            const rows = await entityTrail(tx, { ...params, ...(after ? { afterSeq: BigInt(after.s) } : {}), limit: query.limit + 1 });
            return pageOf(rows, query.limit, (e) => ({ s: e.seq.toString() }));
          },
          { op: 'audit.trail' },
        ),
    }),
    route({
      method: 'GET',
      url: '/v1/audit/head',
      summary: 'The head of the audit chain (sequence number and hash), to anchor elsewhere',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      query: z.object(database).strict(),
      response: z.object({ seq: z.string(), hash: z.string() }),
      handler: ({ query, coffer, services }) => logOf(services, coffer, query.chainId).read((tx) => auditHead(tx), { op: 'audit.head' }),
    }),
    route({
      method: 'GET',
      url: '/v1/audit/verify',
      summary:
        'Walk the whole chain in pages: the verified length and head, or the first broken entry; with an anchor (anchorSeq >= 1 and anchorHash, both or neither) entry anchorSeq must have anchorHash',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      query: anchorQuery,
      response: any,
      handler: ({ query, coffer, services }) =>
        verifyAuditLog(
          logOf(services, coffer, query.chainId),
          query.anchorSeq !== undefined && query.anchorHash !== undefined
            ? { anchor: { seq: BigInt(query.anchorSeq), hash: query.anchorHash } }
            : {},
        ),
    }),
  ];
}
