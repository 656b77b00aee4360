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

/** Half of a surrogate pair standing alone: a string that is not Unicode text. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/**
 * In canonical JSON text a lone surrogate can only be JSON.stringify's escape of one
 * (pairs are written as is): `\udXXX` after an even number of backslashes.
 */
const ESCAPED_LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/;

/**
 * Whether any string (value or member name) in parsed JSON holds half of a surrogate pair
 * on its own (RFC 8785 §3.2.2.2 refuses it). Iterative: no depth can exhaust the stack.
 */
export function holdsLoneSurrogate(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) return true;
    } else if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
    } else if (typeof v === 'object' && v !== null) {
      for (const [key, item] of Object.entries(v)) {
        if (LONE_SURROGATE.test(key)) return true;
        stack.push(item);
      }
    }
  }
  return false;
}

/**
 * The canonical JSON text of a value; TypeError if it has no JSON form or holds a lone
 * surrogate (RFC 8785 §3.2.2.2). HTTP bodies with one are refused as bad_request before
 * any handler runs (src/http/app.ts), so this only stops a programming error.
 */
export function jcs(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  if (ESCAPED_LONE_SURROGATE.test(text)) throw new TypeError('value holds a lone surrogate');
  return text;
}

/** Hex SHA-256 of the canonical JSON text (digests of facts for audit entries). */
export function jcsSha256Hex(value: unknown): string {
  return createHash('sha256').update(jcs(value), 'utf8').digest('hex');
}
