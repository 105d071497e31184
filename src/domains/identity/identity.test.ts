// The identity domain on every backend: integrations and API keys (shown once, stored hashed,
// optimistic updates, soft delete, IP allow-list, expiry), users, roles and scopes, sessions,
// MFA seeds encrypted at rest, no seeded keys, and an audit entry plus row history for every
// change.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, test } from 'node:test';
import {
  ConflictError,
  DecryptionError,
  ForbiddenError,
  InvalidStateTransitionError,
  NotFoundError,
  UnauthenticatedError,
  UniqueViolationError,
  ValidationError,
} from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { Keyring } from '../../secrets/envelope.js';
import { forEachBackend, rowCount } from '../../../test/harness.js';
import { apiKeyActor, systemActor } from '../audit/actor.js';
import { readRowHistory } from '../audit/history.js';
import { entityTrail } from '../audit/log.js';
import { REDACTED } from '../audit/policy.js';
import { verifyAuditLog } from '../audit/verify.js';
import { identityGeneration } from './base.js';
import { authenticateApiKey, authenticateSession, hasScope, identity, requireScope, type ApiKey } from './index.js';

const actor = systemActor('test');
const keyring = new Keyring([{ id: 'k1', key: randomBytes(32) }]);
const DAY = 86_400_000;
const inDays = (d: number) => new Date(Date.now() + d * DAY);

forEachBackend('identity', (ctx) => {
  let coffer: Coffer;
  const w = <T>(fn: (id: ReturnType<typeof identity>) => Promise<T>, a = actor) =>
    coffer.write((tx) => fn(identity(tx, a, { keyring })), { op: 'test.identity' });
  const r = <T>(fn: (id: ReturnType<typeof identity>) => Promise<T>) =>
    coffer.read((tx) => fn(identity(tx, actor, { keyring })), { op: 'test.identity' });

  before(async () => {
    coffer = await ctx.open();
  });

  test('no key is seeded: a fresh database has no integrations, keys, users or tokens', async () => {
    for (const t of [
      'identity_integrations',
      'identity_api_keys',
      'identity_users',
      'identity_roles',
      'identity_tokens',
      'identity_sessions',
    ]) {
      assert.equal(await rowCount(coffer, t), 0n, t);
    }
  });

  test('an API key is shown once and stored only as a hash; it authenticates with its scopes', async () => {
    const { key, record, integ } = await w(async (id) => {
      const integ = await id.integrations.create({ name: 'acme' });
      return {
        ...(await id.keys.create({
          integrationId: integ.id,
          name: 'backend',
          scopes: ['identity:read', 'identity:write', 'chain:read'],
          expiresAt: inDays(30),
        })),
        integ,
      };
    });
    assert.match(key, /^cfk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
    assert.ok(key.includes(record.id));
    assert.deepEqual(record.scopes, ['chain:read', 'identity:write'], 'normalised: highest level per domain');
    const secret = key.slice(key.indexOf('_', 4) + 1);
    const stored = await coffer.read((tx) =>
      tx.db.selectFrom('identity_api_keys').selectAll().where('id', '=', record.id).executeTakeFirstOrThrow(),
    );
    assert.ok(!JSON.stringify(stored, (_k, v) => (typeof v === 'bigint' ? String(v) : v)).includes(secret), 'the secret is not stored');
    assert.match(String(stored.secret_hash), /^[0-9a-f]{64}$/);
    const p = await coffer.read((tx) => authenticateApiKey(tx, key));
    assert.deepEqual(p, {
      keyId: record.id,
      integrationId: integ.id,
      integrationName: 'acme',
      scopes: ['chain:read', 'identity:write'],
      expiresAt: record.expiresAt,
      ipAllow: [],
    });
    assert.ok(hasScope(p.scopes, 'identity', 'read'));
    assert.ok(hasScope(p.scopes, 'identity', 'write'));
    assert.ok(!hasScope(p.scopes, 'identity', 'admin'));
    assert.throws(() => requireScope(p.scopes, 'chain', 'write'), ForbiddenError);
    // Wrong secret, unknown id, malformed: all the same error, saying nothing more.
    const wrongSecret = `${key.slice(0, key.indexOf('_', 4) + 1)}${'A'.repeat(43)}`;
    const unknownId = `cfk_${'0'.repeat(24)}_${secret}`;
    for (const bad of [wrongSecret, unknownId, 'cfk_nonsense', '', key.toUpperCase()]) {
      await assert.rejects(
        coffer.read((tx) => authenticateApiKey(tx, bad)),
        (e: unknown) => e instanceof UnauthenticatedError && e.message === 'invalid API key',
      );
    }
  });

  test('expired and revoked keys and keys of deleted integrations do not authenticate', async () => {
    const now = new Date();
    const made = await w(async (id) => {
      const integ = await id.integrations.create({ name: 'expiry' });
      const short = await id.keys.create({
        integrationId: integ.id,
        name: 'short',
        scopes: ['identity:read'],
        expiresAt: new Date(now.getTime() + 60_000),
      });
      const revoked = await id.keys.create({ integrationId: integ.id, name: 'revoked', scopes: ['identity:read'], expiresAt: inDays(1) });
      return { integ, short, revoked };
    });
    await coffer.read((tx) => authenticateApiKey(tx, made.short.key, { now }));
    await assert.rejects(
      coffer.read((tx) => authenticateApiKey(tx, made.short.key, { now: new Date(now.getTime() + 61_000) })),
      UnauthenticatedError,
    );
    await w((id) => id.keys.revoke(made.revoked.record.id));
    await assert.rejects(
      coffer.read((tx) => authenticateApiKey(tx, made.revoked.key)),
      UnauthenticatedError,
    );
    await assert.rejects(
      w((id) => id.keys.revoke(made.revoked.record.id)),
      InvalidStateTransitionError,
      'revoking twice',
    );
    await w((id) => id.integrations.delete(made.integ.id));
    await assert.rejects(
      coffer.read((tx) => authenticateApiKey(tx, made.short.key, { now })),
      UnauthenticatedError,
    );
    const keys = await r((id) => id.keys.list({ integrationId: made.integ.id, includeRevoked: true }));
    assert.ok(
      keys.every((k) => k.deletedAt !== null),
      'deleting the integration revoked its keys',
    );
  });

  test('the IP allow-list admits listed addresses and CIDRs only (IPv4, IPv6, mapped)', async () => {
    const { key } = await w(async (id) => {
      const integ = await id.integrations.create({ name: 'ip-limited' });
      return id.keys.create({
        integrationId: integ.id,
        name: 'k',
        scopes: ['identity:read'],
        expiresAt: inDays(1),
        ipAllow: ['10.1.0.0/16', '192.0.2.7', '2001:db8::/32'],
      });
    });
    for (const ip of ['10.1.2.3', '192.0.2.7', '::ffff:10.1.9.9', '2001:db8::1'])
      await coffer.read((tx) => authenticateApiKey(tx, key, { ip }));
    for (const ip of ['10.2.0.1', '192.0.2.8', '2001:db9::1', 'not-an-ip', undefined]) {
      await assert.rejects(
        coffer.read((tx) => authenticateApiKey(tx, key, { ...(ip ? { ip } : {}) })),
        ForbiddenError,
        String(ip),
      );
    }
  });

  test('key names are unique within an integration among live keys; a revoked name can be reused', async () => {
    const integ = await w((id) => id.integrations.create({ name: 'names' }));
    const first = await w((id) =>
      id.keys.create({ integrationId: integ.id, name: 'dup', scopes: ['identity:read'], expiresAt: inDays(1) }),
    );
    await assert.rejects(
      w((id) => id.keys.create({ integrationId: integ.id, name: 'dup', scopes: ['identity:read'], expiresAt: inDays(1) })),
      (e: unknown) => e instanceof UniqueViolationError,
    );
    const other = await w((id) => id.integrations.create({ name: 'names-2' }));
    await w((id) => id.keys.create({ integrationId: other.id, name: 'dup', scopes: ['identity:read'], expiresAt: inDays(1) }));
    await w((id) => id.keys.revoke(first.record.id));
    const again = await w((id) =>
      id.keys.create({ integrationId: integ.id, name: 'dup', scopes: ['identity:read'], expiresAt: inDays(1) }),
    );
    assert.notEqual(again.record.id, first.record.id);
    // Integration names behave the same way.
    await assert.rejects(
      w((id) => id.integrations.create({ name: 'names' })),
      UniqueViolationError,
    );
    await w((id) => id.integrations.delete(other.id));
    const reborn = await w((id) => id.integrations.create({ name: 'names-2' }));
    assert.notEqual(reborn.id, other.id);
    assert.equal((await r((id) => id.integrations.findByName('names-2')))!.id, reborn.id);
  });

  test('names have no space at either end, so they collide alike on every backend (MySQL ignores trailing spaces)', async () => {
    const integ = await w((id) => id.integrations.create({ name: 'padded' }));
    const key = await w((id) => id.keys.create({ integrationId: integ.id, name: 'k 1', scopes: ['identity:read'], expiresAt: inDays(1) }));
    const integrationsBefore = await rowCount(coffer, 'identity_integrations');
    const keysBefore = await rowCount(coffer, 'identity_api_keys');
    const auditBefore = await rowCount(coffer, 'audit_log');
    const isNameError = (e: unknown) => e instanceof ValidationError && e.details.field === 'name' && /leading or trailing/.test(e.message);
    for (const name of ['padded ', ' padded', 'padded\t', 'padded  ', ' ']) {
      await assert.rejects(
        w((id) => id.integrations.create({ name })),
        isNameError,
        JSON.stringify(name),
      );
      await assert.rejects(
        w((id) => id.integrations.rename(integ.id, { name, expectedVersion: integ.version })),
        isNameError,
        JSON.stringify(name),
      );
      await assert.rejects(
        w((id) => id.keys.create({ integrationId: integ.id, name, scopes: ['identity:read'], expiresAt: inDays(1) })),
        isNameError,
        JSON.stringify(name),
      );
      await assert.rejects(
        w((id) => id.keys.update(key.record.id, { expectedVersion: key.record.version, name })),
        isNameError,
        JSON.stringify(name),
      );
    }
    assert.equal(await rowCount(coffer, 'identity_integrations'), integrationsBefore);
    assert.equal(await rowCount(coffer, 'identity_api_keys'), keysBefore);
    assert.equal(await rowCount(coffer, 'audit_log'), auditBefore);
    // A lookup is exact everywhere: on MySQL/MariaDB "padded " would otherwise find "padded".
    assert.equal(await r((id) => id.integrations.findByName('padded ')), undefined);
    assert.equal((await r((id) => id.integrations.findByName('padded')))!.id, integ.id);
  });

  test('key updates are optimistic: a stale version is a ConflictError and changes nothing', async () => {
    const { record } = await w(async (id) => {
      const integ = await id.integrations.create({ name: 'optimistic' });
      return id.keys.create({ integrationId: integ.id, name: 'k', scopes: ['identity:read'], expiresAt: inDays(1) });
    });
    const v2 = await w((id) => id.keys.update(record.id, { expectedVersion: 1, scopes: ['identity:admin'], ipAllow: ['127.0.0.1'] }));
    assert.equal(v2.version, 2);
    assert.deepEqual(v2.scopes, ['identity:admin']);
    await assert.rejects(
      w((id) => id.keys.update(record.id, { expectedVersion: 1, scopes: ['chain:read'] })),
      (e: unknown) => e instanceof ConflictError && e.details.actualVersion === 2 && e.details.expectedVersion === 1,
    );
    assert.deepEqual((await r((id) => id.keys.get(record.id)))!.scopes, ['identity:admin']);
    // An expiry some backend cannot store (MySQL's DATETIME ends at year 9999) is refused by name.
    await assert.rejects(
      w((id) => id.keys.update(record.id, { expectedVersion: 2, expiresAt: new Date(Date.UTC(10000, 0, 1)) })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'expiresAt',
    );
    await assert.rejects(
      w((id) => id.keys.update('f'.repeat(24), { expectedVersion: 1, name: 'x' })),
      NotFoundError,
    );
    await w((id) => id.keys.revoke(record.id, { expectedVersion: 2 }));
    await assert.rejects(
      w((id) => id.keys.update(record.id, { expectedVersion: 3, name: 'after-revoke' })),
      InvalidStateTransitionError,
    );
  });

  test('bad input is a ValidationError naming the field, and nothing is written', async () => {
    const integ = await w((id) => id.integrations.create({ name: 'validation' }));
    const keysBefore = await rowCount(coffer, 'identity_api_keys');
    const auditBefore = await rowCount(coffer, 'audit_log');
    const base = { integrationId: integ.id, name: 'ok', scopes: ['identity:read'], expiresAt: inDays(1) };
    const cases: [Record<string, unknown>, string][] = [
      [{ name: '' }, 'name'],
      [{ name: 'bad\nname' }, 'name'],
      [{ scopes: [] }, 'scopes'],
      [{ scopes: ['identity:root'] }, 'scopes.0'],
      [{ scopes: ['nosuchdomain:read'] }, 'scopes.0'],
      [{ expiresAt: new Date(Date.now() - 1000) }, 'expiresAt'],
      [{ expiresAt: 'tomorrow' }, 'expiresAt'],
      [{ ipAllow: ['10.0.0.0/33'] }, 'ipAllow.0'],
      [{ ipAllow: ['example.com'] }, 'ipAllow.0'],
      [{ integrationId: -1 }, 'integrationId'],
      [{ extra: 1 }, 'input'],
    ];
    for (const [over, field] of cases) {
      await assert.rejects(
        w((id) => id.keys.create({ ...base, ...over } as never)),
        (e: unknown) =>
          e instanceof ValidationError && (e.details.field === field || (field === 'input' && /extra|unrecognized/i.test(e.message))),
        field,
      );
    }
    await assert.rejects(
      w((id) => id.integrations.create({ name: 'x'.repeat(129) })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'name',
    );
    await assert.rejects(
      w((id) => id.users.create({ username: 'has space' })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'username',
    );
    await assert.rejects(
      w((id) => id.roles.create({ name: 'r', scopes: ['identity:superuser'] })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'scopes.0',
    );
    await assert.rejects(
      w((id) => id.keys.create({ ...base, integrationId: 999_999n })),
      NotFoundError,
    );
    assert.equal(await rowCount(coffer, 'identity_api_keys'), keysBefore);
    assert.equal(await rowCount(coffer, 'audit_log'), auditBefore);
  });

  test("users, roles and scopes: a user has the union of their roles' scopes", async () => {
    const { alice, reader, writer } = await w(async (id) => {
      const alice = await id.users.create({ username: 'alice', displayName: 'Alice' });
      const reader = await id.roles.create({ name: 'reader', scopes: ['identity:read', 'chain:read'] });
      const writer = await id.roles.create({ name: 'writer', description: 'writes identity', scopes: ['identity:write'] });
      await id.users.grantRole(alice.id, reader.id);
      await id.users.grantRole(alice.id, writer.id);
      return { alice, reader, writer };
    });
    assert.deepEqual(await r((id) => id.users.scopes(alice.id)), ['chain:read', 'identity:write']);
    await assert.rejects(
      w((id) => id.users.grantRole(alice.id, reader.id)),
      UniqueViolationError,
    );
    const updated = await w((id) => id.roles.setScopes(writer.id, { expectedVersion: 1, scopes: ['identity:admin', 'audit:read'] }));
    assert.deepEqual(updated.scopes, ['audit:read', 'identity:admin']);
    assert.equal(updated.version, 2);
    await assert.rejects(
      w((id) => id.roles.setScopes(writer.id, { expectedVersion: 1, scopes: [] })),
      ConflictError,
    );
    assert.deepEqual(await r((id) => id.users.scopes(alice.id)), ['audit:read', 'chain:read', 'identity:admin']);
    await w((id) => id.users.revokeRole(alice.id, writer.id));
    assert.deepEqual(await r((id) => id.users.scopes(alice.id)), ['chain:read', 'identity:read']);
    await w((id) => id.roles.delete(reader.id));
    assert.deepEqual(await r((id) => id.users.scopes(alice.id)), []);
    assert.equal(await r((id) => id.roles.get(reader.id)), undefined);
    const u2 = await w((id) => id.users.update(alice.id, { expectedVersion: 1, displayName: 'Alice A.' }));
    assert.equal(u2.version, 2);
    await assert.rejects(
      w((id) => id.users.update(alice.id, { expectedVersion: 1, displayName: 'stale' })),
      ConflictError,
    );
  });

  test('roles list in name order a page at a time, each with its own scopes', async () => {
    await w(async (id) => {
      await id.roles.create({ name: 'zzdelta', scopes: ['chain:write', 'audit:read'] });
      await id.roles.create({ name: 'zzalpha', scopes: ['identity:read'] });
      await id.roles.create({ name: 'zzcharlie', scopes: [] });
      await id.roles.create({ name: 'zzbravo', description: 'b', scopes: ['*:read'] });
      await id.roles.create({ name: 'zzecho', scopes: ['tokens:admin'] });
    });
    const seen: { name: string; scopes: string[] }[] = [];
    // Other tests' roles sort before 'zz'; a position need not be a role's name.
    let after = 'zz';
    for (;;) {
      const page = await r((id) => id.roles.list({ limit: 2, after }));
      assert.ok(page.length <= 2);
      seen.push(...page.map((p) => ({ name: p.name, scopes: p.scopes })));
      if (page.length < 2) break;
      after = page[page.length - 1]!.name;
    }
    assert.deepEqual(seen, [
      { name: 'zzalpha', scopes: ['identity:read'] },
      { name: 'zzbravo', scopes: ['*:read'] },
      { name: 'zzcharlie', scopes: [] },
      { name: 'zzdelta', scopes: ['audit:read', 'chain:write'] },
      { name: 'zzecho', scopes: ['tokens:admin'] },
    ]);
    // One page holds what get() returns for each role.
    for (const role of await r((id) => id.roles.list({ limit: 1000 }))) assert.deepEqual(role, await r((id) => id.roles.get(role.id)));
    for (const limit of [0, 1001, 1.5])
      await assert.rejects(
        r((id) => id.roles.list({ limit })),
        (e: unknown) => e instanceof ValidationError && e.details.field === 'limit',
      );
    await assert.rejects(
      r((id) => id.roles.list({ after: 'Not A Name' })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'after',
    );
  });

  test('sessions expire, can be revoked, and end when their user is disabled', async () => {
    const now = new Date();
    const bob = await w((id) => id.users.create({ username: 'bob' }));
    const role = await w(async (id) => {
      const role = await id.roles.create({ name: 'bob-role', scopes: ['chain:write'] });
      await id.users.grantRole(bob.id, role.id);
      return role;
    });
    const s1 = await w((id) => id.sessions.create(bob.id, { ttlSeconds: 3600 }));
    assert.match(s1.token, /^cfs_[0-9a-f]{24}_/);
    const p = await coffer.read((tx) => authenticateSession(tx, s1.token));
    assert.equal(p.user.id, bob.id);
    assert.deepEqual(p.scopes, ['chain:write']);
    assert.ok(role.id > 0n);
    await assert.rejects(
      coffer.read((tx) => authenticateSession(tx, s1.token, { now: new Date(now.getTime() + 3601_000) })),
      UnauthenticatedError,
    );
    await w((id) => id.sessions.revoke(s1.session.id, 'logout'));
    await assert.rejects(
      coffer.read((tx) => authenticateSession(tx, s1.token)),
      UnauthenticatedError,
    );
    await assert.rejects(
      w((id) => id.sessions.revoke(s1.session.id)),
      InvalidStateTransitionError,
    );
    const s2 = await w((id) => id.sessions.create(bob.id, { ttlSeconds: 3600 }));
    const s3 = await w((id) => id.sessions.create(bob.id, { ttlSeconds: 3600 }));
    await w((id) => id.users.update(bob.id, { expectedVersion: 1, status: 'disabled' }));
    for (const s of [s2, s3])
      await assert.rejects(
        coffer.read((tx) => authenticateSession(tx, s.token)),
        UnauthenticatedError,
      );
    const revoked = await coffer.read((tx) =>
      tx.db.selectFrom('identity_sessions').select(['revoke_reason']).where('id', 'in', [s2.session.id, s3.session.id]).execute(),
    );
    assert.deepEqual(
      revoked.map((x) => x.revoke_reason),
      ['user disabled', 'user disabled'],
    );
    await assert.rejects(
      w((id) => id.sessions.create(bob.id, { ttlSeconds: 3600 })),
      InvalidStateTransitionError,
    );
    await assert.rejects(
      w((id) => id.sessions.create(bob.id, { ttlSeconds: 5 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'ttlSeconds',
    );
  });

  test('an MFA seed is encrypted at rest, bound to its row, and opens only with the right key', async () => {
    const seed = Buffer.from('JBSWY3DPEHPK3PXPJBSWY3DP', 'utf8');
    const carol = await w((id) => id.users.create({ username: 'carol' }));
    const dave = await w((id) => id.users.create({ username: 'dave' }));
    const u = await w((id) => id.users.setMfaSecret(carol.id, seed));
    assert.equal(u.hasMfa, true);
    const stored = await coffer.read((tx) =>
      tx.db.selectFrom('identity_users').select('mfa_secret').where('username', '=', 'carol').executeTakeFirstOrThrow(),
    );
    assert.match(String(stored.mfa_secret), /^cfe1\.k1\./);
    assert.ok(!String(stored.mfa_secret).includes(seed.toString('utf8')));
    assert.deepEqual(await r((id) => id.users.mfaSecret(carol.id)), seed);
    // Copying carol's ciphertext onto dave's row does not give dave her seed.
    await coffer.write((tx) =>
      tx.db.updateTable('identity_users').set({ mfa_secret: stored.mfa_secret }).where('username', '=', 'dave').execute(),
    );
    await assert.rejects(
      r((id) => id.users.mfaSecret(dave.id)),
      (e: unknown) => e instanceof DecryptionError && /moved from another row/.test(e.message),
    );
    // Another master key: a clear error, never garbage.
    const other = new Keyring([{ id: 'k1', key: randomBytes(32) }]);
    await assert.rejects(
      coffer.read((tx) => identity(tx, actor, { keyring: other }).users.mfaSecret(carol.id)),
      DecryptionError,
    );
    const noKey = new Keyring([{ id: 'k2', key: randomBytes(32) }]);
    await assert.rejects(
      coffer.read((tx) => identity(tx, actor, { keyring: noKey }).users.mfaSecret(carol.id)),
      /k1, which is not configured/,
    );
    await w((id) => id.users.setMfaSecret(carol.id, null));
    assert.equal(await r((id) => id.users.mfaSecret(carol.id)), null);
  });

  test('every change leaves an audit entry with its actor and a row-history record; secrets redacted', async () => {
    const keyActor = apiKeyActor('a'.repeat(24));
    const { record } = await w(async (id) => {
      const integ = await id.integrations.create({ name: 'audited' });
      return id.keys.create({ integrationId: integ.id, name: 'k', scopes: ['identity:read'], expiresAt: inDays(1) });
    }, keyActor);
    await w((id) => id.keys.update(record.id, { expectedVersion: 1, name: 'k2' }), keyActor);
    await w((id) => id.keys.revoke(record.id), keyActor);
    const trail = await coffer.read((tx) => entityTrail(tx, { domain: 'identity', entity: 'api_key', entityId: record.id }));
    assert.deepEqual(
      trail.map((e) => e.action),
      ['identity.api_key.create', 'identity.api_key.update', 'identity.api_key.revoke'],
    );
    for (const e of trail) assert.deepEqual(e.actor, keyActor);
    const change = trail[1]!.change as { before: Record<string, unknown>; after: Record<string, unknown> };
    assert.equal(change.before.name, 'k');
    assert.equal(change.after.name, 'k2');
    assert.equal(change.after.secret_hash, REDACTED);
    const hist = await coffer.read((tx) => readRowHistory(tx, 'identity_api_keys', { id: record.id }));
    assert.deepEqual(
      hist.map((h) => h.op),
      ['insert', 'update', 'update'],
    );
    assert.ok(hist.every((h) => h.actor.id === keyActor.id && (h.after === null || h.after.secret_hash === REDACTED)));
    assert.equal(hist[2]!.after!.live_name, null);
    const v = await verifyAuditLog(coffer);
    assert.equal(v.ok, true, v.firstBad?.message);
  });

  test('integrations and keys list a page at a time, in order, each row once', async () => {
    // One creation time for every key: the order's ties are broken by id.
    const at = new Date();
    const made = await coffer.write(
      async (tx) => {
        const id = identity(tx, actor, { keyring, now: () => at });
        const integs = [];
        for (let i = 0; i < 5; i++) integs.push(await id.integrations.create({ name: `paged-${i}` }));
        const keys = [];
        for (const integ of integs.slice(0, 2))
          for (let k = 0; k < 4; k++)
            keys.push(
              (await id.keys.create({ integrationId: integ.id, name: `k${k}`, scopes: ['chain:read'], expiresAt: inDays(1) })).record,
            );
        return { integs, keys };
      },
      { op: 'test.identity' },
    );
    await w((id) => id.integrations.delete(made.integs[2]!.id));
    const mine = new Set(made.integs.map((i) => i.id));

    const integrations = async (includeDeleted: boolean) => {
      const seen: bigint[] = [];
      for (let after: bigint | undefined; ;) {
        const page = await r((id) => id.integrations.list({ includeDeleted, limit: 2, ...(after !== undefined ? { after } : {}) }));
        assert.ok(page.length <= 2);
        seen.push(...page.map((i) => i.id));
        if (page.length < 2) return seen;
        after = page[page.length - 1]!.id;
      }
    };
    const all = await integrations(true);
    assert.ok(
      all.every((id, i) => i === 0 || id > all[i - 1]!),
      'ascending ids, none twice',
    );
    assert.deepEqual(
      all.filter((id) => mine.has(id)),
      made.integs.map((i) => i.id),
    );
    const live = await integrations(false);
    assert.deepEqual(
      live.filter((id) => mine.has(id)),
      made.integs.filter((_, i) => i !== 2).map((i) => i.id),
      'a deleted integration is listed only when asked for',
    );

    // Keys: within an integration by creation time, then id; across integrations by integration first.
    const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    const expected = [...made.keys.slice(0, 4).sort(byId), ...made.keys.slice(4).sort(byId)].map((k) => k.id);
    const keys = async (integrationId?: bigint) => {
      const seen: string[] = [];
      for (let after: ApiKey | undefined; ;) {
        const page = await r((id) =>
          id.keys.list({
            limit: 3,
            ...(integrationId !== undefined ? { integrationId } : {}),
            ...(after ? { after: { integrationId: after.integrationId, createdAt: after.createdAt, id: after.id } } : {}),
          }),
        );
        seen.push(...page.map((k) => k.id));
        if (page.length < 3) return seen;
        after = page[page.length - 1]!;
      }
    };
    assert.deepEqual(await keys(made.integs[0]!.id), expected.slice(0, 4));
    const ours = new Set(expected);
    assert.deepEqual(
      (await keys()).filter((k) => ours.has(k)),
      expected,
    );

    // Bad page arguments are ValidationErrors naming the field.
    for (const limit of [0, 1001, 1.5])
      await assert.rejects(
        r((id) => id.integrations.list({ limit })),
        (e: unknown) => e instanceof ValidationError && e.details.field === 'limit',
      );
    await assert.rejects(
      r((id) => id.keys.list({ limit: 0 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'limit',
    );
    await assert.rejects(
      r((id) => id.integrations.list({ after: 'x' })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'after',
    );
    const k4 = made.keys[4]!;
    await assert.rejects(
      r((id) =>
        id.keys.list({ integrationId: made.integs[0]!.id, after: { integrationId: k4.integrationId, createdAt: k4.createdAt, id: k4.id } }),
      ),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'after',
      'a position in another integration',
    );
  });
  test('only changes that can alter an authentication empty the authentication caches', async () => {
    // Tokens are minted and consumed all day: each one used to move the generation and throw away
    // every cached authentication of the process.
    const integ = await w((id) => id.integrations.create({ name: 'generation' }));
    const moved = async (fn: (id: ReturnType<typeof identity>) => Promise<unknown>) => {
      const before = identityGeneration();
      await w(fn);
      return identityGeneration() !== before;
    };
    const user = await w((id) => id.users.create({ username: 'generation-user' }));
    await w((id) => id.tokenConfigs.create({ integrationId: integ.id, tokenType: 'gen', maxOpen: 5, lifetimeSeconds: 60 }));
    const minted = await w((id) => id.tokens.mint({ integrationId: integ.id, tokenType: 'gen' }));
    const key = await w((id) => id.keys.create({ integrationId: integ.id, name: 'k', scopes: ['identity:read'], expiresAt: inDays(1) }));
    assert.deepEqual(
      [
        await moved((id) => id.tokens.mint({ integrationId: integ.id, tokenType: 'gen' })),
        await moved((id) => id.tokens.consume(minted.token, { tokenType: 'gen' })),
        await moved((id) => id.sessions.create(user.id, { ttlSeconds: 60 })),
        await moved((id) => id.keys.create({ integrationId: integ.id, name: 'k2', scopes: ['identity:read'], expiresAt: inDays(1) })),
      ],
      [false, false, false, false],
    );
    const session = await w((id) => id.sessions.create(user.id, { ttlSeconds: 60 }));
    assert.deepEqual(
      [
        await moved((id) => id.keys.update(key.record.id, { expectedVersion: key.record.version, scopes: ['identity:write'] })),
        await moved((id) => id.sessions.revoke(session.session.id)),
        await moved((id) => id.keys.revoke(key.record.id)),
      ],
      [true, true, true],
    );
  });
});
