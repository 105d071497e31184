// HTTP routes of the audit log: read it (keyset pagination on seq), an entity's trail, the
// head hash to anchor elsewhere, and a streaming verification of the whole chain.
import { z } from 'zod';
import { decodeCursor, pageOf, pageQuery } from '../../server/pagination.js';
import { route, type RouteSpec } from '../../server/route.js';
import { auditHead, entityTrail, readEntries } from './log.js';
import { verifyAuditLog } from './verify.js';

const any = z.object({}).passthrough();
const seqCursor = z.object({ s: z.string().regex(/^[0-9]+$/) });
const name = z
  .string()
  .regex(/^[a-z][a-z0-9_]*$/)
  .max(64);

export function auditRoutes(): RouteSpec[] {
  return [
    route({
      method: 'GET',
      url: '/v1/audit/entries',
      summary: 'Audit entries in sequence order, cursor-paginated',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      query: z.object(pageQuery).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ query, coffer }) =>
        coffer.read(
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
      summary: 'Every audit entry about one entity, oldest first',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      params: z.object({ domain: name, entity: name, entityId: z.string().min(1).max(256) }).strict(),
      response: z.object({ items: z.array(any) }),
      handler: ({ params, coffer }) => coffer.read(async (tx) => ({ items: await entityTrail(tx, params) }), { op: 'audit.trail' }),
    }),
    route({
      method: 'GET',
      url: '/v1/audit/head',
      summary: 'The head of the audit chain (sequence number and hash), to anchor elsewhere',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      response: z.object({ seq: z.string(), hash: z.string() }),
      handler: ({ coffer }) => coffer.read((tx) => auditHead(tx), { op: 'audit.head' }),
    }),
    route({
      method: 'GET',
      url: '/v1/audit/verify',
      summary: 'Walk the whole chain in pages: the verified length and head, or the first broken entry',
      tag: 'audit',
      auth: { domain: 'audit', level: 'read' },
      query: z
        .object({
          anchorSeq: z
            .string()
            .regex(/^[0-9]+$/)
            .optional(),
          anchorHash: z
            .string()
            .regex(/^[0-9a-f]{64}$/)
            .optional(),
        })
        .strict(),
      response: any,
      handler: ({ query, coffer }) =>
        verifyAuditLog(
          coffer,
          query.anchorSeq && query.anchorHash ? { anchor: { seq: BigInt(query.anchorSeq), hash: query.anchorHash } } : {},
        ),
    }),
  ];
}
