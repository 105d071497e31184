// Single-use tokens on every backend: per-type configs with optimistic updates, the open-token
// maximum, lifetimes, single consumption, and the status rules (never back to unused, abused
// is final, an expired token cannot be used).
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  ConflictError,
  InvalidStateTransitionError,
  NotFoundError,
  UnauthenticatedError,
  UniqueViolationError,
  ValidationError,
} from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { systemActor } from '../audit/actor.js';
import { readRowHistory } from '../audit/history.js';
import { identity, inspectToken, TOKEN_TRANSITIONS, type TokenStatus } from './index.js';

const actor = systemActor('test');

forEachBackend('identity tokens', (ctx) => {
  let coffer: Coffer;
  let integrationId: bigint;
  let clock = new Date('2031-03-01T00:00:00.000Z');
  const w = <T>(fn: (id: ReturnType<typeof identity>) => Promise<T>) =>
    coffer.write((tx) => fn(identity(tx, actor, { now: () => clock })), { op: 'test.tokens' });
  const r = <T>(fn: (id: ReturnType<typeof identity>) => Promise<T>) =>
    coffer.read((tx) => fn(identity(tx, actor, { now: () => clock })), { op: 'test.tokens' });

  before(async () => {
    coffer = await ctx.open();
    integrationId = (await w((id) => id.integrations.create({ name: 'lightning' }))).id;
  });

  test('token configs: one per integration and type, optimistic updates, validated input', async () => {
    const c = await w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'cfg.test', maxOpen: 3, lifetimeSeconds: 60 }));
    assert.equal(c.version, 1);
    await assert.rejects(
      w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'cfg.test', maxOpen: 3, lifetimeSeconds: 60 })),
      UniqueViolationError,
    );
    const c2 = await w((id) => id.tokenConfigs.update(integrationId, 'cfg.test', { expectedVersion: 1, maxOpen: 5 }));
    assert.equal(c2.maxOpen, 5);
    await assert.rejects(
      w((id) => id.tokenConfigs.update(integrationId, 'cfg.test', { expectedVersion: 1, maxOpen: 9 })),
      ConflictError,
    );
    await assert.rejects(
      w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'Bad Type', maxOpen: 1, lifetimeSeconds: 1 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'tokenType',
    );
    await assert.rejects(
      w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'x', maxOpen: -1, lifetimeSeconds: 1 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'maxOpen',
    );
    await assert.rejects(
      w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'x', maxOpen: 1, lifetimeSeconds: 0 })),
      (e: unknown) => e instanceof ValidationError && e.details.field === 'lifetimeSeconds',
    );
    await w((id) => id.tokenConfigs.delete(integrationId, 'cfg.test', { expectedVersion: 2 }));
    assert.equal(await r((id) => id.tokenConfigs.get(integrationId, 'cfg.test')), undefined);
    const hist = await coffer.read((tx) =>
      readRowHistory(tx, 'identity_token_configs', { integration_id: integrationId, token_type: 'cfg.test' }),
    );
    assert.deepEqual(
      hist.map((h) => h.op),
      ['insert', 'update', 'delete'],
    );
  });

  test('minting stops at the maximum of open tokens; used and expired tokens free their place', async () => {
    await w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'ln.receive', maxOpen: 3, lifetimeSeconds: 600 }));
    const minted: { token: string }[] = [];
    for (let i = 0; i < 3; i++) minted.push(await w((id) => id.tokens.mint({ integrationId, tokenType: 'ln.receive' })));
    assert.equal(await r((id) => id.tokens.countOpen(integrationId, 'ln.receive')), 3);
    await assert.rejects(
      w((id) => id.tokens.mint({ integrationId, tokenType: 'ln.receive' })),
      (e: unknown) => e instanceof ConflictError && e.details.reason === 'token_limit' && e.details.max === 3,
    );
    await w((id) => id.tokens.consume(minted[0]!.token, { tokenType: 'ln.receive' }));
    await w((id) => id.tokens.mint({ integrationId, tokenType: 'ln.receive' }));
    await assert.rejects(
      w((id) => id.tokens.mint({ integrationId, tokenType: 'ln.receive' })),
      ConflictError,
    );
    clock = new Date(clock.getTime() + 601_000);
    assert.equal(await r((id) => id.tokens.countOpen(integrationId, 'ln.receive')), 0, 'expired tokens are not open');
    await w((id) => id.tokens.mint({ integrationId, tokenType: 'ln.receive' }));
    await assert.rejects(
      w((id) => id.tokens.mint({ integrationId, tokenType: 'no.such.type' })),
      NotFoundError,
    );
    await w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'off', maxOpen: 0, lifetimeSeconds: 60 }));
    await assert.rejects(
      w((id) => id.tokens.mint({ integrationId, tokenType: 'off' })),
      ConflictError,
      'max 0 stops minting',
    );
  });

  test('a token is consumed once, only with its type and secret, and never after it expired', async () => {
    await w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'once', maxOpen: 10, lifetimeSeconds: 60 }));
    const a = await w((id) => id.tokens.mint({ integrationId, tokenType: 'once' }));
    assert.match(a.token, /^cft_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
    const stored = await coffer.read((tx) =>
      tx.db.selectFrom('identity_tokens').select('secret_hash').where('id', '=', a.record.id).executeTakeFirstOrThrow(),
    );
    assert.ok(!a.token.includes(String(stored.secret_hash)));
    await coffer.read((tx) => inspectToken(tx, a.token, { now: clock }));
    await assert.rejects(
      w((id) => id.tokens.consume(a.token, { tokenType: 'ln.receive' })),
      UnauthenticatedError,
      'wrong type',
    );
    await assert.rejects(
      w((id) => id.tokens.consume(a.token, { tokenType: 'once', integrationId: integrationId + 1000n })),
      UnauthenticatedError,
      'wrong integration',
    );
    await assert.rejects(
      w((id) => id.tokens.consume(`${a.token.slice(0, -4)}AAAA`, { tokenType: 'once' })),
      UnauthenticatedError,
      'wrong secret',
    );
    const used = await w((id) => id.tokens.consume(a.token, { tokenType: 'once', integrationId }));
    assert.equal(used.status, 'used');
    assert.ok(used.usedAt);
    await assert.rejects(
      w((id) => id.tokens.consume(a.token, { tokenType: 'once' })),
      (e: unknown) => e instanceof InvalidStateTransitionError && /is used/.test(e.message),
    );
    const b = await w((id) => id.tokens.mint({ integrationId, tokenType: 'once' }));
    clock = new Date(clock.getTime() + 61_000);
    await assert.rejects(
      w((id) => id.tokens.consume(b.token, { tokenType: 'once' })),
      (e: unknown) => e instanceof InvalidStateTransitionError && /expired/.test(e.message),
    );
    await assert.rejects(
      w((id) => id.tokens.setStatus(b.record.id, 'used')),
      (e: unknown) => e instanceof InvalidStateTransitionError && /expired/.test(e.message),
    );
    await assert.rejects(
      coffer.read((tx) => inspectToken(tx, b.token, { now: clock })),
      InvalidStateTransitionError,
    );
    assert.equal((await r((id) => id.tokens.get(b.record.id)))!.status, 'unused');
  });

  test('status rules: never back to unused, abused is final, every other move as the table says', async () => {
    await w((id) => id.tokenConfigs.create({ integrationId, tokenType: 'rules', maxOpen: 100, lifetimeSeconds: 3600 }));
    const statuses = Object.keys(TOKEN_TRANSITIONS) as TokenStatus[];
    // Bring a fresh token to each status, then try every target.
    const reach = async (s: TokenStatus) => {
      const t = await w((id) => id.tokens.mint({ integrationId, tokenType: 'rules' }));
      if (s === 'used') await w((id) => id.tokens.consume(t.token, { tokenType: 'rules' }));
      else if (s === 'disabled' || s === 'abused') await w((id) => id.tokens.setStatus(t.record.id, s));
      return t.record.id;
    };
    for (const from of statuses) {
      for (const to of statuses) {
        const id = await reach(from);
        const allowed = TOKEN_TRANSITIONS[from].includes(to);
        if (allowed) {
          const t = await w((s) => s.tokens.setStatus(id, to));
          assert.equal(t.status, to, `${from} → ${to}`);
        } else {
          await assert.rejects(
            w((s) => s.tokens.setStatus(id, to)),
            InvalidStateTransitionError,
            `${from} → ${to} must be refused`,
          );
          assert.equal((await r((s) => s.tokens.get(id)))!.status, from);
        }
      }
    }
    assert.deepEqual(TOKEN_TRANSITIONS.abused, [], 'an abused token cannot be re-enabled');
    assert.ok(
      statuses.every((s) => !TOKEN_TRANSITIONS[s].includes('unused')),
      'nothing goes back to unused',
    );
    const id = await reach('unused');
    await assert.rejects(
      w((s) => s.tokens.setStatus(id, 'disabled', { expectedVersion: 7 })),
      ConflictError,
    );
    await assert.rejects(
      w((s) => s.tokens.setStatus('0'.repeat(24), 'disabled')),
      NotFoundError,
    );
  });

  test('tokens of a deleted integration can neither be minted, consumed nor pass inspection', async () => {
    const other = await w((id) => id.integrations.create({ name: 'short-lived' }));
    await w((id) => id.tokenConfigs.create({ integrationId: other.id, tokenType: 't', maxOpen: 1, lifetimeSeconds: 60 }));
    const open = await w((id) => id.tokens.mint({ integrationId: other.id, tokenType: 't' }));
    assert.equal((await coffer.read((tx) => inspectToken(tx, open.token, { now: clock }))).id, open.record.id);
    await w((id) => id.integrations.delete(other.id));
    // Inspecting agrees with consuming: the token is dead, with the same error.
    await assert.rejects(
      coffer.read((tx) => inspectToken(tx, open.token, { now: clock })),
      (e: unknown) => e instanceof UnauthenticatedError && e.message === 'invalid token',
    );
    await assert.rejects(
      w((id) => id.tokens.mint({ integrationId: other.id, tokenType: 't' })),
      InvalidStateTransitionError,
    );
    await assert.rejects(
      w((id) => id.tokens.consume(open.token, { tokenType: 't' })),
      (e: unknown) => e instanceof UnauthenticatedError && e.message === 'invalid token',
    );
  });
});
