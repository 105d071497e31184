// Canonical JSON: the published test vectors, the rejection rules, and properties.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { ValidationError } from '../src/db/errors.js';
import { canonicalJson, contentId, type CanonicalValue } from '../src/util/canonical-json.js';

const VECTORS: [string, CanonicalValue, string, string][] = [
  ['empty object', {}, '{}', '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'],
  ['key order', { b: 1, a: 2 }, '{"a":2,"b":1}', 'd3626ac30a87e6f7a6428233b3c68299976865fa5508e4267c5415c76af7a772'],
  [
    'nested and arrays',
    { z: [3, 1, { y: true, x: null }], a: 'text' },
    '{"a":"text","z":[3,1,{"x":null,"y":true}]}',
    '7f403a5b436603123ca29f8963bf617d0104ae1fd0e59ae5165d8e8f25937eaa',
  ],
  [
    'bigint as decimal string',
    { amount: 2n ** 256n - 1n },
    '{"amount":"115792089237316195423570985008687907853269984665640564039457584007913129639935"}',
    'd8794d6418d637f111285a2b739fb61b27ebdee2989af0b3bac981933b9ec496',
  ],
  [
    'bytes as lowercase hex',
    { payload: Buffer.from([0, 1, 171, 255]) },
    '{"payload":"0001abff"}',
    '49ca8dad5bd26ad95a67f9af3589382d44a91b04c38158a4adc987100adb72e4',
  ],
  [
    'date as ISO-8601 UTC ms',
    { at: new Date('2026-01-02T03:04:05.006Z') },
    '{"at":"2026-01-02T03:04:05.006Z"}',
    '20bef5202021387f55a82f7ff8b68d783a66e7368efc5d855513698537ed8019',
  ],
  [
    'unicode and escapes',
    { s: 'é ✓ 𝄞 "q" \\ \n' },
    '{"s":"é ✓ 𝄞 \\"q\\" \\\\ \\n"}',
    '8ce9a593f7db8667c9825e743ef8c17dcc412e49a1a3b2ebdc4679ace00eefe4',
  ],
  ['undefined members omitted', { a: 1, b: undefined }, '{"a":1}', '015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862'],
  ['negative zero', { n: -0 }, '{"n":0}', 'f3013f933b9fb80ab6d995e7ad9da36f683837ba1d81e950c943d40111eac2f0'],
  [
    'code-unit key order',
    { é: 1, z: 2, A: 3, '𝄞': 4, '\uffff': 5 },
    '{"A":3,"z":2,"é":1,"𝄞":4,"\uffff":5}',
    '7afd1b835504bd7f14723cda72069091e659b537de28651c69d692042396111c',
  ],
];

test('canonical JSON matches the published test vectors', () => {
  for (const [name, value, canonical, id] of VECTORS) {
    assert.equal(canonicalJson(value), canonical, name);
    assert.equal(contentId(value), id, name);
  }
});

test('docs/canonical-json.md lists exactly these vectors', () => {
  const doc = readFileSync(new URL('../docs/canonical-json.md', import.meta.url), 'utf8');
  const ids = [...doc.matchAll(/`([0-9a-f]{64})`/g)].map((m) => m[1]);
  assert.deepEqual(
    ids,
    VECTORS.map((v) => v[3]),
  );
});

test('floats, unsafe integers, lone surrogates and foreign objects are rejected with the path', () => {
  const bad: [CanonicalValue | unknown, RegExp][] = [
    [{ price: 1.5 }, /price/],
    [{ n: 2 ** 53 }, /n: number/],
    [{ list: [1, undefined] }, /list\[1\]/],
    [{ s: '\ud800' }, /s: string contains a lone surrogate/],
    [{ m: new Map() }, /m: unsupported object type Map/],
    [{ x: Number.NaN }, /x/],
    [{ f: () => 1 }, /f: function/],
  ];
  for (const [v, re] of bad) {
    assert.throws(
      () => canonicalJson(v as CanonicalValue),
      (e: unknown) => e instanceof ValidationError && re.test(e.message),
    );
  }
});

const jsonValue: fc.Arbitrary<CanonicalValue> = fc.letrec<{ v: CanonicalValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.maxSafeInteger(),
    fc.string({ unit: 'grapheme' }),
    fc.bigInt(),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 6 }), tie('v'), { maxKeys: 4 }),
  ),
})).v;

test('property: member order never changes the canonical form', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ maxLength: 5 }), jsonValue, { maxKeys: 6 }), (obj) => {
      const reversed = Object.fromEntries(Object.entries(obj).reverse());
      assert.equal(canonicalJson(reversed), canonicalJson(obj));
    }),
    { numRuns: 200 },
  );
});

test('property: canonical JSON is valid JSON that re-canonicalises to itself', () => {
  fc.assert(
    fc.property(jsonValue, (v) => {
      const text = canonicalJson(v);
      assert.equal(canonicalJson(JSON.parse(text) as CanonicalValue), text);
    }),
    { numRuns: 300 },
  );
});
