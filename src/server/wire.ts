// Wire formats shared by every route: amounts and heights as decimal strings (exact bigint),
// hashes and bytes as lowercase hex, times as ISO-8601. Parsed once here into the store types.
import { z } from 'zod';

export const INT64_MAX = 2n ** 63n - 1n;
const UINT256_MAX = 2n ** 256n - 1n;

export const hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');

/** Non-negative integer in base units, as a decimal string (up to 2^256-1). */
export const amount = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,77})$/, 'must be a non-negative integer as a decimal string (base units, no sign, no decimals)')
  .transform((s) => BigInt(s))
  .refine((v) => v <= UINT256_MAX, 'exceeds 2^256-1');

/** A positive int64 quantity as a decimal string. */
export const quantity = z
  .string()
  .regex(/^[1-9][0-9]{0,18}$/, 'must be a positive integer as a decimal string')
  .transform((s) => BigInt(s))
  .refine((v) => v <= INT64_MAX, 'out of the 64-bit range');

/** A block height: a decimal string, or a JSON integer below 2^53. */
export const height = z
  .union([
    z.string().regex(/^(0|[1-9][0-9]{0,18})$/, 'must be a non-negative integer'),
    z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  ])
  .transform((v) => BigInt(v))
  .refine((v) => v <= INT64_MAX, 'out of the 64-bit range');

/**
 * Decimal text within int64. zod runs a refinement even after the format check before it failed,
 * so text that is not digits passes here (its format check has said why) instead of throwing
 * from BigInt, which made `GET /v1/integrations/ab` a 500.
 */
export function withinInt64(s: string): boolean {
  return !/^[0-9]+$/.test(s) || BigInt(s) <= INT64_MAX;
}

/** A serial id or sequence number as decimal text, within int64 (what every backend's BIGINT holds). */
export const int64Text = (what: string) =>
  z
    .string()
    .regex(/^[0-9]{1,19}$/, what)
    .refine(withinInt64, 'out of the 64-bit range');

/** A row id in a path: positive, as the stores write it (no sign, no leading zeros). */
export const idText = (what: string) =>
  z
    .string()
    .regex(/^[1-9][0-9]{0,18}$/, `${what} (a positive integer without leading zeros)`)
    .refine(withinInt64, 'out of the 64-bit range');

export const isoTime = z.iso
  .datetime({ offset: true, message: 'must be an ISO-8601 time, e.g. 2026-01-02T03:04:05.000Z' })
  .transform((s) => new Date(s));

export const hexBytes = (maxBytes: number) =>
  z
    .string()
    .max(maxBytes * 2, `longer than ${maxBytes} bytes`)
    .regex(/^([0-9a-f]{2})*$/, 'must be lowercase hex of whole bytes')
    .transform((s) => Buffer.from(s, 'hex'));

export const chainIdParam = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'must be 1-64 characters of letters, digits, ".", "_", ":" or "-"');

/** Response schemas only document the JSON shapes (responses are not re-validated). */
export const amountOut = z.string().describe('integer in base units, decimal string');
export const hashOut = z.string().describe('lowercase hex');
