// Route definitions: one object per endpoint carries its auth scope, zod schemas for params,
// query, body and response, and the handler. The same objects register the Fastify routes and
// generate /openapi.json, so the documentation cannot drift from what is validated.
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CofferError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { hasScope, type ScopeLevel } from '../domains/identity/scopes.js';
import { parseOrThrow } from '../util/zod-parse.js';
import { HttpError } from './http-errors.js';
import type { Services } from './services.js';

export type Level = ScopeLevel;

/** Who is calling: the API key (or user session) that authenticated the request. */
export interface Principal {
  kind: 'api_key' | 'user' | 'system';
  /** Stable id used as the audit actor and the rate-limit bucket, e.g. "api_key:cfk_ab12". */
  id: string;
  /** Scopes as "<domain>:<level>" (see src/domains/identity/scopes.ts); "*" covers every domain. */
  scopes: readonly string[];
  /** When the credential stops working (API keys and sessions): what a key can hand on at most. */
  expiresAt?: Date;
  /** An API key's IP allow-list (empty: any address): what a key can hand on at most. */
  ipAllow?: readonly string[];
  /** The integration an API key belongs to: whose single-use tokens it may mint and consume. */
  integrationId?: bigint;
}

export interface Authenticator {
  /** Resolves a bearer token or throws HttpError 401 (unknown, expired, revoked, IP not allowed). */
  authenticate(token: string, ip: string): Promise<Principal>;
  /**
   * Optional synchronous answer from a cache of earlier successes: the principal, or undefined
   * to call authenticate(). Used instead of authenticate(), so it must apply the same checks.
   */
  cached?(token: string, ip: string): Principal | undefined;
}

type AnyObject = z.ZodObject<z.ZodRawShape>;

export interface RouteContext<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  principal: Principal | null;
  requestId: string;
  /** The client address: the connection's, or from X-Forwarded-For under server.trustProxy. */
  ip: string;
  coffer: Coffer;
  services: Services;
  /** The request's logger (its lines carry the request id). */
  log: FastifyBaseLogger;
}

export interface RouteSpec<P extends AnyObject = AnyObject, Q extends AnyObject = AnyObject, B extends z.ZodType = z.ZodType> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  summary: string;
  tag: string;
  /** `public`, or the domain scope the caller's key must hold. */
  auth: 'public' | { domain: string; level: Level };
  params?: P;
  query?: Q;
  body?: B;
  response: z.ZodType;
  status?: number;
  /**
   * A PUT that creates or replaces: the handler's result carries `created`, answered 201 when
   * it created and 200 when it replaced (both in the OpenAPI document); `status` is then unused.
   */
  upsert?: true;
  handler: (ctx: RouteContext<z.infer<P>, z.infer<Q>, z.infer<B>>) => Promise<unknown>;
}

/** Identity helper that keeps the generic types of a route literal. */
export function route<P extends AnyObject, Q extends AnyObject, B extends z.ZodType>(spec: RouteSpec<P, Q, B>): RouteSpec {
  return spec as unknown as RouteSpec;
}

function parse<T extends z.ZodType>(schema: T | undefined, value: unknown, where: string): z.infer<T> {
  if (!schema) return undefined as z.infer<T>;
  return parseOrThrow(schema, value ?? (where === 'body' ? undefined : {}), where);
}

/** hasScope answers per scopes array (principals are immutable and reused by the auth cache). */
const grants = new WeakMap<readonly string[], Map<string, boolean>>();
function granted(scopes: readonly string[], domain: string, level: Level, key: string): boolean {
  let m = grants.get(scopes);
  if (!m) grants.set(scopes, (m = new Map()));
  let ok = m.get(key);
  if (ok === undefined) m.set(key, (ok = hasScope(scopes, domain, level)));
  return ok;
}

function bearer(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (!h) throw new HttpError(401, 'unauthorized', 'missing Authorization: Bearer <api key>');
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  if (!m) throw new HttpError(401, 'unauthorized', 'Authorization header must be "Bearer <api key>"');
  return m[1]!;
}

/** A refusal by authentication or the scope check (401, 403), as opposed to the database failing. */
function isAuthFailure(e: unknown): boolean {
  if (e instanceof HttpError) return e.status === 401 || e.status === 403;
  return e instanceof CofferError && (e.code === 'unauthenticated' || e.code === 'forbidden');
}

export interface MountOptions {
  services: Services;
  authenticator: Authenticator | null;
  /** Called after authentication (rate limiting). */
  onAuthenticated?: (p: Principal, req: FastifyRequest) => void;
  /** Called with the client address before its credential is looked at; throws to refuse it. */
  beforeAuthenticate?: (ip: string) => void;
  /** Called with the client address when authentication or the scope check refuses (401, 403). */
  onAuthFailed?: (ip: string) => void;
}

export function mountRoutes(app: FastifyInstance, routes: readonly RouteSpec[], opts: MountOptions): void {
  for (const spec of routes) {
    const scope = spec.auth === 'public' ? null : spec.auth;
    const scopeKey = scope ? `${scope.domain}:${scope.level}` : '';
    app.route({
      method: spec.method,
      url: spec.url,
      handler: async (req, reply) => {
        let principal: Principal | null = null;
        // Read once: under trustProxy each read parses X-Forwarded-For again.
        const ip = req.ip;
        if (scope) {
          try {
            const authenticator = opts.authenticator;
            if (!authenticator) throw new HttpError(401, 'unauthorized', 'this server has no API keys configured');
            const token = bearer(req);
            // A cache hit answers synchronously (no promise, no microtask turn). Only a miss costs
            // a database read, so only a miss is refused for an address that failed too often:
            // a client with a working key behind the same address keeps its cached answers.
            principal = authenticator.cached?.(token, ip) ?? null;
            if (!principal) {
              opts.beforeAuthenticate?.(ip);
              principal = await authenticator.authenticate(token, ip);
            }
            if (!granted(principal.scopes, scope.domain, scope.level, scopeKey)) {
              throw new HttpError(403, 'forbidden', `this key lacks the ${scope.level} scope on ${scope.domain}`);
            }
          } catch (e) {
            if (isAuthFailure(e)) opts.onAuthFailed?.(ip);
            throw e;
          }
          opts.onAuthenticated?.(principal, req);
        }
        const params = parse(spec.params, req.params, 'params');
        const query = parse(spec.query, req.query, 'query');
        const body = parse(spec.body, req.body, 'body');
        const result = await spec.handler({
          params,
          query,
          body,
          principal,
          requestId: req.id,
          ip,
          coffer: opts.services.coffer,
          services: opts.services,
          log: req.log,
        });
        reply.code(spec.upsert ? ((result as { created?: unknown }).created === true ? 201 : 200) : (spec.status ?? 200));
        return result;
      },
    });
  }
}
