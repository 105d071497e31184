// The HTTP service: health, readiness and Prometheus metrics over one Coffer instance. Domain
// routes register on the same app.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { sql } from 'kysely';
import type { Coffer } from '../db/store.js';

export interface AppOptions {
  coffer: Coffer;
  logger?: Logger;
}

export async function buildApp({ coffer, logger }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: 1024 * 1024,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
  }) as unknown as FastifyInstance;

  // Process is up; says nothing about the database (that is /ready).
  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/ready', async (_req, reply) => {
    try {
      await coffer.read((tx) => sql`select 1 as one`.execute(tx.db), { op: 'service.ready' });
      const pending = await coffer.migrator.verify();
      if (pending.length > 0) {
        return reply.code(503).send({ status: 'unavailable', reason: `migrations pending: ${pending.map((p) => p.id).join(', ')}` });
      }
      return { status: 'ready', backend: coffer.engine.label, migrations: 'current' };
    } catch (e) {
      return reply.code(503).send({ status: 'unavailable', reason: (e as Error).message });
    }
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', coffer.metrics.registry.contentType);
    return coffer.metrics.registry.metrics();
  });

  return app;
}
