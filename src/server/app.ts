// The HTTP service: health, readiness, Prometheus metrics, the versioned API generated from
// route objects, its OpenAPI document, and the operator dashboard.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { sql } from 'kysely';
import type { Coffer } from '../db/store.js';
import { AccessLog } from './access-log.js';
import { HttpError, toHttpError } from './http-errors.js';
import { HttpMetrics } from './http-metrics.js';
import { toJson } from './json.js';
import { DASHBOARD_HTML } from './dashboard/page.js';
import { renderApiReference } from './docs-page.js';
import { openApiDocument } from './openapi.js';
import { RateLimiter, type RateLimitConfig } from './rate-limit.js';
import { mountRoutes, type Authenticator, type RouteSpec } from './route.js';
import type { Services } from './services.js';
import { ChainRouter } from '../domains/chain/router.js';

export interface AppOptions {
  coffer: Coffer;
  /** Defaults to the default database only, with no block processors. */
  services?: Services;
  logger?: Logger;
  /** API routes (domain routes); mounted under their own /v1/... URLs. */
  routes?: readonly RouteSpec[];
  authenticator?: Authenticator | null;
  rateLimit?: RateLimitConfig;
  bodyLimitBytes?: number;
  /** Extra setup (dashboard, domain plugins) run before routes are sealed. */
  extend?: (app: FastifyInstance) => Promise<void> | void;
}

export const API_VERSION = '0.1.0';

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { coffer, logger } = opts;
  const routes = opts.routes ?? [];
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: opts.bodyLimitBytes ?? 1024 * 1024,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
    return503OnClosing: true,
    logController: new AccessLog(),
  }) as unknown as FastifyInstance;

  // Amounts are bigint: serialise them (and Buffers) exactly, never as floats.
  app.setReplySerializer((payload) => toJson(payload));

  const registry = coffer.metrics.registry;
  const httpMetrics = HttpMetrics.of(registry);
  // A synchronous hook: an async one costs a promise and a microtask turn on every request.
  app.addHook('onResponse', (req, reply, done) => {
    // The route template, not the raw URL, keeps label cardinality bounded.
    httpMetrics.record(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err, req, reply) => {
    const { status, body, unexpected } = toHttpError(err, req.id);
    if (unexpected)
      req.log.error({ err: { message: (err as Error).message, stack: (err as Error).stack }, requestId: req.id }, 'unexpected error');
    if (status === 429) reply.header('retry-after', '1');
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: { code: 'route_not_found', message: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: req.id } });
  });

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
    reply.header('content-type', registry.contentType);
    return reply.serializer((x: unknown) => String(x)).send(await registry.metrics());
  });

  const document = openApiDocument(routes, { title: 'Coffer API', version: API_VERSION });
  app.get('/openapi.json', async () => document);
  const reference = renderApiReference(document as Parameters<typeof renderApiReference>[0]);
  app.get('/docs', async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .serializer((x: unknown) => String(x))
      .send(reference),
  );
  // The dashboard page itself is public; every number on it comes from /v1/dashboard with a read key.
  app.get('/', async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
      .serializer((x: unknown) => String(x))
      .send(DASHBOARD_HTML),
  );

  const limiter = new RateLimiter(opts.rateLimit ?? { perSecond: 0, burst: 1 });
  const services = opts.services ?? { coffer, chains: ChainRouter.fixed(coffer), blockProcessors: [] };
  mountRoutes(app, routes, {
    services,
    authenticator: opts.authenticator ?? null,
    onAuthenticated: (p) => limiter.take(p.id),
  });

  await opts.extend?.(app);
  return app;
}

export { HttpError };
