// node-postgres reads a row description with every execution of a statement, named ones too, and
// its Result.addFields builds the result's empty row by writing each column into a
// null-prototype object and then spreading it. That costs about 1.3 µs a column (130 µs per
// token settlement on PostgreSQL, 101 columns over 12 statements; 0.5 µs a column with this one). This
// installs an addFields that builds the same row in a plain object. It is installed only after
// a probe shows it leaves a Result exactly as the original does (fields, parsers, the empty
// row's keys, order, values and prototype), so a node-postgres release that changes addFields
// keeps its own. A column named __proto__ (which a plain object cannot hold as its own key by
// assignment) goes to the original.
import pg from 'pg';

type Parser = (value: unknown) => unknown;

interface FieldDescription {
  name: string;
  dataTypeID: number;
  format?: string;
}

interface ResultInternals {
  fields: FieldDescription[];
  _parsers: Parser[] | undefined;
  _types: { getTypeParser(oid: number, format: string): Parser } | undefined;
  _prebuiltEmptyResultObject: Record<string, null> | null;
  addFields(fields: FieldDescription[]): void;
}

type ResultClass = new (rowMode?: string, types?: ResultInternals['_types']) => ResultInternals;

const defaultTypes = pg.types as unknown as { getTypeParser(oid: number, format: string): Parser };

function fastAddFields(original: (this: ResultInternals, f: FieldDescription[]) => void) {
  return function addFields(this: ResultInternals, fields: FieldDescription[]): void {
    for (let i = 0; i < fields.length; i++) if (fields[i]!.name === '__proto__') return original.call(this, fields);
    this.fields = fields;
    if (fields.length) this._parsers = new Array<Parser>(fields.length);
    const types = this._types ?? defaultTypes;
    const row: Record<string, null> = {};
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      row[f.name] = null;
      this._parsers![i] = types.getTypeParser(f.dataTypeID, f.format || 'text');
    }
    this._prebuiltEmptyResultObject = row;
  };
}

/** Whether `candidate` leaves a Result as `original` does, on columns that exercise ordering and repeats. */
function sameEffect(Result: ResultClass, original: ResultInternals['addFields'], candidate: ResultInternals['addFields']): boolean {
  const probe: FieldDescription[] = [
    { name: 'b', dataTypeID: 25, format: 'text' },
    { name: '10', dataTypeID: 23, format: 'text' },
    { name: 'a', dataTypeID: 20, format: 'text' },
    { name: 'b', dataTypeID: 1700, format: 'text' },
    { name: '2', dataTypeID: 16 },
  ];
  const types = { getTypeParser: (oid: number, format: string) => defaultTypes.getTypeParser(oid, format) };
  for (const t of [undefined, types]) {
    const a = new Result(undefined, t);
    const b = new Result(undefined, t);
    original.call(a, probe);
    candidate.call(b, probe);
    const ra = a._prebuiltEmptyResultObject;
    const rb = b._prebuiltEmptyResultObject;
    if (!ra || !rb || a.fields !== probe || b.fields !== probe) return false;
    if (Object.getPrototypeOf(ra) !== Object.getPrototypeOf(rb)) return false;
    if (JSON.stringify(Object.entries(ra)) !== JSON.stringify(Object.entries(rb))) return false;
    if (a._parsers?.length !== b._parsers?.length || a._parsers!.some((p, i) => p !== b._parsers![i])) return false;
  }
  return true;
}

let installed: boolean | undefined;

/** Installs the faster addFields once per process; returns whether it is in use. */
export function installFastRowDescriptions(): boolean {
  if (installed !== undefined) return installed;
  const Result = (pg as unknown as { Result?: ResultClass }).Result;
  const original = Result?.prototype.addFields;
  installed = false;
  if (!Result || typeof original !== 'function') return installed;
  const candidate = fastAddFields(original);
  if (!sameEffect(Result, original, candidate)) return installed;
  Result.prototype.addFields = candidate;
  installed = true;
  return installed;
}
