// The HTTP service: health, readiness, Prometheus metrics, the versioned API generated from
// route objects, its OpenAPI document, and the operator dashboard.
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { sql } from 'kysely';
import { MigrationError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import type { TrustProxy } from '../config/config.js';
import { AccessLog } from './access-log.js';
import { HttpError, toHttpError } from './http-errors.js';
import { HttpMetrics } from './http-metrics.js';
import { toJson } from './json.js';
import { DASHBOARD_HTML } from './dashboard/page.js';
import { renderApiReference } from './docs-page.js';
import { openApiDocument } from './openapi.js';
import { AuthFailureLimiter, RateLimitedError, RateLimiter, type RateLimitConfig } from './rate-limit.js';
import { mountRoutes, type Authenticator, type RouteSpec } from './route.js';
import type { Services } from './services.js';
import { ChainRouter, type ChainDatabase } from '../domains/chain/router.js';
import { databaseName, Unavailable } from './databases.js';

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
  /**
   * Whose X-Forwarded-For to believe for the client address (server.trustProxy; see TrustProxy):
   * the address API-key allow-lists, the failed-authentication limit and the access log use.
   * Default false: the connection's address, and the header is ignored.
   */
  trustProxy?: TrustProxy;
  /** Extra setup (dashboard, domain plugins) run before routes are sealed. */
  extend?: (app: FastifyInstance) => Promise<void> | void;
}

export const API_VERSION = '0.1.0';

/**
 * Longest path parameter the router accepts, in raw (percent-encoded) characters. The longest
 * accepted value is an audit entity id of 256 characters, up to 9 characters each encoded
 * (3 UTF-8 bytes as %XX); Fastify's default of 100 cut off addresses and entity ids.
 */
export const MAX_PARAM_LENGTH = 4096;

/** A client's X-Request-Id is kept only if it is this shape; otherwise the service makes one. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A client id of a safe shape (it is echoed and logged), else a fresh UUID. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && CLIENT_REQUEST_ID.test(header) ? header : crypto.randomUUID();
}

export interface DatabaseReadiness {
  /** "default", or "chain:<ids>" for a per-chain database: never its URL. */
  name: string;
  status: 'ready' | 'unavailable';
  /** A fixed phrase; the underlying error is logged, not returned (the route is public). */
  reason?: 'database unreachable' | 'migrations pending' | 'migration state invalid';
  /** The first pending migration ids (not secret), and how many are pending in all. */
  pending?: string[];
  pendingCount?: number;
}

const SHOWN_PENDING = 5;

/** Whether one database answers and has every migration applied. */
async function databaseReadiness(
  db: ChainDatabase,
  index: number,
  unavailable: Unavailable,
  log: FastifyBaseLogger,
): Promise<DatabaseReadiness> {
  const name = databaseName(db);
  const fail = (reason: NonNullable<DatabaseReadiness['reason']>, e: unknown): DatabaseReadiness => {
    log.warn({ database: name, err: { message: (e as Error)?.message, code: (e as { code?: unknown })?.code } }, `not ready: ${reason}`);
    return { name, status: 'unavailable', reason };
  };
  try {
    await db.coffer.read((tx) => sql`select 1 as one`.execute(tx.db), { op: 'service.ready' });
    unavailable.answered(db, undefined);
  } catch (e) {
    // Probed every few seconds: the outage is logged once, as the chain reads log it, not per probe.
    unavailable.record(db, index, e, 'service.ready');
    return { name, status: 'unavailable', reason: 'database unreachable' };
  }
  let pending;
  try {
    pending = await db.coffer.migrator.verify();
  } catch (e) {
    // Edited or unknown migrations; anything else here is the database failing mid-check.
    return fail(e instanceof MigrationError ? 'migration state invalid' : 'database unreachable', e);
  }
  if (pending.length === 0) return { name, status: 'ready' };
  log.warn({ database: name, pending: pending.map((p) => p.id) }, 'not ready: migrations pending');
  return {
    name,
    status: 'unavailable',
    reason: 'migrations pending',
    pending: pending.slice(0, SHOWN_PENDING).map((p) => p.id),
    pendingCount: pending.length,
  };
}

/**
 * Fastify's trustProxy for a setting. A hop count is a function: Fastify treats a number as
 * trusting nothing (it cannot check the immediate peer), so n means what it means to proxy-addr,
 * the connection and the n-1 nearest X-Forwarded-For entries are proxies.
 */
function fastifyTrustProxy(tp: TrustProxy): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof tp !== 'number') return tp;
  return (_address, hop) => hop < tp;
}

/** The answer to a request that arrives while the service drains for shutdown. */
const SHUTTING_DOWN = new HttpError(503, 'shutting_down', 'the service is shutting down: retry the request');

/** Errors Fastify raises before routing (bad URL, over-long parameter): the API's error format. */
function frameworkError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const { status, body, unexpected } = toHttpError(err, req.id);
  if (unexpected) req.log.error({ err: { message: err.message, code: err.code }, requestId: req.id }, 'unexpected error');
  // No hook runs for these requests, so the request id header is set here.
  void reply.code(status).header('x-request-id', req.id).send(body);
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { coffer, logger } = opts;
  const routes = opts.routes ?? [];
  const services = opts.services ?? { coffer, chains: ChainRouter.fixed(coffer), blockProcessors: [] };
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: opts.bodyLimitBytes ?? 1024 * 1024,
    // genReqId reads X-Request-Id itself, to refuse ids that are too long or of unsafe characters.
    requestIdHeader: false,
    genReqId: (req) => requestIdOf(req.headers['x-request-id']),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Bad URLs and over-long parameters are refused before routing: same error format as the rest.
    frameworkErrors: frameworkError,
    // While closing, requests still arriving on open connections are answered by the onRequest
    // hook below, in the API's error format with the request id (Fastify's own 503 has neither).
    return503OnClosing: false,
    trustProxy: fastifyTrustProxy(opts.trustProxy ?? false),
    logController: new AccessLog(),
  }) as unknown as FastifyInstance;

  // Amounts are bigint: serialise them (and Buffers) exactly, never as floats.
  app.setReplySerializer((payload) => toJson(payload));

  const registry = coffer.metrics.registry;
  const httpMetrics = HttpMetrics.of(registry);
  // Set once app.close() begins (before the server stops listening): from then on every request
  // that still arrives (pipelined, or on a kept-alive connection) is refused with a 503.
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // Synchronous hooks: an async one costs a promise and a microtask turn on every request.
  app.addHook('onRequest', (req, reply, done) => {
    // Set on arrival, so every answer carries it: success, 404, errors, 429, shutdown's 503.
    reply.header('x-request-id', req.id);
    if (closing) {
      // Fastify has set Connection: close already (HTTP/1); said again so it does not depend on that.
      void reply.code(503).header('connection', 'close').send(toHttpError(SHUTTING_DOWN, req.id).body);
      return;
    }
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    // The route template, not the raw URL, keeps label cardinality bounded.
    httpMetrics.record(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err, req, reply) => {
    const { status, body, unexpected } = toHttpError(err, req.id);
    if (unexpected)
      req.log.error({ err: { message: (err as Error).message, stack: (err as Error).stack }, requestId: req.id }, 'unexpected error');
    if (err instanceof RateLimitedError) reply.header('retry-after', String(err.retryAfterSeconds));
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: { code: 'route_not_found', message: `no route ${req.method} ${req.url.split('?')[0]}`, requestId: req.id } });
  });

  // Process is up; says nothing about the database (that is /ready).
  app.get('/health', async () => ({ status: 'ok' }));

  // Every database (the default and each per-chain one): a chain whose database is down or behind
  // on migrations cannot be served. Public, so it names databases and fixed reasons, never
  // URLs or driver messages (those are logged).
  app.get('/ready', async (req, reply) => {
    const unavailable = new Unavailable(req.log);
    const databases = await Promise.all(services.chains.databases().map((db, i) => databaseReadiness(db, i, unavailable, req.log)));
    const failing = databases.filter((d) => d.status !== 'ready');
    if (failing.length > 0) {
      return reply.code(503).send({
        status: 'unavailable',
        reason: failing.map((d) => `${d.name}: ${d.reason}`).join('; '),
        databases,
      });
    }
    return { status: 'ready', backend: coffer.engine.label, migrations: 'current', databases };
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

  const rateLimit = opts.rateLimit ?? { perSecond: 0, burst: 1 };
  const limiter = new RateLimiter(rateLimit);
  // Failed authentications at the same rate, per client address: a key that does not
  // authenticate has no principal to charge, and each try would cost a database read.
  const failures = new AuthFailureLimiter(rateLimit);
  mountRoutes(app, routes, {
    services,
    authenticator: opts.authenticator ?? null,
    onAuthenticated: (p) => limiter.take(p.id),
    beforeAuthenticate: (ip) => failures.check(ip),
    onAuthFailed: (ip) => failures.record(ip),
  });

  await opts.extend?.(app);
  return app;
}

export { HttpError };
