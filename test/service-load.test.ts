// What a client that cannot authenticate, and a Prometheus scrape, cost the databases of the
// real service: bad keys and keys used from the wrong address are limited per client address
// before they are looked up, and one scrape reads each chain database once.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { Coffer } from '../src/db/store.js';
import type { StoreMetrics } from '../src/db/metrics.js';
import { ChainRouter } from '../src/domains/chain/router.js';
import { buildApp } from '../src/server/app.js';
import { storeAuthenticator } from '../src/server/compose.js';
import { BLOCK_PROCESSORS, DOMAIN_ROUTES } from '../src/server/domains.js';
import type { Services } from '../src/server/services.js';
import { forEachBackend, type TestDatabase } from './harness.js';
import { sideChainRouter, testService } from './service-support.js';

/** Store operations named `op` completed so far (the count of its duration histogram). */
async function operations(metrics: StoreMetrics, op: string): Promise<number> {
  const { values } = await metrics.opDuration.get();
  return values
    .filter((v) => v.labels.op === op && v.metricName === 'coffer_store_operation_duration_seconds_count')
    .reduce((n, v) => n + v.value, 0);
}

forEachBackend('service load from failed authentications and scrapes', (ctx) => {
  // The memory backend has one in-process database per URL, so its second database is a file.
  const extra: TestDatabase[] = [];
  after(async () => {
    for (const d of extra) await d.drop();
  });
  test('bad keys, and a key used from an address outside its allow-list, cost a burst of reads, then 429', async () => {
    const coffer: Coffer = await ctx.open();
    const key = (await testService(coffer)).key;
    const services: Services = { coffer, chains: ChainRouter.fixed(coffer), blockProcessors: BLOCK_PROCESSORS };
    const app = await buildApp({
      coffer,
      services,
      routes: DOMAIN_ROUTES,
      authenticator: storeAuthenticator(services, { cacheMs: 60_000 }),
      // 0.1/s: no failure is forgiven while the test runs, so the counts are exact.
      rateLimit: { perSecond: 0.1, burst: 4 },
    });
    try {
      const reads = () => operations(coffer.metrics, 'identity.authenticate');
      const get = (remoteAddress: string, authorization: string) =>
        app.inject({ method: 'GET', url: '/v1/chains', remoteAddress, headers: { authorization } });

      const before = await reads();
      const statuses: number[] = [];
      for (let i = 0; i < 50; i++) statuses.push((await get('10.1.0.1', 'Bearer cfk_not_a_key')).statusCode);
      assert.deepEqual(statuses, [...Array(4).fill(401), ...Array(46).fill(429)]);
      assert.equal((await reads()) - before, 4, 'only the burst reached the database');
      const refused = await get('10.1.0.1', 'Bearer cfk_not_a_key');
      assert.equal(refused.json().error.code, 'rate_limited');
      assert.ok(Number(refused.headers['retry-after']) >= 9, String(refused.headers['retry-after']));

      // A real key, refused (403) from an address outside its allow-list: limited the same.
      const pinned = await key(['chain:read'], { ipAllow: ['127.0.0.1/32'] });
      const fromElsewhere: number[] = [];
      for (let i = 0; i < 6; i++) fromElsewhere.push((await get('10.1.0.2', pinned.authorization)).statusCode);
      assert.deepEqual(fromElsewhere, [403, 403, 403, 403, 429, 429]);
      // The key still works from its own address, and other clients are not affected.
      assert.equal((await get('127.0.0.1', pinned.authorization)).statusCode, 200);
      const other = await key(['chain:read']);
      assert.equal((await get('10.1.0.3', other.authorization)).statusCode, 200);
    } finally {
      await app.close();
    }
  });

  test('one scrape of /metrics reads each chain database once, and both chain gauges are filled from it', async () => {
    const { def, router } = await sideChainRouter(ctx, extra);
    try {
      const svc = await testService(def, { chains: router });
      const admin = await svc.key(['*:admin']);
      for (const chainId of ['main', 'side']) {
        const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'test', confirmations: 1 });
        assert.equal(r.statusCode, 201, r.body);
      }
      for (const [chainId, n] of [
        ['main', 1],
        ['side', 2],
      ] as const) {
        const r = await svc.call('POST', `/v1/chains/${chainId}/blocks`, admin, {
          height: '0',
          hash: String(n).repeat(64),
          parentHash: '0'.repeat(64),
          time: '2026-01-01T00:00:00.000Z',
          transactions: [],
        });
        assert.equal(r.statusCode, 200, r.body);
      }
      await svc.call('PUT', '/v1/chains/side/latest-height', admin, { height: '7' });

      // Each database counts its reads in its own metrics (or a shared one): count each once.
      const registries = [...new Set(router.databases().map((d) => d.coffer.metrics))];
      const reads = async () => {
        let n = 0;
        for (const m of registries) n += await operations(m, 'dashboard.chains');
        return n;
      };
      assert.equal(router.databases().length, 2);
      for (let scrape = 0; scrape < 3; scrape++) {
        const before = await reads();
        const text = (await svc.app.inject({ method: 'GET', url: '/metrics' })).body;
        assert.equal((await reads()) - before, 2, `scrape ${scrape}: one read per database`);
        assert.match(text, /coffer_chain_sync_lag_blocks\{chain="side"\} 7/);
        assert.match(text, /coffer_chain_height\{chain="main"\} 0/);
        assert.match(text, /coffer_chain_height\{chain="side"\} 0/);
      }
      // The next scrape reads afresh: a change since the last one shows.
      await svc.call('PUT', '/v1/chains/side/latest-height', admin, { height: '9' });
      assert.match((await svc.app.inject({ method: 'GET', url: '/metrics' })).body, /coffer_chain_sync_lag_blocks\{chain="side"\} 9/);
    } finally {
      await router.close();
    }
  });
});
