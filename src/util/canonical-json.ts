// Canonical JSON and content ids, as specified in docs/canonical-json.md: sorted keys, no
// whitespace, no floats, bigint as decimal strings, bytes as lowercase hex. Two parties that
// agree on the value agree on the bytes, and so on the SHA-256 content id.
import { createHash } from 'node:crypto';
import { ValidationError } from '../db/errors.js';

export type CanonicalValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Date
  | Uint8Array
  | readonly CanonicalValue[]
  | { readonly [key: string]: CanonicalValue | undefined };

function fail(path: string, message: string): never {
  throw new ValidationError(`${path || 'value'}: ${message}`, { field: path || 'value' });
}

// Code-unit order (what Array.prototype.sort does by default), as RFC 8785 sorts keys.
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function encode(v: unknown, path: string, out: string[]): void {
  if (v === null) {
    out.push('null');
    return;
  }
  switch (typeof v) {
    case 'boolean':
      out.push(v ? 'true' : 'false');
      return;
    case 'number':
      if (!Number.isSafeInteger(v)) fail(path, `number ${v} is not a safe integer (use bigint or a decimal string)`);
      out.push(Object.is(v, -0) ? '0' : String(v));
      return;
    case 'bigint':
      out.push(`"${v.toString()}"`);
      return;
    case 'string':
      if (!v.isWellFormed()) fail(path, 'string contains a lone surrogate');
      out.push(JSON.stringify(v));
      return;
    case 'object': {
      if (v instanceof Date) {
        if (Number.isNaN(v.getTime())) fail(path, 'invalid date');
        out.push(`"${v.toISOString()}"`);
        return;
      }
      if (v instanceof Uint8Array) {
        out.push(`"${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}"`);
        return;
      }
      if (Array.isArray(v)) {
        out.push('[');
        v.forEach((item, i) => {
          if (i > 0) out.push(',');
          if (item === undefined) fail(`${path}[${i}]`, 'undefined is not allowed in arrays');
          encode(item, `${path}[${i}]`, out);
        });
        out.push(']');
        return;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) fail(path, `unsupported object type ${proto?.constructor?.name ?? '?'}`);
      const keys = Object.keys(v as object)
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .sort(compareKeys);
      out.push('{');
      keys.forEach((k, i) => {
        if (i > 0) out.push(',');
        if (!k.isWellFormed()) fail(path, 'key contains a lone surrogate');
        out.push(JSON.stringify(k), ':');
        encode((v as Record<string, unknown>)[k], path ? `${path}.${k}` : k, out);
      });
      out.push('}');
      return;
    }
    default:
      fail(path, `${typeof v} is not allowed in canonical JSON`);
  }
}

/** The canonical JSON text of a value. Throws ValidationError naming the offending path. */
export function canonicalJson(value: CanonicalValue): string {
  const out: string[] = [];
  encode(value, '', out);
  return out.join('');
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 (lowercase hex) of the UTF-8 canonical JSON of a value. */
export function contentId(value: CanonicalValue): string {
  return sha256Hex(Buffer.from(canonicalJson(value), 'utf8'));
}
