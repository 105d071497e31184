// inProcessConnection: memory://'s one native connection, for tools that must run on the same
// rows beside Coffer (the benchmarks' raw side). Every other backend has none: open the file or
// the server instead.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inProcessConnection } from '../src/db/engine.js';
import { chain } from '../src/domains/chain/store.js';
import { forEachBackend } from './harness.js';

forEachBackend('inProcessConnection', (ctx) => {
  test('is the connection Coffer writes through on memory://, and absent elsewhere', async () => {
    const coffer = await ctx.open();
    const native = inProcessConnection(coffer.engine);
    if (ctx.backend !== 'memory') {
      assert.equal(native, undefined);
      return;
    }
    assert.ok(native);
    await coffer.write((tx) => chain(tx).registerChain({ chainId: 'inproc', name: 'In process', network: 'main', confirmations: 1 }));
    // The row Coffer committed is visible on the native connection, and a row written there is
    // visible to Coffer: one database, not a copy.
    const row = native.prepare('SELECT name FROM chain_chains WHERE chain_id = ?').get('inproc') as { name: string } | undefined;
    assert.equal(row?.name, 'In process', "Coffer's committed row is on the native connection");
    native.prepare('UPDATE chain_chains SET name = ? WHERE chain_id = ?').run('Renamed', 'inproc');
    const seen = await coffer.read((tx) =>
      tx.db.selectFrom('chain_chains').select('name').where('chain_id', '=', 'inproc').executeTakeFirstOrThrow(),
    );
    assert.equal(seen.name, 'Renamed');
    await coffer.close();
    assert.equal(native.open, false, 'closing Coffer closes its connection');
  });
});
