// Input validation for the identity stores: zod schemas checked before any write, failures
// as a ValidationError naming the field.
import { ValidationError } from '../../db/errors.js';
import { parseOrThrow } from '../../util/zod-parse.js';

/** Store lists return this many rows when no limit is given. */
export const DEFAULT_PAGE = 100;

/** Parses input or throws a ValidationError naming the first bad field. */
export const parseInput = parseOrThrow;

/** An id given as bigint, safe integer or decimal string. */
export function toId(v: unknown, field: string): bigint {
  if (typeof v === 'bigint' && v > 0n) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return BigInt(v);
  if (typeof v === 'string' && /^[1-9][0-9]{0,18}$/.test(v)) return BigInt(v);
  throw new ValidationError(`${field}: expected a positive integer id`, { field });
}
