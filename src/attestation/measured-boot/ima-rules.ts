/**
 * Rules over verified IMA entries: excluded paths, measurement violations, a denylist, and
 * an allowlist (file name -> digests, or digests anywhere) that an ima-sig signature by a
 * listed key also satisfies. An allowlist is in force when any of allow, allowDigests or
 * keys is given. Each violation names the entry: PCR, index, file name and digest.
 */
import { checkImaSignature } from './ima-signature.js';
import type { ImaEntry } from './ima.js';
import type { ImaRules } from './policy.js';
import type { MeasuredBootViolation } from './rules.js';

export function describeEntry(e: ImaEntry): string {
  return `pcr=${e.pcr} entry=${e.index} name=${JSON.stringify(e.name)} ${e.digestAlg}=${e.digest.toString('hex')}`;
}

export function evaluateImaRules(
  rules: ImaRules,
  entries: readonly ImaEntry[],
): MeasuredBootViolation[] {
  const out: MeasuredBootViolation[] = [];
  const allowlist = rules.allow.size > 0 || rules.allowDigests.size > 0 || rules.keys.length > 0;
  for (const e of entries) {
    if (rules.exclude.some((x) => x.test(e.name))) continue;
    const v = (code: string) => out.push({ code, detail: describeEntry(e) });
    // A violation: a file was measured while open for writing (ToMToU) or similar; its
    // content is unknown.
    if (e.violation) {
      if (!rules.allowViolations) v('ima_violation');
      continue;
    }
    const digest = e.digest.toString('hex');
    if (rules.deny.has(digest)) {
      v('ima_digest_denied');
      continue;
    }
    if (!allowlist) continue;
    if (rules.allowDigests.has(digest) || rules.allow.get(e.name)?.has(digest) === true) continue;
    const sig = e.signature;
    if (sig !== undefined && sig.length > 0 && rules.keys.length > 0) {
      const check = checkImaSignature(sig, e.digestAlg, e.digest, rules.keys);
      if (check === 'valid') continue;
      if (check === 'invalid') {
        v('ima_signature_invalid');
        continue;
      }
    }
    v('ima_digest_not_allowed');
  }
  return out;
}
