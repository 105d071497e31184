// The one way Coffer turns a zod failure into a ValidationError: the first issue, its field as a
// path ("transactions[2].outputs[0].value", prefixed by where the value came from), and the rule.
import { z } from 'zod';
import { TIMESTAMP_MAX_MS, TIMESTAMP_MIN_MS } from '../db/codec.js';
import { ValidationError } from '../db/errors.js';

export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** The field an issue is about, with `prefix` in front ("body", "config"…). */
export function issueField(issue: z.core.$ZodIssue, prefix = ''): string {
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
  const inner = fieldPath(path);
  return prefix && inner ? `${prefix}${inner.startsWith('[') ? '' : '.'}${inner}` : prefix || inner || 'input';
}

/** Parses `value` or throws a ValidationError naming the first bad field and the rule. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issueField(issue, prefix);
  const message = issue.code === 'unrecognized_keys' ? `unknown field (allowed fields are listed in the API reference)` : issue.message;
  throw new ValidationError(`${field}: ${message}`, { field });
}

/** An optional count of rows from 1 to `max` (`shown`: how the message writes max). */
export const limitSchema = (max: number, shown = String(max)) =>
  z.number({ error: 'expected a number' }).int('expected an integer').min(1, 'must be at least 1').max(max, `at most ${shown}`).optional();

/** A store list's page size: 1–1000 rows (each list applies its own default when it is absent). */
export const pageLimitSchema = limitSchema(1000);

const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** True for a one-line label: no control character (PostgreSQL refuses NUL), no lone surrogate (not UTF-8). */
export const isLabel = (s: string): boolean => !CONTROL_RE.test(s) && s.isWellFormed();

/** A one-line label of 1–`max` characters, checked as isLabel. */
export const labelSchema = (max: number) =>
  z
    .string({ error: 'expected a string' })
    .min(1, 'must not be empty')
    .max(max, `longer than ${max} characters`)
    .refine((s) => !CONTROL_RE.test(s), 'no control characters')
    .refine((s) => s.isWellFormed(), 'contains a lone surrogate');

/** True for a time (epoch ms) every backend stores: years 1000 to 9999, UTC (the codec's range, db/codec.ts). */
export const isStorableTime = (ms: number): boolean => ms >= TIMESTAMP_MIN_MS && ms <= TIMESTAMP_MAX_MS;

/** A valid Date that every backend stores (isStorableTime). */
export const dateSchema = z
  .date({ error: 'expected a valid Date' })
  .refine((d) => !Number.isNaN(d.getTime()), 'expected a valid Date')
  .refine((d) => isStorableTime(d.getTime()), 'must be within the years 1000 to 9999 (UTC)');
