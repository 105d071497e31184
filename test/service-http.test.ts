// The real service through app.inject(), at its edges: path parameters as long as the API
// accepts them, URLs the router refuses (in the API's error format), and a service whose chains
// live in several databases: /ready checks every one of them and says which is not ready
// without leaking driver messages, and the dashboard shows the chains of every database.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MigrationError } from '../src/db/errors.js';
import { systemActor } from '../src/domains/audit/actor.js';
import { audit } from '../src/domains/audit/log.js';
import { chain } from '../src/domains/chain/store.js';
import { MIGRATIONS } from '../src/domains/registry.js';
import { migrationId } from '../src/migrations/migration.js';
import { buildApp } from '../src/server/app.js';
import { forEachBackend, type TestDatabase } from './harness.js';
import { sideChainRouter, testService } from './service-support.js';

const hex = (n: number) => n.toString(16).padStart(64, '0');

forEachBackend('service HTTP edges', (ctx) => {
  test('a 128-character address and a 256-character entity id (percent-encoded) are readable', async () => {
    const coffer = await ctx.open();
    const svc = await testService(coffer);
    const admin = await svc.key(['*:admin']);
    assert.equal(
      (await svc.call('POST', '/v1/chains', admin, { chainId: 'ada', name: 'A', network: 'm', confirmations: 1 })).statusCode,
      201,
    );
    // The longest address ingest accepts, with characters that must be percent-encoded in a path.
    const address = 'addr1/?#%' + 'q'.repeat(119);
    assert.equal(address.length, 128);
    const ingested = await svc.call('POST', '/v1/chains/ada/blocks', admin, {
      height: '0',
      hash: hex(1),
      parentHash: hex(0),
      time: '2026-01-01T00:00:00.000Z',
      transactions: [{ txHash: hex(100), indexInBlock: 0, outputs: [{ address, value: '5' }] }],
    });
    assert.equal(ingested.statusCode, 200, ingested.body);
    const byAddress = await svc.call('GET', `/v1/chains/ada/addresses/${encodeURIComponent(address)}/transactions`, admin);
    assert.equal(byAddress.statusCode, 200, byAddress.body);
    assert.deepEqual(
      byAddress.json().items.map((t: { txHash: string }) => t.txHash),
      [hex(100)],
    );
    assert.equal((await svc.call('GET', `/v1/tokens/balances/${encodeURIComponent(address)}`, admin)).statusCode, 200);

    // 256 characters of 3 UTF-8 bytes each: 2304 characters once percent-encoded.
    const entityId = '€'.repeat(256);
    await coffer.write((tx) =>
      audit(tx).record({ actor: systemActor('t'), action: 'test.thing.touch', domain: 'test', entity: 'thing', entityId, details: {} }),
    );
    const trail = await svc.call('GET', `/v1/audit/trail/test/thing/${encodeURIComponent(entityId)}`, admin);
    assert.equal(trail.statusCode, 200, trail.body.slice(0, 300));
    assert.deepEqual(
      trail.json().items.map((e: { entityId: string }) => e.entityId),
      [entityId],
    );
    // One character over the audit rule is the route's own 400, not the router's.
    const over = await svc.call('GET', `/v1/audit/trail/test/thing/${encodeURIComponent('€'.repeat(257))}`, admin);
    assert.equal(over.statusCode, 400);
    assert.equal(over.json().error.field, 'params.entityId');
  });

  test('URLs the router refuses answer in the API error format, with the request id', async () => {
    const coffer = await ctx.open();
    const svc = await testService(coffer);
    const admin = await svc.key(['*:admin']);
    const bad = await svc.app.inject({ method: 'GET', url: '/v1/chains/%E0%A4%A', headers: { ...admin, 'x-request-id': 'bad-url-1' } });
    assert.equal(bad.statusCode, 400);
    assert.deepEqual(bad.json(), {
      error: { code: 'validation', message: 'the URL path is not valid (malformed percent-encoding)', requestId: 'bad-url-1' },
    });
    assert.equal(bad.headers['x-request-id'], 'bad-url-1');
    const long = await svc.call('GET', `/v1/chains/ada/addresses/${'a'.repeat(5000)}/transactions`, admin);
    assert.equal(long.statusCode, 414);
    assert.equal(long.json().error.code, 'validation');
    assert.equal(long.json().error.message, 'a URL path segment is too long');
    assert.equal(long.json().error.requestId, long.headers['x-request-id']);
  });

  test('/ready gives fixed reasons to the public and logs the detail', async () => {
    const coffer = await ctx.open();
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const app = await buildApp({ coffer, logger: pino({ level: 'info' }, sink) });
    try {
      const ok = await app.inject({ method: 'GET', url: '/ready' });
      assert.equal(ok.statusCode, 200, ok.body);
      assert.deepEqual(ok.json().databases, [{ name: 'default', status: 'ready' }]);

      const secret = 'password authentication failed for user "coffer_prod" (host 10.2.3.4)';
      coffer.read = async () => {
        throw Object.assign(new Error(secret), { code: '28P01' });
      };
      const down = await app.inject({ method: 'GET', url: '/ready' });
      assert.equal(down.statusCode, 503);
      assert.deepEqual(down.json(), {
        status: 'unavailable',
        reason: 'default: database unreachable',
        databases: [{ name: 'default', status: 'unavailable', reason: 'database unreachable' }],
      });
      assert.doesNotMatch(down.body, /password|coffer_prod|10\.2\.3\.4/);
      const logged = lines.map((l) => JSON.parse(l) as { database?: string; err?: { message?: string } });
      assert.ok(
        logged.some((l) => l.database === 'default' && l.err?.message === secret),
        `the driver message is logged server-side: ${lines.join('')}`,
      );
      delete (coffer as { read?: unknown }).read;

      coffer.migrator.verify = async () => {
        throw new MigrationError('migration chain/0002_init was edited after it was applied (/srv/coffer/src/domains/chain/migrations.ts)');
      };
      const invalid = await app.inject({ method: 'GET', url: '/ready' });
      assert.equal(invalid.statusCode, 503);
      assert.equal(invalid.json().reason, 'default: migration state invalid');
      assert.doesNotMatch(invalid.body, /edited|\/srv\//);
      assert.ok(lines.some((l) => l.includes('/srv/coffer')));
      delete (coffer.migrator as { verify?: unknown }).verify;
      assert.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});

forEachBackend('service with per-chain databases', (ctx) => {
  // The memory backend has one in-process database per URL, so its second database is a file.
  const extra: TestDatabase[] = [];
  after(async () => {
    for (const d of extra) await d.drop();
  });
  test('/ready checks every database: pending migrations and an unreachable one are named, never by URL', async () => {
    // Not migrated on open: the side database starts with every migration pending.
    const { def, side, router } = await sideChainRouter(ctx, extra, { migrate: 'skip' });
    try {
      const svc = await testService(def, { chains: router });
      const sideCoffer = router.databases().find((d) => !d.isDefault)!.coffer;

      const pending = await svc.call('GET', '/ready');
      assert.equal(pending.statusCode, 503, pending.body);
      const body = pending.json();
      assert.equal(body.reason, 'chain:side: migrations pending');
      assert.deepEqual(body.databases[0], { name: 'default', status: 'ready' });
      const sideState = body.databases[1];
      assert.equal(sideState.name, 'chain:side');
      assert.equal(sideState.reason, 'migrations pending');
      assert.equal(sideState.pendingCount, MIGRATIONS.length);
      // The ids are not secret and say what to run; only the first few, to keep the answer short.
      assert.deepEqual(sideState.pending, MIGRATIONS.slice(0, 5).map(migrationId));

      await sideCoffer.migrator.apply();
      const ready = await svc.call('GET', '/ready');
      assert.equal(ready.statusCode, 200, ready.body);
      assert.deepEqual(
        ready.json().databases.map((d: { name: string }) => d.name),
        ['default', 'chain:side'],
      );

      await sideCoffer.close();
      const down = await svc.call('GET', '/ready');
      assert.equal(down.statusCode, 503, down.body);
      assert.equal(down.json().reason, 'chain:side: database unreachable');
      assert.doesNotMatch(down.body, new RegExp(side.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assert.doesNotMatch(down.body, /sqlite:|postgres:|mysql:|memory:/);
    } finally {
      await router.close();
    }
  });

  test('the dashboard shows the chains of every database, each once, from the database it is routed to', async () => {
    const { def, router } = await sideChainRouter(ctx, extra);
    try {
      const svc = await testService(def, { chains: router });
      const admin = await svc.key(['*:admin']);
      for (const chainId of ['main', 'side']) {
        const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'test', confirmations: 3 });
        assert.equal(r.statusCode, 201, r.body);
      }
      await svc.call('PUT', '/v1/chains/side/latest-height', admin, { height: '7' });
      // A stale row for "side" in the default database (written before it was mapped) is not shown.
      await def.write((tx) => chain(tx).registerChain({ chainId: 'side', name: 'stale', network: 'test', confirmations: 3 }));

      const d = await svc.call('GET', '/v1/dashboard', admin);
      assert.equal(d.statusCode, 200, d.body);
      const chains = d.json().chains as { chainId: string; latestKnownHeight: string | null }[];
      assert.deepEqual(chains.map((c) => c.chainId).sort(), ['main', 'side']);
      assert.equal(chains.find((c) => c.chainId === 'side')!.latestKnownHeight, '7');
      // The same list GET /v1/chains gives.
      const listed = (await svc.call('GET', '/v1/chains', admin)).json().items.map((c: { chainId: string }) => c.chainId);
      assert.deepEqual(listed.sort(), ['main', 'side']);
    } finally {
      await router.close();
    }
  });
});
