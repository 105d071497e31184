// Row history cannot drift, on every backend:
// - every table of the logical schema is classified in policy.ts (a new table without a line
//   fails here), and the policy names only real tables and columns;
// - for every mutable table, an insert, an update and a delete through rowHistory each leave a
//   history record with the actor and the whole row (every column the schema has), secrets
//   redacted;
// - the identity stores write mutable tables only through rowHistory: run against a spy that
//   counts the rows every INSERT/UPDATE/DELETE statement changed, every committed change to a
//   mutable table has exactly one history record.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { before, describe, test } from 'node:test';
import {
  AliasNode,
  DeleteQueryNode,
  InsertQueryNode,
  TableNode,
  UpdateQueryNode,
  type KyselyPlugin,
  type OperationNode,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import { toBigInt } from '../../db/codec.js';
import type { Coffer } from '../../db/store.js';
import { Tx } from '../../db/tx.js';
import { defineMigration } from '../../migrations/migration.js';
import { logicalSchema } from '../../migrations/runner.js';
import { addColumn, c } from '../../schema/builder.js';
import type { ColumnDef } from '../../schema/model.js';
import { Keyring } from '../../secrets/envelope.js';
import { forEachBackend } from '../../../test/harness.js';
import { MIGRATIONS } from '../registry.js';
import { identity } from '../identity/index.js';
import { systemActor } from './actor.js';
import { readRowHistory, rowHistory, ROW_HISTORY, type RowHistory } from './history.js';
import { REDACTED, TABLE_POLICY, tablePolicy } from './policy.js';

type Row = Record<string, unknown>;
const actor = systemActor('history-test');
const now = () => new Date();

/**
 * One fixture per mutable table: inserts a row (and whatever parents it needs, through the
 * same writer), and says which change to make. Adding a mutable table means adding a fixture.
 */
const FIXTURES: Record<string, (h: RowHistory) => Promise<{ key: Row; change: Row }>> = {
  coffer_meta: async (h) => {
    const r = await h.insert('coffer_meta', { meta_key: `k-${randomBytes(4).toString('hex')}`, meta_value: 'v1', updated_at: now() });
    return { key: { meta_key: r.meta_key }, change: { meta_value: 'v2' } };
  },
  identity_users: async (h) => {
    const r = await h.insert('identity_users', {
      username: `u-${randomBytes(4).toString('hex')}`,
      mfa_secret: 'cfe1.k1.c2VjcmV0',
      created_at: now(),
      updated_at: now(),
    });
    return { key: { id: r.id }, change: { display_name: 'Changed' } };
  },
  identity_roles: async (h) => {
    const r = await h.insert('identity_roles', { name: `r-${randomBytes(4).toString('hex')}`, created_at: now(), updated_at: now() });
    return { key: { id: r.id }, change: { description: 'changed' } };
  },
  identity_role_scopes: async (h) => {
    const role = await h.insert('identity_roles', { name: `r-${randomBytes(4).toString('hex')}`, created_at: now(), updated_at: now() });
    await h.insert('identity_role_scopes', { role_id: role.id, scope_domain: 'identity', level: 'read' });
    return { key: { role_id: role.id, scope_domain: 'identity' }, change: { level: 'admin' } };
  },
  identity_user_roles: async (h) => {
    const u = await h.insert('identity_users', { username: `u-${randomBytes(4).toString('hex')}`, created_at: now(), updated_at: now() });
    const role = await h.insert('identity_roles', { name: `r-${randomBytes(4).toString('hex')}`, created_at: now(), updated_at: now() });
    await h.insert('identity_user_roles', { user_id: u.id, role_id: role.id, created_at: now() });
    return { key: { user_id: u.id, role_id: role.id }, change: { created_at: new Date(Date.now() - 1000) } };
  },
  identity_sessions: async (h) => {
    const u = await h.insert('identity_users', { username: `u-${randomBytes(4).toString('hex')}`, created_at: now(), updated_at: now() });
    const id = randomBytes(12).toString('hex');
    await h.insert('identity_sessions', {
      id,
      user_id: u.id,
      secret_hash: 'ab'.repeat(32),
      created_at: now(),
      expires_at: new Date(Date.now() + 60_000),
    });
    return { key: { id }, change: { revoked_at: now(), revoke_reason: 'test' } };
  },
  identity_integrations: async (h) => {
    const name = `i-${randomBytes(4).toString('hex')}`;
    const r = await h.insert('identity_integrations', { name, live_name: name, created_at: now(), updated_at: now() });
    return { key: { id: r.id }, change: { deleted_at: now(), live_name: null } };
  },
  identity_api_keys: async (h) => {
    const name = `i-${randomBytes(4).toString('hex')}`;
    const integ = await h.insert('identity_integrations', { name, live_name: name, created_at: now(), updated_at: now() });
    const id = randomBytes(12).toString('hex');
    await h.insert('identity_api_keys', {
      id,
      integration_id: integ.id,
      name: 'k',
      live_name: 'k',
      secret_hash: 'cd'.repeat(32),
      scopes: ['identity:read'],
      ip_allow: [],
      expires_at: new Date(Date.now() + 60_000),
      created_at: now(),
      updated_at: now(),
    });
    return { key: { id }, change: { scopes: ['identity:admin'] } };
  },
  identity_token_configs: async (h) => {
    const name = `i-${randomBytes(4).toString('hex')}`;
    const integ = await h.insert('identity_integrations', { name, live_name: name, created_at: now(), updated_at: now() });
    await h.insert('identity_token_configs', {
      integration_id: integ.id,
      token_type: 't',
      max_open: 1,
      lifetime_seconds: 60,
      created_at: now(),
      updated_at: now(),
    });
    return { key: { integration_id: integ.id, token_type: 't' }, change: { max_open: 2 } };
  },
  identity_tokens: async (h) => {
    const name = `i-${randomBytes(4).toString('hex')}`;
    const integ = await h.insert('identity_integrations', { name, live_name: name, created_at: now(), updated_at: now() });
    const id = randomBytes(12).toString('hex');
    await h.insert('identity_tokens', {
      id,
      integration_id: integ.id,
      token_type: 't',
      secret_hash: 'ef'.repeat(32),
      expires_at: new Date(Date.now() + 60_000),
      created_by: 'system:test',
      created_at: now(),
      updated_at: now(),
    });
    return { key: { id }, change: { status: 'disabled' } };
  },
};

describe('data classification (src/domains/audit/policy.ts)', () => {
  const schema = logicalSchema(MIGRATIONS);

  test('every table of the logical schema is classified', () => {
    const missing = [...schema.tables.keys()].filter((t) => !tablePolicy(t)).sort();
    assert.deepEqual(
      missing,
      [],
      `add these tables to TABLE_POLICY in src/domains/audit/policy.ts (mutable, append_only, derived or exempt with a reason): ${missing.join(', ')}`,
    );
  });

  test('the policy names only real tables and columns, and secret columns have the right shape', () => {
    for (const [table, p] of Object.entries(TABLE_POLICY)) {
      const def = schema.tables.get(table);
      assert.ok(def, `policy names ${table}, which no migration creates`);
      if (p.kind === 'exempt') assert.ok(p.reason.length > 10, `${table}: exempt needs a reason`);
      for (const [col, kind] of Object.entries(p.secrets ?? {})) {
        const column: ColumnDef | undefined = def.columns.find((x) => x.name === col);
        assert.ok(column, `${table}.${col} is not a column`);
        if (kind === 'encrypted') assert.equal(column.type.kind, 'text', `${table}.${col}: ciphertexts are stored as text`);
        else assert.deepEqual(column.type, { kind: 'hex', length: 64 }, `${table}.${col}: hashes are hex(64)`);
      }
    }
  });

  test('every mutable table has a history fixture', () => {
    const mutable = Object.entries(TABLE_POLICY)
      .filter(([, p]) => p.kind === 'mutable')
      .map(([t]) => t);
    const missing = mutable.filter((t) => !FIXTURES[t]);
    assert.deepEqual(missing, [], `add a fixture in src/domains/audit/history.test.ts for: ${missing.join(', ')}`);
  });
});

/** Counts, per table, the rows each INSERT/UPDATE/DELETE statement changed. */
class WriteSpy implements KyselyPlugin {
  readonly #pending = new Map<unknown, string>();
  readonly rows = new Map<string, number>();

  static tableOf(node: OperationNode | undefined): string | undefined {
    if (!node) return undefined;
    if (TableNode.is(node)) return node.table.identifier.name;
    if (AliasNode.is(node)) return WriteSpy.tableOf(node.node);
    return undefined;
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const n = args.node;
    const table = InsertQueryNode.is(n)
      ? WriteSpy.tableOf(n.into)
      : UpdateQueryNode.is(n)
        ? WriteSpy.tableOf(n.table)
        : DeleteQueryNode.is(n)
          ? WriteSpy.tableOf(n.from.froms[0])
          : undefined;
    if (table) this.#pending.set(args.queryId, table);
    return n;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const table = this.#pending.get(args.queryId);
    if (table) {
      this.#pending.delete(args.queryId);
      const n = Number(toBigInt(args.result.numAffectedRows ?? BigInt(args.result.rows.length)));
      this.rows.set(table, (this.rows.get(table) ?? 0) + n);
    }
    return args.result;
  }
}

forEachBackend('row history', (ctx) => {
  let coffer: Coffer;
  before(async () => {
    coffer = await ctx.open();
  });

  test('insert, update and delete of every mutable table are each recorded, whole rows, with the actor', async () => {
    const mutable = Object.entries(TABLE_POLICY)
      .filter(([t, p]) => p.kind === 'mutable' && coffer.schema.tables.has(t))
      .map(([t]) => t);
    assert.ok(mutable.length >= 10);
    for (const table of mutable) {
      const key = await coffer.write(async (tx) => {
        const h = rowHistory(tx, actor);
        const f = await FIXTURES[table]!(h);
        const u = await h.update(table, f.key, f.change);
        assert.ok(u.ok, `${table}: update`);
        const d = await h.delete(table, f.key);
        assert.ok(d.ok, `${table}: delete`);
        return f.key;
      });
      const hist = await coffer.read((tx) => readRowHistory(tx, table, key));
      assert.deepEqual(
        hist.map((x) => x.op),
        ['insert', 'update', 'delete'],
        table,
      );
      const columns = coffer.schema.tables
        .get(table)!
        .columns.map((c) => c.name)
        .sort();
      assert.deepEqual(Object.keys(hist[0]!.after!).sort(), columns, `${table}: the insert image has every column`);
      assert.deepEqual(Object.keys(hist[1]!.before!).sort(), columns, `${table}: the update before-image has every column`);
      assert.deepEqual(Object.keys(hist[1]!.after!).sort(), columns, `${table}: the update after-image has every column`);
      assert.deepEqual(Object.keys(hist[2]!.before!).sort(), columns, `${table}: the delete image has every column`);
      assert.equal(hist[0]!.before, null);
      assert.equal(hist[2]!.after, null);
      for (const h of hist) assert.deepEqual(h.actor, actor);
      for (const [col] of Object.entries(tablePolicy(table)!.secrets ?? {})) {
        for (const img of [hist[0]!.after!, hist[1]!.before!, hist[1]!.after!, hist[2]!.before!]) {
          assert.ok(img[col] === null || img[col] === REDACTED, `${table}.${col} is redacted in history`);
        }
      }
    }
  });

  test('a column added by a later migration is in the history with no change to the history code', async () => {
    const later = defineMigration(import.meta.url, {
      domain: 'fixture_history',
      version: 1,
      name: 'add_column',
      ops: [addColumn('identity_roles', 'later_note', c.varchar(64, { nullable: true }))],
    });
    const evolved = await ctx.open({ migrations: [...MIGRATIONS, later] });
    const key = await evolved.write(async (tx) => {
      const h = rowHistory(tx, actor);
      const r = await h.insert('identity_roles', { name: `later-${randomBytes(3).toString('hex')}`, created_at: now(), updated_at: now() });
      const u = await h.update('identity_roles', { id: r.id }, { later_note: 'set by a later migration' });
      assert.ok(u.ok);
      return { id: r.id };
    });
    const hist = await evolved.read((tx) => readRowHistory(tx, 'identity_roles', key));
    assert.equal(hist[0]!.after!.later_note, null);
    assert.equal(hist[1]!.before!.later_note, null);
    assert.equal(hist[1]!.after!.later_note, 'set by a later migration');
  });

  test('rowHistory refuses tables that are not classified as mutable', async () => {
    await assert.rejects(
      coffer.write((tx) => rowHistory(tx, actor).insert('audit_head', { id: 2, seq: 0n, hash: '0'.repeat(64) })),
      /not classified as mutable/,
    );
  });

  test('the identity stores write mutable tables only through rowHistory (every changed row has its history record)', async () => {
    const committed = new Map<string, number>();
    const keyring = new Keyring([{ id: 'k1', key: randomBytes(32) }]);
    const histBefore = await coffer.read(async (tx) => {
      const rows = await tx.db.selectFrom(ROW_HISTORY).select(['table_name']).execute();
      const m = new Map<string, number>();
      for (const r of rows) m.set(String(r.table_name), (m.get(String(r.table_name)) ?? 0) + 1);
      return m;
    });
    const spied = async <T>(
      fn: (id: ReturnType<typeof identity>) => Promise<T>,
      opts: { expectFailure?: boolean } = {},
    ): Promise<T | undefined> => {
      const local = new WriteSpy();
      try {
        const r = await coffer.write(async (tx) => {
          local.rows.clear();
          const stx = new Tx('write', tx.dialect, tx.mariadb, tx.db.withPlugin(local), coffer.schema, new Map());
          return fn(identity(stx, actor, { keyring }));
        });
        for (const [t, n] of local.rows) committed.set(t, (committed.get(t) ?? 0) + n);
        return r;
      } catch (e) {
        if (!opts.expectFailure) throw e;
        return undefined;
      }
    };
    // Every store operation at least once, failures included (their transactions roll back).
    const integ = (await spied((id) => id.integrations.create({ name: 'spy' })))!;
    await spied((id) => id.integrations.rename(integ.id, { name: 'spy2', expectedVersion: 1 }));
    const key = (await spied((id) =>
      id.keys.create({ integrationId: integ.id, name: 'k', scopes: ['identity:read'], expiresAt: new Date(Date.now() + 3600_000) }),
    ))!;
    await spied((id) => id.keys.update(key.record.id, { expectedVersion: 1, scopes: ['identity:write'] }));
    await spied((id) => id.keys.update(key.record.id, { expectedVersion: 1, scopes: ['identity:admin'] }), { expectFailure: true });
    await spied((id) => id.keys.revoke(key.record.id));
    await spied((id) =>
      id.keys.create({ integrationId: integ.id, name: 'k2', scopes: ['identity:read'], expiresAt: new Date(Date.now() + 3600_000) }),
    );
    await spied((id) => id.tokenConfigs.create({ integrationId: integ.id, tokenType: 'spy', maxOpen: 2, lifetimeSeconds: 60 }));
    await spied((id) => id.tokenConfigs.update(integ.id, 'spy', { expectedVersion: 1, maxOpen: 3 }));
    const t1 = (await spied((id) => id.tokens.mint({ integrationId: integ.id, tokenType: 'spy' })))!;
    const t2 = (await spied((id) => id.tokens.mint({ integrationId: integ.id, tokenType: 'spy' })))!;
    await spied((id) => id.tokens.consume(t1.token, { tokenType: 'spy' }));
    await spied((id) => id.tokens.consume(t1.token, { tokenType: 'spy' }), { expectFailure: true });
    await spied((id) => id.tokens.setStatus(t2.record.id, 'abused'));
    await spied((id) => id.tokenConfigs.create({ integrationId: integ.id, tokenType: 'spy2', maxOpen: 1, lifetimeSeconds: 60 }));
    await spied((id) => id.tokenConfigs.delete(integ.id, 'spy2'));
    const user = (await spied((id) => id.users.create({ username: 'spy-user' })))!;
    await spied((id) => id.users.setMfaSecret(user.id, 'seed-seed-seed'));
    const role = (await spied((id) => id.roles.create({ name: 'spy-role', scopes: ['identity:read', 'chain:read'] })))!;
    await spied((id) => id.roles.setScopes(role.id, { expectedVersion: 1, scopes: ['identity:admin', 'audit:read'] }));
    await spied((id) => id.users.grantRole(user.id, role.id));
    const s = (await spied((id) => id.sessions.create(user.id, { ttlSeconds: 600 })))!;
    await spied((id) => id.sessions.revoke(s.session.id));
    await spied((id) => id.sessions.create(user.id, { ttlSeconds: 600 }));
    await spied((id) => id.sessions.revokeAll(user.id));
    await spied((id) => id.sessions.create(user.id, { ttlSeconds: 600 }));
    await spied((id) => id.users.update(user.id, { expectedVersion: 2, status: 'disabled' }));
    await spied((id) => id.users.revokeRole(user.id, role.id));
    await spied((id) => id.users.grantRole(user.id, role.id));
    await spied((id) => id.roles.delete(role.id));
    await spied((id) => id.integrations.delete(integ.id));
    const histAfter = await coffer.read(async (tx) => {
      const rows = await tx.db.selectFrom(ROW_HISTORY).select(['table_name']).execute();
      const m = new Map<string, number>();
      for (const r of rows) m.set(String(r.table_name), (m.get(String(r.table_name)) ?? 0) + 1);
      return m;
    });
    const identityMutable = Object.entries(TABLE_POLICY)
      .filter(([t, p]) => p.kind === 'mutable' && t.startsWith('identity_'))
      .map(([t]) => t);
    for (const table of identityMutable) {
      const written = committed.get(table) ?? 0;
      const recorded = (histAfter.get(table) ?? 0) - (histBefore.get(table) ?? 0);
      assert.ok(written > 0, `the scenario changed ${table}`);
      assert.equal(recorded, written, `${table}: ${written} rows changed, ${recorded} history records`);
    }
    // Nothing in the scenario wrote a table outside identity and the audit tables.
    for (const t of committed.keys()) assert.ok(t.startsWith('identity_') || t.startsWith('audit_'), `unexpected write to ${t}`);
  });
});

describe('identity sources', () => {
  test('identity store code never writes SQL itself: all writes go through rowHistory and the audit writer', () => {
    const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'identity');
    const offenders: string[] = [];
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts') || f === 'db-roles.ts' || /^\d{4}_/.test(f)) continue;
      const text = readFileSync(join(dir, f), 'utf8');
      for (const pattern of [
        /\.insertInto\(/,
        /\.updateTable\(/,
        /\.deleteFrom\(/,
        /\btx\.insert\(/,
        /\.insertReturningId\(/,
        /\.insertOrIgnore\(/,
        /sql\.raw\(/,
      ]) {
        if (pattern.test(text)) offenders.push(`${f}: ${pattern.source}`);
      }
    }
    assert.deepEqual(offenders, []);
  });
});
