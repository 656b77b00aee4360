/**
 * What the archive stores and checks, independent of where: the canonical text of a set
 * (RFC 8785 JCS of `{"policies": {name: text}, "schema": text}`, the preimage of its hash)
 * and the parse of such a text back into a set, refused unless it hashes to the hash named.
 */
import { createHash } from 'node:crypto';
import { jcs } from '../shared/jcs.js';
import type { ArchivedPolicySet } from './archive.port.js';
import type { PolicySource } from './policy-set.js';

export const POLICY_HASH = /^[0-9a-f]{64}$/;

/** The canonical text of a set: its hash is the SHA-256 of exactly these bytes. */
export function canonicalPolicySet(source: PolicySource): string {
  // fromEntries defines own members: a file named `__proto__` is a file, not a prototype.
  const policies = Object.fromEntries(source.files.map((f) => [f.name, f.text]));
  return jcs({ policies, schema: source.schema });
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * The set a canonical text holds, if it is one and hashes to `hash`: the text is read from
 * a disk (or a bundle) anyone with access may have edited, so its hash is the only proof.
 */
export function parseArchivedPolicySet(
  hash: string,
  canonical: string,
): ArchivedPolicySet | undefined {
  if (!POLICY_HASH.test(hash) || sha256Hex(canonical) !== hash) return undefined;
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
