// Builds the real service (every domain's routes, the store authenticator) over a test
// database, and mints API keys for it, for API tests through app.inject().
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { systemActor } from '../src/domains/audit/actor.js';
import { ChainRouter } from '../src/domains/chain/router.js';
import { identity } from '../src/domains/identity/index.js';
import type { Coffer } from '../src/db/store.js';
import { ConfigSchema } from '../src/config/config.js';
import { buildApp } from '../src/server/app.js';
import { registerChainGauges, storeAuthenticator } from '../src/server/compose.js';
import { dashboardRoutes } from '../src/server/dashboard/data.js';
import { BLOCK_PROCESSORS, DASHBOARD_SOURCES, DOMAIN_ROUTES } from '../src/server/domains.js';
import type { Services } from '../src/server/services.js';
import { MIGRATIONS } from '../src/domains/registry.js';
import { createDatabase, type BackendContext, type TestDatabase } from './harness.js';

export interface TestService {
  app: FastifyInstance;
  services: Services;
  /** Creates an API key with these scopes and returns its Authorization header. */
  key(scopes: string[], opts?: { ipAllow?: string[]; expiresAt?: Date }): Promise<{ authorization: string; keyId: string }>;
  call(method: string, url: string, auth?: { authorization: string } | null, payload?: unknown): Promise<LightMyRequestResponse>;
}

let counter = 0;

/**
 * The service as `coffer serve` builds it, authentication cache included (server.authCacheMs,
 * default unless given); `chains` routes chains to their own databases (default: all in `coffer`).
 */
export async function testService(coffer: Coffer, opts: { authCacheMs?: number; chains?: ChainRouter } = {}): Promise<TestService> {
  const services: Services = { coffer, chains: opts.chains ?? ChainRouter.fixed(coffer), blockProcessors: BLOCK_PROCESSORS };
  if (!coffer.metrics.registry.getSingleMetric('coffer_chain_sync_lag_blocks')) registerChainGauges(coffer.metrics, services);
  const app = await buildApp({
    coffer,
    services,
    routes: [...dashboardRoutes(DASHBOARD_SOURCES), ...DOMAIN_ROUTES],
    authenticator: storeAuthenticator(services, { cacheMs: opts.authCacheMs ?? ConfigSchema.parse({}).server.authCacheMs }),
  });
  const integrationId = await coffer.write(
    async (tx) =>
      (await identity(tx, systemActor('test')).integrations.create({ name: `test-${process.pid}-${Date.now()}-${counter++}` })).id,
  );
  return {
    app,
    services,
    key: async (scopes, opts = {}) => {
      const created = await coffer.write((tx) =>
        identity(tx, systemActor('test')).keys.create({
          integrationId,
          name: `k${counter++}`,
          scopes,
          expiresAt: opts.expiresAt ?? new Date(Date.now() + 3_600_000),
          ...(opts.ipAllow ? { ipAllow: opts.ipAllow } : {}),
        }),
      );
      return { authorization: `Bearer ${created.key}`, keyId: created.record.id };
    },
    call: (method, url, auth, payload) =>
      app.inject({
        method: method as 'GET',
        url,
        headers: auth ? { authorization: auth.authorization } : {},
        ...(payload !== undefined ? { payload: payload as object } : {}),
      }),
  };
}

/**
 * The backend's default database and a second one holding chain "side", with a chain router over
 * both. memory:// has one in-process database per URL, so there the second is a SQLite file,
 * added to `dropAfter` for the suite to drop. `migrate: 'skip'` leaves the second unmigrated.
 */
export async function sideChainRouter(
  ctx: BackendContext,
  dropAfter: TestDatabase[],
  opts: { migrate?: 'skip' } = {},
): Promise<{ def: Coffer; side: TestDatabase; router: ChainRouter }> {
  const def = await ctx.open();
  let side: TestDatabase;
  if (ctx.backend !== 'memory') side = await ctx.newDatabase();
  else dropAfter.push((side = await createDatabase('sqlite')));
  const config = ConfigSchema.parse({ database: { url: def.target.url, chains: { side: side.url } }, log: { level: 'silent' } });
  const router = await ChainRouter.open(config, {
    defaultCoffer: def,
    migrations: MIGRATIONS,
    ...(opts.migrate ? { migrate: opts.migrate } : {}),
  });
  return { def, side, router };
}
