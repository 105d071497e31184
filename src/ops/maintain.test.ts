// maintain, stats/sizes, doctor and trim on every backend: every maintenance step reported,
// sizes largest first, doctor finding what is wrong (a broken domain invariant, orphaned rows,
// an incomplete copy, long transactions and lock waits) with a remedy, and retention rules
// removing only what they may, in bounded batches.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { sql } from 'kysely';
import { insertRows } from '../db/bulk.js';
import { toBigInt } from '../db/codec.js';
import { ConfigError } from '../db/errors.js';
import type { Coffer } from '../db/store.js';
import { MIGRATIONS } from '../domains/registry.js';
import { fixtureDoctorCheck, OPS_MIGRATIONS, appendBlock, appendLink } from '../../test/fixtures/ops-fixture.js';
import { tameValue } from '../../test/fixtures/fill.js';
import { forEachBackend } from '../../test/harness.js';
import { opsDb } from './db.js';
import { runDoctor } from './doctor.js';
import type { DoctorCheck, RetentionRule } from './hooks.js';
import { maintainDatabase } from './maintain.js';
import { createMarker, dropMarker } from './marker.js';
import { undoJournalRule } from './retention-undo.js';
import { collectStats, objectSizes } from './sizes.js';
import { runTrim } from './trim.js';

type Row = Record<string, unknown>;

/** A row for `table` with the given values and plain values for every other required column. */
function rowFor(coffer: Coffer, table: string, values: Row, i = 0): Row {
  const def = coffer.schema.tables.get(table)!;
  const row: Row = {};
  def.columns.forEach((c, position) => {
    if (c.name in values) row[c.name] = values[c.name];
    else if (!c.nullable && !c.default && c.type.kind !== 'serial') row[c.name] = tameValue(c, i, position);
  });
  return row;
}

/** Inserts an fx_entries row whose account does not exist, with foreign-key enforcement off for the moment. */
async function insertOrphan(coffer: Coffer): Promise<void> {
  const d = coffer.dialect;
  await coffer.engine.writer.connection().execute(async (conn) => {
    const off =
      d === 'sqlite'
        ? 'PRAGMA foreign_keys = OFF'
        : d === 'mysql'
          ? 'SET FOREIGN_KEY_CHECKS = 0'
          : 'ALTER TABLE "fx_entries" DISABLE TRIGGER ALL';
    const on =
      d === 'sqlite'
        ? 'PRAGMA foreign_keys = ON'
        : d === 'mysql'
          ? 'SET FOREIGN_KEY_CHECKS = 1'
          : 'ALTER TABLE "fx_entries" ENABLE TRIGGER ALL';
    await sql.raw(off).execute(conn);
    try {
      await conn.insertInto('fx_entries').values({ account_id: 424242, seq: 1, amount: 5 }).execute();
    } finally {
      await sql.raw(on).execute(conn);
    }
  });
}

forEachBackend('ops maintenance', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open({ migrations: OPS_MIGRATIONS });
    for (let i = 0; i < 40; i++) {
      await coffer.write((tx) =>
        tx.insert('fx_accounts', {
          name: `acct-${i}`,
          hash: i.toString(16).padStart(64, '0'),
          created_at: new Date(),
          payload: Buffer.alloc(2000, i),
          note: 'x'.repeat(500),
        }),
      );
    }
    for (let i = 0; i < 3; i++) {
      await appendLink(coffer);
      await appendBlock(coffer);
    }
  });

  test('maintain runs and reports every step for this backend', async () => {
    const seen: string[] = [];
    const r = await maintainDatabase(coffer, { onStep: (s) => seen.push(`${s.step} ${s.target}`) });
    assert.equal(r.ok, true, JSON.stringify(r.steps.filter((s) => !s.ok)));
    assert.deepEqual(
      seen,
      r.steps.map((s) => `${s.step} ${s.target}`),
      'each step is reported as it completes',
    );
    const steps = new Set(r.steps.map((s) => s.step));
    if (coffer.dialect === 'postgres') assert.deepEqual([...steps], ['VACUUM (ANALYZE)', 'REINDEX TABLE CONCURRENTLY']);
    else if (coffer.dialect === 'mysql') assert.deepEqual([...steps], ['ANALYZE TABLE', 'OPTIMIZE TABLE']);
    else
      assert.deepEqual(
        [...steps],
        ctx.backend === 'memory' ? ['PRAGMA optimize', 'VACUUM'] : ['PRAGMA optimize', 'VACUUM', 'PRAGMA wal_checkpoint(TRUNCATE)'],
      );
    if (coffer.dialect !== 'sqlite')
      assert.ok(
        r.steps.some((s) => s.target === 'fx_accounts'),
        'every Coffer table is maintained',
      );
    assert.ok(r.bytesBefore !== null && r.bytesAfter !== null && r.bytesAfter > 0);
  });

  test('stats and sizes: exact rows, every index, largest first', async () => {
    const stats = await collectStats(coffer);
    const accounts = stats.tables.find((t) => t.table === 'fx_accounts')!;
    assert.equal(accounts.rows, 40);
    assert.equal(accounts.rowsEstimated, false);
    // Secondary indexes by name; PostgreSQL also lists the primary key's own index.
    assert.deepEqual(
      accounts.indexes
        .map((i) => i.name)
        .filter((n) => !n.endsWith('_pkey'))
        .sort(),
      ['ix_fx_accounts_status', 'uq_fx_accounts_hash', 'uq_fx_accounts_name'],
    );
    assert.ok(stats.tables.some((t) => t.table === 'fxo_blocks' && t.rows === 3));
    assert.ok(stats.totalBytes !== null && stats.totalBytes > 0);
    for (let i = 1; i < stats.tables.length; i++)
      assert.ok((stats.tables[i - 1]!.totalBytes ?? -1) >= (stats.tables[i]!.totalBytes ?? -1), 'largest first');
    if (coffer.dialect !== 'mysql') assert.equal(stats.tables[0]!.table, 'fx_accounts', 'the table with the payloads is the largest');
    const objs = objectSizes(stats);
    assert.ok(objs.some((o) => o.kind === 'index' && o.name === 'uq_fx_accounts_name' && o.table === 'fx_accounts'));
    for (let i = 1; i < objs.length; i++) assert.ok((objs[i - 1]!.bytes ?? -1) >= (objs[i]!.bytes ?? -1));
    const est = await collectStats(coffer, { estimate: true });
    assert.equal(est.tables.find((t) => t.table === 'fx_accounts')!.rowsEstimated, coffer.dialect !== 'sqlite');
  });

  test('doctor: healthy, then a broken invariant, an orphaned row and an incomplete marker, each with a remedy', async () => {
    const checks: DoctorCheck[] = [
      fixtureDoctorCheck,
      {
        name: 'later.check',
        domain: 'later',
        describe: 'needs a table that does not exist yet',
        requires: ['later_things'],
        run: async () => [{ severity: 'error', message: 'must not run' }],
      },
    ];
    const healthy = await runDoctor(coffer, { checks, longQuerySeconds: 3600 });
    assert.equal(healthy.ok, true, JSON.stringify(healthy.findings.filter((f) => f.severity === 'error' || f.severity === 'warning')));
    assert.ok(healthy.findings.some((f) => f.check === 'fixture_ops.chain' && f.severity === 'ok'));
    assert.ok(
      healthy.findings.some((f) => f.check === 'later.check' && f.severity === 'info' && /skipped: needs later_things/.test(f.message)),
    );
    assert.ok(healthy.findings.some((f) => f.check === 'schema' && f.severity === 'ok'));
    assert.ok(healthy.findings.some((f) => f.check === 'integrity' && f.severity === 'ok'));
    await assert.rejects(
      runDoctor(coffer, { only: ['nonsense'] }),
      (e: unknown) => e instanceof ConfigError && /unknown check nonsense \(known: migrations, incomplete, schema/.test(e.message),
    );

    await coffer.write((tx) =>
      tx.db
        .updateTable('fxo_cursor')
        .set(tx.codec('fxo_cursor').encode({ height: 99n }))
        .where('id', '=', 1)
        .execute(),
    );
    await insertOrphan(coffer);
    await createMarker(opsDb(coffer), {
      operation: 'copy',
      source: 'sqlite:/elsewhere.db',
      sourceId: 'x',
      startedAt: '2026-01-01T00:00:00.000Z',
    });
    try {
      const sick = await runDoctor(coffer, { checks, longQuerySeconds: 3600 });
      assert.equal(sick.ok, false);
      const errors = sick.findings.filter((f) => f.severity === 'error');
      for (const f of errors) assert.ok(f.remedy && f.remedy.length > 10, `${f.check} says what to do`);
      assert.ok(errors.some((f) => f.check === 'fixture_ops.chain' && /cursor is at height 99 but the highest block is 2/.test(f.message)));
      assert.ok(
        errors.some((f) => f.check === 'foreign-keys' && /1 row\(s\) of fx_entries reference missing fx_accounts rows/.test(f.message)),
      );
      assert.ok(errors.some((f) => f.check === 'incomplete' && /incomplete copy from sqlite:\/elsewhere\.db/.test(f.message)));
      // The marker table is not reported as a schema difference.
      assert.ok(!sick.findings.some((f) => f.check === 'schema' && f.severity !== 'ok'));
    } finally {
      await dropMarker(coffer.engine.writer, coffer.dialect);
      await coffer.write((tx) =>
        tx.db
          .updateTable('fxo_cursor')
          .set(tx.codec('fxo_cursor').encode({ height: 2n }))
          .where('id', '=', 1)
          .execute(),
      );
      await coffer.write((tx) => tx.db.deleteFrom('fx_entries').where('account_id', '=', 424242).execute());
    }
  });

  test('doctor upkeep: a table changed by thousands of rows since its last ANALYZE is flagged until coffer maintain', async () => {
    const upkeep = async () => (await runDoctor(coffer, { only: ['upkeep'] })).findings;
    if (ctx.backend !== 'postgres') {
      const f = await upkeep();
      assert.ok(f.length > 0 && f.every((x) => x.severity === 'ok' || x.severity === 'info'), JSON.stringify(f));
      return;
    }
    const rows = Array.from({ length: 1500 }, (_, i) => ({ name: `upkeep-${i}`, value: BigInt(i) }));
    await coffer.write((tx) => insertRows(tx, 'fx_counters', rows));
    try {
      // The server publishes table statistics within seconds of the commit, not at once.
      let flagged: Awaited<ReturnType<typeof upkeep>> = [];
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
        flagged = (await upkeep()).filter((x) => x.severity === 'warning');
        if (flagged.length) break;
      }
      const w = flagged.find((x) => x.message.startsWith('fx_counters: '));
      assert.ok(w, `fx_counters is flagged: ${JSON.stringify(flagged)}`);
      assert.match(w.message, /\d+ rows changed since (its last ANALYZE|it was created, never analyzed)/);
      assert.match(w.remedy ?? '', /coffer maintain/);
      assert.equal((await runDoctor(coffer, { only: ['upkeep'] })).ok, false);
      const m = await maintainDatabase(coffer);
      assert.ok(
        m.steps.every((x) => x.ok),
        JSON.stringify(m.steps.filter((x) => !x.ok)),
      );
      const after = await upkeep();
      assert.ok(!after.some((x) => x.severity === 'warning'), JSON.stringify(after));
      assert.ok(after.some((x) => x.severity === 'ok'));
    } finally {
      await coffer.write((tx) => tx.db.deleteFrom('fx_counters').where('name', 'like', 'upkeep-%').execute());
      await maintainDatabase(coffer);
    }
  });

  if (ctx.backend === 'postgres' || ctx.backend === 'mysql') {
    test('doctor reports a transaction left open and a session waiting for its lock', async () => {
      await coffer.write((tx) => tx.insert('fx_counters', { name: 'contended', value: 0n }));
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      const holder = coffer.write(async (tx) => {
        await tx.db.updateTable('fx_counters').set({ value: 1 }).where('name', '=', 'contended').execute();
        locked();
        await held;
      });
      await isLocked;
      const waiter = coffer.write((tx) => tx.db.updateTable('fx_counters').set({ value: 2 }).where('name', '=', 'contended').execute());
      await new Promise((r) => setTimeout(r, 1200));
      try {
        const r = await runDoctor(coffer, { only: ['queries', 'locks'], longQuerySeconds: 1 });
        const locks = r.findings.filter((f) => f.check === 'locks' && f.severity === 'warning');
        assert.ok(locks.length >= 1, JSON.stringify(r.findings));
        assert.match(locks[0]!.message, /has waited \d+ s for a .*lock held by (session|connection)/);
        assert.match(locks[0]!.remedy!, /pg_terminate_backend|KILL/);
        const queries = r.findings.filter((f) => f.check === 'queries' && f.severity === 'warning');
        assert.ok(
          queries.some((f) => /transaction open/.test(f.message)),
          JSON.stringify(queries),
        );
        assert.equal(r.ok, false);
      } finally {
        release();
        await holder;
        await waiter;
      }
      // InnoDB's lock-wait tables are refreshed at most every 0.1 s.
      await new Promise((r) => setTimeout(r, 300));
      const calm = await runDoctor(coffer, { only: ['queries', 'locks'], longQuerySeconds: 60 });
      assert.equal(calm.ok, true, JSON.stringify(calm.findings));
    });
  }

  test('trim: the undo-journal rule removes only finalized entries, in bounded batches; a dry run changes nothing', async () => {
    const chainId = `btc-${ctx.backend}`;
    await coffer.write(async (tx) => {
      await tx.insert('chain_chains', rowFor(coffer, 'chain_chains', { chain_id: chainId }));
      await tx.insert(
        'chain_cursors',
        rowFor(coffer, 'chain_cursors', { chain_id: chainId, height: 20n, block_hash: 'b'.repeat(64), finalized_height: 10n }),
      );
      for (let h = 0; h <= 20; h++) {
        await tx.insert('chain_undo', {
          chain_id: chainId,
          height: BigInt(h),
          block_hash: h.toString(16).padStart(64, '0'),
          table_name: 'fx_counters',
          row_key: { name: `k${h}` },
          before_image: null,
        });
      }
    });
    const undoCount = () =>
      coffer.read(async (tx) =>
        toBigInt(
          (
            (await tx.db
              .selectFrom('chain_undo')
              .select((eb) => eb.fn.countAll().as('n'))
              .where('chain_id', '=', chainId)
              .executeTakeFirstOrThrow()) as { n: unknown }
          ).n,
        ),
      );
    const dry = await runTrim(coffer, { rules: [undoJournalRule] });
    assert.equal(dry.applied, false);
    assert.deepEqual(
      dry.rules[0]!.due.filter((d) => d.detail?.includes(chainId)).map((d) => d.rows),
      ['11'],
    );
    assert.equal(await undoCount(), 21n, 'a dry run deletes nothing');
    let calls = 0;
    const counted: RetentionRule = { ...undoJournalRule, apply: (tx, o) => (calls++, undoJournalRule.apply(tx, o)) };
    const applied = await runTrim(coffer, { rules: [counted], apply: true, settings: { 'chain.undo.blocksPerBatch': '3' } });
    assert.equal(applied.rules[0]!.removed, 11);
    assert.ok(calls >= 5, `removed in batches (${calls} transactions)`);
    assert.equal(await undoCount(), 10n);
    const left = await coffer.read((tx) =>
      tx.db.selectFrom('chain_undo').select('height').where('chain_id', '=', chainId).orderBy('height').executeTakeFirstOrThrow(),
    );
    assert.equal(toBigInt(left.height), 11n, 'entries above the finalized height stay (they may still be reorged)');
    const again = await runTrim(coffer, { rules: [undoJournalRule] });
    assert.equal(again.rules[0]!.due.filter((d) => d.detail?.includes(chainId)).length, 0);
  });

  test('trim skips a rule whose tables do not exist yet, and refuses unknown rules and settings', async () => {
    const bare = await ctx.open({ migrations: MIGRATIONS.filter((m) => m.domain === 'core') });
    const r = await runTrim(bare);
    const undo = r.rules.find((x) => x.rule === 'chain.undo_finalized')!;
    assert.match(undo.skipped!, /needs chain_undo, chain_cursors\.chain_id, chain_cursors\.finalized_height/);
    await assert.rejects(runTrim(bare, { only: ['nope'] }), /unknown retention rule nope/);
    await assert.rejects(
      runTrim(bare, { settings: { 'chain.undo.blocksPerBach': '2' } }),
      /unknown retention setting chain\.undo\.blocksPerBach/,
    );
  });
});
