import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEntry, checkLink, GENESIS_PREV_HASH, isEntryShape } from './entry.js';
import { FACT_TYPES, factHex, factId, factList, factsProblem, factText } from './facts.js';

// The types given facts after grant decisions, attestations and redemptions (issue 16).
const LATER_TYPES = [
  'runtime.enroll',
  'runtime.enroll_expired',
  'runtime.activate',
  'runtime.approve',
  'runtime.revoke',
  'runtime.labels.assign',
  'runtime.release',
  'runtime.firmware',
  'attestation.enrollrules.replace',
  'attestation.ekca.replace',
  'attestation.refpolicy.put',
  'attestation.refpolicy.enable',
  'attestation.refpolicy.disable',
  'approval.requested',
  'approval.given',
  'approval.consumed',
  'operator.registered',
  'operator.removed',
  'operator.token_created',
  'operator.token_revoked',
  'operator.certificate_revoked',
  'gateway.enrolled',
  'gateway.revoked',
  'key.created',
  'key.rotated',
  'key.retired',
  'key.destroyed',
  'key.published',
  'policy.reloaded',
  'policy.reload_refused',
  'grant.outcome',
  'operator.refused',
];

describe('facts of the remaining entry types', () => {
  it('every type has a schema', () => {
    for (const t of LATER_TYPES) expect(FACT_TYPES, t).toContain(t);
  });

  it('an old entry of each type (no v, no facts) still verifies; facts of another type do not', () => {
    for (const type of LATER_TYPES) {
      const old = buildEntry(
        { type, subject: 's_1', digest: 'a'.repeat(64) },
        0,
        new Date(0).toISOString(),
        GENESIS_PREV_HASH,
      );
      expect(old.v).toBeUndefined();
      expect(checkLink(old, 0, GENESIS_PREV_HASH), type).toBeUndefined();
      const forged = { ...old, v: 2 as const, facts: { runtime: 'rt_1' } };
      expect(isEntryShape(forged), type).toBe(false);
      expect(factsProblem(type, {}), type).toMatch(/^missing fact /);
    }
  });

  it('sanitises any value into a fact that fits, never refusing the act', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 600 }),
        fc.array(fc.string(), { maxLength: 40 }),
        (v, list) => {
          expect(
            factsProblem('key.created', {
              kid: factId(v),
              purpose: factId(v),
              previousKid: null,
              reason: factId(v),
            }),
          ).toBeUndefined();
          expect(
            factsProblem('policy.reloaded', {
              policyHash: factHex(v),
              version: null,
              by: factText(v),
              code: null,
            }),
          ).toBeUndefined();
          expect(
            factsProblem('operator.token_created', {
              credential: factText(v),
              person: null,
              actor: factId(v),
              roles: factList(list),
              audiences: factList([]),
            }),
          ).toBeUndefined();
        },
      ),
    );
  });
});
