// A compact way to write the logical schema in migrations:
//   createTable('chain_blocks', { domain: 'chain', columns: { height: c.bigint(), … }, primaryKey: [...] })
import { autoName } from './model.js';
import type { CheckSql, ColumnDef, ColumnType, DefaultValue, IndexDef, OnDelete, Operation, TableDef } from './model.js';

export interface ColSpec {
  type: ColumnType;
  nullable: boolean;
  default?: DefaultValue;
}

interface ColOpts {
  nullable?: boolean;
  default?: string | number | boolean | bigint | 'now()';
}

function col(type: ColumnType, o: ColOpts = {}): ColSpec {
  const spec: ColSpec = { type, nullable: o.nullable ?? false };
  if (o.default !== undefined) {
    spec.default = o.default === 'now()' ? { kind: 'now' } : { kind: 'value', value: o.default };
  }
  return spec;
}

export const c = {
  int: (o?: ColOpts) => col({ kind: 'int' }, o),
  bigint: (o?: ColOpts) => col({ kind: 'bigint' }, o),
  serial: () => col({ kind: 'serial' }),
  uint256: (o?: ColOpts) => col({ kind: 'uint256' }, o),
  varchar: (max: number, o?: ColOpts) => col({ kind: 'varchar', max }, o),
  text: (o?: ColOpts) => col({ kind: 'text' }, o),
  /** Lowercase hex of exactly `length` characters (64 for a txid or SHA-256). */
  hex: (length: number, o?: ColOpts) => col({ kind: 'hex', length }, o),
  /** Lowercase hex of an even length up to `max` characters. */
  hexUpTo: (max: number, o?: ColOpts) => col({ kind: 'hex', max }, o),
  bytes: (o?: ColOpts) => col({ kind: 'bytes' }, o),
  bool: (o?: ColOpts) => col({ kind: 'bool' }, o),
  timestamp: (o?: ColOpts) => col({ kind: 'timestamp' }, o),
  json: (o?: ColOpts) => col({ kind: 'json' }, o),
  enum: (values: readonly string[], o?: ColOpts) => col({ kind: 'enum', values }, o),
};

export interface ForeignKeySpec {
  columns: readonly string[];
  references: string;
  refColumns?: readonly string[];
  onDelete?: OnDelete;
}

export interface TableSpec {
  domain: string;
  columns: Record<string, ColSpec>;
  primaryKey: readonly string[];
  /** name → columns; created as named unique indexes. */
  unique?: Record<string, readonly string[]>;
  /** name → columns. */
  indexes?: Record<string, readonly string[]>;
  foreignKeys?: Record<string, ForeignKeySpec>;
  checks?: Record<string, CheckSql>;
}

export function tableDef(name: string, spec: TableSpec): TableDef {
  const columns: ColumnDef[] = Object.entries(spec.columns).map(([n, s]) => ({ name: n, ...s }));
  const indexes: IndexDef[] = [
    ...Object.entries(spec.unique ?? {}).map(([n, cols]) => ({ name: n, table: name, columns: [...cols], unique: true })),
    ...Object.entries(spec.indexes ?? {}).map(([n, cols]) => ({ name: n, table: name, columns: [...cols], unique: false })),
  ];
  const foreignKeys = Object.entries(spec.foreignKeys ?? {}).map(([n, fk]) => ({
    name: n,
    columns: [...fk.columns],
    refTable: fk.references,
    refColumns: [...(fk.refColumns ?? fk.columns)],
    onDelete: fk.onDelete ?? ('no action' as const),
  }));
  // Every foreign key gets an index that starts with its columns: MySQL would otherwise create
  // one under its own name (breaking parity), and PostgreSQL needs it for cascading deletes.
  const startsWith = (cols: readonly string[], prefix: readonly string[]) => prefix.every((c, i) => cols[i] === c);
  for (const fk of foreignKeys) {
    const covered = startsWith(spec.primaryKey, fk.columns) || indexes.some((ix) => startsWith(ix.columns, fk.columns));
    if (!covered) indexes.push({ name: autoName(fk.name, 'ix'), table: name, columns: [...fk.columns], unique: false });
  }
  return {
    name,
    domain: spec.domain,
    columns,
    primaryKey: [...spec.primaryKey],
    foreignKeys,
    checks: Object.entries(spec.checks ?? {}).map(([n, sql]) => ({ name: n, sql })),
    indexes,
  };
}

export function createTable(name: string, spec: TableSpec): Operation {
  return { op: 'createTable', table: tableDef(name, spec) };
}

export function createIndex(table: string, name: string, columns: readonly string[], unique = false): Operation {
  return { op: 'createIndex', index: { name, table, columns: [...columns], unique } };
}

export function addColumn(table: string, name: string, spec: ColSpec): Operation {
  return { op: 'addColumn', table, column: { name, ...spec } };
}
