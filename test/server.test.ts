// The service framework through app.inject(): authentication (401 vs 403), validation naming
// the field, typed store errors mapped to stable codes, exact amounts in JSON, request ids,
// rate limits with their real Retry-After, body limits, OpenAPI and the dashboard document.
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { before, test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { z } from 'zod';
import type { FastifyInstance } from 'fastify';
import { ConnectionError, NotFoundError } from '../src/db/errors.js';
import type { Coffer } from '../src/db/store.js';
import { buildApp } from '../src/server/app.js';
import { dashboardRoutes } from '../src/server/dashboard/data.js';
import { HttpError } from '../src/server/http-errors.js';
import { AuthFailureLimiter, RateLimitedError, RateLimiter } from '../src/server/rate-limit.js';
import { toJson } from '../src/server/json.js';
import { decodeCursor, pageOf, pageQuery } from '../src/server/pagination.js';
import { route, type Authenticator, type Principal } from '../src/server/route.js';
import { FIXTURE_MIGRATIONS } from './fixtures/kitchen-sink.js';
import { forEachBackend } from './harness.js';

const KEYS: Record<string, Principal> = {
  reader: { kind: 'api_key', id: 'api_key:reader', scopes: ['fixture:read', 'core:read'] },
  writer: { kind: 'api_key', id: 'api_key:writer', scopes: ['fixture:write'] },
  limited: { kind: 'api_key', id: 'api_key:limited', scopes: ['*:admin'] },
};
const auth: Authenticator = {
  authenticate: async (token) => {
    const p = KEYS[token];
    if (!p) throw new HttpError(401, 'unauthorized', 'unknown API key');
    return p;
  },
};

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
const amount = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,77})$/, 'must be a non-negative integer in base units, as a decimal string')
  .transform(BigInt);

function routes() {
  return [
    route({
      method: 'POST',
      url: '/v1/fixture/accounts',
      summary: 'create an account',
      tag: 'fixture',
      auth: { domain: 'fixture', level: 'write' },
      body: z.object({ name: z.string().min(1).max(40), hash: hex64, supply: amount }).strict(),
      response: z.object({ id: z.string() }),
      status: 201,
      handler: async ({ body, coffer }) => ({
        id: await coffer.write((tx) => tx.insertReturningId('fx_accounts', { ...body, created_at: new Date() })),
      }),
    }),
    route({
      method: 'GET',
      url: '/v1/fixture/accounts/:id',
      summary: 'read an account',
      tag: 'fixture',
      auth: { domain: 'fixture', level: 'read' },
      params: z.object({ id: z.string().regex(/^[0-9]+$/) }),
      response: z.object({ id: z.string(), name: z.string(), supply: z.string() }),
      handler: async ({ params, coffer }) =>
        coffer.read(async (tx) => {
          const row = await tx.db.selectFrom('fx_accounts').select(['id', 'name', 'supply']).where('id', '=', params.id).executeTakeFirst();
          if (!row) throw new NotFoundError(`account ${params.id} not found`);
          return tx.codec('fx_accounts').decode(row);
        }),
    }),
    route({
      method: 'GET',
      url: '/v1/fixture/accounts',
      summary: 'list accounts',
      tag: 'fixture',
      auth: { domain: 'fixture', level: 'read' },
      query: z.object(pageQuery).strict(),
      response: z.object({ items: z.array(z.object({ id: z.string(), name: z.string() })), nextCursor: z.string().optional() }),
      handler: async ({ query, coffer }) =>
        coffer.read(async (tx) => {
          const after = decodeCursor(query.cursor, z.object({ id: z.string().regex(/^[0-9]+$/) }));
          let q = tx.db
            .selectFrom('fx_accounts')
            .select(['id', 'name'])
            .orderBy('id')
            .limit(query.limit + 1);
          if (after) q = q.where('id', '>', after.id);
          const rows = (await q.execute()).map((r) => tx.codec('fx_accounts').decode<{ id: bigint; name: string }>(r));
          return pageOf(rows, query.limit, (last) => ({ id: last.id.toString() }));
        }),
    }),
    route({
      method: 'GET',
      url: '/v1/fixture/boom',
      summary: 'an unexpected failure',
      tag: 'fixture',
      auth: { domain: 'fixture', level: 'read' },
      response: z.object({}),
      handler: async () => {
        throw new Error('secret internal detail');
      },
    }),
  ];
}

forEachBackend('service framework', (ctx) => {
  let coffer: Coffer;
  let app: FastifyInstance;
  before(async () => {
    coffer = await ctx.open({ migrations: FIXTURE_MIGRATIONS });
    app = await buildApp({ coffer, routes: [...routes(), ...dashboardRoutes()], authenticator: auth });
  });

  test('no key is 401, a key without the scope is 403, and both say why', async () => {
    const none = await app.inject({ method: 'GET', url: '/v1/fixture/accounts' });
    assert.equal(none.statusCode, 401);
    assert.match(none.json().error.message, /missing Authorization/);
    const bad = await app.inject({ method: 'GET', url: '/v1/fixture/accounts', headers: { authorization: 'Bearer nope' } });
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.json().error.code, 'unauthorized');
    const forbidden = await app.inject({
      method: 'POST',
      url: '/v1/fixture/accounts',
      headers: { authorization: 'Bearer reader' },
      payload: {},
    });
    assert.equal(forbidden.statusCode, 403);
    assert.match(forbidden.json().error.message, /lacks the write scope on fixture/);
  });

  test('validation failures are 400 naming the field and the rule, and write nothing', async () => {
    const h = { authorization: 'Bearer writer' };
    const cases: [unknown, string][] = [
      [{ name: 'a', hash: 'XYZ', supply: '1' }, 'body.hash'],
      [{ name: 'a', hash: 'a'.repeat(64), supply: '1.5' }, 'body.supply'],
      [{ name: 'a', hash: 'a'.repeat(64), supply: 1 }, 'body.supply'],
      [{ name: '', hash: 'a'.repeat(64), supply: '1' }, 'body.name'],
      [{ name: 'a', hash: 'a'.repeat(64), supply: '1', extra: "'; DROP TABLE fx_accounts; --" }, 'body.extra'],
    ];
    for (const [payload, field] of cases) {
      const r = await app.inject({ method: 'POST', url: '/v1/fixture/accounts', headers: h, payload: payload as object });
      assert.equal(r.statusCode, 400, JSON.stringify(payload));
      const err = r.json().error;
      assert.equal(err.code, 'validation');
      assert.equal(err.field, field);
      assert.ok(err.message.startsWith(field));
    }
    const list = await app.inject({ method: 'GET', url: '/v1/fixture/accounts', headers: { authorization: 'Bearer reader' } });
    assert.deepEqual(list.json().items, []);
  });

  test('amounts round-trip exactly as decimal strings; store errors map to stable codes', async () => {
    const max = (2n ** 256n - 1n).toString();
    const created = await app.inject({
      method: 'POST',
      url: '/v1/fixture/accounts',
      headers: { authorization: 'Bearer writer' },
      payload: { name: 'big', hash: 'b'.repeat(64), supply: max },
    });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json().id;
    assert.match(id, /^[0-9]+$/);
    const got = await app.inject({ method: 'GET', url: `/v1/fixture/accounts/${id}`, headers: { authorization: 'Bearer reader' } });
    assert.equal(got.json().supply, max);
    const dup = await app.inject({
      method: 'POST',
      url: '/v1/fixture/accounts',
      headers: { authorization: 'Bearer writer' },
      payload: { name: 'big', hash: 'c'.repeat(64), supply: '1' },
    });
    assert.equal(dup.statusCode, 409);
    assert.equal(dup.json().error.code, 'unique_violation');
    const missing = await app.inject({ method: 'GET', url: '/v1/fixture/accounts/999999', headers: { authorization: 'Bearer reader' } });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, 'not_found');
  });

  test('an unexpected error is a 500 with a request id and no internals', async () => {
    const r = await app.inject({
      method: 'GET',
      url: '/v1/fixture/boom',
      headers: { authorization: 'Bearer reader', 'x-request-id': 'req-123' },
    });
    assert.equal(r.statusCode, 500);
    assert.deepEqual(r.json(), { error: { code: 'internal', message: 'internal error', requestId: 'req-123' } });
    assert.doesNotMatch(r.body, /secret internal detail/);
  });

  test("every response carries X-Request-Id: the client's when it is a safe id, otherwise a new UUID", async () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    const responses = [
      await app.inject({ method: 'GET', url: '/health' }),
      await app.inject({ method: 'GET', url: '/ready' }),
      await app.inject({ method: 'GET', url: '/nowhere' }),
      await app.inject({ method: 'GET', url: '/v1/fixture/accounts' }),
      await app.inject({ method: 'GET', url: '/v1/fixture/boom', headers: { authorization: 'Bearer reader' } }),
      await app.inject({ method: 'GET', url: '/v1/fixture/accounts?limit=1', headers: { authorization: 'Bearer reader' } }),
    ];
    for (const r of responses) {
      assert.match(String(r.headers['x-request-id']), uuid, `${r.statusCode} ${r.body.slice(0, 100)}`);
      if (r.statusCode >= 400) assert.equal(r.json().error.requestId, r.headers['x-request-id']);
    }
    assert.equal(new Set(responses.map((r) => r.headers['x-request-id'])).size, responses.length);

    const longest = 'a'.repeat(120) + '-._:AZ09';
    for (const id of ['req-1', 'trace:01HXYZ.span_2', longest]) {
      const r = await app.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': id } });
      assert.equal(r.headers['x-request-id'], id);
      assert.equal(r.json().error.requestId, id);
    }
    for (const id of [longest + 'b', 'x'.repeat(5000), 'has space', 'semi;colon', 'quote"', 'ünï', '']) {
      const r = await app.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': id } });
      assert.match(String(r.headers['x-request-id']), uuid, JSON.stringify(id.slice(0, 20)));
      assert.equal(r.json().error.requestId, r.headers['x-request-id']);
    }
  });

  test('requests arriving while the service drains for shutdown get a 503 in the API error format, with X-Request-Id and Connection: close', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let inFlight!: () => void;
    const started = new Promise<void>((r) => (inFlight = r));
    let draining!: () => void;
    const closing = new Promise<void>((r) => (draining = r));
    const served = await buildApp({
      coffer,
      routes: routes(),
      authenticator: auth,
      extend: (a) => {
        // A request still being served when shutdown begins; app.close() waits for it.
        a.get('/test/slow', async () => {
          inFlight();
          await gate;
          return { done: true };
        });
        // Runs after the app's own preClose hook: shutdown is in effect from here on.
        a.addHook('preClose', (done) => {
          draining();
          done();
        });
      },
    });
    await served.listen({ host: '127.0.0.1', port: 0 });
    const socket = connect((served.server.address() as AddressInfo).port, '127.0.0.1');
    let raw = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (raw += chunk));
    const ended = new Promise<void>((r) => socket.on('close', () => r()));
    try {
      socket.write('GET /test/slow HTTP/1.1\r\nHost: coffer\r\nX-Request-Id: slow-1\r\n\r\n');
      await started;
      const closed = served.close();
      await closing;
      // The next request on the same (kept-alive) connection, and one to an unknown route.
      socket.write('GET /v1/fixture/accounts HTTP/1.1\r\nHost: coffer\r\nAuthorization: Bearer reader\r\nX-Request-Id: shut-1\r\n\r\n');
      release();
      await closed;
      await ended;
    } finally {
      release();
      socket.destroy();
    }
    const responses = raw.split(/(?=HTTP\/1\.1 )/);
    assert.equal(responses.length, 2, raw);
    const [first, second] = responses as [string, string];
    assert.match(first, /^HTTP\/1\.1 200 /);
    assert.match(first, /\{"done":true\}/);
    const [head, body] = second.split('\r\n\r\n') as [string, string];
    const headers = new Map(
      head
        .split('\r\n')
        .slice(1)
        .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
    );
    assert.match(head, /^HTTP\/1\.1 503 /);
    assert.equal(headers.get('x-request-id'), 'shut-1');
    assert.equal(headers.get('connection'), 'close');
    assert.match(headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(JSON.parse(body), {
      error: { code: 'shutting_down', message: 'the service is shutting down: retry the request', requestId: 'shut-1' },
    });
  });

  test('cursor pagination walks every row once, to the end', async () => {
    for (let i = 0; i < 7; i++) {
      await app.inject({
        method: 'POST',
        url: '/v1/fixture/accounts',
        headers: { authorization: 'Bearer writer' },
        payload: { name: `p${i}`, hash: i.toString(16).padStart(64, 'd'), supply: '1' },
      });
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = await app.inject({
        method: 'GET',
        url: `/v1/fixture/accounts?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
        headers: { authorization: 'Bearer limited' },
      });
      assert.equal(r.statusCode, 200, r.body);
      const page = r.json();
      seen.push(...page.items.map((x: { id: string }) => x.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor && pages < 20);
    assert.equal(new Set(seen).size, seen.length);
    assert.equal(seen.length, 8);
    const bad = await app.inject({
      method: 'GET',
      url: '/v1/fixture/accounts?cursor=garbage',
      headers: { authorization: 'Bearer reader' },
    });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.field, 'query.cursor');
  });

  test('rate limits apply per key with 429 and Retry-After', async () => {
    const limitedApp = await buildApp({ coffer, routes: routes(), authenticator: auth, rateLimit: { perSecond: 1, burst: 3 } });
    let limited = 0;
    for (let i = 0; i < 8; i++) {
      const r = await limitedApp.inject({
        method: 'GET',
        url: '/v1/fixture/accounts?limit=1',
        headers: { authorization: 'Bearer writer' },
      });
      if (r.statusCode === 429) {
        limited++;
        assert.equal(r.headers['retry-after'], '1');
        assert.equal(r.json().error.code, 'rate_limited');
      }
    }
    assert.ok(limited >= 4, `limited ${limited}`);
    // Retry-After is the real wait, in whole seconds rounded up: at 0.1/s a token takes 10 s.
    const slowApp = await buildApp({ coffer, routes: routes(), authenticator: auth, rateLimit: { perSecond: 0.1, burst: 1 } });
    const get = () => slowApp.inject({ method: 'GET', url: '/v1/fixture/accounts?limit=1', headers: { authorization: 'Bearer writer' } });
    assert.equal((await get()).statusCode, 200);
    const slow = await get();
    assert.equal(slow.statusCode, 429);
    assert.equal(slow.headers['retry-after'], '10');
    assert.match(slow.json().error.message, /retry in 10 s/);
    // Another key has its own bucket.
    const other = await limitedApp.inject({
      method: 'GET',
      url: '/v1/fixture/accounts?limit=1',
      headers: { authorization: 'Bearer reader' },
    });
    assert.equal(other.statusCode, 200);
  });

  test('failed authentications are limited per client address: 429 with Retry-After, before the key is looked at', async () => {
    let lookups = 0;
    const counting: Authenticator = {
      authenticate: async (token, ip) => {
        lookups++;
        if (token === 'down') throw new ConnectionError('database unreachable');
        return auth.authenticate(token, ip);
      },
    };
    // 0.1/s: no token comes back while the test runs, so every count below is exact.
    const limited = await buildApp({ coffer, routes: routes(), authenticator: counting, rateLimit: { perSecond: 0.1, burst: 3 } });
    const get = (remoteAddress: string, key?: string) =>
      limited.inject({
        method: 'GET',
        url: '/v1/fixture/accounts?limit=1',
        remoteAddress,
        headers: key ? { authorization: `Bearer ${key}` } : {},
      });
    const retryAfter = (r: { headers: Record<string, unknown> }) => Number(r.headers['retry-after']);

    // Unknown keys: a burst of 401s, then 429 without another lookup.
    const bad: number[] = [];
    for (let i = 0; i < 10; i++) bad.push((await get('10.0.0.1', 'nope')).statusCode);
    assert.deepEqual(bad, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    assert.equal(lookups, 3, 'a refused address costs no lookup');
    const refused = await get('10.0.0.1', 'nope');
    assert.equal(refused.json().error.code, 'rate_limited');
    assert.match(refused.json().error.message, /too many failed authentications/);
    const wait = retryAfter(refused);
    assert.ok(Number.isInteger(wait) && wait >= 9 && wait <= 10, `Retry-After ${wait}`);
    // Whatever would be looked up is refused from that address, a good key too; another address is
    // not. A request with no key is a 401 as before (it costs no lookup).
    assert.equal((await get('10.0.0.1', 'reader')).statusCode, 429);
    assert.equal(lookups, 3);
    assert.equal((await get('10.0.0.1')).statusCode, 401);
    assert.equal((await get('10.0.0.9', 'reader')).statusCode, 200);
    // A key the authentication cache answers for costs no lookup and is never refused, so clients
    // sharing an address (behind a proxy) keep working while one of them sends bad keys.
    const cachedApp = await buildApp({
      coffer,
      routes: routes(),
      authenticator: {
        ...counting,
        cached: (token) => (token === 'reader' ? { kind: 'api_key', id: 'reader', scopes: ['*:read'] } : undefined),
      },
      rateLimit: { perSecond: 0.1, burst: 3 },
    });
    const fromShared = (key: string) =>
      cachedApp.inject({
        method: 'GET',
        url: '/v1/fixture/accounts?limit=1',
        remoteAddress: '10.0.0.5',
        headers: { authorization: `Bearer ${key}` },
      });
    assert.deepEqual(
      [
        (await fromShared('nope')).statusCode,
        (await fromShared('nope')).statusCode,
        (await fromShared('nope')).statusCode,
        (await fromShared('nope')).statusCode,
      ],
      [401, 401, 401, 429],
    );
    assert.equal((await fromShared('reader')).statusCode, 200);

    // A valid key without the scope (403) and a missing key (401) count the same.
    const post = () =>
      limited.inject({
        method: 'POST',
        url: '/v1/fixture/accounts',
        remoteAddress: '10.0.0.2',
        headers: { authorization: 'Bearer reader' },
        payload: {},
      });
    assert.deepEqual([(await post()).statusCode, (await post()).statusCode, (await get('10.0.0.2')).statusCode], [403, 403, 401]);
    assert.equal((await post()).statusCode, 429);

    // A database that fails is not the client's failure.
    const before = lookups;
    for (let i = 0; i < 5; i++) assert.equal((await get('10.0.0.3', 'down')).statusCode, 503);
    assert.equal(lookups - before, 5);
    assert.equal((await get('10.0.0.3', 'reader')).statusCode, 200);

    // With the limit off (0), failures are not limited either.
    const unlimited = await buildApp({ coffer, routes: routes(), authenticator: counting, rateLimit: { perSecond: 0, burst: 1 } });
    for (let i = 0; i < 10; i++) {
      const r = await unlimited.inject({ method: 'GET', url: '/v1/fixture/accounts', headers: { authorization: 'Bearer nope' } });
      assert.equal(r.statusCode, 401);
    }
  });

  test('oversized bodies are refused with 413', async () => {
    const big = await buildApp({ coffer, routes: routes(), authenticator: auth, bodyLimitBytes: 1024 });
    const r = await big.inject({
      method: 'POST',
      url: '/v1/fixture/accounts',
      headers: { authorization: 'Bearer writer', 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x'.repeat(5000) }),
    });
    assert.equal(r.statusCode, 413);
    assert.equal(r.json().error.code, 'payload_too_large');
  });

  test('openapi.json documents every route from the same schemas, and /docs renders it', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.equal(doc.openapi, '3.1.0');
    const post = doc.paths['/v1/fixture/accounts'].post;
    assert.equal(post['x-coffer-scope'], 'fixture:write');
    assert.equal(post.requestBody.content['application/json'].schema.properties.hash.pattern, '^[0-9a-f]{64}$');
    assert.ok(
      doc.paths['/v1/fixture/accounts/{id}'].get.parameters.some((p: { name: string; in: string }) => p.name === 'id' && p.in === 'path'),
    );
    const html = await app.inject({ method: 'GET', url: '/docs' });
    assert.equal(html.statusCode, 200);
    assert.match(html.body, /\/v1\/fixture\/accounts/);
  });

  test('the dashboard page is served and its data needs a read key', async () => {
    const page = await app.inject({ method: 'GET', url: '/' });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /<title>Coffer dashboard<\/title>/);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/dashboard' })).statusCode, 401);
    const d = await app.inject({ method: 'GET', url: '/v1/dashboard', headers: { authorization: 'Bearer reader' } });
    assert.equal(d.statusCode, 200, d.body);
    const data = d.json();
    assert.equal(data.database.backend, ctx.backend);
    assert.ok(data.migrations.every((m: { state: string }) => m.state === 'applied'));
    assert.ok(data.tables.some((t: { name: string }) => t.name === 'fx_accounts'));
    assert.equal(data.throughput.length, 300);
  });

  test('metrics count requests by route template and status', async () => {
    const text = await (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(text, /coffer_http_requests_total\{method="GET",route="\/v1\/fixture\/accounts\/:id",status="404"\} 1/);
    assert.match(text, /coffer_http_request_duration_seconds_bucket/);
  });

  test('the access log is one line a request: request id, method, URL, route template, status, time; no credentials', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        cb();
      },
    });
    const logged = await buildApp({ coffer, routes: routes(), authenticator: auth, logger: pino({ level: 'info' }, sink) });
    try {
      const h = { authorization: 'Bearer reader', 'x-request-id': 'req-log-1' };
      assert.equal((await logged.inject({ method: 'GET', url: '/v1/fixture/accounts/999999?x=1', headers: h })).statusCode, 404);
      assert.equal((await logged.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': 'req-log-2' } })).statusCode, 404);
      const requests = lines.filter((l) => l.msg === 'request completed');
      assert.equal(requests.length, 2, JSON.stringify(lines));
      assert.equal(lines.length, 2, 'nothing else is logged for a request that ends normally');
      const [first, second] = requests as [Record<string, any>, Record<string, any>];
      assert.equal(first.reqId, 'req-log-1');
      assert.deepEqual(
        { method: first.method, url: first.url, route: first.route, status: first.statusCode },
        { method: 'GET', url: '/v1/fixture/accounts/999999?x=1', route: '/v1/fixture/accounts/:id', status: 404 },
      );
      assert.equal(typeof first.responseTime, 'number');
      assert.equal(typeof first.remoteAddress, 'string');
      assert.equal(second.reqId, 'req-log-2');
      assert.equal(second.route, 'unmatched');
      assert.doesNotMatch(JSON.stringify(lines), /Bearer|reader/);
      // An over-long client id is neither echoed nor logged: the line has the id the service made.
      const r = await logged.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': 'x'.repeat(5000) } });
      const third = lines.filter((l) => l.msg === 'request completed')[2] as Record<string, any>;
      assert.equal(third.reqId, r.headers['x-request-id']);
      assert.doesNotMatch(JSON.stringify(lines), /x{129}/);
    } finally {
      await logged.close();
    }
  });
});

test('pageOf only announces a next page when one exists', () => {
  assert.deepEqual(
    pageOf([1, 2], 2, (x) => ({ id: x })),
    { items: [1, 2] },
  );
  const p = pageOf([1, 2, 3], 2, (x) => ({ id: x }));
  assert.deepEqual(p.items, [1, 2]);
  assert.deepEqual(decodeCursor(p.nextCursor, z.object({ id: z.number() })), { id: 2 });
});

test('the reply serialiser writes Buffers as hex and leaves a JSON document shaped like a serialised Buffer as it is', () => {
  const doc = { type: 'Buffer', data: [104, 105] };
  assert.equal(
    toJson({ bytes: Buffer.from('hi'), doc, n: 2n ** 70n, list: [Buffer.from([1, 255])] }),
    `{"bytes":"6869","doc":${JSON.stringify(doc)},"n":"${2n ** 70n}","list":["01ff"]}`,
  );
  assert.equal(toJson(Buffer.from('x')), '"78"');
});

test('a client address that failed many times at once waits for all of them, and is forgotten once refilled', () => {
  const f = new AuthFailureLimiter({ perSecond: 1, burst: 2 });
  // Five failures that were in flight together (each passed the check before any failed).
  for (let i = 0; i < 5; i++) f.record('10.0.0.1', 0);
  assert.throws(
    () => f.check('10.0.0.1', 0),
    (e) => e instanceof RateLimitedError && e.retryAfterSeconds === 4,
  );
  assert.throws(() => f.check('10.0.0.1', 3999), RateLimitedError);
  f.check('10.0.0.1', 4000);
  f.check('10.0.0.2', 0);
  // A full bucket holds nothing worth keeping.
  f.check('10.0.0.1', 10_000);
  assert.equal(f.size, 0);
});

test('rotating client addresses (or keys) cannot grow the limiters without bound', () => {
  const failures = new AuthFailureLimiter({ perSecond: 0.001, burst: 5 }, { maxEntries: 1000 });
  const keys = new RateLimiter({ perSecond: 0.001, burst: 5 }, { maxEntries: 1000 });
  for (let i = 0; i < 50_000; i++) {
    failures.record(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, i);
    keys.take(`api_key:${i}`, i);
    assert.ok(failures.size <= 1000 && keys.size <= 1000, `at ${i}: ${failures.size}, ${keys.size}`);
  }
  // The address failing now is kept, and still refused.
  for (let i = 0; i < 5; i++) failures.record('192.0.2.1', 50_000);
  assert.throws(() => failures.check('192.0.2.1', 50_000), RateLimitedError);
});
