// The default signature scheme of offers, invoices and asset-manager approvals: ECDSA on
// secp256k1 (the curve of the chains this serves), public key compressed (33 bytes), over
// SHA-256 of the 32 raw bytes of the content hash; signature DER (up to 72 bytes) or compact
// r‖s (64 bytes). Verified with node:crypto, so no dependency is added.
import { createPublicKey, verify, type KeyObject } from 'node:crypto';

// DER SubjectPublicKeyInfo header for an id-ecPublicKey on secp256k1 with a 33-byte point.
const SPKI_SECP256K1_COMPRESSED = Buffer.from('3036301006072a8648ce3d020106052b8104000a032200', 'hex');

// Parsed keys by hex, most recently used last. Parsing (a point decompression in OpenSSL) cost
// more than all of an invoice's other validation; a key's validity is a pure function of its
// hex, so remembering the result changes nothing but the time. Bounded, so hostile input
// cannot grow it.
const KEY_CACHE_SIZE = 1024;
const keyCache = new Map<string, KeyObject | null>();

function publicKeyObject(hex: string): KeyObject | null {
  const hit = keyCache.get(hex);
  if (hit !== undefined) {
    keyCache.delete(hex);
    keyCache.set(hex, hit);
    return hit;
  }
  if (!/^0[23][0-9a-f]{64}$/.test(hex)) return null;
  let key: KeyObject | null;
  try {
    key = createPublicKey({ key: Buffer.concat([SPKI_SECP256K1_COMPRESSED, Buffer.from(hex, 'hex')]), format: 'der', type: 'spki' });
  } catch {
    key = null; // not a point on the curve
  }
  keyCache.set(hex, key);
  if (keyCache.size > KEY_CACHE_SIZE) keyCache.delete(keyCache.keys().next().value!);
  return key;
}

/** True when `signatureHex` is a valid signature by `publicKeyHex` over the content hash `hashHex`. */
export function verifySecp256k1(publicKeyHex: string, hashHex: string, signatureHex: string): boolean {
  const key = publicKeyObject(publicKeyHex);
  if (!key || !/^[0-9a-f]{64}$/.test(hashHex) || !/^([0-9a-f]{2})+$/.test(signatureHex)) return false;
  const sig = Buffer.from(signatureHex, 'hex');
  const data = Buffer.from(hashHex, 'hex');
  try {
    return sig.length === 64
      ? verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
      : verify('sha256', data, { key, dsaEncoding: 'der' }, sig);
  } catch {
    return false; // malformed DER
  }
}

/** True when the hex string is a valid compressed secp256k1 point. */
export function isValidPublicKey(publicKeyHex: string): boolean {
  return publicKeyObject(publicKeyHex) !== null;
}
