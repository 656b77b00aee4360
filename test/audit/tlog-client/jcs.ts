/**
 * RFC 8785 JSON canonicalization, enough for audit entries (objects, arrays, strings, finite
 * numbers, booleans, null): the client's own, so that it recomputes an entry's hash without
 * the server's code. Member names sort by UTF-16 code units (JavaScript's default order);
 * strings and numbers serialize as ECMAScript JSON.stringify does, which RFC 8785 adopts.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('JCS: not a finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new TypeError(`JCS: cannot encode a ${typeof value}`);
}
