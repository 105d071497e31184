// Hostile input at every write route: malformed and hostile bodies (wrong types, huge numbers,
// overlong strings, SQL and JSON injection text, unicode, prototype pollution) always get a
// 4xx, never a 500, and nothing is written.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { toBigInt } from '../src/db/codec.js';
import type { Coffer } from '../src/db/store.js';
import { DOMAIN_ROUTES } from '../src/server/domains.js';
import { forEachBackend } from './harness.js';
import { testService, type TestService } from './service-support.js';

const PARAMS: Record<string, string> = {
  chainId: 'doge',
  hash: 'ab'.repeat(32),
  txHash: 'cd'.repeat(32),
  id: '1',
  keyId: 'ef'.repeat(12),
  side: 'sell',
  tokenType: 'invite',
  address: 'DAddr',
  ref: '1',
  domain: 'chain',
  entity: 'block',
  entityId: 'x',
};

const HOSTILE_STRINGS = [
  "'; DROP TABLE audit_log; --",
  '" OR 1=1 --',
  '{"$ne": null}',
  '__proto__',
  '\u0000',
  '\ud800',
  '𝄞'.repeat(10_000),
  'x'.repeat(300_000),
  '1e400',
  '-0',
  '0x10',
  '115792089237316195423570985008687907853269984665640564039457584007913129639936',
  '../../etc/passwd',
  '<script>alert(1)</script>',
];

const hostileValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(...HOSTILE_STRINGS),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.double(),
    fc.integer(),
    fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, -1, 1e308, 0.1, -0),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(
      fc.constantFrom(
        'chainId',
        'height',
        'hash',
        'fractionCount',
        'quantity',
        'price',
        'transactions',
        '__proto__',
        'constructor',
        'scopes',
      ),
      tie('v'),
      {
        maxKeys: 5,
      },
    ),
  ),
})).v;

/** Values no field of any route accepts (a mutated valid body must then be refused). */
const invalidForAnyField: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom('x'.repeat(300_000), 'nul\u0000byte', 'lone \ud800 surrogate', 1.5, -1, 1e308, Number.MAX_SAFE_INTEGER + 2, null, true),
  fc.array(fc.constantFrom(...HOSTILE_STRINGS), { minLength: 1, maxLength: 2 }).map((a) => ({ nested: a })),
  fc.double({ noInteger: true }),
);

/** A plausible body for the route with one field replaced by a hostile value. */
const VALID_BASES: Record<string, Record<string, unknown>> = {
  'POST /v1/chains/:chainId/blocks': {
    height: '1',
    hash: '11'.repeat(32),
    parentHash: '22'.repeat(32),
    time: '2026-01-01T00:00:00.000Z',
    transactions: [{ txHash: '33'.repeat(32), indexInBlock: 0, outputs: [{ address: 'DAddr', value: '5' }] }],
  },
  'POST /v1/chains': { chainId: 'other', name: 'Other', network: 'main', confirmations: 3 },
  'POST /v1/integrations': { name: 'integration' },
  'POST /v1/tokens/invoices': {
    chainId: 'doge',
    mintHash: 'ab'.repeat(32),
    sellerAddress: 'DS',
    buyerAddress: 'DB',
    quantity: '1',
    price: '1',
    priceUnit: 'koinu',
    paymentAddress: 'DP',
    publicKey: '02' + 'aa'.repeat(32),
    signature: '30',
    createdAt: '2026-01-01T00:00:00.000Z',
  },
};

async function tableCounts(coffer: Coffer): Promise<Record<string, string>> {
  return coffer.read(async (tx) => {
    const out: Record<string, string> = {};
    for (const t of coffer.schema.tables.keys()) {
      const r = await tx.db
        .selectFrom(t)
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow();
      out[t] = toBigInt((r as { n: unknown }).n).toString();
    }
    return out;
  });
}

forEachBackend('hostile input at every write route', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  let root: { authorization: string };
  before(async () => {
    coffer = await ctx.open();
    svc = await testService(coffer);
    root = await svc.key(['*:admin']);
    assert.equal(
      (await svc.call('POST', '/v1/chains', root, { chainId: 'doge', name: 'Doge', network: 'main', confirmations: 2 })).statusCode,
      201,
    );
  });

  test('every write route answers 4xx (never 5xx) and writes nothing', async () => {
    // Every route that takes a body (the others have nothing to inject into).
    const writes = DOMAIN_ROUTES.filter((r) => r.method !== 'GET' && r.body);
    assert.ok(writes.length >= 15, `expected many write routes, found ${writes.length}`);
    const before = await tableCounts(coffer);
    const seen = new Map<string, number>();
    for (const r of writes) {
      const url = r.url.replace(/:([A-Za-z]+)/g, (_m, p: string) => PARAMS[p] ?? 'x');
      const base = VALID_BASES[`${r.method} ${r.url}`];
      await fc.assert(
        fc.asyncProperty(
          hostileValue,
          invalidForAnyField,
          fc.constantFrom(...Object.keys(base ?? { _: 0 })),
          fc.boolean(),
          async (value, bad, field, wholeBody) => {
            const payload = base && !wholeBody ? { ...base, [field]: bad } : value;
            const res = await svc.app.inject({
              method: r.method,
              url,
              headers: { ...root, 'content-type': 'application/json' },
              payload: JSON.stringify(payload) ?? 'null',
            });
            seen.set(`${res.statusCode}`, (seen.get(`${res.statusCode}`) ?? 0) + 1);
            assert.ok(
              res.statusCode >= 400 && res.statusCode < 500,
              `${r.method} ${url} answered ${res.statusCode}: ${res.body.slice(0, 300)}`,
            );
            assert.doesNotMatch(res.body, /at [A-Za-z]+ \(|node_modules|SQLITE_|ER_[A-Z_]+|syntax error/, 'no internals in the answer');
          },
        ),
        { numRuns: ctx.backend === 'memory' ? 40 : 15 },
      );
    }
    assert.deepEqual(await tableCounts(coffer), before, 'nothing was written');
    console.log(`hostile bodies on ${ctx.backend}: ${writes.length} routes, statuses ${JSON.stringify(Object.fromEntries(seen))}`);
  });

  test('every route answers a hostile path or query parameter with a 4xx (never 5xx) and no internals', async () => {
    // Text that fails a format check (zod still runs the checks after it: a BigInt of "ab" threw).
    const hostile = [...HOSTILE_STRINGS.filter((v) => v.length < 1000), 'ab', 'a\u0000b', '-1', '+1', '1.5', '00', '9'.repeat(25), ''];
    // A lone surrogate has no UTF-8 form: sent as the bytes it would be, with another invalid byte.
    const enc = (v: string) => (v === '\ud800' ? '%ED%A0%80%FF' : encodeURIComponent(v));
    let requests = 0;
    for (const r of DOMAIN_ROUTES) {
      const params = Object.keys((r.params as { shape?: object } | undefined)?.shape ?? {});
      const query = Object.keys((r.query as { shape?: object } | undefined)?.shape ?? {});
      const body = VALID_BASES[`${r.method} ${r.url}`] ?? {};
      const send = async (url: string) => {
        const res = await svc.app.inject({
          method: r.method,
          url,
          headers: { ...root, ...(r.body ? { 'content-type': 'application/json' } : {}) },
          ...(r.body ? { payload: JSON.stringify(body) } : {}),
        });
        requests++;
        assert.ok(res.statusCode < 500, `${r.method} ${url} answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
        assert.doesNotMatch(
          res.body,
          /at [A-Za-z]+ \(|node_modules|SQLITE_|ER_[A-Z_]+|syntax error|invalid byte sequence/,
          `${r.method} ${url}`,
        );
      };
      const path = (bad?: { name: string; value: string }) =>
        r.url.replace(/:([A-Za-z]+)/g, (_m, p: string) => enc(bad?.name === p ? bad.value : (PARAMS[p] ?? 'x')));
      for (const name of params) for (const value of hostile) if (value !== '') await send(path({ name, value }));
      for (const name of query) for (const value of hostile) await send(`${path()}?${name}=${enc(value)}`);
    }
    assert.ok(requests > 500, `${requests} requests`);
  });

  test('raw malformed JSON, wrong content types and prototype pollution are refused', async () => {
    for (const payload of [
      '{',
      '{"a":1,}',
      '[1,2',
      'null',
      '"just a string"',
      '{"__proto__":{"admin":true}}',
      '{"constructor":{"prototype":{"x":1}}}',
    ]) {
      const res = await svc.app.inject({
        method: 'POST',
        url: '/v1/integrations',
        headers: { ...root, 'content-type': 'application/json' },
        payload,
      });
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${payload}: ${res.statusCode} ${res.body}`);
    }
    const text = await svc.app.inject({
      method: 'POST',
      url: '/v1/integrations',
      headers: { ...root, 'content-type': 'text/plain' },
      payload: 'name=x',
    });
    assert.ok(text.statusCode >= 400 && text.statusCode < 500, `${text.statusCode}`);
    assert.equal(({} as Record<string, unknown>).admin, undefined);
  });
});
