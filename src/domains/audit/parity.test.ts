// The identity and audit tables exist on every backend exactly as the logical schema says:
// columns, keys, indexes, named CHECKs and the declared append-only triggers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffFacts, expectedFacts } from '../../schema/compile.js';
import { introspect } from '../../schema/introspect.js';
import { forEachBackend } from '../../../test/harness.js';

const mine = (t: string) => t.startsWith('identity_') || t.startsWith('audit_');

forEachBackend('identity and audit schema parity', (ctx) => {
  test('live schema matches the logical schema, triggers included', async () => {
    const coffer = await ctx.open();
    const live = await coffer.read((tx) => introspect(tx.db, tx.dialect));
    const expected = expectedFacts(coffer.dialect, coffer.schema);
    const pick = (f: typeof live) => Object.fromEntries(Object.entries(f).filter(([t]) => mine(t)));
    assert.deepEqual(diffFacts(pick(expected), pick(live)), []);
    assert.deepEqual(live.audit_log!.triggers, ['trg_audit_log_no_delete', 'trg_audit_log_no_update']);
    assert.deepEqual(live.audit_row_history!.triggers, ['trg_audit_row_history_no_delete', 'trg_audit_row_history_no_update']);
    assert.equal(Object.keys(pick(expected)).length, 12);
  });
});
