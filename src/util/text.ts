// The one rule for strings stored in JSON (and hashed as canonical JSON) on every backend:
// PostgreSQL refuses NUL in text and JSONB, and canonical JSON refuses lone surrogates.

/** A \u escape JSON.stringify writes for NUL or for a lone surrogate (paired ones it writes as is), not itself escaped. */
const BAD_JSON_ESCAPE = /(?<!\\)(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/;

/**
 * Why the JSON text `json` (JSON.stringify's output) cannot be stored on every backend, or null:
 * the same rule as textProblem, for every string and key of the document.
 */
export function jsonTextProblem(json: string): string | null {
  if (!json.includes('\\u')) return null;
  const m = BAD_JSON_ESCAPE.exec(json);
  if (!m) return null;
  return m[1] === '0000' ? 'contains a NUL character (in a JSON string)' : 'contains a lone surrogate (in a JSON string)';
}

/**
 * A key text (a name, an id) with no space at either end. MySQL/MariaDB's PAD SPACE collations
 * compare "ops" and "ops " as equal and the other backends do not, so uniqueness and lookups
 * would differ by backend.
 */
export const NO_EDGE_SPACE = /^\S(?:.*\S)?$/s;

/** Why `s` cannot be stored in a JSON value on every backend, or null when it can. */
export function textProblem(s: string): string | null {
  if (s.includes('\u0000')) return 'contains a NUL character';
  if (!s.isWellFormed()) return 'contains a lone surrogate';
  return null;
}
