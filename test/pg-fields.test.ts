// The faster row-description handling installed into node-postgres (src/db/pg-fields.ts): in
// use with the locked version, and results the same as node-postgres's own code gives, for the
// column names that behave specially on a JavaScript object.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { installFastRowDescriptions } from '../src/db/pg-fields.js';
import { forEachBackend } from './harness.js';

interface Field {
  name: string;
  dataTypeID: number;
  format?: string;
}
interface ResultLike {
  fields: Field[];
  _parsers: unknown[] | undefined;
  _prebuiltEmptyResultObject: Record<string, null> | null;
  addFields(f: Field[]): void;
  parseRow(values: (string | null)[]): Record<string, unknown>;
}
const Result = (pg as unknown as { Result: new (rowMode?: string, types?: unknown) => ResultLike }).Result;

/** What node-postgres's own addFields makes of the row (a null-prototype object, spread). */
function referenceRow(fields: Field[]): Record<string, null> {
  const row = Object.create(null) as Record<string, null>;
  for (const f of fields) row[f.name] = null;
  return { ...row };
}

const text = (name: string, dataTypeID = 25): Field => ({ name, dataTypeID, format: 'text' });

test('the faster row descriptions are in use with the locked node-postgres', () => {
  assert.equal(installFastRowDescriptions(), true);
  assert.equal(installFastRowDescriptions(), true, 'installing twice is a no-op');
});

test('a result gets the same fields, parsers and empty row as node-postgres builds', () => {
  installFastRowDescriptions();
  const cases: Field[][] = [
    [],
    [text('id', 20), text('name'), text('ok', 16)],
    [text('b'), text('10', 23), text('a'), text('b', 1700), text('2', 16)],
    [text('constructor'), text('toString'), text('hasOwnProperty')],
    [text('x'), text('__proto__'), text('y')],
  ];
  for (const fields of cases) {
    const r = new Result();
    r.addFields(fields);
    const expected = referenceRow(fields);
    assert.equal(r.fields, fields);
    assert.deepEqual(Object.entries(r._prebuiltEmptyResultObject ?? {}), Object.entries(expected), JSON.stringify(fields));
    assert.equal(Object.getPrototypeOf(r._prebuiltEmptyResultObject), Object.prototype);
    assert.equal(r._parsers?.length ?? 0, fields.length);
    for (let i = 0; i < fields.length; i++) assert.equal(r._parsers![i], pg.types.getTypeParser(fields[i]!.dataTypeID, 'text'));
  }
  // Rows parse through them as before: later duplicates win, __proto__ stays an own key.
  const r = new Result();
  r.addFields([text('n', 20), text('__proto__'), text('n', 23)]);
  const row = r.parseRow(['1', 'p', '3']);
  assert.deepEqual(Object.keys(row), ['n', '__proto__']);
  assert.equal(row.n, 3);
  assert.equal(Object.getOwnPropertyDescriptor(row, '__proto__')?.value, 'p');
  assert.equal(Object.getPrototypeOf(row), Object.prototype);
});

forEachBackend(
  'node-postgres row descriptions',
  (ctx) => {
    test('rows read through Coffer keep column order, repeats and special names', async () => {
      const coffer = await ctx.open();
      const rows = await coffer.read(
        async (tx) =>
          (
            await sql<Record<string, unknown>>`select 1::int8 as "b", 'x' as "10", true as "ok", 2 as "b", 'y' as "constructor"`.execute(
              tx.db,
            )
          ).rows,
      );
      assert.equal(rows.length, 1);
      assert.deepEqual(Object.entries(rows[0]!), [
        ['10', 'x'],
        ['b', 2],
        ['ok', true],
        ['constructor', 'y'],
      ]);
    });
  },
  ['postgres'],
);
