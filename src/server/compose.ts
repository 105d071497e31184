// Puts the service together from configuration: the databases (default and per-chain), the
// authenticator over hashed API keys and sessions, every domain's routes, the block
// processors, and the dashboard's sources.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { CofferConfig } from '../config/config.js';
import { StoreMetrics } from '../db/metrics.js';
import { authenticateApiKey, authenticateSession } from '../domains/identity/index.js';
import { ChainRouter } from '../domains/chain/router.js';
import { buildApp } from './app.js';
import { dashboardRoutes, type DashboardSources } from './dashboard/data.js';
import type { Authenticator, Principal, RouteSpec } from './route.js';
import type { Services } from './services.js';
import { DOMAIN_ROUTES, DASHBOARD_SOURCES, BLOCK_PROCESSORS } from './domains.js';

/** Bearer credentials: API keys (cfk_…) and user sessions (cfs_…), checked against their hashes. */
export function storeAuthenticator(services: Services): Authenticator {
  return {
    authenticate: async (token: string, ip: string): Promise<Principal> =>
      services.coffer.read(
        async (tx) => {
          if (token.startsWith('cfs_')) {
            const s = await authenticateSession(tx, token);
            return { kind: 'user', id: String(s.user.id), scopes: s.scopes };
          }
          const k = await authenticateApiKey(tx, token, { ip });
          return { kind: 'api_key', id: k.keyId, scopes: k.scopes };
        },
        { op: 'identity.authenticate' },
      ),
  };
}

export interface Service {
  app: FastifyInstance;
  services: Services;
  close(): Promise<void>;
}

export async function createService(
  config: CofferConfig,
  logger: Logger,
  opts: { routes?: readonly RouteSpec[]; dashboard?: DashboardSources } = {},
): Promise<Service> {
  const metrics = new StoreMetrics(undefined, { defaultMetrics: true });
  metrics.slowThresholdMs = config.server.slowQueryMs;
  const chains = await ChainRouter.open(config, { logger, metrics });
  const services: Services = { coffer: chains.default, chains, blockProcessors: BLOCK_PROCESSORS };
  try {
    const app = await buildApp({
      coffer: chains.default,
      services,
      logger,
      routes: [...dashboardRoutes(opts.dashboard ?? DASHBOARD_SOURCES), ...DOMAIN_ROUTES, ...(opts.routes ?? [])],
      authenticator: storeAuthenticator(services),
      rateLimit: { perSecond: config.server.rateLimitPerSecond, burst: config.server.rateLimitBurst },
      bodyLimitBytes: config.server.bodyLimitBytes,
    });
    return {
      app,
      services,
      close: async () => {
        await app.close();
        await chains.close();
      },
    };
  } catch (e) {
    await chains.close();
    throw e;
  }
}
