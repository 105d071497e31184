// Builds the real service (every domain's routes, the store authenticator) over a test
// database, and mints API keys for it, for API tests through app.inject().
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { Logger } from 'pino';
import { systemActor } from '../src/domains/audit/actor.js';
import { ChainRouter } from '../src/domains/chain/router.js';
import { identity } from '../src/domains/identity/index.js';
import type { Coffer } from '../src/db/store.js';
import { ConfigSchema } from '../src/config/config.js';
import { withDatabase } from '../src/db/url.js';
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

type MintKey = TestService['key'];

/** Mints API keys on `coffer`'s identity tables, all of one new integration. */
export async function keyMinter(coffer: Coffer): Promise<MintKey> {
  const integrationId = await coffer.write(
    async (tx) =>
      (await identity(tx, systemActor('test')).integrations.create({ name: `test-${process.pid}-${Date.now()}-${counter++}` })).id,
  );
  return async (scopes, opts = {}) => {
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
  };
}

/**
 * The service as `coffer serve` builds it, authentication cache included (server.authCacheMs,
 * default unless given); `chains` routes chains to their own databases (default: all in `coffer`).
 */
export async function testService(
  coffer: Coffer,
  opts: { authCacheMs?: number; chains?: ChainRouter; logger?: Logger } = {},
): Promise<TestService> {
  const services: Services = { coffer, chains: opts.chains ?? ChainRouter.fixed(coffer), blockProcessors: BLOCK_PROCESSORS };
  if (!coffer.metrics.registry.getSingleMetric('coffer_chain_sync_lag_blocks')) registerChainGauges(coffer.metrics, services);
  const app = await buildApp({
    coffer,
    services,
    routes: [...dashboardRoutes(DASHBOARD_SOURCES), ...DOMAIN_ROUTES],
    authenticator: storeAuthenticator(services, { cacheMs: opts.authCacheMs ?? ConfigSchema.parse({}).server.authCacheMs }),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  return {
    app,
    services,
    key: await keyMinter(coffer),
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
 * A TCP proxy on a local port to host:port. cut() stops it and drops every connection through it:
 * from then on the server behind it is unreachable for whoever connected through the proxy
 * (connections refused), as when a database host goes away.
 */
export async function tcpProxy(host: string, port: number): Promise<{ port: number; cut(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) s.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/**
 * A database of the backend whose own default collation is not byte order, so an order or a
 * range left to it would differ from one made byte by byte: PostgreSQL with the ICU collation
 * en-US (case and punctuation are compared linguistically), MySQL/MariaDB with utf8mb4_unicode_ci
 * (case-insensitive; Coffer's tables name their own collation). SQLite has no per-database
 * collation (its BINARY is byte order): there it is a fresh database. Dropped by `drop`.
 */
export async function linguisticDatabase(ctx: BackendContext): Promise<TestDatabase> {
  const admin =
    ctx.backend === 'postgres'
      ? process.env.COFFER_TEST_POSTGRES_URL
      : ctx.backend === 'mysql'
        ? process.env.COFFER_TEST_MYSQL_URL
        : undefined;
  if (!admin) return createDatabase(ctx.backend === 'memory' ? 'memory' : 'sqlite');
  const name = `coffer_t_icu_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  if (ctx.backend === 'postgres') {
    const run = async (statement: string) => {
      const c = new pg.Client({ connectionString: admin, connectionTimeoutMillis: 5000 });
      await c.connect();
      try {
        await c.query(statement);
      } finally {
        await c.end();
      }
    };
    await run(`CREATE DATABASE "${name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'`);
    return { url: withDatabase(admin, name), drop: () => run(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
  }
  const u = new URL(admin);
  const run = async (statement: string) => {
    const c = await mysql.createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username) || 'root',
      password: decodeURIComponent(u.password),
      connectTimeout: 5000,
    });
    try {
      await c.query(statement);
    } finally {
      await c.end();
    }
  };
  await run(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  return { url: withDatabase(admin, name), drop: () => run(`DROP DATABASE IF EXISTS \`${name}\``) };
}

export interface SideChainOptions {
  /** Leave the second database unmigrated. */
  migrate?: 'skip';
  /** The chains routed to the second database (default ["side"]). */
  sideChains?: string[];
  /** The default database's URL (default: a fresh one of the backend). */
  defaultUrl?: string;
  /**
   * Reach a server backend's second database through a TCP proxy, so cut() can make it
   * unreachable. A SQLite file open in the process cannot become unreachable (its open handles
   * keep working if it is removed), so there cut() closes the second database's Coffer, which
   * fails every later read with the same ConnectionError a lost connection gives.
   */
  cuttable?: boolean;
}

/**
 * The backend's default database and a second one holding chain "side" (or opts.sideChains),
 * with a chain router over both. memory:// has one in-process database per URL, so there the
 * second is a SQLite file, added to `dropAfter` for the suite to drop.
 */
export async function sideChainRouter(
  ctx: BackendContext,
  dropAfter: TestDatabase[],
  opts: SideChainOptions = {},
): Promise<{ def: Coffer; side: TestDatabase; router: ChainRouter; cut: () => Promise<void> }> {
  const def = await ctx.open(opts.defaultUrl ? { url: opts.defaultUrl } : {});
  let side: TestDatabase;
  if (ctx.backend !== 'memory') side = await ctx.newDatabase();
  else dropAfter.push((side = await createDatabase('sqlite')));
  let sideUrl = side.url;
  let cutProxy: (() => Promise<void>) | undefined;
  if (opts.cuttable && (ctx.backend === 'postgres' || ctx.backend === 'mysql')) {
    const u = new URL(side.url);
    const proxy = await tcpProxy(u.hostname, Number(u.port || (ctx.backend === 'postgres' ? 5432 : 3306)));
    u.hostname = '127.0.0.1';
    u.port = String(proxy.port);
    sideUrl = u.toString();
    cutProxy = proxy.cut;
  }
  const chains = Object.fromEntries((opts.sideChains ?? ['side']).map((c) => [c, sideUrl]));
  const config = ConfigSchema.parse({ database: { url: def.target.url, chains }, log: { level: 'silent' } });
  const router = await ChainRouter.open(config, {
    defaultCoffer: def,
    migrations: MIGRATIONS,
    ...(opts.migrate ? { migrate: opts.migrate } : {}),
  });
  const cut = async () => {
    if (cutProxy) return cutProxy();
    await router
      .databases()
      .find((d) => !d.isDefault)!
      .coffer.close();
  };
  return { def, side, router, cut };
}
