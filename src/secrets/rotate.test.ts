// `coffer secrets rotate` on every backend: every encrypted column moves to the active master
// key in small transactions; an interrupted run resumes; each change has its history record and
// each batch an audit entry; a missing key or a plaintext value stops it with a clear error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, test } from 'node:test';
import { DecryptionError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { forEachBackend } from '../../test/harness.js';
import { systemActor } from '../domains/audit/actor.js';
import { readRowHistory } from '../domains/audit/history.js';
import { REDACTED } from '../domains/audit/policy.js';
import { readEntries } from '../domains/audit/log.js';
import { verifyAuditLog } from '../domains/audit/verify.js';
import { identity } from '../domains/identity/index.js';
import { Keyring } from './envelope.js';
import { rotateSecrets, secretsStatus } from './rotate.js';

const K1 = randomBytes(32);
const K2 = randomBytes(32);
const k1 = new Keyring([{ id: 'k1', key: K1 }]);
const k2k1 = new Keyring([
  { id: 'k2', key: K2 },
  { id: 'k1', key: K1 },
]);
const k2 = new Keyring([{ id: 'k2', key: K2 }]);
const actor = systemActor('test');
const N = 25;
const seed = (i: number) => `seed-number-${i}-${'x'.repeat(i % 7)}`;

function mfaStatus(st: Awaited<ReturnType<typeof secretsStatus>>) {
  return st.find((c) => c.table === 'identity_users' && c.column === 'mfa_secret')!;
}

forEachBackend('secrets rotation', (ctx) => {
  let coffer: Coffer;
  const ids: bigint[] = [];
  before(async () => {
    coffer = await ctx.open();
    for (let i = 0; i < N; i++) {
      ids.push(
        await coffer.write(async (tx) => {
          const id = identity(tx, actor, { keyring: k1 });
          const u = await id.users.create({ username: `rot-${i}` });
          await id.users.setMfaSecret(u.id, seed(i));
          return u.id;
        }),
      );
    }
    // A user without a secret is left alone.
    await coffer.write((tx) => identity(tx, actor, { keyring: k1 }).users.create({ username: 'no-secret' }));
  });

  test('an interrupted rotation resumes; every secret ends under the new key and opens without the old one', async () => {
    assert.deepEqual(mfaStatus(await secretsStatus(coffer)).byKeyId, { k1: N });
    const first = await rotateSecrets(coffer, { keyring: k2k1, batchSize: 4, maxBatches: 3 });
    assert.equal(first.complete, false);
    assert.equal(first.columns[0]!.rotated, 12);
    assert.deepEqual(mfaStatus(await secretsStatus(coffer, { batchSize: 7 })).byKeyId, { k1: N - 12, k2: 12 });
    // Reading works throughout, with both keys configured.
    for (const [i, id] of ids.entries()) {
      assert.equal((await coffer.read((tx) => identity(tx, actor, { keyring: k2k1 }).users.mfaSecret(id)))!.toString(), seed(i));
    }
    const second = await rotateSecrets(coffer, { keyring: k2k1, batchSize: 4 });
    assert.equal(second.complete, true);
    assert.equal(second.columns[0]!.rotated, N - 12);
    assert.deepEqual(mfaStatus(await secretsStatus(coffer)), {
      table: 'identity_users',
      column: 'mfa_secret',
      byKeyId: { k2: N },
      notEncrypted: 0,
    });
    for (const [i, id] of ids.entries()) {
      assert.equal(
        (await coffer.read((tx) => identity(tx, actor, { keyring: k2 }).users.mfaSecret(id)))!.toString(),
        seed(i),
        'k1 no longer needed',
      );
    }
    const third = await rotateSecrets(coffer, { keyring: k2k1, batchSize: 4 });
    assert.equal(third.columns[0]!.rotated, 0, 'nothing left to do');
  });

  test('each re-encrypted row has a (redacted) history record and each batch an audit entry', async () => {
    let rotations = 0;
    for (const id of ids) {
      const hist = await coffer.read((tx) => readRowHistory(tx, 'identity_users', { id }));
      const rot = hist.filter((h) => h.actor.id === 'secrets.rotate');
      assert.equal(rot.length, 1);
      assert.equal(rot[0]!.before!.mfa_secret, REDACTED);
      assert.equal(rot[0]!.after!.mfa_secret, REDACTED);
      rotations += rot.length;
    }
    assert.equal(rotations, N);
    const entries = (await coffer.read((tx) => readEntries(tx, { limit: 10_000 }))).filter((e) => e.action === 'secrets.rotate');
    assert.equal(entries.length, Math.ceil(12 / 4) + Math.ceil((N - 12) / 4));
    const rows = entries.reduce((n, e) => n + Number((e.change as { details: { rows: number } }).details.rows), 0);
    assert.equal(rows, N);
    assert.ok(entries.every((e) => (e.change as { details: { to_key_id: string } }).details.to_key_id === 'k2'));
    assert.equal((await verifyAuditLog(coffer)).ok, true);
  });

  test('a missing old key stops rotation with a clear error and changes nothing', async () => {
    const k3 = new Keyring([{ id: 'k3', key: randomBytes(32) }]);
    await assert.rejects(
      rotateSecrets(coffer, { keyring: k3, batchSize: 4 }),
      (e: unknown) => e instanceof DecryptionError && /master key id k2, which is not configured \(configured: k3\)/.test(e.message),
    );
    assert.deepEqual(mfaStatus(await secretsStatus(coffer)).byKeyId, { k2: N });
  });

  test('a value that is not a ciphertext is counted by status and refused by rotation', async () => {
    await coffer.write((tx) =>
      tx.db.updateTable('identity_users').set({ mfa_secret: 'plaintext-oops' }).where('username', '=', 'no-secret').execute(),
    );
    assert.equal(mfaStatus(await secretsStatus(coffer)).notEncrypted, 1);
    await assert.rejects(
      rotateSecrets(coffer, {
        keyring: new Keyring([
          { id: 'k4', key: randomBytes(32) },
          { id: 'k2', key: K2 },
        ]),
        batchSize: 100,
      }),
      /not a Coffer ciphertext/,
    );
    await coffer.write((tx) => tx.db.updateTable('identity_users').set({ mfa_secret: null }).where('username', '=', 'no-secret').execute());
  });
});
