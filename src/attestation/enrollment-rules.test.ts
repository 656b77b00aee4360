import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../shared/errors.js';
import {
  matchRule,
  parseEnrollmentRules,
  ruleSetJson,
  ruleSetSha256,
  type EnrollmentFacts,
} from './enrollment-rules.js';

const CA = 'aa'.repeat(32);
const OTHER_CA = 'bb'.repeat(32);
const EK = 'cc'.repeat(32);

const certified: EnrollmentFacts = {
  ekPublicKeySha256: EK,
  certificate: { chainSha256: [CA], tpmManufacturer: 'id:53544D20', tpmModel: 'ST33' },
};
const bare: EnrollmentFacts = { ekPublicKeySha256: EK };

const rule = (over: Record<string, unknown>) => ({
  name: 'r',
  match: { ekCa: [CA] },
  labels: { team: 'payments' },
  state: 'active',
  ...over,
});
const set = (...rules: unknown[]) => parseEnrollmentRules({ version: 1, rules }, 'test');

function refusal(raw: unknown): string {
  try {
    parseEnrollmentRules(raw, 'test');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  return 'accepted';
}

describe('parseEnrollmentRules', () => {
  it.each([
    ['not an object', [], /an object/],
    ['wrong version', { version: 2, rules: [] }, /version must be 1/],
    ['unknown member', { version: 1, rules: [], extra: 1 }, /unknown member extra/],
    ['empty match without catchAll', { version: 1, rules: [rule({ match: {} })] }, /catchAll/],
    [
      'catchAll with criteria',
      { version: 1, rules: [rule({ catchAll: true })] },
      /goes with an empty match only/,
    ],
    ['unknown criterion', { version: 1, rules: [rule({ match: { os: ['x'] } })] }, /match\.os/],
    ['empty criterion', { version: 1, rules: [rule({ match: { ekCa: [] } })] }, /1-1024/],
    ['bad fingerprint', { version: 1, rules: [rule({ match: { ekCa: ['zz'] } })] }, /SHA-256/],
    [
      'bad manufacturer',
      { version: 1, rules: [rule({ match: { tpmManufacturer: ['STM'] } })] },
      /id:XXXXXXXX/,
    ],
    ['bad state', { version: 1, rules: [rule({ state: 'trusted' })] }, /state must be/],
    ['bad label name', { version: 1, rules: [rule({ labels: { 'a b': 'x' } })] }, /label name/],
    [
      'too many labels',
      {
        version: 1,
        rules: [
          rule({ labels: Object.fromEntries([...Array(33).keys()].map((i) => [`k${i}`, 'v'])) }),
        ],
      },
      /at most 32 labels/,
    ],
    ['duplicate names', { version: 1, rules: [rule({}), rule({})] }, /duplicate rule name r/],
    [
      'too many rules',
      { version: 1, rules: [...Array(257).keys()].map((i) => rule({ name: `r${i}` })) },
      /at most 256 rules/,
    ],
  ])('refuses %s', (_what, raw, message) => {
    expect(refusal(raw)).toMatch(message);
  });

  it('refuses the whole set for one bad rule, naming it', () => {
    expect(refusal({ version: 1, rules: [rule({}), rule({ name: 'b', state: 'x' })] })).toMatch(
      /rules\[1\]/,
    );
  });

  it('normalises fingerprints and manufacturer ids as operators paste them', () => {
    const colons = CA.toUpperCase().match(/../g)?.join(':') ?? '';
    const s = set(rule({ match: { ekCa: [colons], tpmManufacturer: ['ID:53544d20'] } }));
    expect(s.rules[0]?.match).toEqual({ ekCa: [CA], tpmManufacturer: ['id:53544D20'] });
    // The hash binds the normalised set: the same rules pasted two ways are one set.
    expect(ruleSetSha256(s)).toBe(
      ruleSetSha256(set(rule({ match: { ekCa: [CA], tpmManufacturer: ['id:53544D20'] } }))),
    );
    expect(parseEnrollmentRules(ruleSetJson(s), 'again')).toEqual(s);
  });

  it('arbitrary JSON is a rule set or a ConfigError, never another exception', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (raw) => {
        try {
          parseEnrollmentRules({ version: 1, rules: [raw] }, 'fuzz');
          parseEnrollmentRules(raw, 'fuzz');
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
        }
      }),
    );
  });
});

describe('matchRule', () => {
  it('the first matching rule wins; criteria are ANDed, values ORed', () => {
    const s = set(
      rule({ name: 'other-ca', match: { ekCa: [OTHER_CA] } }),
      rule({ name: 'st', match: { ekCa: [OTHER_CA, CA], tpmManufacturer: ['id:53544D20'] } }),
      rule({ name: 'later', match: { ekCa: [CA] } }),
    );
    expect(matchRule(s, certified)?.name).toBe('st');
    const wrongModel = set(rule({ match: { ekCa: [CA], tpmModel: ['SLB9670'] } }));
    expect(matchRule(wrongModel, certified)).toBeUndefined();
  });

  it('certificate criteria and catch-alls never match a bare EK; its fingerprint does', () => {
    const s = set(
      rule({ name: 'ca', match: { ekCa: [CA] } }),
      rule({ name: 'all', match: {}, catchAll: true }),
    );
    expect(matchRule(s, certified)?.name).toBe('ca');
    expect(matchRule(s, bare)).toBeUndefined();
    const listed = set(rule({ name: 'listed', match: { ekPublicKeySha256: [EK] } }));
    expect(matchRule(listed, bare)?.name).toBe('listed');
    expect(matchRule(listed, { ekPublicKeySha256: 'dd'.repeat(32) })).toBeUndefined();
  });

  it('a catch-all matches any certified EK', () => {
    const s = set(rule({ name: 'all', match: {}, catchAll: true, state: 'pending_approval' }));
    expect(matchRule(s, certified)?.state).toBe('pending_approval');
  });
});
