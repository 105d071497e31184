// The codec's JSON encoding: bigints anywhere in a document are written as decimal strings,
// whichever path encodes it (a document without one skips the replacer function), and what
// cannot be JSON is a ValidationError naming the field.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeValue } from '../src/db/codec.js';
import { ValidationError } from '../src/db/errors.js';

const JSON_TYPE = { kind: 'json' } as const;
const asBefore = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
const encode = (v: unknown) => encodeValue('postgres', JSON_TYPE, v, 'doc');

const doc = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small' },
    fc.bigInt(),
    fc.string(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('node'), { maxLength: 5 }),
    fc.dictionary(fc.string(), tie('node'), { maxKeys: 5 }),
  ),
})).node;

test('a JSON document encodes as JSON.stringify with bigints as strings, with or without a bigint in it', () => {
  fc.assert(
    fc.property(doc, (d) => {
      assert.equal(encode(d), d === null ? null : asBefore(d));
    }),
    { numRuns: 500 },
  );
});

test('bigints deep down, behind toJSON, and past the scan budget are written as strings', () => {
  let deep: unknown = { v: 12345678901234567890n };
  for (let i = 0; i < 200; i++) deep = [deep];
  assert.equal(encode(deep), asBefore(deep));
  const wide = Array.from({ length: 5000 }, (_, i) => ({ i }));
  wide.push({ i: 2n ** 70n } as never);
  assert.equal(encode(wide), asBefore(wide));
  const custom = { toJSON: () => 7n };
  assert.equal(encode({ a: custom }), '{"a":"7"}');
  assert.equal(encode({ at: new Date(0), n: 1 }), '{"at":"1970-01-01T00:00:00.000Z","n":1}');
});

test('a document JSON cannot hold is a ValidationError naming the field', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  for (const v of [cyclic, { n: 1n, self: cyclic }]) {
    assert.throws(
      () => encode(v),
      (e: unknown) => e instanceof ValidationError && /^doc: not serialisable as JSON/.test(e.message),
    );
  }
});
