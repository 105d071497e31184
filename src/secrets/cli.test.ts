// `coffer secrets rotate` and `coffer secrets status` against real databases, with the master
// keys in COFFER_MASTER_KEY and in a key file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Coffer } from '../db/store.js';
import { forEachBackend } from '../../test/harness.js';
import { systemActor } from '../domains/audit/actor.js';
import { runCli } from '../domains/audit/test-support.js';
import { identity } from '../domains/identity/index.js';
import { Keyring } from './envelope.js';

const K1 = randomBytes(32);
const K2 = randomBytes(32);

forEachBackend(
  'cli: secrets',
  (ctx) => {
    let coffer: Coffer;
    let url: string;
    const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-keys-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    before(async () => {
      coffer = await ctx.open();
      url = coffer.target.url;
      const keyring = new Keyring([{ id: 'old', key: K1 }]);
      for (let i = 0; i < 5; i++) {
        await coffer.write(async (tx) => {
          const id = identity(tx, systemActor('test'), { keyring });
          const u = await id.users.create({ username: `cli-${i}` });
          await id.users.setMfaSecret(u.id, `seed-${i}`);
        });
      }
    });

    test('status counts per key id; rotate moves everything to the active key; a key file works too', async () => {
      const env = { COFFER_MASTER_KEY: `new:${K2.toString('hex')},old:${K1.toString('base64')}`, COFFER_MASTER_KEY_FILE: undefined };
      const st = await runCli(['secrets', 'status', '--db', url], env);
      assert.equal(st.code, 0, st.stderr);
      assert.equal(st.stdout, 'identity_users.mfa_secret: old: 5\n');
      const rot = await runCli(['secrets', 'rotate', '--db', url, '--batch', '2'], env);
      assert.equal(rot.code, 0, rot.stderr);
      assert.equal(rot.stdout, 'identity_users.mfa_secret: 5 re-encrypted under new\n');
      const file = join(dir, 'keys');
      writeFileSync(file, `new:${K2.toString('hex')}\n`, { mode: 0o600 });
      const st2 = await runCli(['secrets', 'status', '--db', url, '--json'], {
        COFFER_MASTER_KEY: undefined,
        COFFER_MASTER_KEY_FILE: file,
      });
      assert.deepEqual(JSON.parse(st2.stdout), [{ table: 'identity_users', column: 'mfa_secret', byKeyId: { new: 5 }, notEncrypted: 0 }]);
      const again = await runCli(['secrets', 'rotate', '--db', url, '--json'], {
        COFFER_MASTER_KEY: undefined,
        COFFER_MASTER_KEY_FILE: file,
      });
      assert.equal((JSON.parse(again.stdout) as { columns: { rotated: number }[] }).columns[0]!.rotated, 0);
      const seeds = await coffer.read(async (tx) => {
        const id = identity(tx, systemActor('test'), { keyring: new Keyring([{ id: 'new', key: K2 }]) });
        const out: string[] = [];
        for (let i = 0; i < 5; i++) out.push(String(await id.users.mfaSecret((await id.users.findByUsername(`cli-${i}`))!.id)));
        return out;
      });
      assert.deepEqual(seeds, ['seed-0', 'seed-1', 'seed-2', 'seed-3', 'seed-4']);
    });

    test('rotate without a master key exits 2 naming the variable, and never prints key material', async () => {
      const r = await runCli(['secrets', 'rotate', '--db', url], { COFFER_MASTER_KEY: undefined, COFFER_MASTER_KEY_FILE: undefined });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /COFFER_MASTER_KEY/);
      const bad = await runCli(['secrets', 'rotate', '--db', url], { COFFER_MASTER_KEY: `x:${K1.toString('hex').slice(0, 60)}` });
      assert.equal(bad.code, 2);
      assert.ok(!bad.stderr.includes(K1.toString('hex').slice(0, 20)));
    });
  },
  ['sqlite', 'postgres', 'mysql'],
);
