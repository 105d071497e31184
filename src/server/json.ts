// JSON on the wire: amounts (bigint) as decimal strings so they stay exact in every client,
// bytes as lowercase hex, times as ISO-8601 UTC.
export function jsonReplacer(this: unknown, key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  // A Buffer reaches the replacer already as {type:'Buffer', data}: look at the value before
  // toJSON (this[key]), so a stored JSON document of that shape is left as it is.
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer') {
    const raw = (this as Record<string, unknown>)[key];
    if (Buffer.isBuffer(raw)) return raw.toString('hex');
  }
  return value;
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer);
}
