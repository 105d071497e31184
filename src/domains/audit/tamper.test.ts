// One test per kind of tampering, on every backend: an attacker with DDL rights gets the
// triggers out of the way and edits, re-hashes, deletes, reorders, truncates or forges entries;
// `verifyAuditLog` names the exact first bad entry and says what happened to it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppendOnlyViolationError } from '../../db/errors.js';
import type { Coffer } from '../../db/store.js';
import type { Tx } from '../../db/tx.js';
import { forEachBackend } from '../../../test/harness.js';
import { AUDIT_HEAD, AUDIT_LOG, auditHead, decodeEntry, entryHash, entryRow, readEntries, type AuditEntry } from './log.js';
import { appendEntries, withTriggersOff } from './test-support.js';
import { verifyAuditLog, type VerifyReport } from './verify.js';

const N = 30;

const seqOf = (tx: Tx, seq: bigint) => tx.codec(AUDIT_LOG).encode({ seq }).seq as never;

async function entry(tx: Tx, seq: bigint): Promise<AuditEntry> {
  return decodeEntry(
    tx,
    (await tx.db.selectFrom(AUDIT_LOG).selectAll().where('seq', '=', seqOf(tx, seq)).executeTakeFirstOrThrow()) as Record<string, unknown>,
  );
}

function row(tx: Tx, e: AuditEntry): Record<string, unknown> {
  return tx.codec(AUDIT_LOG).encode(entryRow(e));
}

function assertBad(r: VerifyReport, seq: bigint, kind: string): void {
  assert.equal(r.ok, false, `expected tampering to be found (${kind} at ${seq})`);
  assert.equal(r.firstBad!.kind, kind, r.firstBad!.message);
  assert.equal(r.firstBad!.seq, seq, r.firstBad!.message);
  assert.equal(r.verified, seq - 1n);
}

forEachBackend('audit tampering', (ctx) => {
  async function fresh(): Promise<Coffer> {
    const coffer = await ctx.open();
    await appendEntries(coffer, N, { batch: 7 });
    const ok = await verifyAuditLog(coffer, { batchSize: 8 });
    assert.equal(ok.ok, true, ok.firstBad?.message);
    assert.equal(ok.verified, BigInt(N));
    return coffer;
  }

  test('an intact log verifies: length and head hash, paged', async () => {
    const coffer = await fresh();
    const head = await coffer.read((tx) => auditHead(tx));
    const r = await verifyAuditLog(coffer, { batchSize: 8 });
    assert.equal(r.ok, true);
    assert.equal(r.headSeq, BigInt(N));
    assert.equal(r.headHash, head.hash);
    assert.equal(r.pages, Math.ceil(N / 8));
    const anchored = await verifyAuditLog(coffer, { anchor: { seq: 12n, hash: (await coffer.read((tx) => entry(tx, 12n))).hash } });
    assert.equal(anchored.ok, true);
  });

  test('changed: an edited field is named at its entry', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      await tx.db.updateTable(AUDIT_LOG).set({ entity_id: 'nothing-happened-here' }).where('seq', '=', seqOf(tx, 12n)).execute();
    });
    assertBad(await verifyAuditLog(coffer, { batchSize: 8 }), 12n, 'changed');
    // The triggers are back: the database refuses the next edit again.
    await assert.rejects(
      coffer.write((tx) => tx.db.updateTable(AUDIT_LOG).set({ entity_id: 'again' }).where('seq', '=', seqOf(tx, 13n)).execute()),
      AppendOnlyViolationError,
    );
  });

  test('changed: an edited change document (JSON) is named at its entry', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      await tx.db
        .updateTable(AUDIT_LOG)
        .set(tx.codec(AUDIT_LOG).encode({ change_set: { details: { j: 7, note: 'entry 7 (edited)' } } }))
        .where('seq', '=', seqOf(tx, 8n))
        .execute();
    });
    assertBad(await verifyAuditLog(coffer, { batchSize: 8 }), 8n, 'changed');
  });

  test('rewritten: an edited entry whose hash was recomputed is named, not its successor', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      const e = await entry(tx, 9n);
      const edited = { ...e, actor: { type: 'system' as const, id: 'someone-else' } };
      const { hash: _old, ...body } = edited;
      await tx.db
        .updateTable(AUDIT_LOG)
        .set(row(tx, { ...edited, hash: entryHash(body) }))
        .where('seq', '=', seqOf(tx, 9n))
        .execute();
    });
    assertBad(await verifyAuditLog(coffer, { batchSize: 8 }), 9n, 'rewritten');
  });

  test('deleted: a removed entry is named', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      await tx.db.deleteFrom(AUDIT_LOG).where('seq', '=', seqOf(tx, 15n)).execute();
    });
    const r = await verifyAuditLog(coffer, { batchSize: 8 });
    assertBad(r, 15n, 'deleted');
    assert.match(r.firstBad!.message, /entry 15 is missing/);
  });

  test('deleted: a removed range is named from its first entry, at a page boundary too', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      await tx.db.deleteFrom(AUDIT_LOG).where('seq', '>=', seqOf(tx, 16n)).where('seq', '<=', seqOf(tx, 18n)).execute();
    });
    const r = await verifyAuditLog(coffer, { batchSize: 8 });
    assertBad(r, 16n, 'deleted');
    assert.match(r.firstBad!.message, /entries 16\.\.18 are missing/);
  });

  test('reordered: two swapped entries are named at the first of them', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      const tmp = seqOf(tx, 1_000_000n);
      await tx.db.updateTable(AUDIT_LOG).set({ seq: tmp }).where('seq', '=', seqOf(tx, 20n)).execute();
      await tx.db
        .updateTable(AUDIT_LOG)
        .set({ seq: seqOf(tx, 20n) })
        .where('seq', '=', seqOf(tx, 21n))
        .execute();
      await tx.db
        .updateTable(AUDIT_LOG)
        .set({ seq: seqOf(tx, 21n) })
        .where('seq', '=', tmp)
        .execute();
    });
    assertBad(await verifyAuditLog(coffer, { batchSize: 8 }), 20n, 'reordered');
  });

  test('truncated: entries cut from the end are named against the head', async () => {
    const coffer = await fresh();
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      await tx.db.deleteFrom(AUDIT_LOG).where('seq', '>', seqOf(tx, 27n)).execute();
    });
    const r = await verifyAuditLog(coffer, { batchSize: 8 });
    assertBad(r, 28n, 'truncated');
    assert.match(r.firstBad!.message, /entries 28\.\.30 were deleted/);
  });

  test('forged: a well-formed entry appended without the writer is named', async () => {
    const coffer = await fresh();
    await coffer.write(async (tx) => {
      const last = await entry(tx, BigInt(N));
      const body = { ...last, seq: BigInt(N + 1), entityId: 'forged', prevHash: last.hash, at: new Date() };
      const { hash: _h, ...rest } = body;
      await tx.db
        .insertInto(AUDIT_LOG)
        .values(row(tx, { ...rest, hash: entryHash(rest) }))
        .execute();
    });
    assertBad(await verifyAuditLog(coffer, { batchSize: 8 }), BigInt(N + 1), 'forged');
  });

  test('a consistently re-hashed tail is caught by the head, and with the head moved too, by an anchor', async () => {
    const coffer = await fresh();
    const anchor = await coffer.read((tx) => entry(tx, 27n));
    // Rewrite 25..30, re-hashing every entry and relinking the chain.
    await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
      let prev = (await entry(tx, 24n)).hash;
      for (let s = 25n; s <= BigInt(N); s++) {
        const e = await entry(tx, s);
        const { hash: _h, ...body } = { ...e, entityId: `${e.entityId}-rewritten`, prevHash: prev };
        const hash = entryHash(body);
        await tx.db
          .updateTable(AUDIT_LOG)
          .set(row(tx, { ...body, hash }))
          .where('seq', '=', seqOf(tx, s))
          .execute();
        prev = hash;
      }
    });
    assertBad(await verifyAuditLog(coffer, { batchSize: 8 }), BigInt(N), 'head_mismatch');
    // An attacker who also moves the head gets past the database's own head...
    await coffer.write(async (tx) => {
      const last = await entry(tx, BigInt(N));
      await tx.db.updateTable(AUDIT_HEAD).set({ hash: last.hash }).where('id', '=', 1).execute();
    });
    assert.equal((await verifyAuditLog(coffer, { batchSize: 8 })).ok, true);
    // ...but not past a head anchored outside the database earlier.
    assertBad(await verifyAuditLog(coffer, { batchSize: 8, anchor: { seq: 27n, hash: anchor.hash } }), 27n, 'anchor_mismatch');
  });

  test('the verifier pages by seq: memory is bounded by the page size', async () => {
    const coffer = await fresh();
    const pages: number[] = [];
    const r = await verifyAuditLog(coffer, { batchSize: 4, onPage: (p) => pages.push(p.rows) });
    assert.equal(r.ok, true);
    assert.ok(pages.every((n) => n <= 4));
    assert.equal(
      pages.reduce((a, b) => a + b, 0),
      N,
    );
    const all = await coffer.read((tx) => readEntries(tx, { limit: 1000 }));
    assert.equal(all.length, N);
  });
});
