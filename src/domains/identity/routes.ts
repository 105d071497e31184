// HTTP routes of the identity domain: integrations, API keys and single-use tokens. Secrets
// (a new key, a new token) appear once, in the response that creates them, and nowhere else.
// The stores record their own audit entries and row history with the calling key as actor.
import { z } from 'zod';
import { ForbiddenError, NotFoundError, UnauthenticatedError } from '../../db/errors.js';
import { HttpError } from '../../server/http-errors.js';
import { decodeCursor, pageOf, pageQuery } from '../../server/pagination.js';
import { route, type Principal, type RouteSpec } from '../../server/route.js';
import { actorOf } from '../../server/services.js';
import { idText, isoTime } from '../../server/wire.js';
import { isStorableTime } from '../../util/zod-parse.js';
import { identity } from './index.js';
import type { ApiKey } from './integrations.js';
import { firstUncovered, normalizeIpAllow } from './ip-allow.js';
import { hasScope, normalizeScopes, parseScope } from './scopes.js';

const idParam = idText('an integration id');
const keyId = z.string().regex(/^[0-9a-f]{24}$/, 'an API key id (24 hex characters)');
const tokenType = z.string().min(1).max(64);
const any = z.object({}).passthrough();

function missing(what: string, id: string, field: string): never {
  throw new NotFoundError(`${what} ${id} not found`, { field });
}

/**
 * A caller hands out only what it holds: every requested scope must be covered by its own, or
 * an identity:admin key could mint (or widen a key to) *:admin. Checked here, not in the store,
 * because only the HTTP layer knows the caller; the CLI (an operator with database access) may
 * grant anything. Malformed scopes fail as the store would (ValidationError naming scopes.N).
 */
function requireGrantable(principal: Principal | null, requested: readonly string[]): void {
  const held = principal?.scopes ?? [];
  for (const scope of normalizeScopes(requested)) {
    const { domain, level } = parseScope(scope);
    if (!hasScope(held, domain, level))
      throw new ForbiddenError(`body.scopes: this key cannot grant ${scope}, which it does not hold itself`, { field: 'body.scopes' });
  }
}

/** An API key without *:admin: the callers the rules below bound (users' sessions and *:admin are not). */
function boundedKey(principal: Principal | null): principal is Principal {
  return principal?.kind === 'api_key' && !hasScope(principal.scopes, '*', 'admin');
}

/**
 * A key may rename itself but not change its own scopes, expiry or allow-list (re-granting
 * itself what it already holds would still outlive its expiry or escape its allow-list),
 * unless it holds *:admin.
 */
function requireNotSelfWidening(principal: Principal | null, keyId: string, body: Record<string, unknown>): void {
  if (!boundedKey(principal) || principal.id !== keyId) return;
  const field = (['scopes', 'expiresAt', 'ipAllow'] as const).find((f) => body[f] !== undefined);
  if (field) throw new ForbiddenError(`body.${field}: a key may not change its own ${field} (needs *:admin)`, { field: `body.${field}` });
}

/**
 * An API key without *:admin hands out no more time than it has: a key it creates or changes
 * expires no later than itself. Otherwise an identity:admin key could outlive its own expiry by
 * creating a successor. A user's session is not bounded this way (a session lasts hours; an
 * administrator signs in to make year-long keys).
 */
function requireWithinOwnExpiry(principal: Principal | null, expiresAt: Date | undefined): void {
  if (expiresAt === undefined || !boundedKey(principal) || !principal.expiresAt) return;
  if (expiresAt.getTime() > principal.expiresAt.getTime())
    throw new ForbiddenError(
      `body.expiresAt: this key expires at ${principal.expiresAt.toISOString()} and cannot give a key a later expiry (needs *:admin)`,
      { field: 'body.expiresAt' },
    );
}

/**
 * Likewise an API key bound to an allow-list (without *:admin) gives no key a wider one: every
 * entry must lie inside its own, and "any address" (an empty or missing list on create) is
 * refused. Otherwise a key pinned to one address could mint an unpinned copy of itself.
 */
function requireWithinOwnAllowList(principal: Principal | null, ipAllow: readonly string[] | undefined, creating: boolean): void {
  if (!boundedKey(principal) || !principal.ipAllow?.length) return;
  if (ipAllow === undefined && !creating) return;
  const requested = normalizeIpAllow(ipAllow ?? [], 'body.ipAllow');
  const i = firstUncovered(principal.ipAllow, requested);
  if (i >= 0) {
    const field = requested.length ? `body.ipAllow.${i}` : 'body.ipAllow';
    throw new ForbiddenError(
      `${field}: this key is limited to ${principal.ipAllow.join(', ')} and cannot give a key ${requested.length ? `${requested[i]}` : 'any address'} (needs *:admin)`,
      { field },
    );
  }
}

/**
 * What a key without *:admin may do to another key, judged on the key as it stands (read in the
 * update's own transaction; the update's version check refuses it if it changed since): it
 * changes only keys whose scopes it could grant itself, and gives a key a scope only if that key,
 * as it will be, expires no later than the caller and is usable from no wider addresses. The
 * body-only checks above cannot see a scopes-only change to a key that already outlives the
 * caller, or is unpinned: granting it identity:admin would hand that key's holder the caller's
 * power without the caller's expiry or allow-list.
 */
function requireWithinBounds(
  principal: Principal,
  current: ApiKey,
  body: { scopes?: string[]; expiresAt?: Date; ipAllow?: string[] },
): void {
  const uncovered = current.scopes.find((s) => {
    const { domain, level } = parseScope(s);
    return !hasScope(principal.scopes, domain, level);
  });
  if (uncovered !== undefined)
    throw new ForbiddenError(
      `params.keyId: key ${current.id} holds ${uncovered}, which this key does not hold: only a key holding it (or *:admin) may change that key`,
      { field: 'params.keyId' },
    );
  if (body.scopes === undefined) return;
  const adds = normalizeScopes(body.scopes).some((s) => {
    const { domain, level } = parseScope(s);
    return !hasScope(current.scopes, domain, level);
  });
  if (!adds) return;
  const expiresAt = body.expiresAt ?? current.expiresAt;
  if (principal.expiresAt && expiresAt.getTime() > principal.expiresAt.getTime())
    throw new ForbiddenError(
      `body.scopes: key ${current.id} expires at ${expiresAt.toISOString()}, after this key (${principal.expiresAt.toISOString()}): this key gives no scope to a key that outlives it (needs *:admin)`,
      { field: 'body.scopes' },
    );
  if (principal.ipAllow?.length) {
    const ipAllow = body.ipAllow === undefined ? current.ipAllow : normalizeIpAllow(body.ipAllow, 'body.ipAllow');
    if (firstUncovered(principal.ipAllow, ipAllow) >= 0)
      throw new ForbiddenError(
        `body.scopes: key ${current.id} may be used from ${ipAllow.length ? ipAllow.join(', ') : 'any address'}, beyond this key's ${principal.ipAllow.join(', ')}: this key gives no scope to a key usable from wider addresses (needs *:admin)`,
        { field: 'body.scopes' },
      );
  }
}

/**
 * Single-use tokens belong to an integration, and an API key to one: a key acts on its own
 * integration's tokens only, unless it holds identity:admin (which manages every integration).
 * Without this any identity:write key could mint, or burn, another integration's tokens.
 * Returns the integration the caller is limited to; undefined for users' sessions (they belong
 * to no integration) and identity:admin keys.
 */
function tokenIntegrationOf(principal: Principal | null): bigint | undefined {
  if (principal?.kind !== 'api_key' || hasScope(principal.scopes, 'identity', 'admin')) return undefined;
  // Fail closed: an API key's principal always names its integration (compose.ts).
  if (principal.integrationId === undefined) throw new Error(`API key principal ${principal.id} has no integration`);
  return principal.integrationId;
}

function requireOwnIntegration(principal: Principal | null, integrationId: string): void {
  const own = tokenIntegrationOf(principal);
  if (own !== undefined && own !== BigInt(integrationId))
    throw new ForbiddenError(
      `id: this key belongs to integration ${own} and mints tokens only for it, not for integration ${BigInt(integrationId)} (needs identity:admin)`,
      { field: 'id' },
    );
}

export function identityRoutes(): RouteSpec[] {
  return [
    route({
      method: 'POST',
      url: '/v1/integrations',
      summary: 'Create an integration (name unique among live integrations)',
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      body: z.object({ name: z.string() }).strict(),
      response: any,
      status: 201,
      handler: ({ body, coffer, principal }) =>
        coffer.write((tx) => identity(tx, actorOf(principal)).integrations.create(body), { op: 'identity.createIntegration' }),
    }),
    route({
      method: 'GET',
      url: '/v1/integrations',
      summary: 'List integrations, cursor-paginated by id',
      tag: 'identity',
      auth: { domain: 'identity', level: 'read' },
      query: z.object({ includeDeleted: z.enum(['true', 'false']).default('false'), ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ query, coffer, principal }) =>
        coffer.read(
          async (tx) => {
            const after = decodeCursor(query.cursor, z.object({ i: idParam }).strict())?.i;
            const rows = await identity(tx, actorOf(principal)).integrations.list({
              includeDeleted: query.includeDeleted === 'true',
              ...(after ? { after } : {}),
              limit: query.limit + 1,
            });
            return pageOf(rows, query.limit, (i) => ({ i: String(i.id) }));
          },
          { op: 'identity.listIntegrations' },
        ),
    }),
    route({
      method: 'PATCH',
      url: '/v1/integrations/:id',
      summary: 'Rename an integration (optimistic concurrency: pass the version you read; a stale one is 409)',
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      params: z.object({ id: idParam }).strict(),
      body: z.object({ name: z.string(), expectedVersion: z.number().int().min(1) }).strict(),
      response: any,
      handler: ({ params, body, coffer, principal }) =>
        coffer.write((tx) => identity(tx, actorOf(principal)).integrations.rename(params.id, body), { op: 'identity.renameIntegration' }),
    }),
    route({
      method: 'DELETE',
      url: '/v1/integrations/:id',
      summary: 'Soft-delete an integration (its keys stop working)',
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      params: z.object({ id: idParam }).strict(),
      query: z.object({ expectedVersion: z.coerce.number().int().min(1).optional() }).strict(),
      response: any,
      handler: ({ params, query, coffer, principal }) =>
        coffer.write(
          (tx) =>
            identity(tx, actorOf(principal)).integrations.delete(
              params.id,
              query.expectedVersion ? { expectedVersion: query.expectedVersion } : {},
            ),
          {
            op: 'identity.deleteIntegration',
          },
        ),
    }),
    route({
      method: 'POST',
      url: '/v1/integrations/:id/keys',
      summary:
        'Create an API key: the key is in this response only; Coffer keeps its hash. Only scopes the calling key holds itself can be granted (403 otherwise)',
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      params: z.object({ id: idParam }).strict(),
      body: z
        .object({
          name: z.string(),
          scopes: z.array(z.string()).max(64),
          expiresAt: isoTime,
          ipAllow: z.array(z.string()).max(64).optional(),
        })
        .strict(),
      response: z.object({ key: z.string(), record: any }),
      status: 201,
      handler: ({ params, body, coffer, principal }) => {
        requireGrantable(principal, body.scopes);
        requireWithinOwnExpiry(principal, body.expiresAt);
        requireWithinOwnAllowList(principal, body.ipAllow, true);
        return coffer.write((tx) => identity(tx, actorOf(principal)).keys.create({ ...body, integrationId: params.id }), {
          op: 'identity.createKey',
        });
      },
    }),
    route({
      method: 'GET',
      url: '/v1/integrations/:id/keys',
      summary: "An integration's API keys (never their secrets), oldest first, cursor-paginated",
      tag: 'identity',
      auth: { domain: 'identity', level: 'read' },
      params: z.object({ id: idParam }).strict(),
      query: z.object({ includeRevoked: z.enum(['true', 'false']).default('false'), ...pageQuery }).strict(),
      response: z.object({ items: z.array(any), nextCursor: z.string().optional() }),
      handler: ({ params, query, coffer, principal }) =>
        coffer.read(
          async (tx) => {
            const c = decodeCursor(query.cursor, z.object({ t: z.number().int().refine(isStorableTime), k: keyId }).strict());
            const rows = await identity(tx, actorOf(principal)).keys.list({
              integrationId: params.id,
              includeRevoked: query.includeRevoked === 'true',
              ...(c ? { after: { integrationId: params.id, createdAt: new Date(c.t), id: c.k } } : {}),
              limit: query.limit + 1,
            });
            return pageOf(rows, query.limit, (k) => ({ t: k.createdAt.getTime(), k: k.id }));
          },
          { op: 'identity.listKeys' },
        ),
    }),
    route({
      method: 'PATCH',
      url: '/v1/keys/:keyId',
      summary:
        "Change a key's scopes, expiry or IP allow-list (optimistic concurrency on expectedVersion). Only scopes the calling key holds can be granted; a key changes its own scopes, expiry or allow-list only with *:admin (403 otherwise)",
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      params: z.object({ keyId }).strict(),
      body: z
        .object({
          expectedVersion: z.number().int().min(1),
          name: z.string().optional(),
          scopes: z.array(z.string()).max(64).optional(),
          expiresAt: isoTime.optional(),
          ipAllow: z.array(z.string()).max(64).optional(),
        })
        .strict(),
      response: any,
      handler: ({ params, body, coffer, principal }) => {
        requireNotSelfWidening(principal, params.keyId, body);
        if (body.scopes !== undefined) requireGrantable(principal, body.scopes);
        requireWithinOwnExpiry(principal, body.expiresAt);
        requireWithinOwnAllowList(principal, body.ipAllow, false);
        return coffer.write(
          async (tx) => {
            const keys = identity(tx, actorOf(principal)).keys;
            if (boundedKey(principal)) {
              const current = await keys.get(params.keyId);
              // Missing, revoked or at another version: the update refuses it, as for any caller.
              if (current && !current.deletedAt && current.version === body.expectedVersion) requireWithinBounds(principal, current, body);
            }
            return keys.update(params.keyId, body);
          },
          { op: 'identity.updateKey' },
        );
      },
    }),
    route({
      method: 'DELETE',
      url: '/v1/keys/:keyId',
      summary: 'Revoke an API key',
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      params: z.object({ keyId }).strict(),
      response: any,
      handler: ({ params, coffer, principal }) =>
        coffer.write((tx) => identity(tx, actorOf(principal)).keys.revoke(params.keyId), { op: 'identity.revokeKey' }),
    }),
    route({
      method: 'PUT',
      url: '/v1/integrations/:id/token-types/:tokenType',
      summary:
        'Configure a single-use token type: maximum open tokens (0 stops minting) and lifetime. Creates it (201) or sets it to these values (200); `created` says which',
      tag: 'identity',
      auth: { domain: 'identity', level: 'admin' },
      params: z.object({ id: idParam, tokenType }).strict(),
      body: z.object({ maxOpen: z.number().int().min(0), lifetimeSeconds: z.number().int().min(1) }).strict(),
      response: any,
      upsert: true,
      handler: async ({ params, body, coffer, principal }) => {
        const { created, config } = await coffer.write(
          (tx) => identity(tx, actorOf(principal)).tokenConfigs.put({ integrationId: params.id, tokenType: params.tokenType, ...body }),
          { op: 'identity.configureTokenType' },
        );
        return { created, ...config };
      },
    }),
    route({
      method: 'POST',
      url: '/v1/integrations/:id/tokens',
      summary: 'Mint a single-use token (refused at the configured maximum, even under concurrent callers)',
      tag: 'identity',
      auth: { domain: 'identity', level: 'write' },
      params: z.object({ id: idParam }).strict(),
      body: z.object({ tokenType }).strict(),
      response: z.object({ token: z.string(), record: any }),
      status: 201,
      handler: ({ params, body, coffer, principal }) => {
        requireOwnIntegration(principal, params.id);
        return coffer.write((tx) => identity(tx, actorOf(principal)).tokens.mint({ integrationId: params.id, tokenType: body.tokenType }), {
          op: 'identity.mintToken',
        });
      },
    }),
    route({
      method: 'POST',
      url: '/v1/tokens/consume',
      summary: 'Consume a single-use token: succeeds exactly once',
      tag: 'identity',
      auth: { domain: 'identity', level: 'write' },
      body: z.object({ token: z.string().max(200), tokenType }).strict(),
      response: any,
      handler: ({ body, coffer, principal }) =>
        coffer
          // Another integration's token is refused as if it did not exist (it is not this key's to know).
          .write(
            (tx) =>
              identity(tx, actorOf(principal)).tokens.consume(body.token, {
                tokenType: body.tokenType,
                integrationId: tokenIntegrationOf(principal),
              }),
            {
              op: 'identity.consumeToken',
            },
          )
          .catch((e: unknown) => {
            // The token in the body is invalid, not the caller's API key: a 401 here would tell a
            // client its key was refused. Consumed or expired tokens stay 422 (their state).
            if (e instanceof UnauthenticatedError) throw new HttpError(400, 'validation', 'body.token: invalid token', 'body.token');
            throw e;
          }),
    }),
    route({
      method: 'GET',
      url: '/v1/integrations/:id',
      summary: 'An integration',
      tag: 'identity',
      auth: { domain: 'identity', level: 'read' },
      params: z.object({ id: idParam }).strict(),
      response: any,
      handler: ({ params, coffer, principal }) =>
        coffer.read(
          async (tx) => (await identity(tx, actorOf(principal)).integrations.get(params.id)) ?? missing('integration', params.id, 'id'),
          {
            op: 'identity.getIntegration',
          },
        ),
    }),
  ];
}
