// The audit API beyond what the identity and chain API tests cover: an entity's trail pages
// through every entry (it used to stop silently at 1000), and a chain kept in its own database
// has its log there, read and verified with ?chainId=.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ConfigSchema } from '../../config/config.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { testService, type TestService } from '../../../test/service-support.js';
import { ChainRouter } from '../chain/router.js';
import { MIGRATIONS } from '../registry.js';
import { systemActor } from './actor.js';
import { audit } from './log.js';

forEachBackend('audit API', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  let reader: { authorization: string };
  before(async () => {
    coffer = await ctx.open();
    svc = await testService(coffer);
    reader = await svc.key(['audit:read']);
  });

  test("an entity's trail pages through every entry with nextCursor, oldest first", async () => {
    const total = 1005;
    await coffer.write(async (tx) => {
      const log = audit(tx);
      for (let i = 0; i < total; i++)
        await log.record({
          actor: systemActor('t'),
          action: 'test.thing.touch',
          domain: 'test',
          entity: 'thing',
          entityId: 'busy',
          details: { i },
        });
    });
    const seen: number[] = [];
    let cursor: string | undefined;
    do {
      const r = await svc.call('GET', `/v1/audit/trail/test/thing/busy?limit=500${cursor ? `&cursor=${cursor}` : ''}`, reader);
      assert.equal(r.statusCode, 200, r.body);
      const page = r.json();
      assert.ok(page.items.length <= 500);
      seen.push(...page.items.map((e: { change: { details: { i: number } } }) => e.change.details.i));
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(
      seen,
      Array.from({ length: total }, (_, i) => i),
    );
    const bad = await svc.call('GET', '/v1/audit/trail/test/thing/busy?cursor=nope', reader);
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.field, 'query.cursor');
    // A well-formed cursor whose sequence number is beyond 64 bits is not one this API issued.
    const beyond = Buffer.from(JSON.stringify({ s: '9999999999999999999' })).toString('base64url');
    for (const url of [`/v1/audit/trail/test/thing/busy?cursor=${beyond}`, `/v1/audit/entries?cursor=${beyond}`]) {
      const res = await svc.call('GET', url, reader);
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
      assert.equal(res.json().error.field, 'query.cursor', url);
    }
  });
});

forEachBackend(
  'audit API with per-chain databases',
  (ctx) => {
    test('a chain in its own database keeps its audit entries there; ?chainId= reads and verifies that log', async () => {
      const def = await ctx.newDatabase();
      const side = await ctx.newDatabase();
      const config = ConfigSchema.parse({ database: { url: def.url, chains: { side: side.url } }, log: { level: 'silent' } });
      const router = await ChainRouter.open(config, { migrations: MIGRATIONS });
      try {
        const svc = await testService(router.default, { chains: router });
        const admin = await svc.key(['chain:admin', 'audit:read']);
        for (const chainId of ['main', 'side']) {
          const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'test', confirmations: 3 });
          assert.equal(r.statusCode, 201, r.body);
        }
        const registered = async (query: string) =>
          (await svc.call('GET', `/v1/audit/entries?limit=500${query}`, admin))
            .json()
            .items.filter((e: { action: string }) => e.action === 'chain.chain.register')
            .map((e: { entityId: string }) => e.entityId);
        assert.deepEqual(await registered(''), ['main']);
        assert.deepEqual(await registered('&chainId=side'), ['side']);
        // A chain not in the map lives in the default database, and so does its log.
        assert.deepEqual(await registered('&chainId=main'), ['main']);
        const verified = (await svc.call('GET', '/v1/audit/verify?chainId=side', admin)).json();
        assert.equal(verified.ok, true);
        assert.ok(BigInt(verified.verified) >= 1n, JSON.stringify(verified));
        const head = (await svc.call('GET', '/v1/audit/head?chainId=side', admin)).json();
        assert.equal(head.seq, '1');
        const trail = (await svc.call('GET', '/v1/audit/trail/chain/chain/side?chainId=side', admin)).json();
        assert.equal(trail.items.length, 1);
        const bad = await svc.call('GET', '/v1/audit/head?chainId=bad%20id', admin);
        assert.equal(bad.statusCode, 400);
        assert.equal(bad.json().error.field, 'query.chainId');
      } finally {
        await router.close();
      }
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
