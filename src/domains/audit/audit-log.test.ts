// The audit log on every backend: hash chain and canonical encoding, written in the change's own
// transaction, no fork or gap under concurrent appends, secrets redacted, and append-only
// enforced by the database itself.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { sql } from 'kysely';
import { AppendOnlyViolationError, CofferError, ValidationError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import { canonicalJson, sha256Hex } from '../../util/canonical-json.js';
import { forEachBackend, rowCount } from '../../../test/harness.js';
import { systemActor, userActor } from './actor.js';
import { audit, auditHead, entityTrail, entryHash, GENESIS_HASH, readEntries } from './log.js';
import { REDACTED } from './policy.js';
import { verifyAuditLog } from './verify.js';
import { auditChainCheck } from './doctor.js';
import { withTriggersOff } from './test-support.js';

const actor = systemActor('test');

forEachBackend('audit log', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  test('entries chain from the genesis hash; each hash is SHA-256 of the documented canonical encoding', async () => {
    const at = new Date('2030-01-02T03:04:05.678Z');
    const [e1, e2] = await coffer.write((tx) =>
      audit(tx, { now: () => at }).recordMany([
        {
          actor,
          action: 'test.thing.create',
          domain: 'test',
          entity: 'thing',
          entityId: 'a',
          after: { n: 1n, big: 2n ** 70n, when: at, bytes: Buffer.from([1, 2]), ok: true },
        },
        {
          actor: userActor(5n),
          action: 'test.thing.update',
          domain: 'test',
          entity: 'thing',
          entityId: 42,
          before: { n: 1 },
          after: { n: 2 },
          details: { ratio: 0.5 },
        },
      ]),
    );
    assert.equal(e1!.seq, 1n);
    assert.equal(e1!.prevHash, GENESIS_HASH);
    assert.equal(e2!.seq, 2n);
    assert.equal(e2!.prevHash, e1!.hash);
    // The encoding, spelled out independently of the writer (docs/audit.md).
    const expected1 =
      '{"action":"test.thing.create","actor":{"id":"test","type":"system"},"at":"2030-01-02T03:04:05.678Z",' +
      '"change":{"after":{"big":"1180591620717411303424","bytes":"0102","n":"1","ok":true,"when":"2030-01-02T03:04:05.678Z"}},' +
      `"domain":"test","entity":"thing","entity_id":"a","prev_hash":"${GENESIS_HASH}","seq":"1","v":1}`;
    assert.equal(e1!.hash, sha256Hex(Buffer.from(expected1, 'utf8')));
    // Stored and read back, the entries hash to the same values on this backend.
    const stored = await coffer.read((tx) => readEntries(tx, { limit: 10 }));
    assert.equal(stored.length, 2);
    for (const s of stored) {
      const { hash, ...body } = s;
      assert.equal(entryHash(body), hash);
    }
    assert.deepEqual(stored[1]!.change, { before: { n: 1 }, after: { n: 2 }, details: { ratio: '0.5' } });
    assert.deepEqual(stored[1]!.actor, { type: 'user', id: '5' });
    assert.equal(canonicalJson(stored[0]!.change as never), canonicalJson(e1!.change as never));
    const head = await coffer.read((tx) => auditHead(tx));
    assert.deepEqual(head, { seq: 2n, hash: e2!.hash });
  });

  test('an entry is written in the transaction of its change: a rollback leaves neither, and no gap', async () => {
    const before = await coffer.read((tx) => auditHead(tx));
    await assert.rejects(
      coffer.write(async (tx) => {
        await audit(tx).record({ actor, action: 'test.thing.create', domain: 'test', entity: 'thing', entityId: 'rolled-back' });
        throw new Error('the change failed');
      }),
      /the change failed/,
    );
    assert.deepEqual(await coffer.read((tx) => auditHead(tx)), before);
    const e = await coffer.write((tx) =>
      audit(tx).record({ actor, action: 'test.thing.create', domain: 'test', entity: 'thing', entityId: 'kept' }),
    );
    assert.equal(e.seq, before.seq + 1n, 'the next entry takes the next number');
    const trail = await coffer.read((tx) => entityTrail(tx, { domain: 'test', entity: 'thing', entityId: 'rolled-back' }));
    assert.equal(trail.length, 0);
  });

  test('concurrent appends never fork the chain or leave a gap', async () => {
    const start = (await coffer.read((tx) => auditHead(tx))).seq;
    const n = 40;
    let inFlight = 0;
    let maxInFlight = 0;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        coffer.write(
          async (tx) => {
            inFlight++;
            maxInFlight = Math.max(maxInFlight, inFlight);
            try {
              await new Promise((r) => setTimeout(r, 1));
              return await audit(tx).record({ actor, action: 'test.thing.race', domain: 'test', entity: 'thing', entityId: `race-${i}` });
            } finally {
              inFlight--;
            }
          },
          { op: 'test.race' },
        ),
      ),
    );
    const entries = await coffer.read((tx) => readEntries(tx, { afterSeq: start, limit: 1000 }));
    assert.equal(entries.length, n);
    entries.forEach((e, i) => assert.equal(e.seq, start + BigInt(i) + 1n));
    assert.equal(new Set(entries.map((e) => e.prevHash)).size, n, 'every entry has a distinct predecessor: no fork');
    if (ctx.backend === 'postgres' || ctx.backend === 'mysql')
      assert.ok(maxInFlight > 1, `transactions really overlapped (max ${maxInFlight})`);
    const report = await verifyAuditLog(coffer);
    assert.equal(report.ok, true, report.firstBad?.message);
  });

  test('secrets are redacted from before/after images and details', async () => {
    const e = await coffer.write((tx) =>
      audit(tx).record({
        actor,
        action: 'identity.user.mfa_set',
        domain: 'identity',
        entity: 'user',
        entityId: 1,
        table: 'identity_users',
        before: {
          id: 1n,
          username: 'u',
          display_name: null,
          status: 'active',
          mfa_secret: null,
          version: 1,
          created_at: new Date(),
          updated_at: new Date(),
        },
        after: {
          id: 1n,
          username: 'u',
          display_name: null,
          status: 'active',
          mfa_secret: 'cfe1.k1.AAAA',
          version: 2,
          created_at: new Date(),
          updated_at: new Date(),
        },
        details: { password: 'hunter2', nested: [{ private_key: 'abcd', ok: 'visible' }] },
      }),
    );
    const change = e.change as Record<string, Record<string, unknown>>;
    assert.equal(change.before!.mfa_secret, null);
    assert.equal(change.after!.mfa_secret, REDACTED);
    assert.equal(change.after!.id, '1');
    assert.deepEqual(change.details, { password: REDACTED, nested: [{ private_key: REDACTED, ok: 'visible' }] });
  });

  test('bad entries are ValidationErrors naming the field, and nothing is written', async () => {
    const before = await rowCount(coffer, 'audit_log');
    const cases: [Record<string, unknown>, string][] = [
      [{ action: 'NoDots' }, 'action'],
      [{ action: 'x'.repeat(130) + '.y' }, 'action'],
      [{ domain: 'Bad Domain' }, 'domain'],
      [{ entity: '' }, 'entity'],
      [{ entityId: 'a\u0000b' }, 'entityId'],
      // MySQL's PAD SPACE collation would find "v " under "v": refused on every backend.
      [{ entityId: 'v ' }, 'entityId'],
      [{ entityId: ' v' }, 'entityId'],
      [{ actor: { type: 'robot', id: 'x' } }, 'actor.type'],
      [{ actor: { type: 'system', id: 'has space' } }, 'actor.id'],
      [{ details: { f: () => 1 } }, 'details.f'],
      [{ details: { s: 'nul\u0000' } }, 'details.s'],
    ];
    for (const [over, field] of cases) {
      await assert.rejects(
        coffer.write((tx) =>
          audit(tx).record({ actor, action: 'test.thing.create', domain: 'test', entity: 'thing', entityId: 'v', ...over } as never),
        ),
        (e: unknown) => e instanceof ValidationError && e.details.field === field,
        field,
      );
    }
    await assert.rejects(
      coffer.read((tx) => audit(tx).record({ actor, action: 'test.a.b', domain: 'test', entity: 'thing', entityId: 'ro' })),
      (e: unknown) => e instanceof CofferError && e.code === 'read_only',
    );
    assert.equal(await rowCount(coffer, 'audit_log'), before);
  });

  test('the database refuses UPDATE and DELETE on the audit log and the row history (append-only)', async () => {
    await coffer.write((tx) =>
      audit(tx).record({ actor, action: 'test.thing.create', domain: 'test', entity: 'thing', entityId: 'protected' }),
    );
    await coffer.write((tx) =>
      tx.insert('audit_row_history', {
        at: new Date(),
        table_name: 'x',
        row_key: '{"id":"1"}',
        op: 'insert',
        before_image: null,
        after_image: { id: '1' },
        actor_type: 'system',
        actor_id: 'test',
      }),
    );
    const attempts: [string, (c: Coffer) => Promise<unknown>][] = [
      [
        'update audit_log',
        (c) =>
          c.write((tx) =>
            tx.db
              .updateTable('audit_log')
              .set({ action: 'test.tampered.x' })
              .where('seq', '=', 1 as never)
              .execute(),
          ),
      ],
      ['update audit_log (all)', (c) => c.write((tx) => tx.db.updateTable('audit_log').set({ actor_id: 'mallory' }).execute())],
      [
        'delete audit_log',
        (c) =>
          c.write((tx) =>
            tx.db
              .deleteFrom('audit_log')
              .where('seq', '=', 1 as never)
              .execute(),
          ),
      ],
      ['delete audit_log (all)', (c) => c.write((tx) => tx.db.deleteFrom('audit_log').execute())],
      ['update audit_row_history', (c) => c.write((tx) => tx.db.updateTable('audit_row_history').set({ actor_id: 'mallory' }).execute())],
      ['delete audit_row_history', (c) => c.write((tx) => tx.db.deleteFrom('audit_row_history').execute())],
    ];
    if (coffer.dialect === 'postgres') {
      attempts.push(['truncate audit_log', (c) => c.write((tx) => sql`TRUNCATE audit_log`.execute(tx.db))]);
      attempts.push(['truncate audit_row_history', (c) => c.write((tx) => sql`TRUNCATE audit_row_history`.execute(tx.db))]);
    }
    const logBefore = await rowCount(coffer, 'audit_log');
    const histBefore = await rowCount(coffer, 'audit_row_history');
    for (const [what, attempt] of attempts) {
      await assert.rejects(attempt(coffer), (e: unknown) => e instanceof AppendOnlyViolationError && e.code === 'append_only', what);
    }
    assert.equal(await rowCount(coffer, 'audit_log'), logBefore);
    assert.equal(await rowCount(coffer, 'audit_row_history'), histBefore);
    const report = await verifyAuditLog(coffer);
    assert.equal(report.ok, true, report.firstBad?.message);
  });
});

forEachBackend('audit doctor check', (ctx) => {
  test('`coffer doctor` check: ok on an intact chain, an error naming the entry on a broken one', async () => {
    const coffer = await ctx.open();
    await coffer.write((tx) => audit(tx).record({ actor, action: 'test.thing.create', domain: 'test', entity: 'thing', entityId: 'd1' }));
    await coffer.write((tx) => audit(tx).record({ actor, action: 'test.thing.create', domain: 'test', entity: 'thing', entityId: 'd2' }));
    const run = () =>
      auditChainCheck.run({ coffer, dialect: coffer.dialect, now: new Date(), tables: new Set(coffer.schema.tables.keys()) });
    const ok = await run();
    assert.equal(ok[0]!.severity, 'ok');
    assert.match(ok[0]!.message, /2 entries/);
    await withTriggersOff(coffer, 'audit_log', async (tx) => {
      await tx.db
        .deleteFrom('audit_log')
        .where('seq', '=', tx.codec('audit_log').encode({ seq: 1n }).seq as never)
        .execute();
    });
    const bad = await run();
    assert.equal(bad[0]!.severity, 'error');
    assert.match(bad[0]!.message, /entry 1 \(deleted\)/);
    assert.ok(bad[0]!.remedy);
  });
});
