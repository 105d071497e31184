// Input validation for the chain domain, run before any write: the first problem becomes a
// ValidationError whose `details.field` is the path of the offending value
// (e.g. "transactions[2].outputs[0].value"), and nothing is written.
import { z } from 'zod';
import { UINT256_MAX } from '../../db/codec.js';
import { ValidationError } from '../../db/errors.js';
import { dateSchema, isLabel, isStorableTime, labelSchema, pageLimitSchema, parseOrThrow } from '../../util/zod-parse.js';

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

const bufferSchema = z.custom<Buffer>((v) => Buffer.isBuffer(v), 'expected a Buffer');

const outputSchema = z.object({ address: addressSchema, value: amountSchema });

const transactionSchema = z.object({
  txHash: hash32Schema,
  indexInBlock: int32('index'),
  actionType: labelSchema(32).nullable(),
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

type BlockOutput = z.output<typeof blockSchema>;
const ADDRESS_RE = /^[\x21-\x7e]{1,128}$/;
const isInt32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= INT32_MAX;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The block as blockSchema would return it, or undefined when any value is not plainly valid
 * (the caller then parses with the schema, which names the field). Ingest validates thousands
 * of transactions per block; zod cost more than the SQL on SQLite. Accepts exactly what the
 * schema accepts with these checks (a property test compares the two), and builds the same
 * output: known keys only.
 */
export function fastBlock(input: unknown): BlockOutput | undefined {
  if (!isObject(input)) return undefined;
  const { chainId, height, blockHash, parentHash, time, txCount, transactions } = input;
  if (typeof chainId !== 'string' || !CHAIN_ID_RE.test(chainId)) return undefined;
  if (typeof height !== 'bigint' || height < 0n || height > INT64_MAX) return undefined;
  if (typeof blockHash !== 'string' || !HASH32_RE.test(blockHash)) return undefined;
  if (typeof parentHash !== 'string' || !HASH32_RE.test(parentHash)) return undefined;
  if (!(time instanceof Date) || !isStorableTime(time.getTime())) return undefined;
  if (txCount !== undefined && !isInt32(txCount)) return undefined;
  if (!Array.isArray(transactions)) return undefined;
  const txs: BlockOutput['transactions'] = [];
  for (const t of transactions) {
    if (!isObject(t)) return undefined;
    const { txHash, indexInBlock, actionType, actionVersion, payload, address, outputs } = t;
    if (typeof txHash !== 'string' || !HASH32_RE.test(txHash) || !isInt32(indexInBlock)) return undefined;
    if (actionType !== null && (typeof actionType !== 'string' || actionType.length < 1 || actionType.length > 32 || !isLabel(actionType)))
      return undefined;
    if (actionVersion !== null && !isInt32(actionVersion)) return undefined;
    if (payload !== null && !Buffer.isBuffer(payload)) return undefined;
    if (address !== null && (typeof address !== 'string' || !ADDRESS_RE.test(address))) return undefined;
    if (!Array.isArray(outputs) || outputs.length > 10_000) return undefined;
    const outs: { address: string; value: bigint }[] = [];
    for (const o of outputs) {
      if (!isObject(o)) return undefined;
      const { address: a, value: v } = o;
      if (typeof a !== 'string' || !ADDRESS_RE.test(a)) return undefined;
      if (typeof v !== 'bigint' || v < 0n || v > UINT256_MAX) return undefined;
      outs.push({ address: a, value: v });
    }
    txs.push({ txHash, indexInBlock, actionType, actionVersion, payload, address, outputs: outs } as BlockOutput['transactions'][number]);
  }
  const out = { chainId, height, blockHash, parentHash, time, transactions: txs } as BlockOutput;
  if (txCount !== undefined) out.txCount = txCount as number;
  return out;
}

export const registerChainSchema = z.object({
  chainId: chainIdSchema,
  name: z.string({ error: 'expected a string' }).min(1, 'must not be empty').max(128, 'longer than 128 characters'),
  network: z.string({ error: 'expected a string' }).min(1, 'must not be empty').max(64, 'longer than 64 characters'),
  confirmations: z
    .number({ error: 'expected a number' })
    .int('expected an integer')
    .min(1, 'must be at least 1')
    .max(1_000_000, 'at most 1 000 000'),
  mempoolCapacity: z
    .number({ error: 'expected a number' })
    .int('expected an integer')
    .min(1, 'must be at least 1')
    .max(INT32_MAX, 'out of range')
    .optional(),
});

export const mempoolInputSchema = z.object({
  txHash: hash32Schema,
  content: bufferSchema,
  fee: z
    .bigint({ error: 'expected a bigint (integer base units)' })
    .min(0n, 'must not be negative')
    .max(INT64_MAX, 'out of the 64-bit range'),
  sizeBytes: int32('size'),
  receivedAt: dateSchema.optional(),
});

export const claimSchema = z.object({
  worker: labelSchema(128),
  limit: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(1000, 'at most 1000'),
  maxBytes: z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').optional(),
  leaseMs: z
    .number({ error: 'expected a number' })
    .int('expected an integer')
    .min(1, 'must be at least 1')
    .max(86_400_000, 'at most one day')
    .optional(),
});

export const pageSchema = z.object({
  after: z
    .object({ height: heightSchema, index: int32('index') })
    .nullable()
    .optional(),
  limit: pageLimitSchema,
});

/** Parses `value` or throws a ValidationError naming the first bad field (prefixed by `prefix`). */
export const parse = parseOrThrow;

/** Throws a ValidationError for a rule zod cannot express on its own (cross-field checks). */
export function invalid(field: string, message: string): never {
  throw new ValidationError(`${field}: ${message}`, { field });
}
