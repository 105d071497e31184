// Reading SQL text as the engines show it back: a small tokenizer (string literals, quoted
// identifiers and comments are whole tokens, so nothing inside a literal is mistaken for syntax),
// the named CHECKs of a SQLite CREATE TABLE (SQLite keeps no catalogue of them, only the text),
// and a normal form for comparing two definitions that differ only in layout, keyword case or
// identifier quoting.

export interface SqlToken {
  kind: 'word' | 'ident' | 'string' | 'punct';
  /** The token as written (an identifier with its quotes). */
  text: string;
  /** An identifier without its quotes; otherwise the text. */
  value: string;
  start: number;
  end: number;
}

const WORD = /[A-Za-z0-9_$]/;
const CLOSE: Record<string, string> = { '"': '"', '`': '`', '[': ']' };

/** The tokens of `text`, without whitespace and comments. */
export function sqlTokens(text: string): SqlToken[] {
  const out: SqlToken[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text[i]!;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    if (ch === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    if (ch === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      i = close < 0 ? n : close + 2;
      continue;
    }
    const start = i;
    if (ch === "'" || ch in CLOSE) {
      const close = ch === "'" ? "'" : CLOSE[ch]!;
      i++;
      // A doubled closing quote stands for itself ('it''s', "a""b").
      while (i < n && !(text[i] === close && text[i + 1] !== close)) i += text[i] === close ? 2 : 1;
      i = Math.min(n, i + 1);
      const raw = text.slice(start, i);
      const inner = raw.slice(1, -1).split(close + close).join(close);
      out.push(ch === "'" ? { kind: 'string', text: raw, value: raw, start, end: i } : { kind: 'ident', text: raw, value: inner, start, end: i });
      continue;
    }
    if (WORD.test(ch)) {
      while (i < n && WORD.test(text[i]!)) i++;
      const raw = text.slice(start, i);
      out.push({ kind: 'word', text: raw, value: raw, start, end: i });
      continue;
    }
    i++;
    out.push({ kind: 'punct', text: ch, value: ch, start, end: i });
  }
  return out;
}

/**
 * A normal form of a SQL fragment: keywords and plain identifiers lower-case and unquoted,
 * one space between tokens, string literals untouched. `length("hash") = 64` and
 * `LENGTH(hash)=64` compare equal; `CHECK (1 = 1)` and `CHECK (balance >= 0)` do not.
 */
export function normaliseSql(text: string): string {
  return sqlTokens(text)
    .map((t) => {
      if (t.kind === 'string') return t.text;
      if (t.kind === 'ident') return /^[A-Za-z_][A-Za-z0-9_$]*$/.test(t.value) ? t.value.toLowerCase() : t.text;
      return t.text.toLowerCase();
    })
    .join(' ');
}

/** The index of the token closing the parenthesis opened at `open`, or -1. */
function closingParen(tokens: readonly SqlToken[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'punct') continue;
    if (t.text === '(') depth++;
    else if (t.text === ')' && --depth === 0) return i;
  }
  return -1;
}

/** The named CHECKs of a CREATE TABLE statement: name → expression as written. */
export function namedChecks(createTable: string): Map<string, string> {
  const tokens = sqlTokens(createTable);
  const out = new Map<string, string>();
  const is = (i: number, word: string) => tokens[i]?.kind === 'word' && tokens[i]!.value.toUpperCase() === word;
  for (let i = 0; i + 3 < tokens.length; i++) {
    const name = tokens[i + 1]!;
    if (!is(i, 'CONSTRAINT') || (name.kind !== 'ident' && name.kind !== 'word') || !is(i + 2, 'CHECK')) continue;
    const open = tokens[i + 3]!;
    if (open.kind !== 'punct' || open.text !== '(') continue;
    const close = closingParen(tokens, i + 3);
    if (close < 0) continue;
    out.set(name.value, createTable.slice(open.end, tokens[close]!.start).trim());
    i = close;
  }
  return out;
}

/**
 * The named FOREIGN KEY clauses of a CREATE TABLE statement: name → the clause as written, from
 * FOREIGN KEY to the end of the table constraint (REFERENCES, ON DELETE / ON UPDATE, MATCH,
 * DEFERRABLE), which SQLite's pragma_foreign_key_list shows only in part.
 */
export function namedForeignKeys(createTable: string): Map<string, string> {
  const tokens = sqlTokens(createTable);
  const out = new Map<string, string>();
  const is = (i: number, word: string) => tokens[i]?.kind === 'word' && tokens[i]!.value.toUpperCase() === word;
  for (let i = 0; i + 3 < tokens.length; i++) {
    const name = tokens[i + 1]!;
    if (!is(i, 'CONSTRAINT') || (name.kind !== 'ident' && name.kind !== 'word') || !is(i + 2, 'FOREIGN')) continue;
    // The clause ends at the comma or parenthesis that ends the table constraint.
    let end = i + 2;
    for (let depth = 0; end < tokens.length; end++) {
      const t = tokens[end]!;
      if (t.kind !== 'punct') continue;
      if (t.text === '(') depth++;
      else if (t.text === ')' && depth-- === 0) break;
      else if (t.text === ',' && depth === 0) break;
    }
    if (end >= tokens.length) continue;
    out.set(name.value, createTable.slice(tokens[i + 2]!.start, tokens[end - 1]!.end).trim());
    i = end - 1;
  }
  return out;
}

/** Whether a statement contains `word` as a keyword (not inside a literal or an identifier). */
export function hasKeyword(text: string, word: string): boolean {
  return sqlTokens(text).some((t) => t.kind === 'word' && t.value.toUpperCase() === word);
}
