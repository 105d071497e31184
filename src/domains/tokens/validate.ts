// Input validation and content hashes of the token domain. Every store operation parses its
// input here before the first write: the first problem becomes a ValidationError whose
// `details.field` names the offending value (e.g. "assetManagers[1].publicKey"), and nothing is
// written. Content hashes are SHA-256 of the canonical JSON of the signed fields (contentId).
import { z } from 'zod';
import { INT64_MAX } from '../../db/codec.js';
import { ValidationError } from '../../db/errors.js';
import { contentId, type CanonicalValue } from '../../util/canonical-json.js';
import { textProblem } from '../../util/text.js';
import { dateSchema, limitSchema, parseOrThrow } from '../../util/zod-parse.js';
import { isValidPublicKey } from './signing.js';
import type { JsonDoc, MintContent } from './types.js';

const MAX_DOC_BYTES = 64 * 1024;

export const chainIdSchema = z
  .string({ error: 'expected a string' })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'must be 1-64 characters of letters, digits, ".", "_", ":" or "-"');

/** A 32-byte hash as 64 hex characters; normalised to lowercase. */
export const hashSchema = z
  .string({ error: 'expected a string' })
  .regex(/^[0-9a-fA-F]*$/, 'must be hex')
  .length(64, 'must be 64 hex characters (32 bytes)')
  .transform((s) => s.toLowerCase());

// Same shape rule as the chain domain: addresses are kept exactly as given (base58 and bech32
// differ in case rules); only the shape is checked.
export const addressSchema = z
  .string({ error: 'expected a string' })
  .min(1, 'must not be empty')
  .max(128, 'longer than 128 characters')
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const publicKeySchema = z
  .string({ error: 'expected a string' })
  .regex(/^[0-9a-fA-F]*$/, 'must be hex')
  .length(66, 'must be 66 hex characters (a compressed public key)')
  .transform((s) => s.toLowerCase())
  .refine(isValidPublicKey, 'is not a compressed secp256k1 public key');

export const signatureSchema = z
  .string({ error: 'expected a string' })
  .regex(/^[0-9a-fA-F]*$/, 'must be hex')
  .refine((s) => s.length % 2 === 0 && s.length >= 16 && s.length <= 144, 'must be 8 to 72 bytes of hex')
  .transform((s) => s.toLowerCase());

/**
 * A positive int64 amount (fractions, or base units): bigint, a safe integer number or a
 * decimal string. Floats are refused, never rounded.
 */
export const amountSchema = z.unknown().transform((v, ctx): bigint => {
  let b: bigint | undefined;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else if (typeof v === 'string' && /^-?(0|[1-9][0-9]*)$/.test(v)) b = BigInt(v);
  if (b === undefined) {
    ctx.addIssue({ code: 'custom', message: 'expected an integer (bigint, safe integer or decimal string); floats are not accepted' });
    return z.NEVER;
  }
  if (b <= 0n) {
    ctx.addIssue({ code: 'custom', message: 'must be positive' });
    return z.NEVER;
  }
  if (b > INT64_MAX) {
    ctx.addIssue({ code: 'custom', message: 'exceeds the 64-bit integer range' });
    return z.NEVER;
  }
  return b;
});

export const priceUnitSchema = z
  .string({ error: 'expected a string' })
  .regex(/^[a-z][a-z0-9_]{0,15}$/, 'must be 1-16 lowercase letters, digits or "_" (e.g. "koinu")');

export { dateSchema };

/** A string that can be stored in a JSON column (tags, asset-manager names and URLs; util/text.ts). */
const jsonText = () =>
  z.string({ error: 'expected a string' }).superRefine((s, ctx) => {
    const problem = textProblem(s);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

// Plain JSON only (what the json column stores and returns unchanged): no floats, no bigint,
// no Date or bytes, so the hashed content and the stored document are the same value. A problem
// names its path inside the document (keys and indexes), so the error names e.g. metadata.k.
type JsonProblem = { path: (string | number)[]; message: string };

function checkJson(v: unknown, depth: number, path: (string | number)[]): JsonProblem | null {
  if (depth > 32) return { path, message: 'nested deeper than 32 levels' };
  if (v === null || typeof v === 'boolean') return null;
  if (typeof v === 'string') {
    const problem = textProblem(v);
    return problem ? { path, message: problem } : null;
  }
  if (typeof v === 'number')
    return Number.isSafeInteger(v) ? null : { path, message: `number ${v} is not a safe integer (use a decimal string)` };
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const e = checkJson(v[i], depth + 1, [...path, i]);
      if (e) return e;
    }
    return null;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v as object)) {
      // A bad key is reported on its object: the key itself is no printable field name.
      const keyProblem = textProblem(k);
      if (keyProblem) return { path, message: `key ${JSON.stringify(k)} ${keyProblem}` };
      if (x === undefined) return { path: [...path, k], message: 'undefined is not JSON' };
      const e = checkJson(x, depth + 1, [...path, k]);
      if (e) return e;
    }
    return null;
  }
  return { path, message: `${typeof v} is not plain JSON` };
}

export const jsonDocSchema = z.unknown().transform((v, ctx): JsonDoc => {
  if (v === undefined) return null;
  const problem = checkJson(v, 0, []);
  if (problem) {
    ctx.addIssue({ code: 'custom', path: problem.path, message: problem.message });
    return z.NEVER;
  }
  if (Buffer.byteLength(JSON.stringify(v), 'utf8') > MAX_DOC_BYTES) {
    ctx.addIssue({ code: 'custom', message: `larger than ${MAX_DOC_BYTES} bytes` });
    return z.NEVER;
  }
  return v as JsonDoc;
});

// An optional document of a mint: absent is stored (and hashed) as null. The wrapper is what
// makes the key optional: zod 4 requires a key whose schema is a transform, even one that
// accepts undefined, so jsonDocSchema alone refused a mint without it.
const optionalJsonDoc = jsonDocSchema.optional().transform((d): JsonDoc => d ?? null);

const assetManagerSchema = z.object({
  name: jsonText().min(1, 'must not be empty').max(128, 'longer than 128 characters'),
  publicKey: publicKeySchema,
  url: jsonText()
    .max(2048, 'longer than 2048 characters')
    .nullable()
    .optional()
    .transform((u) => u ?? null),
});

const urlSchema = z
  .string({ error: 'expected a string' })
  .max(2048, 'longer than 2048 characters')
  .regex(/^https?:\/\/[\x21-\x7e]+$/, 'must be an http(s) URL');

export const mintInputSchema = z
  .object({
    chainId: chainIdSchema,
    title: z.string({ error: 'expected a string' }).min(1, 'must not be empty').max(200, 'longer than 200 characters'),
    description: z.string({ error: 'expected a string' }).max(10_000, 'longer than 10 000 characters'),
    fractionCount: amountSchema,
    tags: z
      .array(jsonText().min(1, 'must not be empty').max(64, 'longer than 64 characters'), {
        error: 'expected an array',
      })
      .max(32, 'more than 32 tags')
      .optional()
      .transform((t) => t ?? []),
    metadata: optionalJsonDoc,
    requirements: optionalJsonDoc,
    lockupOptions: optionalJsonDoc,
    feedUrl: urlSchema
      .nullable()
      .optional()
      .transform((u) => u ?? null),
    publicKey: publicKeySchema,
    contractOfSale: optionalJsonDoc,
    signatureRule: z
      .enum(['none', 'all', 'one', 'min'], { error: 'must be one of none, all, one, min' })
      .optional()
      .transform((r) => r ?? 'none'),
    minSignatures: z
      .number({ error: 'expected a number' })
      .int('expected an integer')
      .nullable()
      .optional()
      .transform((n) => n ?? null),
    assetManagers: z
      .array(assetManagerSchema, { error: 'expected an array' })
      .max(32, 'more than 32 asset managers')
      .optional()
      .transform((a) => a ?? []),
    ownerAddress: addressSchema,
  })
  .strict()
  .superRefine((m, ctx) => {
    const keys = new Set<string>();
    m.assetManagers.forEach((am, i) => {
      if (keys.has(am.publicKey)) ctx.addIssue({ code: 'custom', path: ['assetManagers', i, 'publicKey'], message: 'appears twice' });
      keys.add(am.publicKey);
    });
    if (m.signatureRule !== 'none' && m.assetManagers.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['assetManagers'],
        message: `signature rule ${m.signatureRule} needs at least one asset manager`,
      });
    }
    if (m.signatureRule === 'min') {
      if (m.minSignatures === null || m.minSignatures < 1 || m.minSignatures > m.assetManagers.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['minSignatures'],
          message: `must be 1..${m.assetManagers.length} (the number of asset managers) with rule min`,
        });
      }
    } else if (m.minSignatures !== null) {
      ctx.addIssue({ code: 'custom', path: ['minSignatures'], message: 'is only allowed with signature rule min' });
    }
  });

/** Which offer table: a value outside the two would otherwise read the buy table under its own name. */
export const offerSideSchema = z.enum(['sell', 'buy'], { error: 'must be sell or buy' });

export const offerInputSchema = z
  .object({
    chainId: chainIdSchema,
    mintHash: hashSchema,
    offererAddress: addressSchema,
    quantity: amountSchema,
    price: amountSchema,
    priceUnit: priceUnitSchema,
    publicKey: publicKeySchema,
    signature: signatureSchema,
    sellerAddress: addressSchema.optional(),
    // Required: it is part of the signed hash, so a server-chosen time could never verify.
    createdAt: dateSchema,
  })
  .strict();

export const invoiceInputSchema = z
  .object({
    chainId: chainIdSchema,
    mintHash: hashSchema,
    sellerAddress: addressSchema,
    buyerAddress: addressSchema,
    quantity: amountSchema,
    price: amountSchema,
    priceUnit: priceUnitSchema,
    paymentAddress: addressSchema,
    publicKey: publicKeySchema,
    signature: signatureSchema,
    createdAt: dateSchema,
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.buyerAddress === v.sellerAddress)
      ctx.addIssue({ code: 'custom', path: ['buyerAddress'], message: 'must differ from the seller address' });
    // The payment must be representable: quantity × price in int64 base units.
    if (typeof v.quantity === 'bigint' && typeof v.price === 'bigint' && v.quantity * v.price > INT64_MAX) {
      ctx.addIssue({ code: 'custom', path: ['price'], message: 'quantity × price exceeds the 64-bit integer range' });
    }
  });

export const signatureInputSchema = z
  .object({ invoiceHash: hashSchema, publicKey: publicKeySchema, signature: signatureSchema, createdAt: dateSchema.optional() })
  .strict();

/** Most rows one maintenance call changes (bounded transactions). */
export const batchLimitSchema = limitSchema(100_000, '100 000');

export const trimSchema = z
  .object({
    olderThan: dateSchema,
    /** Most rows removed by this call (bounded transactions); default 1000. */
    limit: batchLimitSchema,
  })
  .strict();

export const expireSchema = z
  .object({
    now: dateSchema.optional(),
    limit: batchLimitSchema,
  })
  .strict();

/** A ledger page's start: the sort key (block height, cause) of the last entry of the previous page. */
export const ledgerKeySchema = z
  .object({
    blockHeight: z.bigint({ error: 'expected a bigint' }).min(0n, 'must not be negative').max(INT64_MAX, 'must fit int64'),
    causeKind: z.enum(['mint_credit', 'sale_credit', 'sale_debit'], { error: 'must be mint_credit, sale_credit or sale_debit' }),
    // Every cause is a content hash: the mint's (mint_credit) or the invoice's (sale_*).
    causeRef: hashSchema,
  })
  .strict();

export const ttlSchema = z
  .number({ error: 'expected a number' })
  .int('expected an integer')
  .min(1, 'must be at least 1 ms')
  .max(365 * 86_400_000, 'at most one year');

/** Parses `value` or throws a ValidationError naming the first bad field (prefixed by `prefix`). */
export const parse = parseOrThrow;

export function invalid(field: string, message: string, details: Record<string, unknown> = {}): never {
  throw new ValidationError(`${field}: ${message}`, { field, ...details });
}

// ---------------------------------------------------------------- content hashes
// Protocol field names (snake_case) and a type tag, so a mint can never hash like an invoice.

export function mintHash(m: MintContent): string {
  return contentId({
    type: 'coffer.token.mint',
    version: 1,
    chain_id: m.chainId,
    title: m.title,
    description: m.description,
    fraction_count: m.fractionCount,
    tags: m.tags,
    metadata: m.metadata as CanonicalValue,
    requirements: m.requirements as CanonicalValue,
    lockup_options: m.lockupOptions as CanonicalValue,
    feed_url: m.feedUrl,
    public_key: m.publicKey,
    contract_of_sale: m.contractOfSale as CanonicalValue,
    signature_rule: m.signatureRule,
    min_signatures: m.minSignatures,
    asset_managers: m.assetManagers.map((a) => ({ name: a.name, public_key: a.publicKey, url: a.url })),
    owner_address: m.ownerAddress,
  });
}

export interface OfferContent {
  side: 'sell' | 'buy';
  chainId: string;
  mintHash: string;
  offererAddress: string;
  sellerAddress: string | null;
  quantity: bigint;
  price: bigint;
  priceUnit: string;
  publicKey: string;
  createdAt: Date;
}

export function offerHash(o: OfferContent): string {
  return contentId({
    type: `coffer.token.${o.side}_offer`,
    version: 1,
    chain_id: o.chainId,
    mint_hash: o.mintHash,
    offerer_address: o.offererAddress,
    seller_address: o.sellerAddress,
    quantity: o.quantity,
    price: o.price,
    price_unit: o.priceUnit,
    public_key: o.publicKey,
    created_at: o.createdAt,
  });
}

export interface InvoiceContent {
  chainId: string;
  mintHash: string;
  sellerAddress: string;
  buyerAddress: string;
  quantity: bigint;
  price: bigint;
  priceUnit: string;
  paymentAddress: string;
  publicKey: string;
  createdAt: Date;
}

export function invoiceHash(v: InvoiceContent): string {
  return contentId({
    type: 'coffer.token.invoice',
    version: 1,
    chain_id: v.chainId,
    mint_hash: v.mintHash,
    seller_address: v.sellerAddress,
    buyer_address: v.buyerAddress,
    quantity: v.quantity,
    price: v.price,
    price_unit: v.priceUnit,
    payment_address: v.paymentAddress,
    public_key: v.publicKey,
    created_at: v.createdAt,
  });
}
