// The portable, canonical form of a row, shared by every operator command. A decoded row (the
// codec's TypeScript values) becomes one JSON array in the table's column order, each value
// encoded by its logical column type, so the same row gives the same bytes on every backend:
//
//   int → number · bigint/serial/uint256 → decimal string · bytes → base64 · bool → boolean
//   timestamp → epoch milliseconds (UTC) · json → the parsed value with keys sorted
//   varchar/text/hex/enum → string · SQL NULL → null
//
// This line is what the logical backup format stores and what content checksums hash.
//
// Table checksums are order-independent: the sum (mod 2^256) of the SHA-256 of every row's
// canonical line. Each backend orders primary keys by its own rules (collations, PAD SPACE,
// uint256 stored as text on SQLite and MySQL), so a digest over "rows in key order" would
// differ between backends holding identical data, or force a sort no index can serve. A sum of
// per-row hashes is the same whatever order rows are read in; with the row count beside it, an
// accidental collision is as unlikely as a SHA-256 collision.
import { createHash } from 'node:crypto';
import type { ColumnDef, ColumnType, TableDef } from '../schema/model.js';

export type Row = Record<string, unknown>;

/** A value in its portable JSON-safe form (see the header). */
export function toPortable(t: ColumnType, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'int':
      return Number(v);
    case 'bigint':
    case 'serial':
    case 'uint256':
      return (typeof v === 'bigint' ? v : BigInt(String(v))).toString();
    case 'bytes': {
      const u = v as Uint8Array;
      return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64');
    }
    case 'bool':
      return Boolean(v);
    case 'timestamp':
      return v instanceof Date ? v.getTime() : Number(v);
    case 'json':
      return v;
    default:
      return String(v);
  }
}

/** The decoded TypeScript value of a portable value. */
export function fromPortable(t: ColumnType, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'int':
      return Number(v);
    case 'bigint':
    case 'serial':
    case 'uint256':
      return BigInt(String(v));
    case 'bytes':
      return Buffer.from(String(v), 'base64');
    case 'bool':
      return Boolean(v);
    case 'timestamp':
      return new Date(Number(v));
    case 'json':
      return v;
    default:
      return String(v);
  }
}

/** JSON with object keys sorted (code-unit order), no whitespace; numbers as JSON.stringify writes them. */
export function stableJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'bigint') return JSON.stringify(v.toString());
  if (typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  const keys = Object.keys(v)
    .filter((k) => (v as Row)[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson((v as Row)[k])}`).join(',')}}`;
}

/** The canonical line of a decoded row over the given columns. */
export function canonicalLine(columns: readonly ColumnDef[], row: Row): string {
  const parts: string[] = [];
  for (const c of columns) {
    const p = toPortable(c.type, row[c.name]);
    parts.push(c.type.kind === 'json' ? stableJson(p) : JSON.stringify(p));
  }
  return `[${parts.join(',')}]`;
}

/** Parses a canonical line back into a decoded row. */
export function parseLine(columns: readonly ColumnDef[], line: string): Row {
  const values = JSON.parse(line) as unknown[];
  if (!Array.isArray(values) || values.length !== columns.length) {
    throw new Error(`expected a row of ${columns.length} values, got ${Array.isArray(values) ? values.length : typeof values}`);
  }
  const row: Row = {};
  columns.forEach((c, i) => (row[c.name] = fromPortable(c.type, values[i])));
  return row;
}

const MOD = 1n << 256n;

/** Row count and order-independent content checksum of a table (see the header). */
export class TableDigest {
  rows = 0;
  bytes = 0;
  #sum = 0n;

  add(line: string): void {
    this.rows++;
    this.bytes += Buffer.byteLength(line);
    this.#sum = (this.#sum + BigInt(`0x${createHash('sha256').update(line).digest('hex')}`)) % MOD;
  }

  get checksum(): string {
    return this.#sum.toString(16).padStart(64, '0');
  }
}

/** The primary-key columns of a table, in key order. */
export function keyColumns(table: TableDef): ColumnDef[] {
  return table.primaryKey.map((k) => {
    const c = table.columns.find((x) => x.name === k);
    if (!c) throw new Error(`primary key column ${table.name}.${k} is not a column`);
    return c;
  });
}

/** The primary key of a decoded row in portable form, e.g. {"chain_id":"btc","height":"5"}. */
export function portableKey(table: TableDef, row: Row): Row {
  const out: Row = {};
  for (const c of keyColumns(table)) out[c.name] = toPortable(c.type, row[c.name]);
  return out;
}

/** A decoded key from its portable form. */
export function keyFromPortable(table: TableDef, key: Row): Row {
  const out: Row = {};
  for (const c of keyColumns(table)) out[c.name] = fromPortable(c.type, key[c.name]);
  return out;
}

/** How a key reads in messages: id=42, or chain_id="btc", height=5. */
export function describeKey(table: TableDef, row: Row): string {
  return keyColumns(table)
    .map((c) => {
      const p = toPortable(c.type, row[c.name]);
      return `${c.name}=${typeof p === 'string' && c.type.kind !== 'bigint' && c.type.kind !== 'serial' && c.type.kind !== 'uint256' ? JSON.stringify(p) : String(p)}`;
    })
    .join(', ');
}

/** The map key of a row's primary key (for lookups while comparing). */
export function keyString(table: TableDef, row: Row): string {
  return stableJson(keyColumns(table).map((c) => toPortable(c.type, row[c.name])));
}
