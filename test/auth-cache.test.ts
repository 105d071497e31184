// The authentication cache (src/server/auth-cache.ts): what it may reuse and, above all, what it
// must not: a revoked, expired, re-scoped or address-restricted credential.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { systemActor } from '../src/domains/audit/actor.js';
import { identity } from '../src/domains/identity/index.js';
import type { Coffer } from '../src/db/store.js';
import { AuthCache, type Authenticated } from '../src/server/auth-cache.js';
import { forEachBackend } from './harness.js';
import { testService, type TestService } from './service-support.js';

function fixture(ttlMs = 1000) {
  let now = 1_000_000;
  let generation = 0;
  let loads = 0;
  const valid = new Map<string, Authenticated>();
  const cache = new AuthCache({ ttlMs, maxEntries: 3, generation: () => generation, now: () => now });
  const auth = cache.wrap(async (token, ip) => {
    loads++;
    const a = valid.get(`${token}@${ip}`) ?? valid.get(token);
    if (!a) throw new Error('invalid');
    return a;
  });
  const principal = (id: string, expiresIn = 3_600_000): Authenticated => ({
    principal: { kind: 'api_key', id, scopes: ['chain:read'] },
    expiresAt: new Date(now + expiresIn),
  });
  return {
    cache,
    auth,
    valid,
    principal,
    loads: () => loads,
    tick: (ms: number) => (now += ms),
    bump: () => generation++,
    setGeneration: (g: number) => (generation = g),
  };
}

test('a success is reused within the TTL and checked again after it', async () => {
  const f = fixture(1000);
  f.valid.set('k1', f.principal('a'));
  assert.equal((await f.auth.authenticate('k1', '10.0.0.1')).id, 'a');
  assert.equal((await f.auth.authenticate('k1', '10.0.0.1')).id, 'a');
  assert.equal(f.loads(), 1);
  f.tick(1001);
  f.valid.delete('k1');
  await assert.rejects(f.auth.authenticate('k1', '10.0.0.1'), /invalid/);
  assert.equal(f.loads(), 2);
});

test('an entry never outlives the credential it stands for', async () => {
  const f = fixture(60_000);
  f.valid.set('k1', f.principal('a', 500));
  await f.auth.authenticate('k1', '10.0.0.1');
  f.tick(499);
  await f.auth.authenticate('k1', '10.0.0.1');
  assert.equal(f.loads(), 1);
  f.tick(2);
  f.valid.delete('k1');
  await assert.rejects(f.auth.authenticate('k1', '10.0.0.1'), /invalid/);
});

test('an identity change in this process empties it at once', async () => {
  const f = fixture(60_000);
  f.valid.set('k1', f.principal('a'));
  await f.auth.authenticate('k1', '10.0.0.1');
  f.valid.delete('k1');
  f.bump();
  await assert.rejects(f.auth.authenticate('k1', '10.0.0.1'), /invalid/);
});

test('an authentication that raced an identity change is not cached', async () => {
  const f = fixture(60_000);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const cache = new AuthCache({ ttlMs: 60_000, generation: () => gen });
  let gen = 0;
  let loads = 0;
  const auth = cache.wrap(async () => {
    loads++;
    await gate;
    return f.principal('a');
  });
  const pending = auth.authenticate('k1', '10.0.0.1');
  gen++; // a revoke commits while the read above is in flight
  release();
  await pending;
  await auth.authenticate('k1', '10.0.0.1');
  assert.equal(loads, 2, 'the raced result was not reused');
});

test('failures are never cached; the client address is part of the key; the size is bounded', async () => {
  const f = fixture(60_000);
  await assert.rejects(f.auth.authenticate('k1', '10.0.0.1'), /invalid/);
  f.valid.set('k1@10.0.0.1', f.principal('a'));
  assert.equal((await f.auth.authenticate('k1', '10.0.0.1')).id, 'a');
  await assert.rejects(f.auth.authenticate('k1', '10.0.0.2'), /invalid/, 'another address is checked on its own');
  for (const k of ['k2', 'k3', 'k4', 'k5']) {
    f.valid.set(k, f.principal(k));
    await f.auth.authenticate(k, '10.0.0.1');
  }
  assert.ok(f.cache.size <= 3);
});

test('a TTL of 0 checks every request', async () => {
  const f = fixture(0);
  f.valid.set('k1', f.principal('a'));
  await f.auth.authenticate('k1', '10.0.0.1');
  await f.auth.authenticate('k1', '10.0.0.1');
  assert.equal(f.loads(), 2);
});

forEachBackend('authentication cache in the service', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  before(async () => {
    coffer = await ctx.open();
    // A long TTL: anything that still works after a change below would be the cache's fault.
    svc = await testService(coffer, { authCacheMs: 60_000 });
  });

  test('a key revoked or re-scoped through the store stops working on the next request', async () => {
    const k1 = await svc.key(['chain:read']);
    assert.equal((await svc.call('GET', '/v1/chains', k1)).statusCode, 200);
    await coffer.write((tx) => identity(tx, systemActor('test')).keys.revoke(k1.keyId));
    assert.equal((await svc.call('GET', '/v1/chains', k1)).statusCode, 401, 'revoked');

    const k2 = await svc.key(['chain:read']);
    assert.equal((await svc.call('GET', '/v1/chains', k2)).statusCode, 200);
    const rec = await coffer.read((tx) => identity(tx, systemActor('test')).keys.get(k2.keyId));
    await coffer.write((tx) =>
      identity(tx, systemActor('test')).keys.update(k2.keyId, { expectedVersion: rec!.version, scopes: ['tokens:read'] }),
    );
    assert.equal((await svc.call('GET', '/v1/chains', k2)).statusCode, 403, 're-scoped');
  });

  test('a key restricted to other addresses is refused even after it was used from an allowed one', async () => {
    const k = await svc.key(['chain:read'], { ipAllow: ['127.0.0.1/32'] });
    assert.equal((await svc.call('GET', '/v1/chains', k)).statusCode, 200);
    const other = await svc.app.inject({
      method: 'GET',
      url: '/v1/chains',
      headers: { authorization: k.authorization },
      remoteAddress: '10.1.2.3',
    });
    assert.equal(other.statusCode, 403, other.body);
  });
});
