// Per-chain databases: the router opens one migrated Coffer per distinct database of
// config.database.chains, routes each chain to it (others to the default), keeps chains apart,
// and the status listing reports every per-chain database.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigSchema, type CofferConfig } from '../../config/config.js';
import { CofferError, ValidationError } from '../../db/errors.js';
import { parseDatabaseUrl, withDatabase } from '../../db/url.js';
import { MIGRATIONS } from '../registry.js';
import { forEachBackend } from '../../../test/harness.js';
import { chainDatabaseStatus, ChainRouter, databaseKey } from './router.js';
import { chain } from './store.js';
import { hashOf, makeBlock, ZERO_HASH } from './test-support.js';

const configOf = (url: string, chains: Record<string, string>): CofferConfig =>
  ConfigSchema.parse({ database: { url, chains }, log: { level: 'silent' } });

test('databaseKey treats spellings of one database as one', () => {
  const key = (u: string) => databaseKey(parseDatabaseUrl(u));
  assert.equal(key('sqlite:./data/x.db'), key(`sqlite://${join(process.cwd(), 'data/x.db')}`));
  assert.equal(key('sqlite:./data/x.db'), key('sqlite:data/x.db'));
  assert.notEqual(key('sqlite:./data/x.db'), key('sqlite:./data/y.db'));
  assert.equal(key('postgres://u:secret@DB.example:5432/a?sslmode=require'), key('postgresql://u@db.example/a'));
  assert.notEqual(key('postgres://u@h/a'), key('postgres://u@h/b'));
  assert.equal(key('mysql://root@h:3306/x'), key('mariadb://root:pw@h/x'));
  assert.equal(key('memory://'), key('sqlite::memory:'));
});

forEachBackend(
  'chain router',
  (ctx) => {
    test('routes each chain to its database, migrates every one, and keeps chains apart', async () => {
      const def = await ctx.newDatabase();
      const db1 = await ctx.newDatabase();
      const db2 = await ctx.newDatabase();
      const chains: Record<string, string> = { 'ait-mainnet': db1.url, 'ait-testnet': db2.url, 'ait-devnet': db2.url };
      // A second spelling of db1's URL must not open a second pool on the same database.
      if (ctx.backend === 'sqlite') chains['ait-alias'] = `sqlite://${(parseDatabaseUrl(db1.url) as { path: string }).path}`;
      else chains['ait-alias'] = db1.url.replace(/^postgres:/, 'postgresql:').replace(/^mysql:/, 'mariadb:');
      const router = await ChainRouter.open(configOf(def.url, chains), { migrations: MIGRATIONS });
      try {
        const dbs = router.databases();
        assert.equal(dbs.length, 3);
        assert.equal(dbs[0]!.isDefault, true);
        assert.deepEqual(
          dbs.slice(1).map((d) => d.chains.sort()),
          [
            ['ait-alias', 'ait-mainnet'],
            ['ait-devnet', 'ait-testnet'],
          ],
        );
        for (const d of dbs) {
          const states = await d.coffer.migrator.status();
          assert.ok(
            states.length === MIGRATIONS.length && states.every((s) => s.state === 'applied'),
            `${d.url}: ${states.map((s) => s.state).join(',')}`,
          );
        }
        assert.equal(router.for('ait-mainnet'), router.for('ait-alias'));
        assert.equal(router.for('ait-devnet'), router.for('ait-testnet'));
        assert.equal(router.for('other-chain'), router.default);
        assert.notEqual(router.for('ait-mainnet'), router.default);
        assert.throws(
          () => router.for('bad id!'),
          (e: unknown) => e instanceof ValidationError && e.details.field === 'chainId',
        );

        for (const id of ['ait-mainnet', 'ait-testnet', 'other-chain']) {
          await router.write(id, (tx) => chain(tx).registerChain({ chainId: id, name: id, network: 'main', confirmations: 6 }), {
            op: 'chain.registerChain',
          });
          await router.write(id, (tx) => chain(tx).ingestBlock(makeBlock(id, 0n, ZERO_HASH, [{ hash: hashOf(id, 'genesis-tx') }])), {
            op: 'chain.ingestBlock',
          });
        }
        const where = async (id: string) => {
          const found: number[] = [];
          for (const [i, d] of dbs.entries()) if (await d.coffer.read((tx) => chain(tx).getChain(id))) found.push(i);
          return found;
        };
        assert.deepEqual(await where('ait-mainnet'), [1]);
        assert.deepEqual(await where('ait-testnet'), [2]);
        assert.deepEqual(await where('other-chain'), [0]);
        assert.equal((await router.read('ait-testnet', (tx) => chain(tx).getCursor('ait-testnet'))).height, 0n);

        const status = await chainDatabaseStatus(configOf(def.url, chains), { migrations: MIGRATIONS });
        assert.equal(status.length, 2);
        const main = status.find((s) => s.chains.some((c) => c.chainId === 'ait-mainnet'))!;
        assert.deepEqual(main.migrations, { applied: MIGRATIONS.length, pending: [], problems: [] });
        assert.deepEqual(
          main.chains.sort((a, b) => (a.chainId < b.chainId ? -1 : 1)),
          [
            { chainId: 'ait-alias', registered: false, height: null, finalizedHeight: null, lag: null },
            { chainId: 'ait-mainnet', registered: true, height: '0', finalizedHeight: null, lag: null },
          ],
        );
      } finally {
        await router.close();
      }
      await assert.rejects(
        router.for('ait-mainnet').read(async () => 1),
        (e: unknown) => e instanceof CofferError && e.code === 'connection',
      );
    });

    test('status reports a per-chain database that is not migrated or not reachable, without failing', async () => {
      const def = await ctx.newDatabase();
      const fresh = await ctx.newDatabase();
      const missing = ctx.backend === 'sqlite' ? 'sqlite:/dev/null/nope/chain.db' : withDatabase(fresh.url, 'coffer_no_such_database_x');
      const status = await chainDatabaseStatus(configOf(def.url, { fresh: fresh.url, gone: missing }), { migrations: MIGRATIONS });
      const f = status.find((s) => s.chains[0]!.chainId === 'fresh')!;
      assert.equal(f.migrations!.applied, 0);
      assert.equal(f.migrations!.pending.length, MIGRATIONS.length);
      assert.deepEqual(f.chains, [{ chainId: 'fresh', registered: false, height: null, finalizedHeight: null, lag: null }]);
      const g = status.find((s) => s.chains[0]!.chainId === 'gone')!;
      assert.equal(g.migrations, null);
      assert.ok(g.error && g.error.length > 0);
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);

test('a router whose per-chain database cannot be opened fails with a typed error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-router-'));
  try {
    const config = configOf(`sqlite:${join(dir, 'default.db')}`, {
      ok: `sqlite:${join(dir, 'ok.db')}`,
      bad: 'sqlite:/dev/null/x/chain.db',
    });
    await assert.rejects(ChainRouter.open(config, { migrations: MIGRATIONS }), (e: unknown) => e instanceof CofferError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('`coffer status` lists the per-chain databases', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-status-'));
  try {
    const file = join(dir, 'coffer.config.json');
    const env = { ...process.env, COFFER_DATABASE_URL: '', DATABASE_URL: '' };
    writeFileSync(
      file,
      JSON.stringify({
        database: { url: `sqlite:${join(dir, 'main.db')}`, chains: { 'ait-mainnet': `sqlite:${join(dir, 'ait-mainnet', 'chain.db')}` } },
      }),
    );
    const r = spawnSync(process.execPath, ['bin/coffer.js', 'status', '--json', '--config', file], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      chainDatabases: { url: string; chains: { chainId: string }[]; migrations: { pending: string[] } | null }[];
    };
    assert.equal(report.chainDatabases.length, 1);
    assert.equal(report.chainDatabases[0]!.chains[0]!.chainId, 'ait-mainnet');
    assert.ok(report.chainDatabases[0]!.url.endsWith(join('ait-mainnet', 'chain.db')));
    assert.ok(report.chainDatabases[0]!.migrations !== null);
    const text = spawnSync(process.execPath, ['bin/coffer.js', 'status', '--config', file], { encoding: 'utf8', env });
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /chain databases/);
    assert.match(text.stdout, /ait-mainnet/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
