/** The `parametersDigest` of an execution (PROTOCOL.md §3): hex SHA-256 of JCS(parameters). */
import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';

// The package's types declare an ES default export, but its code is `module.exports = fn`.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

/** RFC 8785 canonical JSON text of a value; throws TypeError if it has no JSON form. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
}

/** Hex SHA-256 over the RFC 8785 canonical JSON of the execution's parameters. */
export function parametersDigest(parameters: unknown): string {
  return createHash('sha256').update(canonicalJson(parameters), 'utf8').digest('hex');
}
