// The client address behind a reverse proxy, through the service `coffer serve` builds from its
// configuration: with server.trustProxy naming the proxy, the address the proxy forwards in
// X-Forwarded-For is what API-key allow-lists, the failed-authentication limit and the access log
// see; without it the header is ignored, so no client can claim an allowed address by sending it.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config/config.js';
import { createService, type Service } from '../src/server/compose.js';
import { forEachBackend, type BackendContext } from './harness.js';
import { keyMinter } from './service-support.js';

interface Served {
  service: Service;
  key: Awaited<ReturnType<typeof keyMinter>>;
  /** GET /v1/chains from `remoteAddress`, with X-Forwarded-For when given. */
  get(remoteAddress: string, authorization: string, forwardedFor?: string, requestId?: string): Promise<number>;
  /** The access log's `remoteAddress` for a request id. */
  loggedAddress(requestId: string): string | undefined;
}

async function serve(ctx: BackendContext, trustProxy?: unknown): Promise<Served> {
  const { url } = await ctx.newDatabase();
  const config = ConfigSchema.parse({
    database: { url },
    // 0.1/s: no failure is forgiven while a test runs, so the counts are exact.
    server: { rateLimitPerSecond: 0.1, rateLimitBurst: 3, ...(trustProxy === undefined ? {} : { trustProxy }) },
  });
  const lines: { msg?: string; reqId?: string; remoteAddress?: string }[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as (typeof lines)[number]);
      cb();
    },
  });
  const service = await createService(config, pino({ level: 'info' }, sink));
  return {
    service,
    key: await keyMinter(service.services.coffer),
    get: async (remoteAddress, authorization, forwardedFor, requestId) =>
      (
        await service.app.inject({
          method: 'GET',
          url: '/v1/chains',
          remoteAddress,
          headers: {
            authorization,
            ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
            ...(requestId ? { 'x-request-id': requestId } : {}),
          },
        })
      ).statusCode,
    loggedAddress: (requestId) => lines.find((l) => l.msg === 'request completed' && l.reqId === requestId)?.remoteAddress,
  };
}

forEachBackend('client address behind a reverse proxy', (ctx) => {
  test('with server.trustProxy listing the proxy, the forwarded address is the client: allow-lists, the failure limit and the access log use it', async () => {
    const s = await serve(ctx, '127.0.0.1, 10.0.0.0/8');
    try {
      const pinned = await s.key(['chain:read'], { ipAllow: ['203.0.113.0/24'] });
      // Through the proxy (loopback): the client's address is the one the proxy appended.
      assert.equal(await s.get('127.0.0.1', pinned.authorization, '203.0.113.7', 'via-proxy'), 200);
      assert.equal(s.loggedAddress('via-proxy'), '203.0.113.7');
      assert.equal(await s.get('127.0.0.1', pinned.authorization, '198.51.100.9'), 403);
      // Entries left of the proxy's own are the client's to write: only the proxy's is believed.
      assert.equal(await s.get('127.0.0.1', pinned.authorization, '203.0.113.7, 198.51.100.10'), 403);
      // Two listed proxies in a row (loopback in front of 10.1.2.3): the first address not theirs.
      assert.equal(await s.get('127.0.0.1', pinned.authorization, '203.0.113.8, 10.1.2.3'), 200);
      // A peer that is not a listed proxy: its header is ignored, its own address is the client's.
      assert.equal(await s.get('192.0.2.1', pinned.authorization, '203.0.113.7', 'direct'), 403);
      assert.equal(s.loggedAddress('direct'), '192.0.2.1');

      // Failed authentications are counted per forwarded address, not for the proxy as a whole.
      const bad = 'Bearer cfk_not_a_key';
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push(await s.get('127.0.0.1', bad, '203.0.113.50'));
      assert.deepEqual(statuses, [401, 401, 401, 429]);
      assert.equal(await s.get('127.0.0.1', bad, '203.0.113.51'), 401, 'another client behind the same proxy is not limited');
      assert.equal(await s.get('10.9.9.9', bad, '203.0.113.50'), 429, 'the same client through another listed proxy is');
    } finally {
      await s.service.close();
    }
  });

  test('without server.trustProxy, X-Forwarded-For is ignored: a client can neither claim an allowed address nor dodge the failure limit', async () => {
    const s = await serve(ctx);
    try {
      const pinned = await s.key(['chain:read'], { ipAllow: ['203.0.113.0/24'] });
      assert.equal(await s.get('127.0.0.1', pinned.authorization, '203.0.113.7', 'spoofed'), 403);
      assert.equal(s.loggedAddress('spoofed'), '127.0.0.1');
      const local = await s.key(['chain:read'], { ipAllow: ['127.0.0.1/32'] });
      assert.equal(await s.get('127.0.0.1', local.authorization, '198.51.100.9'), 200);

      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push(await s.get('192.0.2.7', 'Bearer cfk_not_a_key', `203.0.113.${60 + i}`));
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    } finally {
      await s.service.close();
    }
  });

  test('a hop count takes the address that many proxies in; true takes the leftmost, which the client wrote', async () => {
    const hops = await serve(ctx, '2');
    try {
      const pinned = await hops.key(['chain:read'], { ipAllow: ['203.0.113.0/24'] });
      // Client → proxy A (appends 203.0.113.7) → proxy B 10.0.0.2 (appends A's address) → service.
      assert.equal(await hops.get('10.0.0.3', pinned.authorization, '198.51.100.1, 203.0.113.7, 10.0.0.2'), 200);
      assert.equal(await hops.get('10.0.0.3', pinned.authorization, '203.0.113.7, 198.51.100.1, 10.0.0.2'), 403);
    } finally {
      await hops.service.close();
    }
    const any = await serve(ctx, true);
    try {
      const pinned = await any.key(['chain:read'], { ipAllow: ['203.0.113.0/24'] });
      assert.equal(await any.get('192.0.2.1', pinned.authorization, '203.0.113.7, 198.51.100.1'), 200);
    } finally {
      await any.service.close();
    }
  });
});
