// Row images and audit changes as plain JSON that survives every backend's JSON column and
// re-encodes to the same canonical JSON: integers beyond 2^53 and bigint as decimal strings,
// bytes as lowercase hex, timestamps as ISO-8601 UTC with milliseconds, non-integer numbers as
// strings (canonical JSON has no floats).
import type { Tx } from '../../db/tx.js';
import { ValidationError } from '../../db/errors.js';
import type { ColumnType } from '../../schema/model.js';
import { textProblem } from '../../util/text.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** Converts any value Coffer stores into canonical-safe JSON. */
export function toJsonValue(v: unknown, path = 'value'): JsonValue {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'string': {
      // PostgreSQL JSON refuses NUL, and canonical JSON refuses lone surrogates: fail the same everywhere.
      const problem = textProblem(v);
      if (problem) throw new ValidationError(`${path}: ${problem}`, { field: path });
      return v;
    }
    case 'number':
      return Number.isSafeInteger(v) ? (Object.is(v, -0) ? 0 : v) : String(v);
    case 'bigint':
      return v.toString();
    case 'object': {
      if (v instanceof Date) {
        if (Number.isNaN(v.getTime())) throw new ValidationError(`${path}: invalid date`, { field: path });
        return v.toISOString();
      }
      if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
      if (Array.isArray(v)) return v.map((x, i) => toJsonValue(x, `${path}[${i}]`));
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null)
        throw new ValidationError(`${path}: unsupported value type ${proto?.constructor?.name ?? '?'}`, { field: path });
      const out: Record<string, JsonValue> = {};
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) out[k] = toJsonValue(x, `${path}.${k}`);
      return out;
    }
    default:
      throw new ValidationError(`${path}: ${typeof v} cannot be stored as JSON`, { field: path });
  }
}

function columnJson(t: ColumnType, v: unknown, path: string): JsonValue {
  if (v === null || v === undefined) return null;
  if (t.kind === 'timestamp' && !(v instanceof Date)) return new Date(Number(v)).toISOString();
  return toJsonValue(v, path);
}

/** A decoded row of `table` as JSON (column types decide the representation). */
export function rowJson(tx: Tx, table: string, row: Record<string, unknown>): Record<string, JsonValue> {
  const codec = tx.codec(table);
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(row)) out[k] = columnJson(codec.column(k).type, v, `${table}.${k}`);
  return out;
}
