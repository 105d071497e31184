// The one rule for strings stored in JSON (and hashed as canonical JSON) on every backend:
// PostgreSQL refuses NUL in text and JSONB, and canonical JSON refuses lone surrogates.

/** Why `s` cannot be stored in a JSON value on every backend, or null when it can. */
export function textProblem(s: string): string | null {
  if (s.includes('\u0000')) return 'contains a NUL character';
  if (!s.isWellFormed()) return 'contains a lone surrogate';
  return null;
}
