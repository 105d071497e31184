// Converts between TypeScript values and each backend's storage of a logical column type, and
// validates on the way in so bad input fails with a ValidationError before any SQL runs.
import type { ColumnDef, ColumnType, Dialect, TableDef } from '../schema/model.js';
import { ValidationError } from './errors.js';
import { jsonTextProblem } from '../util/text.js';

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const UINT256_MAX = 2n ** 256n - 1n;

// The timestamps every backend stores and reads back exactly: years 1000 to 9999, UTC, to the
// millisecond (docs/foundation.md, "Types that are exact everywhere"). MySQL/MariaDB's DATETIME
// documents no more (outside it the server may store a value, but mysql2 read years 0-99 back
// 1900 years later), and PostgreSQL refuses years past 294276 with an error naming no field.
// util/zod-parse.ts's isStorableTime, which the domains' input schemas use, checks the same range.
/** 1000-01-01T00:00:00.000Z, the earliest timestamp a column stores. */
export const TIMESTAMP_MIN_MS = Date.UTC(1000, 0, 1);
/** 9999-12-31T23:59:59.999Z, the latest timestamp a column stores. */
export const TIMESTAMP_MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const TIMESTAMP_RANGE = 'must be within the years 1000 to 9999 (UTC)';

function invalid(field: string, message: string): never {
  throw new ValidationError(`${field}: ${message}`, { field });
}

function asBigInt(field: string, v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?(0|[1-9][0-9]*)$/.test(v)) return BigInt(v);
  return invalid(field, `expected an integer (bigint or decimal string), got ${typeof v === 'number' ? v : typeof v}`);
}

const bigintAsString = (_k: string, x: unknown) => (typeof x === 'bigint' ? x.toString() : x);

/** Objects a JSON document may hold before its bigint scan gives up (and the replacer decides). */
const JSON_SCAN_BUDGET = 4096;

/**
 * The budget left after looking for a bigint in `x`, or -1 once one is found or the budget (a
 * count of objects and arrays, so a cycle ends the scan too) runs out.
 */
function scanForBigInt(x: unknown, budget: number): number {
  if (typeof x === 'bigint') return -1;
  if (x === null || typeof x !== 'object') return budget;
  if (--budget < 0) return -1;
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) if ((budget = scanForBigInt(x[i], budget)) < 0) return -1;
    return budget;
  }
  for (const k in x) if ((budget = scanForBigInt((x as Record<string, unknown>)[k], budget)) < 0) return -1;
  return budget;
}

/** Validates a value for a column type and returns what the backend's driver should bind. */
export function encodeValue(d: Dialect, t: ColumnType, v: unknown, field: string): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'int': {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
        invalid(field, 'expected a 32-bit integer');
      }
      return v;
    }
    case 'bigint':
    case 'serial': {
      const b = asBigInt(field, v);
      if (b < INT64_MIN || b > INT64_MAX) invalid(field, 'out of the 64-bit integer range');
      return b;
    }
    case 'uint256': {
      const b = asBigInt(field, v);
      if (b < 0n) invalid(field, 'must not be negative');
      if (b > UINT256_MAX) invalid(field, 'exceeds 2^256-1');
      return b.toString();
    }
    case 'varchar':
    case 'text':
    case 'enum': {
      if (typeof v !== 'string') invalid(field, 'expected a string');
      if (!v.isWellFormed()) invalid(field, 'contains a lone surrogate');
      if (v.includes('\u0000')) invalid(field, 'contains a NUL character');
      // Code points never outnumber UTF-16 units: count them only when the units exceed the limit.
      if (t.kind === 'varchar' && v.length > t.max && [...v].length > t.max) invalid(field, `longer than ${t.max} characters`);
      if (t.kind === 'enum' && !t.values.includes(v)) invalid(field, `must be one of ${t.values.join(', ')}`);
      return v;
    }
    case 'hex': {
      if (typeof v !== 'string') invalid(field, 'expected a lowercase hex string');
      if (!/^[0-9a-f]*$/.test(v)) invalid(field, 'must be lowercase hex');
      if (t.length !== undefined && v.length !== t.length) invalid(field, `must be ${t.length} hex characters`);
      if (t.max !== undefined && (v.length % 2 !== 0 || v.length > t.max))
        invalid(field, `must be an even number of hex characters, at most ${t.max}`);
      return v;
    }
    case 'bytes': {
      if (!(v instanceof Uint8Array)) invalid(field, 'expected bytes (Buffer or Uint8Array)');
      return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
    case 'bool': {
      if (typeof v !== 'boolean') invalid(field, 'expected a boolean');
      return d === 'postgres' ? v : v ? 1 : 0;
    }
    case 'timestamp': {
      if (!(v instanceof Date)) invalid(field, 'expected a valid Date');
      const ms = v.getTime();
      // NaN fails both comparisons.
      if (!(ms >= TIMESTAMP_MIN_MS && ms <= TIMESTAMP_MAX_MS)) invalid(field, Number.isNaN(ms) ? 'expected a valid Date' : TIMESTAMP_RANGE);
      return d === 'sqlite' ? BigInt(ms) : v;
    }
    case 'json': {
      // JSON.stringify with a replacer function runs it for every key and value: only a document
      // that holds a bigint pays for it (a toJSON that returns one is caught by the retry).
      const replacer = scanForBigInt(v, JSON_SCAN_BUDGET) < 0 ? bigintAsString : undefined;
      let json: string | undefined;
      try {
        json = JSON.stringify(v, replacer);
      } catch (e) {
        if (replacer) return invalid(field, `not serialisable as JSON (${(e as Error).message})`);
        try {
          json = JSON.stringify(v, bigintAsString);
        } catch (e2) {
          return invalid(field, `not serialisable as JSON (${(e2 as Error).message})`);
        }
      }
      // What PostgreSQL's JSON refuses is refused on every backend, so a document stored on one
      // can be stored, copied and restored on any other.
      const problem = json === undefined ? null : jsonTextProblem(json);
      if (problem) invalid(field, problem);
      return json;
    }
  }
}

/**
 * Turns what a driver returned into the column type's TypeScript value. JSON arrives as text
 * from every driver (the pg pool is told not to parse json/jsonb, see engine.ts), so a JSON
 * document that is itself a string decodes the same everywhere.
 */
export function decodeValue(t: ColumnType, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'int':
      return Number(v);
    case 'bigint':
    case 'serial':
    case 'uint256':
      return typeof v === 'bigint' ? v : BigInt(String(v));
    case 'bool':
      return typeof v === 'boolean' ? v : Number(v) !== 0;
    case 'timestamp':
      return v instanceof Date ? v : new Date(Number(v));
    case 'bytes':
      return Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array);
    case 'json':
      return typeof v === 'string' ? JSON.parse(v) : v;
    default:
      return v;
  }
}

/** 400 Gregorian years, one whole cycle of the calendar (146,097 days), in milliseconds. */
const GREGORIAN_CYCLE_MS = 146_097 * 86_400_000;

/**
 * The instant of a MySQL/MariaDB DATE, DATETIME or TIMESTAMP as the server sends it in UTC
 * ('YYYY-MM-DD[ hh:mm:ss[.ffffff]]'); fractions past the millisecond are cut, as mysql2 does.
 * mysql2's own reader builds years 0-99 with `new Date(string)`, which V8 reads as 1900-1999;
 * this one is exact for every year the server sends: Date.UTC has the same quirk, so such a year
 * is computed 400 years later (the same calendar) and moved back. Zero or out-of-range months and
 * days give an invalid Date, as from mysql2. Digits are read by char code: engine.ts runs this for
 * every such value read.
 */
export function parseMysqlDateTime(s: string): Date {
  const n = s.length;
  if (n < 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return new Date(NaN);
  const y = (s.charCodeAt(0) - 48) * 1000 + (s.charCodeAt(1) - 48) * 100 + (s.charCodeAt(2) - 48) * 10 + (s.charCodeAt(3) - 48);
  const mo = (s.charCodeAt(5) - 48) * 10 + (s.charCodeAt(6) - 48);
  const d = (s.charCodeAt(8) - 48) * 10 + (s.charCodeAt(9) - 48);
  if (!(mo >= 1 && mo <= 12 && d >= 1 && d <= 31)) return new Date(NaN);
  let h = 0;
  let mi = 0;
  let se = 0;
  let ms = 0;
  if (n >= 19) {
    h = (s.charCodeAt(11) - 48) * 10 + (s.charCodeAt(12) - 48);
    mi = (s.charCodeAt(14) - 48) * 10 + (s.charCodeAt(15) - 48);
    se = (s.charCodeAt(17) - 48) * 10 + (s.charCodeAt(18) - 48);
    if (n > 20) {
      ms = (s.charCodeAt(20) - 48) * 100;
      if (n > 21) ms += (s.charCodeAt(21) - 48) * 10;
      if (n > 22) ms += s.charCodeAt(22) - 48;
    }
  }
  return new Date(y < 100 ? Date.UTC(y + 400, mo - 1, d, h, mi, se, ms) - GREGORIAN_CYCLE_MS : Date.UTC(y, mo - 1, d, h, mi, se, ms));
}

/** The string column kinds: every driver returns them as decodeValue returns them (its default case). */
export const STRING_KINDS: ReadonlySet<ColumnType['kind']> = new Set(['varchar', 'text', 'enum', 'hex']);

/** Encodes and decodes whole rows of one table. */
export class TableCodec {
  readonly table: TableDef;
  readonly #dialect: Dialect;
  readonly #columns: Map<string, ColumnDef>;
  /** Columns whose driver value decodeValue changes (strings pass through as they are). */
  readonly #converted: readonly ColumnDef[];
  constructor(dialect: Dialect, table: TableDef) {
    this.#dialect = dialect;
    this.table = table;
    this.#columns = new Map(table.columns.map((c) => [c.name, c]));
    this.#converted = table.columns.filter((c) => !STRING_KINDS.has(c.type.kind));
  }

  column(name: string): ColumnDef {
    const c = this.#columns.get(name);
    if (!c) throw new Error(`no column ${this.table.name}.${name}`);
    return c;
  }

  /** Validates and encodes the given columns; unknown keys are a programming error. */
  encode(row: Record<string, unknown>, fieldPrefix = ''): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const keys = Object.keys(row);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const v = row[k];
      if (v === undefined) continue;
      const c = this.column(k);
      // The field name is built only for a prefix (bulk rows name their index), not per value.
      const field = fieldPrefix ? `${fieldPrefix}.${k}` : k;
      if (v === null) {
        if (!c.nullable) invalid(field, 'is required');
        out[k] = null;
      } else out[k] = encodeValue(this.#dialect, c.type, v, field);
    }
    return out;
  }

  /**
   * Decodes the table's columns present in `row` (other keys, such as aggregates, are kept as
   * they are). A copy of the row with only the columns that need converting rewritten: every
   * read decodes rows, and a key-by-key rebuild cost three times as much.
   */
  decode<T = Record<string, unknown>>(row: Record<string, unknown>): T {
    const out: Record<string, unknown> = { ...row };
    const conv = this.#converted;
    for (let i = 0; i < conv.length; i++) {
      const c = conv[i]!;
      const v = out[c.name];
      if (v !== undefined) out[c.name] = decodeValue(c.type, v);
    }
    return out as T;
  }
}

/** Normalises an aggregate or count a driver returned (string, bigint or number) to bigint. */
export function toBigInt(v: unknown): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  return BigInt(String(v));
}
