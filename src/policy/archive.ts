/**
 * What the archive checks, independent of where: the parse of a set's canonical text
 * (canonicalPolicySet in policy-set.ts, the preimage of its hash) back into a set, refused
 * unless it hashes to the hash named.
 */
import type { ArchivedPolicySet } from './archive.port.js';
import { canonicalHash } from './policy-set.js';

export const POLICY_HASH = /^[0-9a-f]{64}$/;

/**
 * The set a canonical text holds, if it is one and hashes to `hash`: the text is read from
 * a disk (or a bundle) anyone with access may have edited, so its hash is the only proof.
 */
export function parseArchivedPolicySet(
  hash: string,
  canonical: string,
): ArchivedPolicySet | undefined {
  if (!POLICY_HASH.test(hash) || canonicalHash(canonical) !== hash) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(canonical);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { policies, schema } = parsed as Record<string, unknown>;
  if (typeof schema !== 'string' || typeof policies !== 'object' || policies === null) {
    return undefined;
  }
  if (Array.isArray(policies) || Object.keys(parsed).length !== 2) return undefined;
  const entries = Object.entries(policies);
  if (entries.some(([, text]) => typeof text !== 'string')) return undefined;
  // fromEntries defines own members: a file named `__proto__` stays a file.
  const files = Object.fromEntries(entries) as Record<string, string>;
  return { hash, schema, policies: files, canonical };
}
