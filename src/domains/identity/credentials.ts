// Credentials shown once and stored only as hashes: API keys (cfk_), single-use tokens (cft_)
// and sessions (cfs_). A credential is "<prefix>_<id>_<secret>": the id (24 hex) is public and
// used to find the row; the secret (32 random bytes, base64url) is never stored. The stored
// hash is SHA-256 over "coffer:<kind>:v1:<id>:<secret>" (a 256-bit random secret needs no
// slow hash or pepper), compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type CredentialKind = 'api_key' | 'token' | 'session';

const PREFIX: Record<CredentialKind, string> = { api_key: 'cfk', token: 'cft', session: 'cfs' };
const SHAPE: Record<CredentialKind, RegExp> = {
  api_key: /^cfk_([0-9a-f]{24})_([A-Za-z0-9_-]{43})$/,
  token: /^cft_([0-9a-f]{24})_([A-Za-z0-9_-]{43})$/,
  session: /^cfs_([0-9a-f]{24})_([A-Za-z0-9_-]{43})$/,
};

export interface NewCredential {
  id: string;
  /** The full credential to hand to the holder once. */
  value: string;
  hash: string;
}

export function credentialHash(kind: CredentialKind, id: string, secret: string): string {
  return createHash('sha256').update(`coffer:${kind}:v1:${id}:${secret}`, 'utf8').digest('hex');
}

export function newCredential(kind: CredentialKind): NewCredential {
  const id = randomBytes(12).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, value: `${PREFIX[kind]}_${id}_${secret}`, hash: credentialHash(kind, id, secret) };
}

/** The public id and the secret of a presented credential, or undefined when it is malformed. */
export function parseCredential(kind: CredentialKind, value: unknown): { id: string; secret: string } | undefined {
  if (typeof value !== 'string') return undefined;
  const m = SHAPE[kind].exec(value.trim());
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** The public id of a credential (safe to log), or undefined. */
export function credentialId(kind: CredentialKind, value: unknown): string | undefined {
  return parseCredential(kind, value)?.id;
}

const DUMMY_HASH = createHash('sha256').update('coffer:dummy').digest('hex');

/**
 * Constant-time check of a presented credential against the stored hash. With no stored hash
 * (unknown id) it still does the same work, so timing does not tell unknown from wrong.
 */
export function credentialMatches(
  kind: CredentialKind,
  presented: { id: string; secret: string } | undefined,
  storedHash: string | undefined,
): boolean {
  const computed = Buffer.from(credentialHash(kind, presented?.id ?? '0'.repeat(24), presented?.secret ?? ''), 'hex');
  const stored = Buffer.from(storedHash && /^[0-9a-f]{64}$/.test(storedHash) ? storedHash : DUMMY_HASH, 'hex');
  const equal = timingSafeEqual(computed, stored);
  return equal && presented !== undefined && storedHash !== undefined;
}
