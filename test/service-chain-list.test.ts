// GET /v1/chains and the dashboard over several chain databases: each page reads at most
// limit + 1 ids from each database (in byte order, which every backend's SQL gives, also where
// the database's own collation is a linguistic one), and a database that does not answer leaves
// its chains out and is named with a fixed reason while the others are served; only when no
// database answers does the request fail.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino, type Logger } from 'pino';
import { ConfigSchema } from '../src/config/config.js';
import { BusyError, ConnectionError } from '../src/db/errors.js';
import type { Coffer } from '../src/db/store.js';
import type { ChainDatabase } from '../src/domains/chain/router.js';
import { chain } from '../src/domains/chain/store.js';
import { createService } from '../src/server/compose.js';
import { fromEach, outageLog, Unavailable } from '../src/server/databases.js';
import { createDatabase, forEachBackend, type BackendContext, type TestDatabase } from './harness.js';
import { keyMinter, linguisticDatabase, sideChainRouter, testService, type TestService } from './service-support.js';

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

type LogLine = {
  level: number;
  msg: string;
  database?: string;
  op?: string;
  reason?: string;
  err?: { message?: string; code?: string };
  cause?: { message?: string; code?: string };
  downSeconds?: number;
  failedReads?: number;
};

/** A logger at `level` whose lines are kept, parsed, in `lines`. */
function captureLog(level: string): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as LogLine);
      cb();
    },
  });
  return { logger: pino({ level }, sink), lines };
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
    const { logger, lines } = captureLog('warn');
    try {
      const svc = await testService(def, { chains: router, logger });
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
      // Logged once for the outage, by the first read it failed: the later ones are only counted.
      const logged = lines.filter((l) => l.database === 'chain:side');
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]!.op, 'chain.listChainIds');
      assert.ok(typeof logged[0]!.err?.message === 'string' && logged[0]!.err.message.length > 0, 'the driver error is logged');
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

/**
 * Makes `coffer`'s reads fail with `error` while it is set, after a moment (so a burst's reads are
 * all in flight together), and counts them. Thrown above the driver, the same on every backend,
 * and undone by clearing `error`: a real outage (cut() above) cannot be ended.
 */
function breakable(coffer: Coffer): { error: unknown; reads: number } {
  const read = coffer.read.bind(coffer);
  const state: { error: unknown; reads: number } = { error: undefined, reads: 0 };
  coffer.read = (async (fn, opts) => {
    state.reads++;
    if (state.error === undefined) return read(fn, opts);
    await new Promise((resolve) => setTimeout(resolve, 5));
    throw state.error;
  }) as Coffer['read'];
  return state;
}

const refused = () =>
  new ConnectionError(
    'database connection failed: connect ECONNREFUSED 127.0.0.1:1',
    {},
    {
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
    },
  );

/**
 * A default and a side chain database (its Coffer `side`, for breakable()), a logger capturing
 * `lines`, and `outageLines()`: the lines about the side database since the last call.
 */
async function sideWithLog(ctx: BackendContext, extra: TestDatabase[]) {
  const { def, router } = await sideChainRouter(ctx, extra);
  const { logger, lines } = captureLog('info');
  const side = router.databases().find((d) => !d.isDefault)!.coffer;
  return { def, router, logger, lines, side, outageLines: () => lines.splice(0).filter((l) => l.database === 'chain:side') };
}

forEachBackend('chain database outages are logged once, not once a read', (ctx) => {
  const extra: TestDatabase[] = [];
  const clock = { now: outageLog.now };
  let now = 1_000_000;
  before(() => {
    outageLog.now = () => now;
  });
  after(async () => {
    outageLog.now = clock.now;
    for (const d of extra) await d.drop();
  });

  test('a burst of failing reads logs one line; then a reminder a minute with the count; recovery one line; the next failure a new outage', async () => {
    const { def, router, logger, lines, side, outageLines } = await sideWithLog(ctx, extra);
    try {
      const svc = await testService(def, { chains: router, logger });
      const admin = await svc.key(['*:admin']);
      await register(svc, admin, ['main', 'alpha', 'side']);
      const state = breakable(side);
      state.error = refused();
      const unavailable = [{ database: 'chain:side', reason: 'database unreachable' }];

      // Many clients at once (API pages and dashboard polls): one line, the first failure, in full.
      const burst = await Promise.all([
        ...Array.from({ length: 10 }, () => svc.call('GET', '/v1/chains', admin)),
        ...Array.from({ length: 5 }, () => svc.call('GET', '/v1/dashboard', admin)),
      ]);
      for (const r of burst) {
        assert.equal(r.statusCode, 200, r.body);
        assert.deepEqual(r.json().unavailable, unavailable);
        assert.ok(!r.body.includes('ECONNREFUSED'), r.body);
      }
      assert.deepEqual(
        burst.slice(0, 10).map((r) => r.json().items.map((c: Listed) => c.chainId)),
        Array.from({ length: 10 }, () => ['alpha', 'main']),
      );
      let logged = lines.filter((l) => l.database === 'chain:side');
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]!.level, 40);
      assert.match(logged[0]!.msg, /^(chain\.listChainIds|dashboard\.chains): chain:side left out: database unreachable$/);
      assert.equal(logged[0]!.err?.code, 'connection');
      assert.match(logged[0]!.err?.message ?? '', /ECONNREFUSED/);
      assert.equal(logged[0]!.cause?.code, 'ECONNREFUSED');
      lines.length = 0;

      // Within the minute: counted, not logged.
      now += 30_000;
      for (let i = 0; i < 3; i++) assert.deepEqual((await svc.call('GET', '/v1/chains', admin)).json().unavailable, unavailable);
      assert.deepEqual(outageLines(), []);

      // A minute after the last line: one reminder, with how long and how many reads since that line.
      now += 31_000;
      assert.deepEqual((await svc.call('GET', '/v1/chains', admin)).json().unavailable, unavailable);
      assert.deepEqual((await svc.call('GET', '/v1/dashboard', admin)).json().unavailable, unavailable);
      logged = outageLines();
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]!.level, 40);
      assert.equal(logged[0]!.msg, 'chain:side still down (database unreachable) after 61 s: 18 reads left it out since the last line');
      assert.deepEqual([logged[0]!.downSeconds, logged[0]!.failedReads], [61, 18]);

      // It answers again: one info line, for the whole outage; the reads after it log nothing.
      state.error = undefined;
      now += 5_000;
      const back = await svc.call('GET', '/v1/chains', admin);
      assert.equal(back.json().unavailable, undefined);
      assert.deepEqual(
        back.json().items.map((c: Listed) => c.chainId),
        ['alpha', 'main', 'side'],
      );
      assert.deepEqual((await svc.call('GET', '/v1/dashboard', admin)).json().unavailable, []);
      logged = outageLines();
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]!.level, 30);
      assert.equal(logged[0]!.msg, 'chain:side answered again after 66 s; 20 reads left it out');

      // The next failure is a new outage, logged in full again; so is a change of its reason
      // ('database error' at level error).
      state.error = refused();
      assert.deepEqual((await svc.call('GET', '/v1/chains', admin)).json().unavailable, unavailable);
      state.error = new BusyError('database is locked');
      assert.deepEqual((await svc.call('GET', '/v1/chains', admin)).json().unavailable, [
        { database: 'chain:side', reason: 'database busy' },
      ]);
      assert.deepEqual((await svc.call('GET', '/v1/chains', admin)).json().unavailable, [
        { database: 'chain:side', reason: 'database busy' },
      ]);
      state.error = new Error('relation "chains" does not exist');
      assert.deepEqual((await svc.call('GET', '/v1/dashboard', admin)).json().unavailable, [
        { database: 'chain:side', reason: 'database error' },
      ]);
      assert.deepEqual(
        outageLines().map((l) => [l.level, l.msg]),
        [
          [40, 'chain.listChainIds: chain:side left out: database unreachable'],
          [40, 'chain.listChainIds: chain:side left out: database busy'],
          [50, 'dashboard.chains: chain:side left out: database error'],
        ],
      );
      // The default database was never down: nothing about it.
      assert.deepEqual(
        lines.filter((l) => l.database === 'default'),
        [],
      );
    } finally {
      delete (side as { read?: unknown }).read;
      await router.close();
    }
  });

  test('/ready probed during an outage answers 503 naming the database every time, and logs the outage once and its end once', async () => {
    const { def, router, logger, side, outageLines } = await sideWithLog(ctx, extra);
    try {
      const svc = await testService(def, { chains: router, logger });
      const state = breakable(side);
      state.error = refused();
      // An orchestrator probes every few seconds, from more than one place.
      const probes = await Promise.all(Array.from({ length: 8 }, () => svc.call('GET', '/ready')));
      for (const r of probes) {
        assert.equal(r.statusCode, 503, r.body);
        assert.deepEqual(
          r.json().databases.map((d: { name: string; status: string; reason?: string }) => [d.name, d.status, d.reason]),
          [
            ['default', 'ready', undefined],
            ['chain:side', 'unavailable', 'database unreachable'],
          ],
        );
        assert.ok(!r.body.includes('ECONNREFUSED'), r.body);
      }
      now += 20_000;
      assert.equal((await svc.call('GET', '/ready')).statusCode, 503);
      let logged = outageLines();
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]!.msg, 'service.ready: chain:side left out: database unreachable');
      assert.match(logged[0]!.err?.message ?? '', /ECONNREFUSED/);

      state.error = undefined;
      now += 10_000;
      assert.equal((await svc.call('GET', '/ready')).statusCode, 200);
      assert.equal((await svc.call('GET', '/ready')).statusCode, 200);
      logged = outageLines();
      assert.deepEqual(
        logged.map((l) => [l.level, l.msg]),
        [[30, 'chain:side answered again after 30 s; 9 reads left it out']],
      );
    } finally {
      delete (side as { read?: unknown }).read;
      await router.close();
    }
  });

  test('a /metrics scrape during an outage logs it once and shows coffer_database_up 0 for that database, 1 for the others, and 1 after recovery', async () => {
    // The service as `coffer serve` builds it, so the chain gauges log through its logger.
    const defaultDb = await ctx.newDatabase();
    const sideDb = ctx.backend === 'memory' ? await createDatabase('sqlite') : await ctx.newDatabase();
    if (ctx.backend === 'memory') extra.push(sideDb);
    const config = ConfigSchema.parse({ database: { url: defaultDb.url, chains: { side: sideDb.url } }, log: { level: 'silent' } });
    const { logger, lines } = captureLog('info');
    const service = await createService(config, logger);
    const side = service.services.chains.databases().find((d) => !d.isDefault)!.coffer;
    // The lines about a database since the last call.
    const outageLines = () => lines.splice(0).filter((l) => l.database !== undefined);
    const scrape = async () => {
      const r = await service.app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(r.statusCode, 200);
      return r.body;
    };
    const up = (body: string) =>
      Object.fromEntries([...body.matchAll(/^coffer_database_up\{database="([^"]+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
    try {
      const admin = await (await keyMinter(service.services.coffer))(['*:admin']);
      const call = (method: string, url: string, payload?: object) =>
        service.app.inject({ method: method as 'GET', url, headers: admin, ...(payload ? { payload } : {}) });
      const genesis = { height: '0', hash: '1'.repeat(64), parentHash: '0'.repeat(64), time: '2026-01-01T00:00:00.000Z', transactions: [] };
      const add = async (chainId: string) => {
        assert.equal((await call('POST', '/v1/chains', { chainId, name: chainId, network: 'test', confirmations: 3 })).statusCode, 201);
        assert.equal((await call('POST', `/v1/chains/${chainId}/blocks`, genesis)).statusCode, 200);
        assert.equal((await call('PUT', `/v1/chains/${chainId}/latest-height`, { height: '7' })).statusCode, 200);
      };
      await add('main');
      const state = breakable(side);
      // The side database holds no chain yet: it has its series all the same.
      assert.deepEqual(up(await scrape()), { default: 1, 'chain:side': 1 });
      await add('side');
      const healthy = await scrape();
      assert.deepEqual(up(healthy), { default: 1, 'chain:side': 1 });
      assert.match(healthy, /^coffer_chain_height\{chain="side"\}/m);
      // The pool gauges name the databases as coffer_database_up does, so the two join.
      assert.deepEqual([...healthy.matchAll(/^coffer_pool_connections_total\{database="([^"]+)"\}/gm)].map((m) => m[1]).sort(), [
        'chain:side',
        'default',
      ]);

      state.error = refused();
      state.reads = 0;
      const during = [await scrape(), await scrape(), await scrape()];
      // One read of the side database a scrape, shared by every chain gauge.
      assert.equal(state.reads, 3);
      for (const body of during) {
        assert.deepEqual(up(body), { default: 1, 'chain:side': 0 });
        assert.match(body, /^coffer_chain_sync_lag_blocks\{chain="main"\} 7$/m);
        assert.doesNotMatch(body, /chain="side"/);
        assert.ok(!body.includes(sideDb.url) && !body.includes('ECONNREFUSED'));
      }
      let logged = outageLines();
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]!.level, 40);
      assert.equal(logged[0]!.msg, 'metrics.chains: chain:side left out: database unreachable');
      assert.equal(logged[0]!.op, 'metrics.chains');
      assert.match(logged[0]!.err?.message ?? '', /ECONNREFUSED/);
      // The same outage as the API's: a request during it logs nothing more.
      const listed = await call('GET', '/v1/chains');
      assert.deepEqual(listed.json().unavailable, [{ database: 'chain:side', reason: 'database unreachable' }]);
      assert.deepEqual(outageLines(), []);

      state.error = undefined;
      now += 10_000;
      const after = await scrape();
      assert.deepEqual(up(after), { default: 1, 'chain:side': 1 });
      assert.match(after, /^coffer_chain_height\{chain="side"\}/m);
      logged = outageLines();
      assert.deepEqual(
        logged.map((l) => [l.level, l.msg]),
        [[30, 'chain:side answered again after 10 s; 4 reads left it out']],
      );
      await scrape();
      assert.deepEqual(outageLines(), []);
    } finally {
      delete (side as { read?: unknown }).read;
      await service.close();
    }
  });
});

test('an answer to a read begun before a database failed does not end its outage; one begun after does', async () => {
  const { logger, lines } = captureLog('info');
  const db: ChainDatabase = { url: 'x', backend: 'x', chains: ['solo'], isDefault: false, coffer: {} as Coffer };
  let release: (() => void) | undefined;
  const begun = fromEach(
    [db],
    () => new Promise<string>((resolve) => (release = () => resolve('late'))),
    new Unavailable(logger),
    'test.read',
  );
  // The database fails another read while the first one is still in flight…
  assert.deepEqual(await fromEach([db], () => Promise.reject(refused()), new Unavailable(logger), 'test.read'), [undefined]);
  // …which then answers: it was asked before the failure, so it says nothing about now.
  release!();
  assert.deepEqual(await begun, ['late']);
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [[40, 'test.read: chain:solo left out: database unreachable']],
  );
  assert.deepEqual(await fromEach([db], async () => 'now', new Unavailable(logger), 'test.read'), ['now']);
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [
      [40, 'test.read: chain:solo left out: database unreachable'],
      [30, 'chain:solo answered again after 0 s; 1 read left it out'],
    ],
  );
});
