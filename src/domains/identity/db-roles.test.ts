// Least privilege per domain on PostgreSQL: `coffer roles --apply` creates one role per domain;
// connected as each role, a test shows what it can and cannot touch. Roles are cluster-wide, so
// their names carry a random prefix and they are dropped at the end.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import pg from 'pg';
import { Coffer } from '../../db/store.js';
import { ForbiddenError } from '../../db/errors.js';
import { forEachBackend } from '../../../test/harness.js';
import { systemActor } from '../audit/actor.js';
import { verifyAuditLog } from '../audit/verify.js';
import { applyRoles, planRoles } from './db-roles.js';
import { identity } from './index.js';

const actor = systemActor('roles-test');

function asUser(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = '';
  return u.toString();
}

async function denied(client: pg.Client, statement: string): Promise<void> {
  await assert.rejects(
    client.query(statement),
    (e: unknown) => (e as { code?: string }).code === '42501',
    `expected permission denied: ${statement}`,
  );
}

forEachBackend(
  'least-privilege roles',
  (ctx) => {
    test('one role per domain: its own tables, insert-only audit, nothing else', async () => {
      const owner = await ctx.open();
      const prefix = `ct${randomBytes(4).toString('hex')}`;
      const url = owner.target.url;
      const plan = await planRoles(owner, { prefix, login: true });
      assert.ok(
        plan.statements.every((s) => !/password/i.test(s)),
        'no password is ever printed',
      );
      assert.ok(
        !plan.statements.some((s) => /GRANT [^;]*(UPDATE|DELETE)[^;]* ON TABLE "[a-z]+"\."audit_(log|row_history)"/.test(s)),
        'nobody may update or delete the audit log',
      );
      await applyRoles(owner, { prefix, login: true });
      await applyRoles(owner, { prefix, login: true }); // idempotent
      const clients: pg.Client[] = [];
      const coffers: Coffer[] = [];
      try {
        const domains = plan.roles.map((r) => r.domain);
        assert.deepEqual(
          [...domains].sort(),
          ['audit', 'chain', 'core', 'identity', ...domains.filter((d) => !['audit', 'chain', 'core', 'identity'].includes(d))].sort(),
        );
        const tablesOf = (d: string) => [...owner.schema.tables.values()].filter((t) => t.domain === d).map((t) => t.name);
        for (const r of plan.roles) {
          const client = new pg.Client({ connectionString: asUser(url, r.role) });
          await client.connect();
          clients.push(client);
          for (const t of tablesOf(r.domain)) await client.query(`SELECT count(*) FROM "${t}"`);
          for (const other of plan.roles.filter((o) => o.domain !== r.domain && o.domain !== 'audit' && o.domain !== 'core')) {
            for (const t of tablesOf(other.domain)) await denied(client, `SELECT count(*) FROM "${t}"`);
          }
          await client.query('SELECT count(*) FROM coffer_migrations');
          await denied(
            client,
            `INSERT INTO coffer_migrations (domain, version, name, checksum, state, steps_done, applied_at, duration_ms) VALUES ('x', 1, 'x', '${'0'.repeat(64)}', 'applied', 0, now(), 0)`,
          );
          await denied(client, "UPDATE audit_log SET action = 'x.y'");
          await denied(client, 'DELETE FROM audit_log');
          await denied(client, 'TRUNCATE audit_log');
          await denied(client, 'DELETE FROM audit_row_history');
          await denied(client, 'DELETE FROM audit_head');
          if (r.domain !== 'audit') await denied(client, 'SELECT count(*) FROM audit_log');
          else await client.query('SELECT count(*) FROM audit_log');
        }

        // The identity role runs the identity stores: its tables, the row history and the audit log.
        const asIdentity = await Coffer.open({ url: asUser(url, `${prefix}_identity`), migrate: 'verify' });
        coffers.push(asIdentity);
        const key = await asIdentity.write(async (tx) => {
          const id = identity(tx, actor);
          const integ = await id.integrations.create({ name: 'least-privilege' });
          await id.tokenConfigs.create({ integrationId: integ.id, tokenType: 't', maxOpen: 1, lifetimeSeconds: 60 });
          await id.tokens.mint({ integrationId: integ.id, tokenType: 't' });
          return id.keys.create({
            integrationId: integ.id,
            name: 'k',
            scopes: ['identity:read'],
            expiresAt: new Date(Date.now() + 3600_000),
          });
        });
        assert.match(key.key, /^cfk_/);

        // The chain role cannot write identity tables: a typed ForbiddenError.
        const asChain = await Coffer.open({ url: asUser(url, `${prefix}_chain`), migrate: 'verify' });
        coffers.push(asChain);
        await assert.rejects(
          asChain.write((tx) => identity(tx, actor).integrations.create({ name: 'nope' })),
          ForbiddenError,
        );

        // The audit role verifies the chain the identity role extended, and can read nothing else.
        const asAudit = await Coffer.open({ url: asUser(url, `${prefix}_audit`), migrate: 'verify' });
        coffers.push(asAudit);
        const report = await verifyAuditLog(asAudit);
        assert.equal(report.ok, true, report.firstBad?.message);
        assert.ok(report.verified >= 4n);
        await assert.rejects(
          asAudit.read((tx) => tx.db.selectFrom('identity_api_keys').selectAll().execute()),
          ForbiddenError,
        );
      } finally {
        for (const c of coffers) await c.close().catch(() => {});
        for (const c of clients) await c.end().catch(() => {});
        const admin = new pg.Client({ connectionString: url });
        await admin.connect();
        try {
          for (const r of plan.roles) {
            await admin.query(`DROP OWNED BY "${r.role}"`);
            await admin.query(`DROP ROLE IF EXISTS "${r.role}"`);
          }
        } finally {
          await admin.end();
        }
      }
    });
  },
  ['postgres'],
);

describe('least-privilege roles (any backend)', () => {
  test('other backends are refused with a clear message', async () => {
    const mem = await Coffer.open({ url: 'memory://' });
    try {
      await assert.rejects(planRoles(mem), /PostgreSQL only/);
    } finally {
      await mem.close();
    }
  });
});
