// Envelope encryption for every secret column in Coffer (MFA seeds today; wallet seeds, private
// keys and preimages later). Each value gets its own random 256-bit data key; the data key is
// wrapped by a master key (key-encryption key) named by a key id, and both layers are
// AES-256-GCM with additional data that binds the ciphertext to its table, column and row, so
// a ciphertext copied to another row or column does not open. Master keys come from the
// environment (COFFER_MASTER_KEY) or a key file (COFFER_MASTER_KEY_FILE), never the database.
//
// Stored form (text, ASCII):   cfe1.<key id>.<base64url(body)>
//   body = wrap nonce (12) | wrapped data key (32) | wrap tag (16) | data nonce (12) | data tag (16) | ciphertext
//   wrap AAD = canonical JSON {"column","kid","row","table","v":1}
//   data AAD = canonical JSON {"column","row","table","v":1}
// Rotation re-wraps the data key under the active master key and leaves the data layer as is.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ConfigError, DecryptionError } from '../db/errors.js';
import { canonicalJson, type CanonicalValue } from '../util/canonical-json.js';

export const CIPHERTEXT_PREFIX = 'cfe1';
export const MASTER_KEY_ENV = 'COFFER_MASTER_KEY';
export const MASTER_KEY_FILE_ENV = 'COFFER_MASTER_KEY_FILE';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES + NONCE_BYTES + TAG_BYTES;
/** Key ids are lowercase so SQL LIKE matches them the same way on every backend (SQLite LIKE ignores case). */
const KEY_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
const CIPHERTEXT = /^cfe1\.([a-z0-9][a-z0-9-]{0,31})\.([A-Za-z0-9_-]+)$/;

/** Where a ciphertext lives. The row key is the row's primary key (canonical JSON of it when an object). */
export interface SecretContext {
  table: string;
  column: string;
  row: string | Record<string, unknown>;
}

function rowKeyString(row: SecretContext['row']): string {
  if (typeof row === 'string') return row;
  const safe = Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, typeof v === 'bigint' || typeof v === 'number' ? String(v) : (v as CanonicalValue)]),
  );
  return canonicalJson(safe);
}

function where(ctx: SecretContext): string {
  return `${ctx.table}.${ctx.column} (row ${rowKeyString(ctx.row)})`;
}

function aad(ctx: SecretContext, kid?: string): Buffer {
  const base: Record<string, CanonicalValue> = { v: 1, table: ctx.table, column: ctx.column, row: rowKeyString(ctx.row) };
  if (kid !== undefined) base.kid = kid;
  return Buffer.from(canonicalJson(base), 'utf8');
}

function seal(key: Buffer, plaintext: Buffer, additional: Buffer): { nonce: Buffer; tag: Buffer; ct: Buffer } {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(additional);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return { nonce, tag: c.getAuthTag(), ct };
}

function open(key: Buffer, nonce: Buffer, tag: Buffer, ct: Buffer, additional: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(additional);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(ct), d.final()]);
  } catch {
    // GCM refuses: wrong key, altered bytes or other AAD. Never return what update() produced.
    return undefined;
  }
}

interface Parsed {
  kid: string;
  wrapNonce: Buffer;
  wrappedKey: Buffer;
  wrapTag: Buffer;
  dataNonce: Buffer;
  dataTag: Buffer;
  ct: Buffer;
}

/** True when a stored value has the ciphertext shape (says nothing about whether it opens). */
export function isCiphertext(value: unknown): value is string {
  return typeof value === 'string' && CIPHERTEXT.test(value);
}

/** The key id a ciphertext is wrapped under, or undefined when the value is not a ciphertext. */
export function ciphertextKeyId(value: string): string | undefined {
  return CIPHERTEXT.exec(value)?.[1];
}

function parse(value: string, ctx: SecretContext): Parsed {
  const m = CIPHERTEXT.exec(value);
  if (!m)
    throw new DecryptionError(
      `${where(ctx)}: the stored value is not a Coffer ciphertext (expected ${CIPHERTEXT_PREFIX}.<key id>.<data>)`,
      { table: ctx.table, field: ctx.column },
    );
  const body = Buffer.from(m[2]!, 'base64url');
  if (body.length < HEADER_BYTES)
    throw new DecryptionError(`${where(ctx)}: the ciphertext is truncated`, { table: ctx.table, field: ctx.column });
  let o = 0;
  const take = (n: number) => body.subarray(o, (o += n));
  return {
    kid: m[1]!,
    wrapNonce: take(NONCE_BYTES),
    wrappedKey: take(KEY_BYTES),
    wrapTag: take(TAG_BYTES),
    dataNonce: take(NONCE_BYTES),
    dataTag: take(TAG_BYTES),
    ct: body.subarray(o),
  };
}

function format(kid: string, p: Omit<Parsed, 'kid'>): string {
  const body = Buffer.concat([p.wrapNonce, p.wrappedKey, p.wrapTag, p.dataNonce, p.dataTag, p.ct]);
  return `${CIPHERTEXT_PREFIX}.${kid}.${body.toString('base64url')}`;
}

/** Decodes one master key: 64 hex characters or base64/base64url of exactly 32 bytes. */
function decodeKey(text: string, label: string): Buffer {
  const t = text.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) key = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === KEY_BYTES) key = b;
  }
  // The message names the key id, never any of its characters.
  if (!key) throw new ConfigError(`${label} must be 32 bytes given as 64 hex characters or base64`, { field: MASTER_KEY_ENV });
  return key;
}

/** The key id used for a master key given without one: derived from the key, stable, and revealing nothing useful. */
export function derivedKeyId(key: Buffer): string {
  return `k${createHash('sha256').update('coffer master key id\u0000').update(key).digest('hex').slice(0, 12)}`;
}

/**
 * Master keys by id. The first key listed is the active one (new ciphertexts and rotation use
 * it); the others only open older ciphertexts until `coffer secrets rotate` has moved them.
 */
export class Keyring {
  readonly activeKeyId: string;
  readonly #keys: Map<string, Buffer>;

  constructor(keys: readonly { id: string; key: Buffer }[]) {
    if (keys.length === 0) throw new ConfigError('no master key given', { field: MASTER_KEY_ENV });
    this.#keys = new Map();
    for (const { id, key } of keys) {
      if (!KEY_ID.test(id))
        throw new ConfigError(`master key id "${id}" must be 1-32 of a-z, 0-9 and -, starting with a letter or digit`, {
          field: MASTER_KEY_ENV,
        });
      if (key.length !== KEY_BYTES) throw new ConfigError(`master key ${id} must be 32 bytes`, { field: MASTER_KEY_ENV });
      if (this.#keys.has(id)) throw new ConfigError(`master key id ${id} is given twice`, { field: MASTER_KEY_ENV });
      this.#keys.set(id, Buffer.from(key));
    }
    this.activeKeyId = keys[0]!.id;
  }

  /**
   * Parses "KEY" (id derived from the key) or "id1:KEY1,id2:KEY2" (commas or newlines; '#'
   * starts a comment line in a key file). The first entry is the active key.
   */
  static parse(spec: string, source = MASTER_KEY_ENV): Keyring {
    const entries = spec
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter((s) => s && !s.startsWith('#'));
    if (entries.length === 0) throw new ConfigError(`${source} is empty`, { field: source });
    return new Keyring(
      entries.map((e, i) => {
        const colon = e.indexOf(':');
        if (colon < 0) {
          const key = decodeKey(e, `${source}: key #${i + 1}`);
          return { id: derivedKeyId(key), key };
        }
        const id = e.slice(0, colon).trim();
        return { id, key: decodeKey(e.slice(colon + 1), `${source}: key ${id}`) };
      }),
    );
  }

  /** Reads COFFER_MASTER_KEY or COFFER_MASTER_KEY_FILE; a ConfigError when neither (or both) is set. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): Keyring {
    const inline = env[MASTER_KEY_ENV];
    const file = env[MASTER_KEY_FILE_ENV];
    if (inline && file) throw new ConfigError(`set ${MASTER_KEY_ENV} or ${MASTER_KEY_FILE_ENV}, not both`, { field: MASTER_KEY_ENV });
    if (inline) return Keyring.parse(inline, MASTER_KEY_ENV);
    if (file) {
      let text: string;
      try {
        const st = statSync(file);
        // A key file others can write could be swapped for a key an attacker knows.
        if (process.platform !== 'win32' && (st.mode & 0o022) !== 0) {
          throw new ConfigError(`${MASTER_KEY_FILE_ENV}: ${file} is writable by group or others (chmod 600 it)`, {
            field: MASTER_KEY_FILE_ENV,
          });
        }
        text = readFileSync(file, 'utf8');
      } catch (e) {
        if (e instanceof ConfigError) throw e;
        throw new ConfigError(`${MASTER_KEY_FILE_ENV}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
          field: MASTER_KEY_FILE_ENV,
        });
      }
      return Keyring.parse(text, MASTER_KEY_FILE_ENV);
    }
    throw new ConfigError(
      `no master key: set ${MASTER_KEY_ENV} (64 hex characters or base64 of 32 bytes, or "id:key,id2:key2") or ${MASTER_KEY_FILE_ENV} to read or write encrypted columns`,
      { field: MASTER_KEY_ENV },
    );
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  #key(kid: string, ctx: SecretContext): Buffer {
    const k = this.#keys.get(kid);
    if (!k) {
      throw new DecryptionError(
        `${where(ctx)} is encrypted under master key id ${kid}, which is not configured (configured: ${this.keyIds.join(', ')}); add it to ${MASTER_KEY_ENV} to read or rotate this value`,
        { table: ctx.table, field: ctx.column, keyId: kid },
      );
    }
    return k;
  }

  /** Encrypts under the active master key, bound to table/column/row. */
  encrypt(plaintext: Buffer | string, ctx: SecretContext): string {
    const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
    const dek = randomBytes(KEY_BYTES);
    try {
      const inner = seal(dek, data, aad(ctx));
      const wrapped = seal(this.#key(this.activeKeyId, ctx), dek, aad(ctx, this.activeKeyId));
      return format(this.activeKeyId, {
        wrapNonce: wrapped.nonce,
        wrappedKey: wrapped.ct,
        wrapTag: wrapped.tag,
        dataNonce: inner.nonce,
        dataTag: inner.tag,
        ct: inner.ct,
      });
    } finally {
      dek.fill(0);
    }
  }

  #unwrap(p: Parsed, ctx: SecretContext): Buffer {
    const dek = open(this.#key(p.kid, ctx), p.wrapNonce, p.wrapTag, p.wrappedKey, aad(ctx, p.kid));
    if (!dek) {
      throw new DecryptionError(
        `${where(ctx)}: authentication failed under master key ${p.kid}: the key is wrong, or the ciphertext was altered or moved from another row or column`,
        { table: ctx.table, field: ctx.column, keyId: p.kid },
      );
    }
    return dek;
  }

  /** Decrypts, or throws DecryptionError; never returns unauthenticated bytes. */
  decrypt(ciphertext: string, ctx: SecretContext): Buffer {
    const p = parse(ciphertext, ctx);
    const dek = this.#unwrap(p, ctx);
    try {
      const out = open(dek, p.dataNonce, p.dataTag, p.ct, aad(ctx));
      if (!out) {
        throw new DecryptionError(`${where(ctx)}: authentication failed: the ciphertext was altered or moved from another row or column`, {
          table: ctx.table,
          field: ctx.column,
          keyId: p.kid,
        });
      }
      return out;
    } finally {
      dek.fill(0);
    }
  }

  decryptString(ciphertext: string, ctx: SecretContext): string {
    return this.decrypt(ciphertext, ctx).toString('utf8');
  }

  /** Re-wraps a ciphertext's data key under the active master key (the data layer is unchanged). */
  rewrap(ciphertext: string, ctx: SecretContext): string {
    const p = parse(ciphertext, ctx);
    if (p.kid === this.activeKeyId) return ciphertext;
    const dek = this.#unwrap(p, ctx);
    try {
      // Prove the whole value opens before re-wrapping it, so rotation never launders a bad one.
      const check = open(dek, p.dataNonce, p.dataTag, p.ct, aad(ctx));
      if (!check)
        throw new DecryptionError(`${where(ctx)}: authentication failed: the ciphertext was altered`, {
          table: ctx.table,
          field: ctx.column,
          keyId: p.kid,
        });
      check.fill(0);
      const wrapped = seal(this.#key(this.activeKeyId, ctx), dek, aad(ctx, this.activeKeyId));
      return format(this.activeKeyId, { ...p, wrapNonce: wrapped.nonce, wrappedKey: wrapped.ct, wrapTag: wrapped.tag });
    } finally {
      dek.fill(0);
    }
  }

  /** Never print key material, whatever a caller does with the object. */
  toJSON(): { activeKeyId: string; keyIds: string[] } {
    return { activeKeyId: this.activeKeyId, keyIds: this.keyIds };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Keyring { active: ${this.activeKeyId}, keys: [${this.keyIds.join(', ')}] }`;
  }
}

let cached: { spec: string; keyring: Keyring } | undefined;

/** The process's keyring from the environment, parsed once per distinct setting. */
export function defaultKeyring(env: NodeJS.ProcessEnv = process.env): Keyring {
  const spec = `${env[MASTER_KEY_ENV] ?? ''}\u0000${env[MASTER_KEY_FILE_ENV] ?? ''}`;
  if (cached && cached.spec === spec) return cached.keyring;
  const keyring = Keyring.fromEnv(env);
  cached = { spec, keyring };
  return keyring;
}
