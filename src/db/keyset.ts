// Keyset pagination: the condition "this row comes after the last one seen" in a multi-column
// order, written so that every engine's index range can start at the last row instead of
// re-reading the rows before it.
import type { Expression, ExpressionBuilder, SqlBool } from 'kysely';

export interface KeysetColumn {
  column: string;
  /** The last row's value, encoded for the column. */
  value: unknown;
  desc?: boolean;
}

/**
 * "(a, b, …) after (x, y, …)" in the given column orders: a > x OR (a = x AND (b > y OR …)),
 * behind a redundant bound a >= x. The bound is what an index range on a uses on PostgreSQL
 * and SQLite, which do not turn the OR into a range themselves; MariaDB turns either into one.
 * When a is constant over the rows (a partition key), bound the query by a equality instead,
 * or use a row-value comparison (ops/db.ts).
 */
export function keysetAfter(eb: ExpressionBuilder<any, any>, cols: readonly KeysetColumn[]): Expression<SqlBool> {
  const beyond = (c: KeysetColumn) => eb(c.column, c.desc ? '<' : '>', c.value);
  const step = (i: number): Expression<SqlBool> => {
    const c = cols[i]!;
    return i === cols.length - 1 ? beyond(c) : eb.or([beyond(c), eb.and([eb(c.column, '=', c.value), step(i + 1)])]);
  };
  const first = cols[0]!;
  return cols.length === 1 ? step(0) : eb.and([eb(first.column, first.desc ? '<=' : '>=', first.value), step(0)]);
}
