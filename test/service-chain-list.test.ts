// GET /v1/chains and the dashboard over several chain databases: each page reads at most
// limit + 1 ids from each database (in byte order, which every backend's SQL gives, also where
// the database's own collation is a linguistic one), and a database that does not answer leaves
// its chains out and is named with a fixed reason while the others are served; only when no
// database answers does the request fail.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { pino } from 'pino';
import type { Coffer } from '../src/db/store.js';
import { chain } from '../src/domains/chain/store.js';
import { forEachBackend, type TestDatabase } from './harness.js';
import { linguisticDatabase, sideChainRouter, testService, type TestService } from './service-support.js';

type Listed = { chainId: string; name: string };

async function register(svc: TestService, admin: { authorization: string }, ids: readonly string[]): Promise<void> {
  for (const chainId of ids) {
    const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'test', confirmations: 3 });
    assert.equal(r.statusCode, 201, r.body);
  }
}

/** Every page of GET /v1/chains at `limit`, to the end. */
async function allPages(svc: TestService, auth: { authorization: string }, limit: number) {
  const pages: { items: Listed[]; unavailable?: unknown }[] = [];
  let cursor: string | undefined;
  do {
    const r = await svc.call('GET', `/v1/chains?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, auth);
    assert.equal(r.statusCode, 200, r.body);
    pages.push(r.json());
    cursor = r.json().nextCursor;
    assert.ok(pages.length < 100, 'the pages end');
  } while (cursor);
  return pages;
}

const byteOrder = (ids: readonly string[]) => [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

forEachBackend('chain list across databases, page by page', (ctx) => {
  const extra: TestDatabase[] = [];
  after(async () => {
    for (const d of extra) await d.drop();
  });

  test('each page reads at most limit + 1 chain ids from each database, and the pages list every chain once, in byte order', async () => {
    // The default database's own collation is a linguistic one where the backend has them, so an
    // order or a range left to it would put "a-b" or "Zeta" elsewhere than byte order does.
    const linguistic = await linguisticDatabase(ctx);
    extra.push(linguistic);
    const sideChains = ['side', 'Side-2', 's.3', 'S_4'];
    const { def, router } = await sideChainRouter(ctx, extra, { defaultUrl: linguistic.url, sideChains });
    try {
      const svc = await testService(def, { chains: router });
      const admin = await svc.key(['*:admin']);
      const mainChains = ['alpha', 'Zeta', 'ab', 'a-b', 'B2', 'a.c', 'a_c', 'a:c', 'b', 'A', 'z9', 'Z-9', '0x', '9lives'];
      await register(svc, admin, [...mainChains, ...sideChains]);
      // Stale rows of the side chains in the default database (written before they were mapped).
      for (const chainId of sideChains)
        await def.write((tx) => chain(tx).registerChain({ chainId, name: 'stale', network: 'test', confirmations: 3 }));

      // What each database's reads return while the list is paged: ids (strings) or rows.
      const reads = new Map<Coffer, unknown[][]>();
      for (const { coffer } of router.databases()) {
        const read = coffer.read.bind(coffer);
        const seen: unknown[][] = [];
        reads.set(coffer, seen);
        coffer.read = (async (fn, opts) => {
          const result = await read(fn, opts);
          if (Array.isArray(result)) seen.push(result);
          return result;
        }) as Coffer['read'];
      }
      try {
        for (const limit of [1, 3, 50]) {
          for (const seen of reads.values()) seen.length = 0;
          const pages = await allPages(svc, admin, limit);
          const listed = pages.flatMap((p) => p.items);
          assert.deepEqual(
            listed.map((c) => c.chainId),
            byteOrder([...mainChains, ...sideChains]),
            `limit ${limit}`,
          );
          assert.ok(
            listed.every((c) => c.name === c.chainId),
            'each chain from the database it is routed to',
          );
          assert.ok(
            pages.every((p) => p.items.length <= limit && p.unavailable === undefined),
            `limit ${limit}`,
          );
          for (const [coffer, seen] of reads) {
            const idReads = seen.filter((r) => r.every((x) => typeof x === 'string'));
            assert.equal(idReads.length, pages.length, `${coffer.name}: one read of ids a page`);
            assert.ok(
              idReads.every((ids) => ids.length <= limit + 1),
              `${coffer.name} at limit ${limit}: ${idReads.map((ids) => ids.length).join(',')}`,
            );
          }
        }
      } finally {
        for (const { coffer } of router.databases()) delete (coffer as { read?: unknown }).read;
      }
    } finally {
      await router.close();
    }
  });
});

forEachBackend('chain list and dashboard with a chain database down', (ctx) => {
  const extra: TestDatabase[] = [];
  after(async () => {
    for (const d of extra) await d.drop();
  });

  test('GET /v1/chains and /v1/dashboard serve the databases that answer and name the one that does not; the driver error is only logged', async () => {
    const { def, router, cut } = await sideChainRouter(ctx, extra, { cuttable: true });
    const lines: { database?: string; op?: string; err?: { message?: string } }[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)) as (typeof lines)[number]);
        cb();
      },
    });
    try {
      const svc = await testService(def, { chains: router, logger: pino({ level: 'warn' }, sink) });
      const admin = await svc.key(['*:admin']);
      await register(svc, admin, ['main', 'alpha', 'side']);
      const genesis = { height: '0', hash: '1'.repeat(64), parentHash: '0'.repeat(64), time: '2026-01-01T00:00:00.000Z', transactions: [] };
      assert.equal((await svc.call('POST', '/v1/chains/main/blocks', admin, genesis)).statusCode, 200);
      assert.equal((await svc.call('PUT', '/v1/chains/main/latest-height', admin, { height: '4' })).statusCode, 200);
      const before = await svc.call('GET', '/v1/chains', admin);
      assert.deepEqual(
        before.json().items.map((c: Listed) => c.chainId),
        ['alpha', 'main', 'side'],
      );

      await cut();
      const unavailable = [{ database: 'chain:side', reason: 'database unreachable' }];
      const listed = await svc.call('GET', '/v1/chains', admin);
      assert.equal(listed.statusCode, 200, listed.body);
      assert.deepEqual(
        listed.json().items.map((c: Listed) => c.chainId),
        ['alpha', 'main'],
      );
      assert.deepEqual(listed.json().unavailable, unavailable);
      // Paging goes on over what answers; every page says what is missing.
      const pages = await allPages(svc, admin, 1);
      assert.deepEqual(
        pages.map((p) => [p.items.map((c) => c.chainId), p.unavailable]),
        [
          [['alpha'], unavailable],
          [['main'], unavailable],
        ],
      );

      const dashboard = await svc.call('GET', '/v1/dashboard', admin);
      assert.equal(dashboard.statusCode, 200, dashboard.body);
      assert.deepEqual(
        dashboard
          .json()
          .chains.map((c: Listed) => c.chainId)
          .sort(),
        ['alpha', 'main'],
      );
      assert.deepEqual(dashboard.json().unavailable, unavailable);
      // Prometheus still gets the chains of the database that answers.
      assert.match((await svc.app.inject({ method: 'GET', url: '/metrics' })).body, /coffer_chain_sync_lag_blocks\{chain="main"\} 4/);
      // A chain of the database that is down is a 503 of its own.
      const one = await svc.call('GET', '/v1/chains/side', admin);
      assert.equal(one.statusCode, 503, one.body);
      assert.equal(one.json().error.code, 'connection');

      // Public fields only: not the side database's URL, file, name or port, nor the driver's
      // message (those are in the log).
      const sideUrl = router.databases().find((d) => !d.isDefault)!.url;
      const secrets = sideUrl.startsWith('sqlite:')
        ? [sideUrl.slice('sqlite:'.length)]
        : [new URL(sideUrl).pathname.slice(1), `:${new URL(sideUrl).port}`];
      for (const body of [listed.body, dashboard.body]) {
        assert.doesNotMatch(body, /ECONN|is closed|terminated|connection failed|PROTOCOL_/i);
        for (const secret of secrets) assert.ok(!body.includes(secret), `${secret} in ${body.slice(0, 300)}`);
      }
      for (const op of ['chain.listChainIds', 'dashboard.chains'])
        assert.ok(
          lines.some((l) => l.database === 'chain:side' && l.op === op && typeof l.err?.message === 'string' && l.err.message.length > 0),
          `${op} logs the database and the error: ${JSON.stringify(lines.slice(0, 5))}`,
        );
    } finally {
      await router.close();
    }
  });

  test('when no chain database answers, GET /v1/chains fails with 503 connection', async () => {
    const { def, router, cut } = await sideChainRouter(ctx, extra, { cuttable: true });
    try {
      // Keys are checked from the authentication cache, so nothing of the request needs a database but the list.
      const svc = await testService(def, { chains: router, authCacheMs: 60_000 });
      const reader = await svc.key(['chain:read']);
      assert.equal((await svc.call('GET', '/v1/chains', reader)).statusCode, 200);
      await cut();
      await def.close();
      const r = await svc.call('GET', '/v1/chains', reader);
      assert.equal(r.statusCode, 503, r.body);
      assert.equal(r.json().error.code, 'connection');
    } finally {
      await router.close();
    }
  });
});
