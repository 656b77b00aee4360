/**
 * The policy archive: every policy set that was ever active, kept by its hash (docs/policy.md
 * "The archive"), so that a `pol` hash in a grant or an audit entry can be turned back into
 * the rules that decided. Content-addressed: what is kept is the canonical text whose
 * SHA-256 is the hash, and nothing is answered that does not hash to what was asked for.
 */
import type { PolicySource } from './policy-set.js';

/** One archived set: the schema and every file, by name, exactly as hashed. */
export interface ArchivedPolicySet {
  /** Hex SHA-256 of `canonical` (policySetHash). */
  readonly hash: string;
  readonly schema: string;
  /** File name -> text. */
  readonly policies: Readonly<Record<string, string>>;
  /** JCS({policies, schema}): the exact bytes the hash covers. */
  readonly canonical: string;
}

export interface PolicyArchive {
  /**
   * Keeps `source` under its hash, durably (a synced write) when it resolves; a hash kept
   * already is not written again. Resolves with the hash.
   */
  keep(source: PolicySource): Promise<string>;
  /** The set kept under `hash`, checked against it; undefined when there is none. */
  get(hash: string): Promise<ArchivedPolicySet | undefined>;
}
