/** RFC 8785 JSON canonicalization (JCS), through the `canonicalize` package. */
import canonicalizeModule from 'canonicalize';

// The package's types declare an ES default export, but its code is `module.exports = fn`,
// which Node hands to an ESM default import as is.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

export function jcs(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
}
