// Cursor pagination for every list: the cursor is an opaque base64url token holding the last
// key seen (keyset pagination, never OFFSET), validated on the way back in.
import { z } from 'zod';
import { HttpError } from './http-errors.js';

export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(1024).optional(),
};

export interface Page<T> {
  items: T[];
  /** Pass back as ?cursor= for the next page; absent on the last page. */
  nextCursor?: string;
}

export function encodeCursor(key: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

export function decodeCursor<T extends z.ZodType>(cursor: string | undefined, schema: T): z.infer<T> | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through
  }
  throw new HttpError(400, 'validation', 'query.cursor: not a cursor this endpoint issued', 'query.cursor');
}

/** Builds a page from `limit + 1` fetched rows: the extra row only says another page exists. */
export function pageOf<T>(rows: T[], limit: number, keyOf: (last: T) => Record<string, string | number>): Page<T> {
  if (rows.length <= limit) return { items: rows };
  const items = rows.slice(0, limit);
  return { items, nextCursor: encodeCursor(keyOf(items[items.length - 1]!)) };
}
