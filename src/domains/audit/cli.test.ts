// `coffer audit verify` and `coffer audit head` against real databases: the verified length and
// head on success, the first bad entry and a non-zero exit on tampering, and --anchor.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { forEachBackend } from '../../../test/harness.js';
import { AUDIT_LOG } from './log.js';
import { appendEntries, runCli, withTriggersOff } from './test-support.js';

forEachBackend(
  'cli: audit',
  (ctx) => {
    let coffer: Coffer;
    let url: string;
    before(async () => {
      coffer = await ctx.open();
      url = coffer.target.url;
      await appendEntries(coffer, 25, { batch: 10 });
    });

    test('head prints SEQ:HASH; verify reports the length and that head; --anchor is checked', async () => {
      const head = await runCli(['audit', 'head', '--db', url]);
      assert.equal(head.code, 0, head.stderr);
      const m = /^25:([0-9a-f]{64})\n$/.exec(head.stdout);
      assert.ok(m, head.stdout);
      const v = await runCli(['audit', 'verify', '--db', url, '--batch', '7']);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout, `audit log verified: 25 entries, head 25:${m[1]}\n`);
      const anchored = await runCli(['audit', 'verify', '--db', url, '--anchor', `25:${m[1]}`, '--json']);
      assert.equal(anchored.code, 0, anchored.stderr);
      assert.equal((JSON.parse(anchored.stdout) as { ok: boolean }).ok, true);
      const wrong = await runCli(['audit', 'verify', '--db', url, '--anchor', `25:${'0'.repeat(64)}`]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stdout, /BROKEN at entry 25 \(anchor_mismatch\)/);
      const bad = await runCli(['audit', 'verify', '--db', url, '--anchor', 'nonsense']);
      assert.equal(bad.code, 2);
    });

    test('verify names the first bad entry and exits 1', async () => {
      await withTriggersOff(coffer, AUDIT_LOG, async (tx) => {
        await tx.db
          .updateTable(AUDIT_LOG)
          .set({ actor_id: 'mallory' })
          .where('seq', '=', tx.codec(AUDIT_LOG).encode({ seq: 11n }).seq as never)
          .execute();
      });
      const v = await runCli(['audit', 'verify', '--db', url, '--batch', '4']);
      assert.equal(v.code, 1);
      assert.match(
        v.stdout,
        /^audit log BROKEN at entry 11 \(changed\): entry 11 was changed: its content does not match its hash; 10 entries verified before it\n$/,
      );
      assert.match(v.stderr, /verification failed at entry 11/);
      const j = await runCli(['audit', 'verify', '--db', url, '--json']);
      const report = JSON.parse(j.stdout) as { ok: boolean; firstBad: { seq: string; kind: string } };
      assert.deepEqual([report.ok, report.firstBad.seq, report.firstBad.kind], [false, '11', 'changed']);
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
