// Domain hooks of the operator commands on every backend: `coffer doctor`'s chain-cursor and
// audit-chain checks pass on a healthy database and name the damage on a broken one; `coffer
// trim` finds and removes unconfirmed token rows past their age, a dry run first.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { sql } from 'kysely';
import type { Coffer } from '../../db/store.js';
import { runDoctor } from '../../ops/doctor.js';
import { runTrim } from '../../ops/trim.js';
import { forEachBackend } from '../../../test/harness.js';
import { testService, type TestService } from '../../../test/service-support.js';
import { mintInput } from '../tokens/testkit.js';
import { tokens } from '../tokens/store.js';

const hex = (n: number) => n.toString(16).padStart(64, '0');

forEachBackend('domain doctor checks and retention rules', (ctx) => {
  let coffer: Coffer;
  let svc: TestService;
  before(async () => {
    coffer = await ctx.open();
    svc = await testService(coffer);
    const key = await svc.key(['*:admin']);
    assert.equal(
      (await svc.call('POST', '/v1/chains', key, { chainId: 'doge', name: 'Doge', network: 'main', confirmations: 2 })).statusCode,
      201,
    );
    for (let h = 0; h < 3; h++) {
      const r = await svc.call('POST', '/v1/chains/doge/blocks', key, {
        height: String(h),
        hash: hex(h + 1),
        parentHash: h === 0 ? '0'.repeat(64) : hex(h),
        time: new Date(Date.UTC(2026, 0, 1, 0, h)).toISOString(),
        transactions: [{ txHash: hex(100 + h), indexInBlock: 0, outputs: [{ address: 'DA', value: '1' }] }],
      });
      assert.equal(r.statusCode, 200, r.body);
    }
  });

  test('doctor: chain cursor and audit chain pass, then name a broken cursor and a changed entry', async () => {
    const ok = await runDoctor(coffer, { only: ['chain.cursor', 'audit.chain'] });
    assert.equal(ok.ok, true, JSON.stringify(ok.findings));
    assert.ok(ok.findings.some((f) => f.message.includes('cursor at 2')));
    assert.ok(ok.findings.some((f) => /audit chain verified: \d+ entries/.test(f.message)));
    await coffer.write((tx) =>
      tx.db
        .updateTable('chain_cursors')
        .set({ block_hash: hex(999) })
        .where('chain_id', '=', 'doge')
        .execute(),
    );
    const broken = await runDoctor(coffer, { only: ['chain.cursor'] });
    assert.equal(broken.ok, false);
    assert.ok(broken.findings.some((f) => f.severity === 'error' && f.message.includes('has no matching stored block')));
    await coffer.write((tx) =>
      tx.db
        .updateTable('chain_cursors')
        .set({ block_hash: hex(3) })
        .where('chain_id', '=', 'doge')
        .execute(),
    );
    // Tampering needs the append-only trigger out of the way, as an attacker with DDL rights would.
    if (coffer.dialect !== 'mysql') {
      if (coffer.dialect === 'postgres') await sql.raw('ALTER TABLE audit_log DISABLE TRIGGER USER').execute(coffer.engine.writer);
      else
        await sql
          .raw(
            `DROP TRIGGER IF EXISTS ${(await sql<{ name: string }>`select name from sqlite_schema where type = 'trigger' and tbl_name = 'audit_log' and sql like '%UPDATE%'`.execute(coffer.engine.writer)).rows[0]!.name}`,
          )
          .execute(coffer.engine.writer);
      await sql`update audit_log set action = 'chain.block.forged' where seq = 2`.execute(coffer.engine.writer);
      const tampered = await runDoctor(coffer, { only: ['audit.chain'] });
      assert.equal(tampered.ok, false);
      assert.ok(
        tampered.findings.some((f) => f.severity === 'error' && /audit chain broken at entry 2/.test(f.message)),
        JSON.stringify(tampered.findings),
      );
    }
  });

  test('trim: old unconfirmed mints are counted by the dry run and removed by --apply', async () => {
    const old = new Date(Date.now() - 10 * 86_400_000);
    await coffer.write((tx) => tokens(tx, { clock: () => old }).submitMint(mintInput({ chainId: 'doge' })));
    await coffer.write((tx) => tokens(tx).submitMint(mintInput({ chainId: 'doge' })));
    const dry = await runTrim(coffer, { only: ['tokens.unconfirmed_mints'] });
    const rule = dry.rules.find((r) => r.rule === 'tokens.unconfirmed_mints')!;
    assert.deepEqual(
      rule.due.map((d) => d.rows),
      ['1'],
    );
    assert.equal(rule.removed, null);
    const applied = await runTrim(coffer, { apply: true, only: ['tokens.unconfirmed_mints'] });
    assert.equal(applied.rules.find((r) => r.rule === 'tokens.unconfirmed_mints')!.removed, 1);
    const left = await coffer.read((tx) => tx.db.selectFrom('token_unconfirmed_mints').select('hash').execute());
    assert.equal(left.length, 1, 'the fresh mint stays');
  });
});
