// Input validation for the chain domain, run before any write: the first problem becomes a
// ValidationError whose `details.field` is the path of the offending value
// (e.g. "transactions[2].outputs[0].value"), and nothing is written.
import { z } from 'zod';
import { UINT256_MAX } from '../../db/codec.js';
import { ValidationError } from '../../db/errors.js';
import { parseOrThrow } from '../../util/zod-parse.js';

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MAX = 2 ** 31 - 1;

/** The patterns of chainIdSchema and hash32Schema, for hot-path checks that fall back to the schema for the error. */
export const CHAIN_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
export const HASH32_RE = /^[0-9a-f]{64}$/;

export const chainIdSchema = z
  .string({ error: 'expected a string' })
  .regex(CHAIN_ID_RE, 'must be 1-64 characters of letters, digits, ".", "_", ":" or "-"');

/** 32-byte hashes (block and transaction ids) as 64 lowercase hex characters. */
export const hash32Schema = z.string({ error: 'expected a string' }).regex(HASH32_RE, 'must be 64 lowercase hex characters');

// Addresses are stored exactly as given (base58 and bech32 differ in case rules): the chain
// adapter normalises them; here only shape is checked.
export const addressSchema = z
  .string({ error: 'expected a string' })
  .min(1, 'must not be empty')
  .max(128, 'longer than 128 characters')
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const heightSchema = z
  .bigint({ error: 'expected a bigint' })
  .min(0n, 'must not be negative')
  .max(INT64_MAX, 'out of the 64-bit range');

const int32 = (what: string) =>
  z
    .number({ error: 'expected a number' })
    .int('expected an integer')
    .min(0, 'must not be negative')
    .max(INT32_MAX, `${what} is out of the 32-bit range`);

const amountSchema = z
  .bigint({ error: 'expected a bigint (integer base units)' })
  .min(0n, 'must not be negative')
  .max(UINT256_MAX, 'exceeds 2^256-1');

const dateSchema = z.date({ error: 'expected a valid Date' }).refine((d) => !Number.isNaN(d.getTime()), 'expected a valid Date');
const bufferSchema = z.custom<Buffer>((v) => Buffer.isBuffer(v), 'expected a Buffer');

const outputSchema = z.object({ address: addressSchema, value: amountSchema });

const transactionSchema = z.object({
  txHash: hash32Schema,
  indexInBlock: int32('index'),
  actionType: z.string({ error: 'expected a string or null' }).min(1, 'must not be empty').max(32, 'longer than 32 characters').nullable(),
  actionVersion: int32('version').nullable(),
  payload: bufferSchema.nullable(),
  address: addressSchema.nullable(),
  outputs: z.array(outputSchema, { error: 'expected an array' }).max(10_000, 'more than 10 000 outputs'),
});

export const blockSchema = z.object({
  chainId: chainIdSchema,
  height: heightSchema,
  blockHash: hash32Schema,
  parentHash: hash32Schema,
  time: dateSchema,
  txCount: int32('count').optional(),
  transactions: z.array(transactionSchema, { error: 'expected an array' }),
});

export const registerChainSchema = z.object({
  chainId: chainIdSchema,
  name: z.string({ error: 'expected a string' }).min(1, 'must not be empty').max(128, 'longer than 128 characters'),
  network: z.string({ error: 'expected a string' }).min(1, 'must not be empty').max(64, 'longer than 64 characters'),
  confirmations: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(1_000_000, 'at most 1 000 000'),
  mempoolCapacity: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(INT32_MAX, 'out of range').optional(),
});

export const mempoolInputSchema = z.object({
  txHash: hash32Schema,
  content: bufferSchema,
  fee: z.bigint({ error: 'expected a bigint (integer base units)' }).min(0n, 'must not be negative').max(INT64_MAX, 'out of the 64-bit range'),
  sizeBytes: int32('size'),
  receivedAt: dateSchema.optional(),
});

export const claimSchema = z.object({
  worker: z.string({ error: 'expected a string' }).min(1, 'must not be empty').max(128, 'longer than 128 characters'),
  limit: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(1000, 'at most 1000'),
  maxBytes: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').optional(),
  leaseMs: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(86_400_000, 'at most one day').optional(),
});

export const pageSchema = z.object({
  after: z.object({ height: heightSchema, index: int32('index') }).nullable().optional(),
  limit: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(1000, 'at most 1000').optional(),
});

/** Parses `value` or throws a ValidationError naming the first bad field (prefixed by `prefix`). */
export const parse = parseOrThrow;

/** Throws a ValidationError for a rule zod cannot express on its own (cross-field checks). */
export function invalid(field: string, message: string): never {
  throw new ValidationError(`${field}: ${message}`, { field });
}
