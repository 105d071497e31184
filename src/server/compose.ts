// Puts the service together from configuration: the databases (default and per-chain), the
// authenticator over hashed API keys and sessions, every domain's routes, the block
// processors, and the dashboard's sources.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { CofferConfig } from '../config/config.js';
import { Gauge } from 'prom-client';
import { StoreMetrics } from '../db/metrics.js';
import { chainPanels } from '../domains/chain/dashboard.js';
import { authenticateApiKey, authenticateSession } from '../domains/identity/index.js';
import { identityGeneration } from '../domains/identity/base.js';
import { AuthCache } from './auth-cache.js';
import { ChainRouter } from '../domains/chain/router.js';
import { databaseName, fromEach, Unavailable, type OutageLogger } from './databases.js';
import { buildApp } from './app.js';
import { dashboardRoutes, type DashboardSources } from './dashboard/data.js';
import type { Authenticator, RouteSpec } from './route.js';
import type { Services } from './services.js';
import { DOMAIN_ROUTES, DASHBOARD_SOURCES, BLOCK_PROCESSORS } from './domains.js';

/**
 * Bearer credentials: API keys (cfk_…) and user sessions (cfs_…), checked against their hashes.
 * Successes are reused for `cacheMs` (auth-cache.ts); 0 checks the database on every request.
 */
export function storeAuthenticator(services: Services, opts: { cacheMs?: number } = {}): Authenticator {
  const cache = new AuthCache({ ttlMs: opts.cacheMs ?? 0, generation: identityGeneration });
  return cache.wrap((token, ip) =>
    services.coffer.read(
      async (tx) => {
        if (token.startsWith('cfs_')) {
          const s = await authenticateSession(tx, token);
          return {
            principal: { kind: 'user', id: String(s.user.id), scopes: s.scopes, expiresAt: s.session.expiresAt },
            expiresAt: s.session.expiresAt,
          };
        }
        const k = await authenticateApiKey(tx, token, { ip });
        return {
          principal: {
            kind: 'api_key',
            id: k.keyId,
            scopes: k.scopes,
            expiresAt: k.expiresAt,
            ipAllow: k.ipAllow,
            integrationId: k.integrationId,
          },
          expiresAt: k.expiresAt,
        };
      },
      { op: 'identity.authenticate' },
    ),
  );
}

type ChainSync = { chainId: string; height: bigint | null; lag: bigint | null };
/** One scrape's read: every chain's sync, and whether each database answered. */
type ChainScrape = { chains: ChainSync[]; up: { database: string; up: number }[] };

/**
 * Sync height and lag per chain, and whether each database answers, read from the chain databases
 * when Prometheus scrapes. A database that does not answer leaves only its own chains' series out;
 * its failures and its recovery go to the outage log (databases.ts) through `logger` (none when
 * it is not given).
 */
export function registerChainGauges(metrics: StoreMetrics, services: Services, logger?: OutageLogger): void {
  const readAll = async (): Promise<ChainScrape> => {
    const databases = services.chains.databases();
    const perDatabase = await fromEach(databases, (db) => chainPanels(db.coffer), new Unavailable(logger), 'metrics.chains');
    const chains: ChainSync[] = [];
    for (let i = 0; i < databases.length; i++)
      for (const p of perDatabase[i] ?? [])
        if (services.chains.for(p.chainId) === databases[i]!.coffer)
          chains.push({
            chainId: p.chainId,
            height: p.height === null ? null : BigInt(p.height),
            lag: p.lag === null ? null : BigInt(p.lag),
          });
    // Every database has a series, one holding no chains yet too: a failed read gives undefined.
    return { chains, up: databases.map((db, i) => ({ database: databaseName(db), up: perDatabase[i] === undefined ? 0 : 1 })) };
  };
  // Every gauge comes from one read a scrape: the registry collects every metric at once, so the
  // later collects find the first one's read in flight and share it. Dropped once it settles,
  // so the next scrape reads afresh.
  let inFlight: Promise<ChainScrape> | undefined;
  const read = (): Promise<ChainScrape> => {
    if (!inFlight) {
      const p = readAll().catch((): ChainScrape => ({ chains: [], up: [] }));
      inFlight = p;
      void p.finally(() => {
        if (inFlight === p) inFlight = undefined;
      });
    }
    return inFlight;
  };
  new Gauge({
    name: 'coffer_chain_sync_lag_blocks',
    help: 'Latest known height minus the stored tip, per chain',
    labelNames: ['chain'],
    registers: [metrics.registry],
    async collect() {
      const { chains } = await read();
      this.reset();
      for (const c of chains) if (c.lag !== null) this.set({ chain: c.chainId }, Number(c.lag));
    },
  });
  new Gauge({
    name: 'coffer_chain_height',
    help: 'Stored tip height per chain',
    labelNames: ['chain'],
    registers: [metrics.registry],
    async collect() {
      const { chains } = await read();
      this.reset();
      for (const c of chains) if (c.height !== null) this.set({ chain: c.chainId }, Number(c.height));
    },
  });
  new Gauge({
    name: 'coffer_database_up',
    help: 'Whether the database answered the chain read of this scrape (1) or not (0)',
    labelNames: ['database'],
    registers: [metrics.registry],
    async collect() {
      const { up } = await read();
      this.reset();
      for (const d of up) this.set({ database: d.database }, d.up);
    },
  });
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
  registerChainGauges(metrics, services, logger);
  try {
    const app = await buildApp({
      coffer: chains.default,
      services,
      logger,
      routes: [...dashboardRoutes(opts.dashboard ?? DASHBOARD_SOURCES), ...DOMAIN_ROUTES, ...(opts.routes ?? [])],
      authenticator: storeAuthenticator(services, { cacheMs: config.server.authCacheMs }),
      rateLimit: { perSecond: config.server.rateLimitPerSecond, burst: config.server.rateLimitBurst },
      bodyLimitBytes: config.server.bodyLimitBytes,
      trustProxy: config.server.trustProxy,
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
