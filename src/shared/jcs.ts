/**
 * RFC 8785 JSON canonicalization (JCS), the one wrapper over the `canonicalize` package:
 * entry hashes, qualifying data, grant request signatures, parameters digests, policy and
 * approval hashes all go through it.
 */
import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';

// The package's types declare an ES default export, but its code is `module.exports = fn`,
// which Node hands to an ESM default import as is.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

/** The canonical JSON text of a value; TypeError if it has no JSON form. */
export function jcs(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
}

/** Hex SHA-256 of the canonical JSON text (digests of facts for audit entries). */
export function jcsSha256Hex(value: unknown): string {
  return createHash('sha256').update(jcs(value), 'utf8').digest('hex');
}
