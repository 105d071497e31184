// The races, with real concurrency on PostgreSQL and MariaDB/MySQL (a pool of connections, the
// transactions overlap; the test checks they did) and serialised on SQLite: minting at the
// limit never exceeds it, a token is consumed exactly once, and of concurrent updates of a key
// at the same version exactly one wins. The audit chain stays whole throughout.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ConflictError, InvalidStateTransitionError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import type { Tx } from '../../db/tx.js';
import { forEachBackend } from '../../../test/harness.js';
import { systemActor } from '../audit/actor.js';
import { readRowHistory } from '../audit/history.js';
import { verifyAuditLog } from '../audit/verify.js';
import { identity } from './index.js';

const actor = systemActor('race');

forEachBackend('identity races', (ctx) => {
  let coffer: Coffer;
  let integrationId: bigint;
  const server = ctx.backend === 'postgres' || ctx.backend === 'mysql';

  /** Runs n writers at once; returns each outcome and the most transactions seen open together. */
  async function race<T>(
    n: number,
    fn: (tx: Tx, i: number) => Promise<T>,
  ): Promise<{ results: PromiseSettledResult<T>[]; overlap: number }> {
    let open = 0;
    let overlap = 0;
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        coffer.write(
          async (tx) => {
            open++;
            overlap = Math.max(overlap, open);
            try {
              // Let every writer get its transaction started before the first one finishes.
              await new Promise((r) => setTimeout(r, 5));
              return await fn(tx, i);
            } finally {
              open--;
            }
          },
          { op: 'test.race' },
        ),
      ),
    );
    return { results, overlap };
  }

  const ok = <T>(rs: PromiseSettledResult<T>[]) => rs.filter((r): r is PromiseFulfilledResult<T> => r.status === 'fulfilled');
  const failed = (rs: PromiseSettledResult<unknown>[]) =>
    rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);

  before(async () => {
    coffer = await ctx.open({ settings: { poolMax: 12 } });
    integrationId = await coffer.write(async (tx) => (await identity(tx, actor).integrations.create({ name: 'racers' })).id);
  });

  test('minting at the limit: 30 concurrent minters, a maximum of 5, exactly 5 tokens', async () => {
    await coffer.write((tx) =>
      identity(tx, actor).tokenConfigs.create({ integrationId, tokenType: 'race.mint', maxOpen: 5, lifetimeSeconds: 600 }),
    );
    const { results, overlap } = await race(30, (tx) => identity(tx, actor).tokens.mint({ integrationId, tokenType: 'race.mint' }));
    if (server) assert.ok(overlap > 1, `transactions overlapped (max ${overlap} at once)`);
    assert.equal(ok(results).length, 5);
    const errors = failed(results);
    assert.equal(errors.length, 25);
    assert.ok(
      errors.every((e) => e instanceof ConflictError && e.details.reason === 'token_limit'),
      String(errors.find((e) => !(e instanceof ConflictError))),
    );
    assert.equal(await coffer.read((tx) => identity(tx, actor).tokens.countOpen(integrationId, 'race.mint')), 5);
  });

  test(
    'control: the naive count-then-insert (captaind) does exceed the limit under the same race',
    { skip: server ? false : 'needs concurrent connections' },
    async () => {
      await coffer.write((tx) =>
        identity(tx, actor).tokenConfigs.create({ integrationId, tokenType: 'race.naive', maxOpen: 5, lifetimeSeconds: 600 }),
      );
      let n = 0;
      const results = await Promise.allSettled(
        Array.from({ length: 30 }, async () => {
          // Count in one transaction, insert in another: what the locked mint exists to prevent.
          const open = await coffer.read((tx) => identity(tx, actor).tokens.countOpen(integrationId, 'race.naive'));
          await new Promise((r) => setTimeout(r, 5));
          if (open >= 5) throw new ConflictError('limit');
          const now = new Date();
          await coffer.write((tx) =>
            tx.insert('identity_tokens', {
              id: (++n).toString(16).padStart(24, '0'),
              integration_id: integrationId,
              token_type: 'race.naive',
              secret_hash: '0'.repeat(64),
              expires_at: new Date(now.getTime() + 600_000),
              created_by: 'system:race',
              created_at: now,
              updated_at: now,
            }),
          );
        }),
      );
      assert.ok(ok(results).length > 5, `the naive way minted ${ok(results).length} (> 5): the race is real`);
    },
  );

  test('consuming: 25 concurrent consumers of one token, exactly one succeeds', async () => {
    await coffer.write((tx) =>
      identity(tx, actor).tokenConfigs.create({ integrationId, tokenType: 'race.consume', maxOpen: 5, lifetimeSeconds: 600 }),
    );
    const { token, record } = await coffer.write((tx) => identity(tx, actor).tokens.mint({ integrationId, tokenType: 'race.consume' }));
    const { results, overlap } = await race(25, (tx) => identity(tx, actor).tokens.consume(token, { tokenType: 'race.consume' }));
    if (server) assert.ok(overlap > 1, `transactions overlapped (max ${overlap} at once)`);
    assert.equal(ok(results).length, 1);
    const errors = failed(results);
    assert.equal(errors.length, 24);
    assert.ok(
      errors.every((e) => e instanceof InvalidStateTransitionError),
      String(errors.find((e) => !(e instanceof InvalidStateTransitionError))),
    );
    const hist = await coffer.read((tx) => readRowHistory(tx, 'identity_tokens', { id: record.id }));
    assert.deepEqual(
      hist.map((h) => h.op),
      ['insert', 'update'],
      'one insert, one consumption',
    );
  });

  test('updating a key: 20 concurrent updates at version 1, exactly one wins, the rest conflict', async () => {
    const { record } = await coffer.write((tx) =>
      identity(tx, actor).keys.create({
        integrationId,
        name: 'contended',
        scopes: ['identity:read'],
        expiresAt: new Date(Date.now() + 86_400_000),
      }),
    );
    const { results, overlap } = await race(20, (tx, i) =>
      identity(tx, actor).keys.update(record.id, { expectedVersion: 1, name: `winner-${i}` }),
    );
    if (server) assert.ok(overlap > 1, `transactions overlapped (max ${overlap} at once)`);
    const wins = ok(results);
    assert.equal(wins.length, 1);
    assert.ok(failed(results).every((e) => e instanceof ConflictError));
    const now = await coffer.read((tx) => identity(tx, actor).keys.get(record.id));
    assert.equal(now!.version, 2);
    assert.equal(now!.name, wins[0]!.value.name);
    const hist = await coffer.read((tx) => readRowHistory(tx, 'identity_api_keys', { id: record.id }));
    assert.deepEqual(
      hist.map((h) => h.op),
      ['insert', 'update'],
    );
  });

  test('after the races the audit chain is whole', async () => {
    const r = await verifyAuditLog(coffer);
    assert.equal(r.ok, true, r.firstBad?.message);
  });
});
