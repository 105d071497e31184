// Secrets never reach logs, error messages or metrics labels, nor the audit log and row history:
// on every backend, API keys, single-use tokens, session tokens, an MFA seed (an encrypted
// column), its ciphertext, the stored hashes and the master key are driven through success and
// failure paths; every error is logged the way a service would log it; then the log output,
// the errors (messages, details, causes), the metrics exposition and the audit tables are
// searched for every secret.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Coffer } from '../db/store.js';
import { forEachBackend } from '../../test/harness.js';
import { systemActor } from '../domains/audit/actor.js';
import { authenticateApiKey, authenticateSession, identity } from '../domains/identity/index.js';
import { Keyring } from './envelope.js';
import { rotateSecrets } from './rotate.js';

const secretPart = (credential: string) => credential.slice(credential.indexOf('_', 4) + 1);

forEachBackend('secrets never leak', (ctx) => {
  test('keys, tokens, sessions and encrypted columns stay out of logs, errors, metrics and the audit trail', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const logger = pino({ level: 'trace' }, sink);
    const coffer: Coffer = await ctx.open({ logger });
    const master = randomBytes(32);
    const keyring = new Keyring([{ id: 'k1', key: master }]);
    const actor = systemActor('leak-test');
    const errors: unknown[] = [];
    const attempt = async (what: string, p: Promise<unknown>) => {
      try {
        await p;
        assert.fail(`${what} should have failed`);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        errors.push(e);
        logger.error({ err: e, what }, 'operation failed');
      }
    };
    const w = <T>(fn: (id: ReturnType<typeof identity>) => Promise<T>) =>
      coffer.write((tx) => fn(identity(tx, actor, { keyring })), { op: 'test.leak' });

    const mfaSeed = `MFA-SEED-${randomBytes(12).toString('hex')}`;
    const made = await w(async (id) => {
      const integ = await id.integrations.create({ name: 'leaky' });
      const key = await id.keys.create({
        integrationId: integ.id,
        name: 'k',
        scopes: ['identity:admin'],
        expiresAt: new Date(Date.now() + 3600_000),
        ipAllow: ['10.0.0.0/8'],
      });
      await id.tokenConfigs.create({ integrationId: integ.id, tokenType: 'leak', maxOpen: 1, lifetimeSeconds: 60 });
      const token = await id.tokens.mint({ integrationId: integ.id, tokenType: 'leak' });
      const user = await id.users.create({ username: 'leaky-user' });
      await id.users.setMfaSecret(user.id, mfaSeed);
      const session = await id.sessions.create(user.id, { ttlSeconds: 600 });
      return { integ, key, token, user, session };
    });
    const stored = await coffer.read(async (tx) => ({
      keyHash: String((await tx.db.selectFrom('identity_api_keys').select('secret_hash').executeTakeFirstOrThrow()).secret_hash),
      tokenHash: String((await tx.db.selectFrom('identity_tokens').select('secret_hash').executeTakeFirstOrThrow()).secret_hash),
      sessionHash: String((await tx.db.selectFrom('identity_sessions').select('secret_hash').executeTakeFirstOrThrow()).secret_hash),
      ciphertext: String(
        (await tx.db.selectFrom('identity_users').select('mfa_secret').where('username', '=', 'leaky-user').executeTakeFirstOrThrow())
          .mfa_secret,
      ),
    }));

    // Success paths.
    await coffer.read((tx) => authenticateApiKey(tx, made.key.key, { ip: '10.1.2.3' }));
    await coffer.read((tx) => authenticateSession(tx, made.session.token));
    assert.equal((await coffer.read((tx) => identity(tx, actor, { keyring }).users.mfaSecret(made.user.id)))!.toString(), mfaSeed);
    await w((id) => id.tokens.consume(made.token.token, { tokenType: 'leak' }));
    // Failure paths, each given the real secret.
    await attempt(
      'key from a foreign address',
      coffer.read((tx) => authenticateApiKey(tx, made.key.key, { ip: '192.0.2.1' })),
    );
    await attempt(
      'key with one character changed',
      coffer.read((tx) => authenticateApiKey(tx, made.key.key.slice(0, -1) + (made.key.key.endsWith('A') ? 'B' : 'A'))),
    );
    await attempt(
      'token consumed twice',
      w((id) => id.tokens.consume(made.token.token, { tokenType: 'leak' })),
    );
    await attempt(
      'token of another type',
      w((id) => id.tokens.consume(made.token.token, { tokenType: 'other' })),
    );
    await attempt(
      'second mint over the limit',
      w((id) =>
        id.tokens
          .mint({ integrationId: made.integ.id, tokenType: 'leak' })
          .then(() => id.tokens.mint({ integrationId: made.integ.id, tokenType: 'leak' })),
      ),
    );
    await attempt(
      'duplicate key name',
      w((id) =>
        id.keys.create({ integrationId: made.integ.id, name: 'k', scopes: ['identity:read'], expiresAt: new Date(Date.now() + 3600_000) }),
      ),
    );
    await attempt(
      'MFA seed under a wrong master key',
      coffer.read((tx) =>
        identity(tx, actor, { keyring: new Keyring([{ id: 'k1', key: randomBytes(32) }]) }).users.mfaSecret(made.user.id),
      ),
    );
    await attempt('rotation without the old key', rotateSecrets(coffer, { keyring: new Keyring([{ id: 'k9', key: randomBytes(32) }]) }));
    await attempt(
      'MFA seed that is too long',
      w((id) => id.users.setMfaSecret(made.user.id, `${mfaSeed}${'y'.repeat(2000)}`)),
    );
    await attempt(
      'session after revocation',
      w((id) => id.sessions.revoke(made.session.session.id)).then(() => coffer.read((tx) => authenticateSession(tx, made.session.token))),
    );
    await attempt(
      'an API key passed where a session token goes',
      coffer.read((tx) => authenticateSession(tx, made.key.key)),
    );
    assert.ok(errors.length >= 10);

    const secrets: Record<string, string> = {
      'API key': made.key.key,
      'API key secret': secretPart(made.key.key),
      token: made.token.token,
      'token secret': secretPart(made.token.token),
      session: made.session.token,
      'session secret': secretPart(made.session.token),
      'MFA seed': mfaSeed,
      ciphertext: stored.ciphertext,
      'ciphertext body': stored.ciphertext.split('.')[2]!.slice(0, 32),
      'API key hash': stored.keyHash,
      'token hash': stored.tokenHash,
      'session hash': stored.sessionHash,
      'master key (hex)': master.toString('hex'),
      'master key (base64)': master.toString('base64'),
    };
    const audit = await coffer.read(async (tx) => {
      const rows = [
        ...(await tx.db.selectFrom('audit_log').selectAll().execute()),
        ...(await tx.db.selectFrom('audit_row_history').selectAll().execute()),
      ];
      return JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? String(v) : Buffer.isBuffer(v) ? v.toString('hex') : v));
    });
    assert.ok(audit.includes('identity.api_key.create') && audit.includes('[redacted]'), 'the audit trail was written');
    const haystacks: Record<string, string> = {
      logs: lines.join(''),
      errors: errors
        .map(
          (e) =>
            `${(e as Error).message} ${JSON.stringify((e as { details?: unknown }).details ?? {}, (_k, v) => (typeof v === 'bigint' ? String(v) : v))} ${inspect(e, { depth: 6 })}`,
        )
        .join('\n'),
      metrics: await coffer.metrics.registry.metrics(),
      'audit trail': audit,
    };
    assert.ok(haystacks.logs!.includes('operation failed'), 'errors were logged');
    assert.ok(haystacks.metrics!.includes('test.leak'), 'metrics were recorded');
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [what, secret] of Object.entries(secrets)) {
        assert.ok(!text.includes(secret), `${what} found in ${where}`);
      }
    }
  });
});
