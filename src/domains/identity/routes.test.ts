// Identity and audit APIs through app.inject() on every backend: keys shown once and usable,
// stale updates refused, revocation effective, no key granting more than it holds, token
// limits and single consumption, the audit log readable, verifiable and attributed to the key
// that made each change, and the dashboard's audit panel only for keys that may read the log.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend, rowCount } from '../../../test/harness.js';
import { testService, type TestService } from '../../../test/service-support.js';
import { systemActor } from '../audit/actor.js';
import { identity } from './index.js';

forEachBackend('identity and audit API', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  let admin: { authorization: string; keyId: string };
  before(async () => {
    coffer = await ctx.open();
    svc = await testService(coffer);
    admin = await svc.key(['identity:admin', 'audit:read', 'chain:read'], { expiresAt: new Date(Date.now() + 7 * 86_400_000) });
  });

  test('an integration and a key: the secret appears once, works, and is never listed', async () => {
    const integ = await svc.call('POST', '/v1/integrations', admin, { name: 'wallet-backend' });
    assert.equal(integ.statusCode, 201, integ.body);
    const id = integ.json().id;
    assert.equal((await svc.call('POST', '/v1/integrations', admin, { name: 'wallet-backend' })).statusCode, 409, 'name unique');
    const created = await svc.call('POST', `/v1/integrations/${id}/keys`, admin, {
      name: 'indexer',
      scopes: ['chain:read'],
      expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    });
    assert.equal(created.statusCode, 201, created.body);
    const { key, record } = created.json();
    assert.match(key, /^cfk_[0-9a-f]{24}_/);
    const listed = await svc.call('GET', `/v1/integrations/${id}/keys`, admin);
    assert.doesNotMatch(listed.body, new RegExp(key.slice(key.indexOf('_', 4) + 1).replace(/[-]/g, '\\-')));
    assert.equal(listed.json().items.length, 1);
    const stored = await coffer.read((tx) => tx.db.selectFrom('identity_api_keys').selectAll().execute());
    assert.doesNotMatch(
      JSON.stringify(stored, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
      new RegExp(key.slice(key.indexOf('_', 4) + 1).replace(/[-]/g, '\\-')),
      'only the hash is stored',
    );
    const use = await svc.call('GET', '/v1/chains', { authorization: `Bearer ${key}` });
    assert.equal(use.statusCode, 200, use.body);

    const stale = await svc.call('PATCH', `/v1/keys/${record.id}`, admin, {
      expectedVersion: record.version + 5,
      scopes: ['chain:read', 'audit:read'],
    });
    assert.equal(stale.statusCode, 409, stale.body);
    assert.equal(stale.json().error.code, 'conflict');
    // A scope the admin key holds itself (it could not grant chain:write: see below).
    const updated = await svc.call('PATCH', `/v1/keys/${record.id}`, admin, {
      expectedVersion: record.version,
      scopes: ['chain:read', 'audit:read'],
    });
    assert.equal(updated.statusCode, 200, updated.body);

    assert.equal((await svc.call('DELETE', `/v1/keys/${record.id}`, admin)).statusCode, 200);
    assert.equal((await svc.call('GET', '/v1/chains', { authorization: `Bearer ${key}` })).statusCode, 401, 'revoked keys stop working');
  });

  test('single-use tokens: the maximum holds and a token is consumed once', async () => {
    const id = (await svc.call('POST', '/v1/integrations', admin, { name: 'payments' })).json().id;
    const cfg = await svc.call('PUT', `/v1/integrations/${id}/token-types/invite`, admin, { maxOpen: 2, lifetimeSeconds: 3600 });
    assert.equal(cfg.statusCode, 201, cfg.body);
    const t1 = await svc.call('POST', `/v1/integrations/${id}/tokens`, admin, { tokenType: 'invite' });
    assert.equal(t1.statusCode, 201, t1.body);
    assert.equal((await svc.call('POST', `/v1/integrations/${id}/tokens`, admin, { tokenType: 'invite' })).statusCode, 201);
    const third = await svc.call('POST', `/v1/integrations/${id}/tokens`, admin, { tokenType: 'invite' });
    assert.ok(third.statusCode >= 400 && third.statusCode < 500, third.body);
    const token = t1.json().token;
    assert.equal((await svc.call('POST', '/v1/tokens/consume', admin, { token, tokenType: 'invite' })).statusCode, 200);
    const again = await svc.call('POST', '/v1/tokens/consume', admin, { token, tokenType: 'invite' });
    assert.ok(again.statusCode >= 400 && again.statusCode < 500, again.body);
    // A token that is not one (or of a deleted integration) is bad input naming it, never a 401:
    // the caller's API key is fine.
    const forged = await svc.call('POST', '/v1/tokens/consume', admin, { token: `${token.slice(0, -4)}AAAA`, tokenType: 'invite' });
    assert.equal(forged.statusCode, 400, forged.body);
    assert.deepEqual([forged.json().error.code, forged.json().error.field], ['validation', 'body.token']);
    assert.doesNotMatch(
      again.body,
      new RegExp(token.slice(token.indexOf('_', 4) + 1).replace(/[-]/g, '\\-')),
      'the token never echoes back in errors',
    );
  });

  test('the audit log is readable page by page, verifiable, and names the key as actor', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 50; i++) {
      const r = await svc.call('GET', `/v1/audit/entries?limit=3${cursor ? `&cursor=${cursor}` : ''}`, admin);
      assert.equal(r.statusCode, 200, r.body);
      seen.push(...r.json().items.map((e: { seq: string }) => e.seq));
      cursor = r.json().nextCursor;
      if (!cursor) break;
    }
    assert.deepEqual(
      seen,
      seen.map((_, i) => String(i + 1)),
    );
    const head = (await svc.call('GET', '/v1/audit/head', admin)).json();
    assert.equal(head.seq, String(seen.length));
    const verify = (await svc.call('GET', '/v1/audit/verify', admin)).json();
    assert.equal(verify.ok, true, JSON.stringify(verify));
    assert.equal(verify.headHash, head.hash);
    const created = await coffer.read((tx) =>
      tx.db.selectFrom('audit_log').select(['actor_type', 'actor_id']).where('action', '=', 'identity.integration.create').execute(),
    );
    // The test harness's own integration is created by a system actor; the API's by the key.
    const viaApi = created.filter((r) => r.actor_type === 'api_key');
    assert.equal(viaApi.length, 2);
    assert.ok(viaApi.every((r) => r.actor_id === admin.keyId));
    const bad = await svc.call('GET', `/v1/audit/verify?anchorSeq=1&anchorHash=${'0'.repeat(64)}`, admin);
    assert.equal(bad.json().ok, false);
  });

  test('identity routes need identity scopes', async () => {
    const reader = await svc.key(['chain:read']);
    assert.equal((await svc.call('POST', '/v1/integrations', reader, { name: 'x' })).statusCode, 403);
    assert.equal((await svc.call('GET', '/v1/audit/head', reader)).statusCode, 403);
    const bad = await svc.call('POST', '/v1/integrations', admin, { name: '' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.field, 'name');
  });

  test('integrations and their keys list page by page through nextCursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await svc.call('POST', '/v1/integrations', admin, { name: `listed-${i}` })).json().id);
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const keyIds: string[] = [];
    for (let k = 0; k < 5; k++)
      keyIds.push(
        (await svc.call('POST', `/v1/integrations/${ids[0]}/keys`, admin, { name: `k${k}`, scopes: ['chain:read'], expiresAt })).json()
          .record.id,
      );

    const walk = async (url: string) => {
      const seen: { id: string }[] = [];
      for (let cursor: string | undefined; ;) {
        const res = await svc.call('GET', `${url}${url.includes('?') ? '&' : '?'}limit=2${cursor ? `&cursor=${cursor}` : ''}`, admin);
        assert.equal(res.statusCode, 200, res.body);
        const page = res.json() as { items: { id: string }[]; nextCursor?: string };
        assert.ok(page.items.length <= 2);
        seen.push(...page.items);
        if (!page.nextCursor) return seen.map((x) => String(x.id));
        cursor = page.nextCursor;
      }
    };
    const integrations = await walk('/v1/integrations');
    assert.equal(new Set(integrations).size, integrations.length, 'no integration twice');
    assert.deepEqual(
      integrations.filter((id) => ids.includes(id)),
      ids,
    );
    const keys = await walk(`/v1/integrations/${ids[0]}/keys`);
    assert.deepEqual([...keys].sort(), [...keyIds].sort(), 'every key once');
    assert.equal((await walk(`/v1/integrations/${ids[1]}/keys`)).length, 0);

    const bad = await svc.call('GET', `/v1/integrations/${ids[0]}/keys?cursor=not-a-cursor`, admin);
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(bad.json().error.field, 'query.cursor');
    // An id beyond 64 bits is the path's fault, named as such (it reached the store and named a column).
    const huge = await svc.call('GET', '/v1/integrations/9999999999999999999/keys', admin);
    assert.equal(huge.statusCode, 400, huge.body);
    assert.equal(huge.json().error.field, 'params.id');
    const big = await svc.call('GET', '/v1/integrations?limit=501', admin);
    assert.equal(big.statusCode, 400, big.body);
    assert.equal(big.json().error.field, 'query.limit');
  });
  test('a key grants only scopes it holds: identity:admin cannot create *:admin or chain:write keys', async () => {
    const idAdmin = await svc.key(['identity:admin'], { expiresAt: new Date(Date.now() + 2 * 86_400_000) });
    const id = (await svc.call('POST', '/v1/integrations', idAdmin, { name: 'escalation' })).json().id;
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const keysBefore = await rowCount(coffer, 'identity_api_keys');
    const auditBefore = await rowCount(coffer, 'audit_log');
    for (const scopes of [['*:admin'], ['chain:write'], ['identity:read', 'chain:write'], ['*:read'], ['audit:read']]) {
      const res = await svc.call('POST', `/v1/integrations/${id}/keys`, idAdmin, { name: 'escalated', scopes, expiresAt });
      assert.equal(res.statusCode, 403, `${scopes}: ${res.body}`);
      assert.equal(res.json().error.code, 'forbidden');
      assert.equal(res.json().error.field, 'body.scopes');
    }
    assert.equal(await rowCount(coffer, 'identity_api_keys'), keysBefore, 'no key written');
    assert.equal(await rowCount(coffer, 'audit_log'), auditBefore, 'no audit entry written');
    // Malformed scopes are still a 400 naming the entry, as before.
    const bad = await svc.call('POST', `/v1/integrations/${id}/keys`, idAdmin, { name: 'bad', scopes: ['identity:root'], expiresAt });
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(bad.json().error.field, 'scopes.0');

    for (const scopes of [['identity:read'], ['identity:admin']]) {
      const ok = await svc.call('POST', `/v1/integrations/${id}/keys`, idAdmin, { name: `ok-${scopes[0]}`, scopes, expiresAt });
      assert.equal(ok.statusCode, 201, ok.body);
      assert.deepEqual(ok.json().record.scopes, scopes);
    }
    const other = (await svc.call('GET', `/v1/integrations/${id}/keys`, idAdmin)).json().items[0];
    const widen = await svc.call('PATCH', `/v1/keys/${other.id}`, idAdmin, { expectedVersion: other.version, scopes: ['*:admin'] });
    assert.equal(widen.statusCode, 403, widen.body);
    assert.equal(widen.json().error.field, 'body.scopes');
    const narrow = await svc.call('PATCH', `/v1/keys/${other.id}`, idAdmin, { expectedVersion: other.version, scopes: ['identity:write'] });
    assert.equal(narrow.statusCode, 200, narrow.body);
  });

  test('a key gives no key a later expiry than its own, on create or change, unless it holds *:admin', async () => {
    const ownExpiry = new Date(Date.now() + 86_400_000);
    const idAdmin = await svc.key(['identity:admin'], { expiresAt: ownExpiry });
    const id = (await svc.call('POST', '/v1/integrations', idAdmin, { name: 'successor' })).json().id;
    const keysBefore = await rowCount(coffer, 'identity_api_keys');
    const later = new Date(ownExpiry.getTime() + 1).toISOString();
    const create = await svc.call('POST', `/v1/integrations/${id}/keys`, idAdmin, {
      name: 'heir',
      scopes: ['identity:admin'],
      expiresAt: later,
    });
    assert.equal(create.statusCode, 403, create.body);
    assert.equal(create.json().error.field, 'body.expiresAt');
    assert.match(create.json().error.message, /cannot give a key a later expiry/);
    assert.equal(await rowCount(coffer, 'identity_api_keys'), keysBefore, 'no key written');
    // Up to its own expiry is allowed, and so is any change that leaves expiry alone.
    const ok = await svc.call('POST', `/v1/integrations/${id}/keys`, idAdmin, {
      name: 'heir',
      scopes: ['identity:read'],
      expiresAt: ownExpiry.toISOString(),
    });
    assert.equal(ok.statusCode, 201, ok.body);
    const heir = ok.json().record;
    const extend = await svc.call('PATCH', `/v1/keys/${heir.id}`, idAdmin, { expectedVersion: heir.version, expiresAt: later });
    assert.equal(extend.statusCode, 403, extend.body);
    assert.equal(extend.json().error.field, 'body.expiresAt');
    const rename = await svc.call('PATCH', `/v1/keys/${heir.id}`, idAdmin, { expectedVersion: heir.version, name: 'heir-2' });
    assert.equal(rename.statusCode, 200, rename.body);
    // *:admin is not bounded by its own expiry.
    const root = await svc.key(['*:admin']);
    const far = new Date(Date.now() + 365 * 86_400_000).toISOString();
    const rootMade = await svc.call('POST', `/v1/integrations/${id}/keys`, root, {
      name: 'long',
      scopes: ['identity:read'],
      expiresAt: far,
    });
    assert.equal(rootMade.statusCode, 201, rootMade.body);
  });

  test('a key bound to an allow-list gives no key a wider one, on create or change, unless it holds *:admin', async () => {
    const pinned = await svc.key(['identity:admin'], { ipAllow: ['10.0.0.0/8', '127.0.0.1'] });
    const id = (await svc.call('POST', '/v1/integrations', pinned, { name: 'pinned-heirs' })).json().id;
    const expiresAt = new Date(Date.now() + 1_800_000).toISOString();
    const keysBefore = await rowCount(coffer, 'identity_api_keys');
    const refused: [string[] | undefined, string][] = [
      [undefined, 'body.ipAllow'],
      [[], 'body.ipAllow'],
      [['11.0.0.1'], 'body.ipAllow.0'],
      [['10.0.0.0/7'], 'body.ipAllow.0'],
      [['::1'], 'body.ipAllow.0'],
      [['127.0.0.1', '192.168.0.1'], 'body.ipAllow.1'],
    ];
    for (const [ipAllow, field] of refused) {
      const res = await svc.call('POST', `/v1/integrations/${id}/keys`, pinned, {
        name: 'heir',
        scopes: ['identity:read'],
        expiresAt,
        ...(ipAllow ? { ipAllow } : {}),
      });
      assert.equal(res.statusCode, 403, `${JSON.stringify(ipAllow)}: ${res.body}`);
      assert.equal(res.json().error.field, field, JSON.stringify(ipAllow));
    }
    assert.equal(await rowCount(coffer, 'identity_api_keys'), keysBefore, 'no key written');
    // Inside its own list is allowed: a narrower block, a single address, the same entries.
    for (const [n, ipAllow] of [['10.1.0.0/16'], ['10.200.3.4', '127.0.0.1'], ['10.0.0.0/8']].entries()) {
      const res = await svc.call('POST', `/v1/integrations/${id}/keys`, pinned, {
        name: `heir-${n}`,
        scopes: ['identity:read'],
        expiresAt,
        ipAllow,
      });
      assert.equal(res.statusCode, 201, `${JSON.stringify(ipAllow)}: ${res.body}`);
    }
    const heir = (await svc.call('GET', `/v1/integrations/${id}/keys`, pinned)).json().items[0];
    const widen = await svc.call('PATCH', `/v1/keys/${heir.id}`, pinned, { expectedVersion: heir.version, ipAllow: [] });
    assert.equal(widen.statusCode, 403, widen.body);
    assert.equal(widen.json().error.field, 'body.ipAllow');
    const rename = await svc.call('PATCH', `/v1/keys/${heir.id}`, pinned, { expectedVersion: heir.version, name: 'heir-renamed' });
    assert.equal(rename.statusCode, 200, rename.body);
    // A key with no allow-list of its own, or with *:admin, is not bounded.
    const free = await svc.key(['identity:admin']);
    const open = await svc.call('POST', `/v1/integrations/${id}/keys`, free, { name: 'open', scopes: ['identity:read'], expiresAt });
    assert.equal(open.statusCode, 201, open.body);
    const root = await svc.key(['*:admin'], { ipAllow: ['127.0.0.1'] });
    const rootMade = await svc.call('POST', `/v1/integrations/${id}/keys`, root, {
      name: 'root-open',
      scopes: ['identity:read'],
      expiresAt,
    });
    assert.equal(rootMade.statusCode, 201, rootMade.body);
  });

  test('PUT token-types creates a type (201), then sets it to new values (200, audited once), and the same values again change nothing', async () => {
    const id = (await svc.call('POST', '/v1/integrations', admin, { name: 'configurable' })).json().id;
    const url = `/v1/integrations/${id}/token-types/reset`;
    const first = await svc.call('PUT', url, admin, { maxOpen: 1, lifetimeSeconds: 600 });
    assert.equal(first.statusCode, 201, first.body);
    assert.deepEqual([first.json().created, first.json().maxOpen, first.json().version], [true, 1, 1]);
    const mint = () => svc.call('POST', `/v1/integrations/${id}/tokens`, admin, { tokenType: 'reset' });
    assert.equal((await mint()).statusCode, 201);
    assert.equal((await mint()).statusCode, 409, 'at the maximum of 1');
    // Raised: minting goes on under the new maximum.
    const raised = await svc.call('PUT', url, admin, { maxOpen: 3, lifetimeSeconds: 900 });
    assert.equal(raised.statusCode, 200, raised.body);
    assert.deepEqual(
      [raised.json().created, raised.json().maxOpen, raised.json().lifetimeSeconds, raised.json().version],
      [false, 3, 900, 2],
    );
    assert.equal((await mint()).statusCode, 201);
    const again = await svc.call('PUT', url, admin, { maxOpen: 3, lifetimeSeconds: 900 });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json().version, 2, 'the same values: no new version');
    // 0 stops minting, as the store documents.
    assert.equal((await svc.call('PUT', url, admin, { maxOpen: 0, lifetimeSeconds: 900 })).statusCode, 200);
    assert.equal((await mint()).statusCode, 409);
    const audited = await coffer.read((tx) =>
      tx.db.selectFrom('audit_log').select('action').where('entity_id', '=', `${id}/reset`).orderBy('seq').execute(),
    );
    assert.deepEqual(
      audited.map((a) => a.action),
      ['identity.token_config.create', 'identity.token_config.update', 'identity.token_config.update'],
    );
    const spec = (await svc.call('GET', '/openapi.json', admin)).json().paths['/v1/integrations/{id}/token-types/{tokenType}'].put;
    assert.deepEqual(
      Object.keys(spec.responses).filter((c) => c.startsWith('2')),
      ['200', '201'],
    );
  });

  test("a key listing's cursor holding a time no column stores is a 400 naming query.cursor", async () => {
    const id = (await svc.call('POST', '/v1/integrations', admin, { name: 'cursor-times' })).json().id;
    for (const t of [8e15, Date.UTC(10000, 0, 1), Date.UTC(999, 0, 1)]) {
      const cursor = Buffer.from(JSON.stringify({ t, k: 'ab'.repeat(12) })).toString('base64url');
      const res = await svc.call('GET', `/v1/integrations/${id}/keys?cursor=${cursor}`, admin);
      assert.equal(res.statusCode, 400, `${t}: ${res.body}`);
      assert.equal(res.json().error.field, 'query.cursor', String(t));
    }
  });

  test('an integration id with a leading zero or a sign is a 400 naming params.id, before any store is asked', async () => {
    for (const bad of ['02', '0', '-1', '+1', '99999999999999999999']) {
      const res = await svc.call('GET', `/v1/integrations/${encodeURIComponent(bad)}`, admin);
      assert.equal(res.statusCode, 400, `${bad}: ${res.body}`);
      assert.equal(res.json().error.field, 'params.id', bad);
    }
  });

  test('a key gives no scope to a key that outlives it or is usable from wider addresses, and changes no key holding more than it could grant', async () => {
    // The caller: identity:admin, pinned to this address, expiring in an hour.
    const ownExpiry = new Date(Date.now() + 3_600_000);
    const bounded = await svc.key(['identity:admin', 'chain:read'], { ipAllow: ['127.0.0.1'], expiresAt: ownExpiry });
    const keyOf = async (keyId: string) => (await coffer.read((tx) => identity(tx, systemActor('test')).keys.get(keyId)))!;
    const patch = async (keyId: string, body: object, caller = bounded) =>
      svc.call('PATCH', `/v1/keys/${keyId}`, caller, { expectedVersion: (await keyOf(keyId)).version, ...body });
    const refused = async (keyId: string, body: object, field: string, message: RegExp, caller = bounded) => {
      const before = await keyOf(keyId);
      const res = await patch(keyId, body, caller);
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().error.field, field);
      assert.match(res.json().error.message, message);
      assert.deepEqual(await keyOf(keyId), before, 'nothing written');
    };
    // Keys whose holders the caller's holder may know: one lasting until 2099, one usable from anywhere.
    const longLived = await svc.key(['chain:read'], { ipAllow: ['127.0.0.1'], expiresAt: new Date('2099-01-01T00:00:00Z') });
    const unpinned = await svc.key(['chain:read'], { expiresAt: ownExpiry });
    await refused(
      longLived.keyId,
      { scopes: ['identity:admin', 'chain:read'] },
      'body.scopes',
      /expires at 2099-01-01T00:00:00\.000Z, after this key .*gives no scope to a key that outlives it/,
    );
    await refused(
      unpinned.keyId,
      { scopes: ['identity:admin', 'chain:read'] },
      'body.scopes',
      /may be used from any address, beyond this key's 127\.0\.0\.1/,
    );
    // Granting together with a bound that brings the key inside the caller's is allowed.
    const within = await patch(longLived.keyId, { scopes: ['identity:admin', 'chain:read'], expiresAt: ownExpiry.toISOString() });
    assert.equal(within.statusCode, 200, within.body);
    assert.deepEqual(within.json().scopes, ['chain:read', 'identity:admin']);
    const pinnedNow = await patch(unpinned.keyId, { scopes: ['identity:read', 'chain:read'], ipAllow: ['127.0.0.1'] });
    assert.equal(pinnedNow.statusCode, 200, pinnedNow.body);
    // Taking scopes away, or leaving them as they are, gives nothing: allowed on any key it could grant.
    const farKey = await svc.key(['identity:read', 'chain:read'], { expiresAt: new Date('2099-01-01T00:00:00Z') });
    assert.equal((await patch(farKey.keyId, { scopes: ['chain:read'] })).statusCode, 200);
    assert.equal((await patch(farKey.keyId, { name: 'renamed-far' })).statusCode, 200);
    // A key holding more than the caller could grant is not the caller's to change at all.
    const root = await svc.key(['*:admin'], { ipAllow: ['10.0.0.1'] });
    await refused(root.keyId, { expiresAt: ownExpiry.toISOString() }, 'params.keyId', /holds \*:admin, which this key does not hold/);
    await refused(root.keyId, { name: 'renamed-root' }, 'params.keyId', /holds \*:admin/);
    // Not even by a caller whose own allow-list and expiry would not bound it: unpinning the root key.
    const free = await svc.key(['identity:admin']);
    await refused(root.keyId, { ipAllow: [] }, 'params.keyId', /holds \*:admin/, free);
    // *:admin is not bounded.
    const top = await svc.key(['*:admin']);
    const lifted = await svc.call('PATCH', `/v1/keys/${unpinned.keyId}`, top, {
      expectedVersion: (await keyOf(unpinned.keyId)).version,
      scopes: ['identity:admin'],
      ipAllow: [],
    });
    assert.equal(lifted.statusCode, 200, lifted.body);
  });

  test('a key cannot widen its own key (scopes, expiry, allow-list) unless it holds *:admin', async () => {
    const idAdmin = await svc.key(['identity:admin'], { ipAllow: ['127.0.0.1', '::1'] });
    const own = () => coffer.read((tx) => identity(tx, systemActor('test')).keys.get(idAdmin.keyId));
    const before = (await own())!;
    const later = new Date(Date.now() + 365 * 86_400_000).toISOString();
    const attempts: [Record<string, unknown>, string][] = [
      [{ scopes: ['*:admin'] }, 'body.scopes'],
      [{ scopes: ['identity:admin'] }, 'body.scopes'],
      [{ expiresAt: later }, 'body.expiresAt'],
      [{ ipAllow: [] }, 'body.ipAllow'],
      [{ name: 'renamed', ipAllow: [] }, 'body.ipAllow'],
    ];
    for (const [change, field] of attempts) {
      const res = await svc.call('PATCH', `/v1/keys/${idAdmin.keyId}`, idAdmin, { expectedVersion: before.version, ...change });
      assert.equal(res.statusCode, 403, `${JSON.stringify(change)}: ${res.body}`);
      assert.equal(res.json().error.code, 'forbidden');
      assert.equal(res.json().error.field, field);
    }
    assert.deepEqual(await own(), before, 'the key is unchanged');
    // Renaming itself changes nothing it can use.
    const renamed = await svc.call('PATCH', `/v1/keys/${idAdmin.keyId}`, idAdmin, {
      expectedVersion: before.version,
      name: 'self-renamed',
    });
    assert.equal(renamed.statusCode, 200, renamed.body);

    // *:admin holds everything: it grants any scope and may change its own key.
    const root = await svc.key(['*:admin']);
    const id = (await svc.call('POST', '/v1/integrations', root, { name: 'root-made' })).json().id;
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    for (const scopes of [['*:admin'], ['chain:write']]) {
      const res = await svc.call('POST', `/v1/integrations/${id}/keys`, root, {
        name: `root-${scopes[0]!.replace('*', 'all')}`,
        scopes,
        expiresAt,
      });
      assert.equal(res.statusCode, 201, res.body);
    }
    const rootKey = (await coffer.read((tx) => identity(tx, systemActor('test')).keys.get(root.keyId)))!;
    const self = await svc.call('PATCH', `/v1/keys/${root.keyId}`, root, {
      expectedVersion: rootKey.version,
      expiresAt: later,
      ipAllow: ['10.0.0.0/8', '127.0.0.1', '::1'],
    });
    assert.equal(self.statusCode, 200, self.body);
    const current = (await own())!;
    const granted = await svc.call('PATCH', `/v1/keys/${idAdmin.keyId}`, root, { expectedVersion: current.version, scopes: ['*:admin'] });
    assert.equal(granted.statusCode, 200, granted.body);
    assert.deepEqual(granted.json().scopes, ['*:admin']);
  });

  test('the dashboard shows the audit panel only to keys with audit:read', async () => {
    const coreOnly = await svc.key(['core:read']);
    const withAudit = await svc.key(['core:read', 'audit:read']);
    const hidden = await svc.call('GET', '/v1/dashboard', coreOnly);
    assert.equal(hidden.statusCode, 200, hidden.body);
    assert.equal(hidden.json().audit, null);
    assert.equal(hidden.json().auditPermitted, false);
    assert.doesNotMatch(hidden.body, /identity\.integration\.create/, 'no audit entry leaks');
    assert.equal((await svc.call('GET', '/v1/audit/entries', coreOnly)).statusCode, 403, 'as the audit routes themselves');
    const shown = await svc.call('GET', '/v1/dashboard', withAudit);
    assert.equal(shown.statusCode, 200, shown.body);
    assert.equal(shown.json().auditPermitted, true);
    const audit = shown.json().audit;
    assert.equal(audit.ok, true, JSON.stringify(audit));
    assert.ok(audit.recent.length > 0);
    assert.match(audit.head, /^[0-9a-f]{64}$/);
  });

  test('verify takes an anchor whole or not at all: half an anchor or seq 0 is a 400 naming the field', async () => {
    const head = (await svc.call('GET', '/v1/audit/head', admin)).json();
    const hash = head.hash as string;
    const cases: [string, string][] = [
      [`anchorSeq=${head.seq}`, 'query.anchorHash'],
      [`anchorHash=${hash}`, 'query.anchorSeq'],
      [`anchorSeq=0&anchorHash=${hash}`, 'query.anchorSeq'],
      [`anchorSeq=0`, 'query.anchorSeq'],
      [`anchorSeq=01&anchorHash=${hash}`, 'query.anchorSeq'],
      [`anchorSeq=1&anchorHash=${hash.toUpperCase()}`, 'query.anchorHash'],
    ];
    for (const [q, field] of cases) {
      const res = await svc.call('GET', `/v1/audit/verify?${q}`, admin);
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`);
      assert.equal(res.json().error.code, 'validation');
      assert.equal(res.json().error.field, field, q);
    }
    const anchored = await svc.call('GET', `/v1/audit/verify?anchorSeq=${head.seq}&anchorHash=${hash}`, admin);
    assert.equal(anchored.statusCode, 200, anchored.body);
    assert.equal(anchored.json().ok, true, anchored.body);
    const wrong = await svc.call('GET', `/v1/audit/verify?anchorSeq=${head.seq}&anchorHash=${'0'.repeat(64)}`, admin);
    assert.equal(wrong.json().ok, false);
    assert.equal(wrong.json().firstBad.kind, 'anchor_mismatch');
  });

  test('an audit trail id with control characters is a 400 naming it, on every backend', async () => {
    for (const entityId of ['%00', 'a%00b', 'x%01', 'tab%09', '%7F']) {
      const res = await svc.call('GET', `/v1/audit/trail/identity/integration/${entityId}`, admin);
      assert.equal(res.statusCode, 400, `${entityId}: ${res.body}`);
      assert.equal(res.json().error.field, 'params.entityId');
    }
    const id = (await svc.call('POST', '/v1/integrations', admin, { name: 'trail' })).json().id;
    const trail = await svc.call('GET', `/v1/audit/trail/identity/integration/${id}`, admin);
    assert.equal(trail.statusCode, 200, trail.body);
    assert.deepEqual(
      trail.json().items.map((e: { action: string }) => e.action),
      ['identity.integration.create'],
    );
  });

  test('integration and key names with a space at either end are a 400 naming the field', async () => {
    const bad = await svc.call('POST', '/v1/integrations', admin, { name: 'spaced ' });
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(bad.json().error.field, 'name');
    const id = (await svc.call('POST', '/v1/integrations', admin, { name: 'spaced' })).json().id;
    const key = await svc.call('POST', `/v1/integrations/${id}/keys`, admin, {
      name: ' reader',
      scopes: ['chain:read'],
      expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    });
    assert.equal(key.statusCode, 400, key.body);
    assert.equal(key.json().error.field, 'name');
  });

  test("a key mints and consumes only its own integration's tokens unless it holds identity:admin", async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const [a, b] = await Promise.all(
      ['tokens-a', 'tokens-b'].map(async (name) => {
        const id = (await svc.call('POST', '/v1/integrations', admin, { name })).json().id as string;
        const cfg = await svc.call('PUT', `/v1/integrations/${id}/token-types/login`, admin, { maxOpen: 10, lifetimeSeconds: 3600 });
        assert.equal(cfg.statusCode, 201, cfg.body);
        const k = await svc.call('POST', `/v1/integrations/${id}/keys`, admin, { name: 'backend', scopes: ['identity:write'], expiresAt });
        assert.equal(k.statusCode, 201, k.body);
        return { id, auth: { authorization: `Bearer ${k.json().key}` } };
      }),
    );
    // Its own integration: mint and consume as before.
    const own = await svc.call('POST', `/v1/integrations/${a!.id}/tokens`, a!.auth, { tokenType: 'login' });
    assert.equal(own.statusCode, 201, own.body);
    assert.equal((await svc.call('POST', '/v1/tokens/consume', a!.auth, { token: own.json().token, tokenType: 'login' })).statusCode, 200);
    // Another integration's: refused naming the integration, nothing minted.
    const foreign = await svc.call('POST', `/v1/integrations/${b!.id}/tokens`, a!.auth, { tokenType: 'login' });
    assert.equal(foreign.statusCode, 403, foreign.body);
    assert.equal(foreign.json().error.field, 'id');
    const tokensOfB = await coffer.read((tx) => tx.db.selectFrom('identity_tokens').select('integration_id').execute());
    assert.equal(tokensOfB.filter((r) => String(r.integration_id) === b!.id).length, 0);
    // B's token presented by A's key is as unknown to it as a forged one, and stays unused for B.
    const bToken = (await svc.call('POST', `/v1/integrations/${b!.id}/tokens`, b!.auth, { tokenType: 'login' })).json().token as string;
    const stolen = await svc.call('POST', '/v1/tokens/consume', a!.auth, { token: bToken, tokenType: 'login' });
    assert.equal(stolen.statusCode, 400, stolen.body);
    assert.equal(stolen.json().error.field, 'body.token');
    assert.equal((await svc.call('POST', '/v1/tokens/consume', b!.auth, { token: bToken, tokenType: 'login' })).statusCode, 200);
    // identity:admin manages every integration's tokens.
    const byAdmin = await svc.call('POST', `/v1/integrations/${b!.id}/tokens`, admin, { tokenType: 'login' });
    assert.equal(byAdmin.statusCode, 201, byAdmin.body);
    assert.equal(
      (await svc.call('POST', '/v1/tokens/consume', admin, { token: byAdmin.json().token, tokenType: 'login' })).statusCode,
      200,
    );
  });
});
