// Input validation for the identity stores: zod schemas checked before any write, failures
// as a ValidationError naming the field.
import type { z } from 'zod';
import { ValidationError } from '../../db/errors.js';

export function parseInput<S extends z.ZodType>(schema: S, input: unknown, prefix = ''): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map(String).join('.');
  const field = [prefix, path].filter(Boolean).join('.') || prefix || 'input';
  throw new ValidationError(`${field}: ${issue.message}`, { field });
}

/** An id given as bigint, safe integer or decimal string. */
export function toId(v: unknown, field: string): bigint {
  if (typeof v === 'bigint' && v > 0n) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return BigInt(v);
  if (typeof v === 'string' && /^[1-9][0-9]{0,18}$/.test(v)) return BigInt(v);
  throw new ValidationError(`${field}: expected a positive integer id`, { field });
}
