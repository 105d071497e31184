// The hand-written block check of the ingest hot path (fastBlock) must never accept what the
// zod schema refuses, and must return exactly what the schema returns when it accepts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { UINT256_MAX } from '../../db/codec.js';
import { blockSchema, fastBlock } from './validate.js';

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
// Mostly valid values, with near-misses of every rule mixed in.
const hash = fc.oneof({ weight: 8, arbitrary: hex64 }, fc.constantFrom('', 'A'.repeat(64), 'g'.repeat(64), '0'.repeat(63), 42, null));
const int32 = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 2 ** 31 - 1 }) },
  fc.constantFrom(-1, 2 ** 31, 1.5, NaN, Infinity, '3', null, -0),
);
const address = fc.oneof(
  { weight: 8, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,128}$/) },
  fc.constantFrom('', 'a b', 'x'.repeat(129), 'é', 7, null),
);
const amount = fc.oneof({ weight: 8, arbitrary: fc.bigInt({ min: 0n, max: UINT256_MAX }) }, fc.constantFrom(-1n, UINT256_MAX + 1n, 5, '5'));
const output = fc.oneof({ weight: 10, arbitrary: fc.record({ address, value: amount }) }, fc.constantFrom(null, [], 'o'));
const transaction = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      txHash: hash,
      indexInBlock: int32,
      actionType: fc.oneof(fc.constant(null), fc.string({ maxLength: 34 }), fc.constant(undefined)),
      actionVersion: fc.oneof(fc.constant(null), int32),
      payload: fc.oneof(
        fc.constant(null),
        fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u)),
        fc.uint8Array({ maxLength: 2 }),
      ),
      address: fc.oneof(fc.constant(null), address),
      outputs: fc.oneof({ weight: 8, arbitrary: fc.array(output, { maxLength: 4 }) }, fc.constantFrom(null, {}, 'x')),
    }),
  },
  fc.constantFrom(null, 1, [], 'tx'),
);
const block = fc.record(
  {
    chainId: fc.oneof(
      { weight: 8, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/) },
      fc.constantFrom('', '-x', 'a b', 3),
    ),
    height: fc.oneof({ weight: 8, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }) }, fc.constantFrom(-1n, 2n ** 63n, 5)),
    blockHash: hash,
    parentHash: hash,
    time: fc.oneof(
      // Mostly times every backend stores (years 1000-9999), some anywhere, and the edges.
      {
        weight: 8,
        arbitrary: fc.date({ min: new Date(Date.UTC(1000, 0, 1)), max: new Date(Date.UTC(10000, 0, 1) - 1), noInvalidDate: true }),
      },
      fc.date({ noInvalidDate: true }),
      fc.constantFrom(new Date(NaN), '2024-01-01', 0, new Date(Date.UTC(10000, 0, 1)), new Date(Date.UTC(1000, 0, 1) - 1)),
    ),
    txCount: int32,
    transactions: fc.oneof({ weight: 8, arbitrary: fc.array(transaction, { maxLength: 5 }) }, fc.constantFrom(null, {})),
  },
  { requiredKeys: ['chainId', 'height', 'blockHash', 'parentHash', 'time', 'transactions'] },
);

test('fastBlock accepts only what the schema accepts, and returns what it returns', () => {
  let accepted = 0;
  fc.assert(
    fc.property(block, (b) => {
      const fast = fastBlock(b);
      const slow = blockSchema.safeParse(b);
      if (fast === undefined) return; // the schema decides, and names the field
      accepted++;
      assert.ok(slow.success, `fastBlock accepted what the schema refuses: ${slow.error?.message}`);
      assert.deepStrictEqual(fast, slow.data);
    }),
    { numRuns: 3000 },
  );
  assert.ok(accepted > 100, `only ${accepted} valid blocks were generated`);
});

test('every valid block takes the fast path', () => {
  fc.assert(
    fc.property(block, (b) => {
      if (blockSchema.safeParse(b).success) assert.notEqual(fastBlock(b), undefined);
    }),
    { numRuns: 2000 },
  );
});
