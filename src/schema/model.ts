// The logical schema: one dialect-free description of every table, from which each dialect's
// DDL and the parity expectations are compiled. Migrations are lists of operations on it.
import { createHash } from 'node:crypto';

export type Dialect = 'postgres' | 'mysql' | 'sqlite';
export const DIALECTS: readonly Dialect[] = ['postgres', 'mysql', 'sqlite'];

export type ColumnType =
  /** 32-bit signed integer (counts, indexes, small enums). Decoded as number. */
  | { kind: 'int' }
  /** 64-bit signed integer (heights, sats, msat). Decoded as bigint. */
  | { kind: 'bigint' }
  /** Auto-increment 64-bit primary key. Decoded as bigint. */
  | { kind: 'serial' }
  /** Unsigned integer up to 2^256-1 (token amounts, wei). Decoded as bigint. */
  | { kind: 'uint256' }
  /** Bounded text; the bound is enforced on every backend (a CHECK on SQLite). */
  | { kind: 'varchar'; max: number }
  /** Unbounded text; not indexable. */
  | { kind: 'text' }
  /** Lowercase hex of a fixed length, or an even length up to max. */
  | { kind: 'hex'; length?: number; max?: number }
  /** Binary payload. Decoded as Buffer. */
  | { kind: 'bytes' }
  | { kind: 'bool' }
  /** UTC instant with millisecond precision. Decoded as Date. */
  | { kind: 'timestamp' }
  /** A JSON document. Decoded as a parsed value. */
  | { kind: 'json' }
  /** One of a fixed set of strings. */
  | { kind: 'enum'; values: readonly string[] };

export type DefaultValue = { kind: 'value'; value: string | number | boolean | bigint } | { kind: 'now' };

export interface ColumnDef {
  name: string;
  type: ColumnType;
  nullable: boolean;
  default?: DefaultValue;
}

export type CheckSql = string | { postgres: string; mysql: string; sqlite: string };

export interface CheckDef {
  name: string;
  sql: CheckSql;
}

export type OnDelete = 'cascade' | 'restrict' | 'set null' | 'no action';

export interface ForeignKeyDef {
  name: string;
  columns: readonly string[];
  refTable: string;
  refColumns: readonly string[];
  onDelete: OnDelete;
}

export interface IndexDef {
  name: string;
  table: string;
  columns: readonly string[];
  unique: boolean;
}

export interface TableDef {
  name: string;
  /** The domain that owns the table (used for per-domain grants and docs). */
  domain: string;
  columns: ColumnDef[];
  primaryKey: readonly string[];
  foreignKeys: ForeignKeyDef[];
  checks: CheckDef[];
  /** Unique and plain indexes, created as named indexes so every backend shows the same names. */
  indexes: IndexDef[];
}

export interface TriggerDef {
  table: string;
  name: string;
}

export type Operation =
  | { op: 'createTable'; table: TableDef }
  | { op: 'addColumn'; table: string; column: ColumnDef }
  | { op: 'createIndex'; index: IndexDef }
  | { op: 'dropIndex'; table: string; name: string }
  /** Dialect-specific SQL (triggers, grants). MySQL statements must be idempotent. */
  | { op: 'raw'; sql: Record<Dialect, readonly string[]>; triggers?: readonly TriggerDef[] };

export interface Schema {
  tables: Map<string, TableDef>;
  triggers: TriggerDef[];
}

/** Longest identifier every backend accepts (PostgreSQL truncates at 63 bytes). */
export const MAX_IDENTIFIER = 63;

export function identifier(name: string): string {
  if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`identifier "${name}" must be lowercase snake_case`);
  if (name.length > MAX_IDENTIFIER) throw new Error(`identifier "${name}" is longer than ${MAX_IDENTIFIER} characters`);
  return name;
}

/** A generated constraint name, shortened with a hash when it would exceed the limit. */
export function autoName(...parts: string[]): string {
  const full = parts.join('_');
  if (full.length <= MAX_IDENTIFIER) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  return `${full.slice(0, MAX_IDENTIFIER - 9)}_${hash}`;
}

export function emptySchema(): Schema {
  return { tables: new Map(), triggers: [] };
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Applies one operation to the logical schema, checking it makes sense. */
export function applyOperation(schema: Schema, op: Operation): void {
  switch (op.op) {
    case 'createTable': {
      if (schema.tables.has(op.table.name)) throw new Error(`table ${op.table.name} already exists`);
      validateTable(schema, op.table);
      schema.tables.set(op.table.name, clone(op.table));
      return;
    }
    case 'addColumn': {
      const t = mustTable(schema, op.table);
      if (t.columns.some((c) => c.name === op.column.name)) throw new Error(`column ${op.table}.${op.column.name} exists`);
      if (!op.column.nullable && !op.column.default) {
        throw new Error(`added column ${op.table}.${op.column.name} must be nullable or have a default`);
      }
      // SQLite refuses ADD COLUMN with a non-constant default on a table that has rows, so such a
      // migration would pass every test on empty tables and fail upgrading a real database.
      if (op.column.default?.kind === 'now') {
        throw new Error(
          `added column ${op.table}.${op.column.name} cannot default to now() (SQLite cannot add a column with a non-constant default to a table that has rows): add it nullable or with a constant default, then backfill it`,
        );
      }
      identifier(op.column.name);
      t.columns.push(clone(op.column));
      return;
    }
    case 'createIndex': {
      const t = mustTable(schema, op.index.table);
      assertIndexNameFree(schema, op.index.name);
      for (const c of op.index.columns) mustColumn(t, c);
      t.indexes.push(clone(op.index));
      return;
    }
    case 'dropIndex': {
      const t = mustTable(schema, op.table);
      const i = t.indexes.findIndex((x) => x.name === op.name);
      if (i < 0) throw new Error(`index ${op.name} not found on ${op.table}`);
      t.indexes.splice(i, 1);
      return;
    }
    case 'raw': {
      for (const trg of op.triggers ?? []) {
        mustTable(schema, trg.table);
        schema.triggers.push({ ...trg });
      }
      return;
    }
  }
}

function mustTable(schema: Schema, name: string): TableDef {
  const t = schema.tables.get(name);
  if (!t) throw new Error(`table ${name} does not exist`);
  return t;
}

function mustColumn(t: TableDef, name: string): ColumnDef {
  const c = t.columns.find((x) => x.name === name);
  if (!c) throw new Error(`column ${t.name}.${name} does not exist`);
  return c;
}

function assertIndexNameFree(schema: Schema, name: string): void {
  identifier(name);
  for (const t of schema.tables.values()) {
    if (t.indexes.some((i) => i.name === name)) throw new Error(`index name ${name} is already used on ${t.name}`);
  }
}

function validateTable(schema: Schema, t: TableDef): void {
  identifier(t.name);
  const seen = new Set<string>();
  for (const c of t.columns) {
    identifier(c.name);
    if (seen.has(c.name)) throw new Error(`duplicate column ${t.name}.${c.name}`);
    seen.add(c.name);
    if (c.type.kind === 'serial' && (t.primaryKey.length !== 1 || t.primaryKey[0] !== c.name)) {
      throw new Error(`serial column ${t.name}.${c.name} must be the whole primary key`);
    }
    if (c.type.kind === 'hex' && (c.type.length === undefined) === (c.type.max === undefined)) {
      throw new Error(`hex column ${t.name}.${c.name} needs exactly one of length or max`);
    }
    if (c.type.kind === 'varchar' && (c.type.max < 1 || c.type.max > 4000)) {
      throw new Error(`varchar column ${t.name}.${c.name}: max must be 1..4000 (use text for longer)`);
    }
  }
  if (t.primaryKey.length === 0) throw new Error(`table ${t.name} needs a primary key`);
  for (const c of t.primaryKey) {
    const col = mustColumn(t, c);
    if (col.nullable) throw new Error(`primary key column ${t.name}.${c} may not be nullable`);
  }
  const names = new Set<string>();
  const claim = (n: string) => {
    identifier(n);
    if (names.has(n)) throw new Error(`constraint name ${n} used twice in ${t.name}`);
    names.add(n);
  };
  for (const fk of t.foreignKeys) {
    claim(fk.name);
    for (const c of fk.columns) mustColumn(t, c);
    const ref = fk.refTable === t.name ? t : mustTable(schema, fk.refTable);
    for (const c of fk.refColumns) mustColumn(ref, c);
    if (fk.columns.length !== fk.refColumns.length) throw new Error(`foreign key ${fk.name}: column counts differ`);
  }
  for (const ck of t.checks) claim(ck.name);
  for (const ix of t.indexes) {
    assertIndexNameFree(schema, ix.name);
    claim(ix.name);
    if (ix.table !== t.name) throw new Error(`index ${ix.name} belongs to ${ix.table}, not ${t.name}`);
    for (const c of ix.columns) {
      const col = mustColumn(t, c);
      if (col.type.kind === 'text' || col.type.kind === 'json' || col.type.kind === 'bytes') {
        throw new Error(`index ${ix.name}: column ${c} is ${col.type.kind} and cannot be indexed on every backend`);
      }
    }
  }
}

/** Builds the schema that a list of migrations produces, in order. */
export function schemaOf(ops: Iterable<Operation>): Schema {
  const s = emptySchema();
  for (const op of ops) applyOperation(s, op);
  return s;
}
