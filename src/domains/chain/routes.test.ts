// The chain API through app.inject() on every backend: each route's success, validation
// failures naming the field, auth failures, mapped store errors, pagination to the end, and
// the audit entry each write leaves with the key as its actor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend, type TestDatabase } from '../../../test/harness.js';
import { sideChainRouter, testService, type TestService } from '../../../test/service-support.js';
import { chain } from './store.js';

const h = (n: number, salt = 0) => (n * 7919 + salt).toString(16).padStart(64, '0').slice(-64);

function block(height: number, opts: { salt?: number; txs?: number } = {}) {
  const salt = opts.salt ?? 0;
  return {
    height: String(height),
    hash: h(height + 1, salt),
    parentHash: height === 0 ? '0'.repeat(64) : h(height, height === 1 ? 0 : salt),
    time: new Date(Date.UTC(2026, 0, 1) + height * 60_000).toISOString(),
    transactions: Array.from({ length: opts.txs ?? 3 }, (_, i) => ({
      txHash: h(height * 1000 + i + 1, 99 + salt),
      indexInBlock: i,
      address: `addr${i % 2}`,
      outputs: [{ address: `addr${(i + 1) % 3}`, value: (10n ** 30n + BigInt(i)).toString() }],
    })),
  };
}

forEachBackend('chain API', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  let admin: { authorization: string; keyId: string };
  let writer: { authorization: string; keyId: string };
  let reader: { authorization: string; keyId: string };
  before(async () => {
    coffer = await ctx.open();
    svc = await testService(coffer);
    admin = await svc.key(['chain:admin', 'audit:read']);
    writer = await svc.key(['chain:write']);
    reader = await svc.key(['chain:read']);
  });

  test('register, ingest, read back, and every write is audited with the key as actor', async () => {
    const reg = await svc.call('POST', '/v1/chains', admin, { chainId: 'doge', name: 'Dogecoin', network: 'mainnet', confirmations: 3 });
    assert.equal(reg.statusCode, 201, reg.body);
    assert.equal(reg.json().created, true);
    for (let i = 0; i < 5; i++) {
      const r = await svc.call('POST', '/v1/chains/doge/blocks', writer, block(i));
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.json().status, 'ingested');
    }
    const replay = await svc.call('POST', '/v1/chains/doge/blocks', writer, block(4));
    assert.equal(replay.json().status, 'duplicate');
    const info = (await svc.call('GET', '/v1/chains/doge', reader)).json();
    assert.equal(info.cursor.height, '4');
    const byHeight = await svc.call('GET', '/v1/chains/doge/blocks/2', reader);
    assert.equal(byHeight.json().hash, h(3));
    const byHash = await svc.call('GET', `/v1/chains/doge/blocks/${h(3)}`, reader);
    assert.equal(byHash.json().height, '2');
    const t = await svc.call('GET', `/v1/chains/doge/transactions/${h(2001, 99)}`, reader);
    assert.equal(t.statusCode, 200, t.body);
    assert.equal(t.json().outputs[0].value, (10n ** 30n).toString(), 'amounts beyond 2^64 stay exact');
    const entries = await coffer.read((tx) =>
      tx.db
        .selectFrom('audit_log')
        .select(['action', 'actor_type', 'actor_id', 'entity_id'])
        .where('domain', '=', 'chain')
        .orderBy('seq')
        .execute(),
    );
    assert.deepEqual(
      entries.map((e) => e.action),
      ['chain.chain.register', ...Array(5).fill('chain.block.ingest')],
    );
    assert.ok(entries.every((e) => e.actor_type === 'api_key'));
    assert.equal(entries[0]!.actor_id, admin.keyId);
    assert.equal(entries[1]!.actor_id, writer.keyId);
  });

  test('metrics expose height and sync lag per chain, and request counts by route', async () => {
    await svc.call('PUT', '/v1/chains/doge/latest-height', writer, { height: '10' });
    const text = (await svc.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(text, /coffer_chain_height\{chain="doge"\} 4/);
    assert.match(text, /coffer_chain_sync_lag_blocks\{chain="doge"\} 6/);
    assert.match(text, /coffer_http_requests_total\{method="POST",route="\/v1\/chains\/:chainId\/blocks",status="200"\} [1-9]/);
  });

  test('height-range and address listings paginate to the end without repeats', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 20; pages++) {
      const r = await svc.call(
        'GET',
        `/v1/chains/doge/transactions?fromHeight=0&toHeight=4&limit=4${cursor ? `&cursor=${cursor}` : ''}`,
        reader,
      );
      assert.equal(r.statusCode, 200, r.body);
      seen.push(...r.json().items.map((x: { txHash: string }) => x.txHash));
      cursor = r.json().nextCursor;
      if (!cursor) break;
    }
    assert.equal(seen.length, 15);
    assert.equal(new Set(seen).size, 15);
    const addr = await svc.call('GET', '/v1/chains/doge/addresses/addr0/transactions?limit=100', reader);
    assert.ok(addr.json().items.length > 0);
  });

  test('a block that does not extend the tip is refused (409) unless reorg=true, and reorg reverts', async () => {
    const fork = block(3, { salt: 5 });
    fork.parentHash = h(3); // child of height 2
    const refused = await svc.call('POST', '/v1/chains/doge/blocks', writer, fork);
    assert.equal(refused.statusCode, 409, refused.body);
    const accepted = await svc.call('POST', '/v1/chains/doge/blocks?reorg=true', writer, fork);
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.equal(accepted.json().reorg.removedBlocks, 2);
    const gone = await svc.call('GET', `/v1/chains/doge/transactions/${h(4001, 99)}`, reader);
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.json().error.code, 'not_found');
  });

  test('ingest with reorg=true below the finalized height is a 422 naming body.height, a field the body has', async () => {
    const reg = await svc.call('POST', '/v1/chains', admin, { chainId: 'dogefin', name: 'Final', network: 'regtest', confirmations: 1 });
    assert.equal(reg.statusCode, 201, reg.body);
    for (let i = 0; i < 3; i++) assert.equal((await svc.call('POST', '/v1/chains/dogefin/blocks', writer, block(i))).statusCode, 200);
    // A child of height 1 replacing height 2: with one confirmation every block is final at once.
    const replacing = { ...block(2, { salt: 3 }), parentHash: h(2) };
    const r = await svc.call('POST', '/v1/chains/dogefin/blocks?reorg=true', writer, replacing);
    assert.equal(r.statusCode, 422, r.body);
    assert.equal(r.json().error.field, 'body.height', r.body);
    assert.equal((await svc.call('GET', '/v1/chains/dogefin', reader)).json().cursor.blockHash, h(3));
  });

  test('mempool add and claim', async () => {
    const add = await svc.call('POST', '/v1/chains/doge/mempool', writer, { txHash: h(777), content: 'abcd', fee: '1500', sizeBytes: 250 });
    assert.equal(add.statusCode, 200, add.body);
    assert.equal(add.json().status, 'added');
    const dup = await svc.call('POST', '/v1/chains/doge/mempool', writer, { txHash: h(777), content: 'abcd', fee: '1500', sizeBytes: 250 });
    assert.equal(dup.json().status, 'duplicate');
    const claim = await svc.call('POST', '/v1/chains/doge/mempool/claim', writer, { worker: 'w1', limit: 10 });
    assert.equal(claim.json().items.length, 1);
    const again = await svc.call('POST', '/v1/chains/doge/mempool/claim', writer, { worker: 'w2', limit: 10 });
    assert.equal(again.json().items.length, 0);
  });

  test('bad input is a 400 naming the field; nothing is written', async () => {
    const before = (await svc.call('GET', '/v1/chains/doge', reader)).json().cursor.height;
    const cases: [unknown, string][] = [
      [{ ...block(4), hash: 'XYZ' }, 'body.hash'],
      [{ ...block(4), height: '-1' }, 'body.height'],
      [{ ...block(4), height: 1.5 }, 'body.height'],
      [{ ...block(4), time: 'yesterday' }, 'body.time'],
      [
        { ...block(4), transactions: [{ ...block(4).transactions[0], outputs: [{ address: 'a', value: '1.5' }] }] },
        'body.transactions[0].outputs[0].value',
      ],
      [
        { ...block(4), transactions: [{ ...block(4).transactions[0], outputs: [{ address: 'a', value: -1 }] }] },
        'body.transactions[0].outputs[0].value',
      ],
      [{ ...block(4), transactions: [{ ...block(4).transactions[0], payload: 'zz' }] }, 'body.transactions[0].payload'],
      [{ ...block(4), extra: '1; DROP TABLE chain_blocks' }, 'body.extra'],
    ];
    for (const [payload, field] of cases) {
      const r = await svc.call('POST', '/v1/chains/doge/blocks', writer, payload);
      assert.equal(r.statusCode, 400, `${field}: ${r.body}`);
      assert.equal(r.json().error.field, field);
    }
    assert.equal((await svc.call('GET', '/v1/chains/x y', reader)).statusCode, 400);
    const unknown = await svc.call('POST', '/v1/chains/nochain/blocks', writer, block(0));
    assert.equal(unknown.statusCode, 404, unknown.body);
    assert.equal((await svc.call('GET', '/v1/chains/doge', reader)).json().cursor.height, before);
  });

  test("errors from the store name the body's fields (hash, blocks[i]), a height or cursor out of range names the parameter", async () => {
    const tip = (await svc.call('GET', '/v1/chains/doge', reader)).json().cursor;
    const stored = (await svc.call('GET', `/v1/chains/doge/blocks/${tip.height}`, reader)).json();
    const expect = async (r: { statusCode: number; body: string; json(): any }, status: number, field: string) => {
      assert.equal(r.statusCode, status, r.body);
      assert.equal(r.json().error.field, field, r.body);
    };
    // A replay that differs from what is stored (store field `time`).
    const tipHeight = Number(tip.height);
    const replay = {
      ...block(tipHeight, { salt: tipHeight >= 3 ? 5 : 0 }),
      hash: stored.hash,
      parentHash: stored.parentHash,
      time: new Date(0).toISOString(),
    };
    await expect(await svc.call('POST', '/v1/chains/doge/blocks', writer, replay), 409, 'body.time');
    // A broken link in a reorg's branch (store field `newBranch[1].parentHash`).
    const b1 = { ...block(1, { salt: 8 }), parentHash: h(1) };
    const b2 = { ...block(2, { salt: 8 }), parentHash: h(12345) };
    await expect(
      await svc.call('POST', '/v1/chains/doge/reorg', writer, { forkHeight: '0', blocks: [b1, b2] }),
      400,
      'body.blocks[1].parentHash',
    );
    // A branch block reusing a kept block's hash (store field `newBranch[0].blockHash`).
    await expect(
      await svc.call('POST', '/v1/chains/doge/reorg', writer, {
        forkHeight: '1',
        blocks: [{ ...block(2, { salt: 8 }), parentHash: h(2), hash: h(1) }],
      }),
      409,
      'body.blocks[0].hash',
    );
    await expect(await svc.call('GET', '/v1/chains/doge/blocks/9999999999999999999', reader), 400, 'params.ref');
    const cursor = Buffer.from(JSON.stringify({ h: '9999999999999999999', i: 0 })).toString('base64url');
    await expect(await svc.call('GET', `/v1/chains/doge/addresses/addr0/transactions?cursor=${cursor}`, reader), 400, 'query.cursor');
    // What the store checks of a listing names the query or path (store fields toHeight,
    // page.after.index, address), and of a mempool entry the body (store field fee).
    await expect(await svc.call('GET', '/v1/chains/doge/transactions?fromHeight=5&toHeight=1', reader), 400, 'query.toHeight');
    const wide = Buffer.from(JSON.stringify({ h: '0', i: 2 ** 31 })).toString('base64url');
    await expect(await svc.call('GET', `/v1/chains/doge/transactions?fromHeight=0&toHeight=9&cursor=${wide}`, reader), 400, 'query.cursor');
    await expect(
      await svc.call('GET', `/v1/chains/doge/addresses/${encodeURIComponent('a b')}/transactions`, reader),
      400,
      'params.address',
    );
    await expect(
      await svc.call('POST', '/v1/chains/doge/mempool', writer, {
        txHash: h(4242),
        content: 'ab',
        fee: '9223372036854775808',
        sizeBytes: 1,
      }),
      400,
      'body.fee',
    );
    assert.deepEqual((await svc.call('GET', '/v1/chains/doge', reader)).json().cursor, tip);
  });

  test('401 without or with a bad key, 403 without the scope', async () => {
    assert.equal((await svc.call('GET', '/v1/chains', null)).statusCode, 401);
    assert.equal(
      (await svc.call('GET', '/v1/chains', { authorization: 'Bearer cfk_000000000000000000000000_' + 'A'.repeat(43) })).statusCode,
      401,
    );
    const forbidden = await svc.call('POST', '/v1/chains/doge/blocks', reader, block(9));
    assert.equal(forbidden.statusCode, 403);
    assert.equal(forbidden.json().error.code, 'forbidden');
    const ipLocked = await svc.key(['chain:read'], { ipAllow: ['10.9.9.9/32'] });
    const r = await svc.call('GET', '/v1/chains', ipLocked);
    assert.equal(r.statusCode, 403, r.body);
    const expired = await svc.key(['chain:read'], { expiresAt: new Date(Date.now() + 50) });
    await new Promise((res) => setTimeout(res, 80));
    assert.equal((await svc.call('GET', '/v1/chains', expired)).statusCode, 401);
  });
});

forEachBackend('chain list across databases', (ctx) => {
  // The memory backend has one in-process database per URL, so its second database is a file.
  const extra: TestDatabase[] = [];
  after(async () => {
    for (const d of extra) await d.drop();
  });

  test('GET /v1/chains pages by chain id in byte order across every database, each chain once, with its state', async () => {
    const { def, router } = await sideChainRouter(ctx, extra);
    try {
      const svc = await testService(def, { chains: router });
      const admin = await svc.key(['*:admin']);
      // Case and punctuation: byte order differs from a linguistic collation's (PostgreSQL's
      // default may be one), and "side" lives in the other database.
      const ids = ['alpha', 'Zeta', 'ab', 'a-b', 'side', 'B2', 'a.c'];
      for (const chainId of ids) {
        const r = await svc.call('POST', '/v1/chains', admin, { chainId, name: chainId, network: 'test', confirmations: 3 });
        assert.equal(r.statusCode, 201, r.body);
      }
      assert.equal((await svc.call('PUT', '/v1/chains/side/latest-height', admin, { height: '7' })).statusCode, 200);
      // A stale row for "side" in the default database (written before it was mapped) is not listed.
      await def.write((tx) => chain(tx).registerChain({ chainId: 'side', name: 'stale', network: 'test', confirmations: 3 }));
      const sorted = ['B2', 'Zeta', 'a-b', 'a.c', 'ab', 'alpha', 'side'];

      const all = await svc.call('GET', '/v1/chains', admin);
      assert.equal(all.statusCode, 200, all.body);
      assert.deepEqual(
        all.json().items.map((c: { chainId: string }) => c.chainId),
        sorted,
      );
      assert.equal(all.json().nextCursor, undefined);

      const seen: { chainId: string; name: string; cursor: { height: string | null }; health: { latestHeight: string | null } }[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const r = await svc.call('GET', `/v1/chains?limit=2${cursor ? `&cursor=${cursor}` : ''}`, admin);
        assert.equal(r.statusCode, 200, r.body);
        assert.ok(r.json().items.length <= 2);
        seen.push(...r.json().items);
        cursor = r.json().nextCursor;
        pages++;
      } while (cursor);
      assert.equal(pages, 4);
      assert.deepEqual(
        seen.map((c) => c.chainId),
        sorted,
      );
      const side = seen.find((c) => c.chainId === 'side')!;
      assert.deepEqual(
        [side.name, side.health.latestHeight, side.cursor.height],
        ['side', '7', null],
        'read from the database it is routed to',
      );

      const bad = await svc.call(
        'GET',
        `/v1/chains?cursor=${Buffer.from(JSON.stringify({ c: 'no spaces' })).toString('base64url')}`,
        admin,
      );
      assert.equal(bad.statusCode, 400, bad.body);
      assert.equal(bad.json().error.field, 'query.cursor');
      assert.equal((await svc.call('GET', '/v1/chains?limit=501', admin)).statusCode, 400);
    } finally {
      await router.close();
    }
  });
});
