// Envelope encryption: master keys from the environment or a key file, AES-256-GCM with a key id
// per ciphertext, binding to table/column/row, and clear errors (never garbage) for a missing or
// wrong key or an altered ciphertext.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, describe, test } from 'node:test';
import { ConfigError, DecryptionError } from '../db/errors.js';
import { ciphertextKeyId, derivedKeyId, isCiphertext, Keyring } from './envelope.js';

const K1 = randomBytes(32);
const K2 = randomBytes(32);
const ctx = { table: 'identity_users', column: 'mfa_secret', row: { id: 7n } };
const PLAINTEXT = 'JBSWY3DPEHPK3PXP-the-plaintext';

const ring = (...keys: [string, Buffer][]) => new Keyring(keys.map(([id, key]) => ({ id, key })));

/** The error and everything it carries, as text, to check nothing secret is in it. */
function errorText(e: unknown): string {
  const err = e as Error & { details?: unknown };
  return `${err.message} ${JSON.stringify(err.details ?? {}, (_k, v) => (typeof v === 'bigint' ? String(v) : v))} ${inspect(err)}`;
}

function assertNoSecrets(text: string, ...secrets: string[]): void {
  for (const s of secrets) assert.ok(!text.includes(s), `leaked ${s.slice(0, 6)}… in: ${text.slice(0, 300)}`);
}

describe('secrets: envelope encryption', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-keys-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('round trip, one fresh ciphertext per call, key id in the clear', () => {
    const r = ring(['k1', K1]);
    const a = r.encrypt(PLAINTEXT, ctx);
    const b = r.encrypt(PLAINTEXT, ctx);
    assert.notEqual(a, b, 'random data key and nonces per ciphertext');
    assert.ok(isCiphertext(a));
    assert.match(a, /^cfe1\.k1\.[A-Za-z0-9_-]+$/);
    assert.equal(ciphertextKeyId(a), 'k1');
    assert.ok(!a.includes(PLAINTEXT));
    assert.equal(r.decryptString(a, ctx), PLAINTEXT);
    const bin = randomBytes(200);
    assert.deepEqual(r.decrypt(r.encrypt(bin, ctx), ctx), bin);
  });

  test('a ciphertext opens only for its own table, column and row', () => {
    const r = ring(['k1', K1]);
    const c = r.encrypt(PLAINTEXT, ctx);
    for (const other of [
      { ...ctx, row: { id: 8n } },
      { ...ctx, column: 'other' },
      { ...ctx, table: 'identity_sessions' },
      { ...ctx, row: '7' },
    ]) {
      assert.throws(
        () => r.decrypt(c, other),
        (e: unknown) => e instanceof DecryptionError && /moved from another row or column/.test(e.message),
      );
    }
    // The same row key in any spelling (bigint, number, string) is the same row.
    assert.equal(r.decryptString(c, { ...ctx, row: { id: 7 } }), PLAINTEXT);
  });

  test('a wrong key, a missing key id, altered or truncated bytes: DecryptionError, never garbage', () => {
    const c = ring(['k1', K1]).encrypt(PLAINTEXT, ctx);
    const wrong = ring(['k1', K2]);
    assert.throws(
      () => wrong.decrypt(c, ctx),
      (e: unknown) => e instanceof DecryptionError && /key is wrong/.test(e.message) && e.details.keyId === 'k1',
    );
    const missing = ring(['k2', K2]);
    assert.throws(
      () => missing.decrypt(c, ctx),
      (e: unknown) => e instanceof DecryptionError && /master key id k1, which is not configured \(configured: k2\)/.test(e.message),
    );
    const [prefix, kid, body] = c.split('.') as [string, string, string];
    const bytes = Buffer.from(body, 'base64url');
    for (let i = 0; i < bytes.length; i += 7) {
      const t = Buffer.from(bytes);
      t[i]! ^= 0x01;
      assert.throws(() => ring(['k1', K1]).decrypt(`${prefix}.${kid}.${t.toString('base64url')}`, ctx), DecryptionError, `byte ${i}`);
    }
    assert.throws(() => ring(['k1', K1]).decrypt(`${prefix}.${kid}.${bytes.subarray(0, 40).toString('base64url')}`, ctx), /truncated/);
    assert.throws(() => ring(['k1', K1]).decrypt(PLAINTEXT, ctx), /not a Coffer ciphertext/);
    // Swapping the key id in the header does not help: the wrap is bound to its key id.
    assert.throws(() => ring(['k1', K1], ['k9', K1]).decrypt(`${prefix}.k9.${body}`, ctx), DecryptionError);
  });

  test('errors and inspection never show key material or plaintext', () => {
    const keyHex = K1.toString('hex');
    const keyB64 = K1.toString('base64');
    const r = ring(['k1', K1]);
    const c = r.encrypt(PLAINTEXT, ctx);
    const texts: string[] = [inspect(r), JSON.stringify(r)];
    for (const f of [
      () => ring(['k1', K2]).decrypt(c, ctx),
      () => ring(['k2', K2]).decrypt(c, ctx),
      () => Keyring.parse(`k1:${keyHex.slice(0, 62)}`),
    ]) {
      try {
        f();
        assert.fail('expected an error');
      } catch (e) {
        texts.push(errorText(e));
      }
    }
    for (const t of texts) assertNoSecrets(t, keyHex, keyB64, keyHex.slice(0, 16), PLAINTEXT);
  });

  test('rewrap moves a ciphertext to the active key without touching the data layer', () => {
    const old = ring(['k1', K1]);
    const c1 = old.encrypt(PLAINTEXT, ctx);
    const both = ring(['k2', K2], ['k1', K1]);
    const c2 = both.rewrap(c1, ctx);
    assert.equal(ciphertextKeyId(c2), 'k2');
    assert.equal(ring(['k2', K2]).decryptString(c2, ctx), PLAINTEXT, 'k1 is no longer needed');
    assert.equal(c2.slice(-40), c1.slice(-40), 'data ciphertext unchanged');
    assert.equal(both.rewrap(c2, ctx), c2, 'already under the active key');
    assert.throws(() => ring(['k2', K2]).rewrap(c1, ctx), /k1, which is not configured/);
  });

  test('COFFER_MASTER_KEY: hex or base64, with or without ids; the first key is active', () => {
    const hex = Keyring.fromEnv({ COFFER_MASTER_KEY: K1.toString('hex') });
    assert.equal(hex.activeKeyId, derivedKeyId(K1));
    assert.match(hex.activeKeyId, /^k[0-9a-f]{12}$/);
    const b64 = Keyring.fromEnv({ COFFER_MASTER_KEY: K1.toString('base64') });
    assert.equal(b64.activeKeyId, hex.activeKeyId, 'the derived id depends on the key, not its spelling');
    const c = hex.encrypt(PLAINTEXT, ctx);
    assert.equal(b64.decryptString(c, ctx), PLAINTEXT);
    const multi = Keyring.fromEnv({ COFFER_MASTER_KEY: `new:${K2.toString('base64url')}, old:${K1.toString('hex')}` });
    assert.equal(multi.activeKeyId, 'new');
    assert.deepEqual(multi.keyIds, ['new', 'old']);
  });

  test('bad key settings are ConfigErrors naming the variable', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{}, /no master key: set COFFER_MASTER_KEY/],
      [{ COFFER_MASTER_KEY: 'abc' }, /must be 32 bytes/],
      [{ COFFER_MASTER_KEY: K1.toString('hex').slice(2) }, /must be 32 bytes/],
      [{ COFFER_MASTER_KEY: randomBytes(16).toString('base64') }, /must be 32 bytes/],
      [{ COFFER_MASTER_KEY: `Bad_Id:${K1.toString('hex')}` }, /master key id "Bad_Id"/],
      [{ COFFER_MASTER_KEY: `a:${K1.toString('hex')},a:${K2.toString('hex')}` }, /given twice/],
      [{ COFFER_MASTER_KEY: K1.toString('hex'), COFFER_MASTER_KEY_FILE: '/x' }, /not both/],
      [{ COFFER_MASTER_KEY_FILE: join(dir, 'missing') }, /cannot read/],
    ];
    for (const [env, re] of bad) {
      assert.throws(
        () => Keyring.fromEnv(env),
        (e: unknown) => e instanceof ConfigError && re.test(e.message) && /COFFER_MASTER_KEY/.test(String(e.details.field)),
        JSON.stringify(Object.keys(env)),
      );
    }
  });

  test('COFFER_MASTER_KEY_FILE: one key per line, comments allowed, refused when others may write it', () => {
    const file = join(dir, 'master.keys');
    writeFileSync(file, `# rotated 2025-01\nnew:${K2.toString('hex')}\nold:${K1.toString('base64')}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    const r = Keyring.fromEnv({ COFFER_MASTER_KEY_FILE: file });
    assert.deepEqual(r.keyIds, ['new', 'old']);
    if (process.platform !== 'win32') {
      chmodSync(file, 0o666);
      assert.throws(() => Keyring.fromEnv({ COFFER_MASTER_KEY_FILE: file }), /writable by group or others/);
      chmodSync(file, 0o600);
    }
  });
});
