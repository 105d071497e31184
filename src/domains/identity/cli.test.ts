// `coffer keys create|list|revoke` (and `coffer roles`) against real databases: the first admin
// key comes from the command line, is printed once, authenticates, never shows again, and can
// be revoked.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Coffer } from '../../db/store.js';
import { UnauthenticatedError } from '../../db/errors.js';
import { forEachBackend } from '../../../test/harness.js';
import { runCli } from '../audit/test-support.js';
import { entityTrail } from '../audit/log.js';
import { authenticateApiKey, hasScope } from './index.js';

forEachBackend(
  'cli: keys',
  (ctx) => {
    let coffer: Coffer;
    let url: string;
    before(async () => {
      coffer = await ctx.open();
      url = coffer.target.url;
    });

    test('keys create prints the key once; it authenticates with its scopes; list never shows it; revoke ends it', async () => {
      const created = await runCli([
        'keys',
        'create',
        '--db',
        url,
        '--integration',
        'ops',
        '--name',
        'admin',
        '--scope',
        '*:admin',
        '--expires-in',
        '30d',
        '--ip',
        '127.0.0.1',
      ]);
      assert.equal(created.code, 0, created.stderr);
      const key = created.stdout.trim();
      assert.match(key, /^cfk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}$/);
      assert.match(created.stderr, /only time the key is shown/);
      const p = await coffer.read((tx) => authenticateApiKey(tx, key, { ip: '127.0.0.1' }));
      assert.ok(hasScope(p.scopes, 'identity', 'admin') && hasScope(p.scopes, 'chain', 'admin'));
      assert.equal(p.integrationName, 'ops');
      const trail = await coffer.read((tx) => entityTrail(tx, { domain: 'identity', entity: 'api_key', entityId: p.keyId }));
      assert.equal(trail[0]!.actor.type, 'system');
      assert.match(trail[0]!.actor.id, /^cli:/);

      const second = await runCli([
        'keys',
        'create',
        '--db',
        url,
        '--integration',
        'ops',
        '--name',
        'reader',
        '--scope',
        'identity:read',
        '--json',
      ]);
      assert.equal(second.code, 0, second.stderr);
      const json = JSON.parse(second.stdout) as { key: string; id: string; scopes: string[] };
      assert.deepEqual(json.scopes, ['identity:read']);

      const list = await runCli(['keys', 'list', '--db', url, '--json']);
      assert.equal(list.code, 0, list.stderr);
      const listed = JSON.parse(list.stdout) as { id: string; integration: string; name: string }[];
      assert.deepEqual(listed.map((k) => `${k.integration}/${k.name}`).sort(), ['ops/admin', 'ops/reader']);
      // The secret is everything after "cfk_<id>_"; base64url secrets may contain '_' themselves.
      const secretOf = (k: string) => k.slice(k.indexOf('_', 4) + 1);
      const secret = secretOf(key);
      const text = await runCli(['keys', 'list', '--db', url]);
      for (const out of [list.stdout, text.stdout]) {
        assert.ok(!out.includes(secret) && !out.includes(secretOf(json.key)), 'list never prints a secret');
        assert.ok(!/secret_hash|[0-9a-f]{64}/.test(out), 'nor a hash');
      }

      const revoked = await runCli(['keys', 'revoke', p.keyId, '--db', url]);
      assert.equal(revoked.code, 0, revoked.stderr);
      await assert.rejects(
        coffer.read((tx) => authenticateApiKey(tx, key, { ip: '127.0.0.1' })),
        UnauthenticatedError,
      );
      const after = JSON.parse((await runCli(['keys', 'list', '--db', url, '--json'])).stdout) as unknown[];
      assert.equal(after.length, 1);
      const all = JSON.parse((await runCli(['keys', 'list', '--db', url, '--json', '--all'])).stdout) as unknown[];
      assert.equal(all.length, 2);
    });

    test('bad input exits 2 with one line naming the field; nothing is created', async () => {
      const cases: [string[], RegExp][] = [
        [['--scope', 'identity:root'], /scopes\.0/],
        [['--scope', 'identity:read', '--expires-in', 'forever'], /expires-in/],
        [[], /--scope/],
        [['--scope', 'identity:read', '--ip', '300.1.1.1'], /ipAllow\.0/],
      ];
      for (const [extra, re] of cases) {
        const r = await runCli(['keys', 'create', '--db', url, '--integration', 'bad', '--name', 'k', ...extra]);
        assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, re);
        assert.equal(r.stdout, '');
      }
      const r = await runCli(['keys', 'revoke', 'f'.repeat(24), '--db', url]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /not found/);
      const list = JSON.parse((await runCli(['keys', 'list', '--db', url, '--json', '--integration', 'ops'])).stdout) as unknown[];
      assert.ok(Array.isArray(list));
      const none = await runCli(['keys', 'list', '--db', url, '--integration', 'bad']);
      assert.equal(none.code, 2, 'the integration "bad" was never created');
    });

    test('roles: printed for PostgreSQL, refused elsewhere', async () => {
      const r = await runCli(['roles', '--db', url, '--prefix', 'cli_probe']);
      if (ctx.backend === 'postgres') {
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /GRANT INSERT ON TABLE "public"\."audit_log" TO "cli_probe_identity"/);
        assert.match(r.stdout, /GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"\."identity_api_keys" TO "cli_probe_identity"/);
      } else {
        assert.equal(r.code, 2);
        assert.match(r.stderr, /PostgreSQL only/);
      }
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
