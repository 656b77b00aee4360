import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  GENESIS_PREV_HASH,
  buildEntry,
  checkEvent,
  checkLink,
  entryHash,
  fitReason,
  isEntryShape,
} from './entry.js';
import { factsProblem, type Facts } from './facts.js';
import { jcs } from '../shared/jcs.js';
import fc from 'fast-check';

const digest = createHash('sha256').update('request').digest('hex');

describe('audit entries', () => {
  it('hashes SHA-256 of the JCS form without hash (known answer)', () => {
    const e = buildEntry(
      { type: 'grant.decision', subject: 'rt_1', decision: 'allow', reasons: ['ok'], digest },
      0,
      '2026-01-01T00:00:00.000Z',
      GENESIS_PREV_HASH,
    );
    // JCS: keys sorted by code unit, no whitespace.
    const jcs =
      `{"decision":"allow","digest":"${digest}","prevHash":"${GENESIS_PREV_HASH}",` +
      `"reasons":["ok"],"seq":0,"subject":"rt_1","time":"2026-01-01T00:00:00.000Z",` +
      `"type":"grant.decision"}`;
    expect(e.hash).toBe(createHash('sha256').update(jcs).digest('hex'));
    expect(entryHash(e)).toBe(e.hash);
    expect(checkLink(e, 0, GENESIS_PREV_HASH)).toBeUndefined();
  });

  it('omits absent optional members from the hash', () => {
    const e = buildEntry({ type: 'key.rotated', subject: 'k1', digest }, 3, 't', 'a'.repeat(64));
    expect(Object.keys(e)).not.toContain('decision');
    const jcs = `{"digest":"${digest}","prevHash":"${'a'.repeat(64)}","seq":3,"subject":"k1","time":"t","type":"key.rotated"}`;
    expect(e.hash).toBe(createHash('sha256').update(jcs).digest('hex'));
  });

  it('checkLink names what is wrong', () => {
    const e = buildEntry({ type: 't', subject: 's', digest }, 1, 't', GENESIS_PREV_HASH);
    expect(checkLink(e, 2, GENESIS_PREV_HASH)).toBe('seq');
    expect(checkLink(e, 1, 'b'.repeat(64))).toBe('prev_hash');
    expect(checkLink({ ...e, subject: 'other' }, 1, GENESIS_PREV_HASH)).toBe('hash');
    expect(checkLink({ ...e, secret: 'x' } as typeof e, 1, GENESIS_PREV_HASH)).toBe('shape');
  });

  it.each([
    [{ type: '', subject: 's', digest }],
    [{ type: 'has space', subject: 's', digest }],
    [{ type: 't', subject: 's'.repeat(200), digest }],
    [{ type: 't', subject: 's', digest: 'ABCD' }],
    [{ type: 't', subject: 's', digest: digest.toUpperCase() }],
    [{ type: 't', subject: 's', decision: 'a b', digest }],
    [{ type: 't', subject: 's', reasons: [''], digest }],
    [{ type: 't', subject: 's', reasons: Array.from({ length: 40 }, () => 'r'), digest }],
  ])('refuses a malformed event with bad_request (%#)', (event) => {
    expect(() => checkEvent(event)).toThrow(expect.objectContaining({ code: 'bad_request' }));
  });

  it('property: the hash is SHA-256 of jcs() of the entry without hash, members in the stored order', () => {
    // entryHash writes the canonical text member by member; jcs of the object is the oracle.
    const text = fc.string({ unit: 'grapheme', maxLength: 40 });
    const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
    fc.assert(
      fc.property(
        fc.record({
          type: text,
          subject: text,
          decision: optional(text),
          reasons: optional(fc.array(text, { maxLength: 4 })),
          digest: text,
          facts: optional(fc.dictionary(text, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 })),
          seq: fc.nat(),
          time: text,
          prevHash: text,
        }),
        ({ seq, time, prevHash, ...members }) => {
          const event = Object.fromEntries(
            Object.entries(members).filter(([, v]) => v !== undefined),
          ) as unknown as { type: string; subject: string; digest: string; facts?: Facts };
          const e = buildEntry(event, seq, time, prevHash);
          const { hash, ...body } = e;
          expect(hash).toBe(createHash('sha256').update(jcs(body), 'utf8').digest('hex'));
          expect(entryHash(e)).toBe(hash);
          const order = ['v', 'seq', 'time', 'type', 'subject', 'decision', 'reasons', 'digest'];
          const expected = [...order, 'facts', 'prevHash', 'hash'].filter((k) =>
            k === 'v' ? members.facts !== undefined : k in e,
          );
          expect(Object.keys(e)).toEqual(expected);
          expect(Object.isFrozen(e)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('copies the event so later mutation cannot change the entry', () => {
    const reasons = ['a'];
    const copy = checkEvent({ type: 't', subject: 's', reasons, digest });
    reasons.push('b');
    expect(copy.reasons).toEqual(['a']);
  });
});

describe('fitReason', () => {
  it('keeps a short text, cuts a long one to 256 units, never through a surrogate pair', () => {
    expect(fitReason('short')).toBe('short');
    expect(fitReason('a'.repeat(256))).toBe('a'.repeat(256));
    expect(fitReason('a'.repeat(300))).toBe(`${'a'.repeat(255)}…`);
    const pair = `${'a'.repeat(254)}😀tail`;
    expect(fitReason(pair)).toBe(`${'a'.repeat(254)}…`);
    expect(fitReason(pair).length).toBeLessThanOrEqual(256);
  });
});

describe('version-2 entries (typed facts)', () => {
  const facts = {
    runtime: 'rt_1',
    action: 'payments.transfer',
    resource: 'acct/1',
    audience: 'gw',
    parent: null,
    requestId: 'req-1',
    parametersDigest: digest,
    proofMode: 'session' as const,
    attestationId: 'att_1',
    policyHash: digest,
    matchedPolicies: ['p1'],
    keyId: 'k1',
    expiresAt: '2026-01-01T00:05:00.000Z',
  };
  const v2 = () =>
    buildEntry(
      { type: 'grant.decision', subject: 'gr_1', decision: 'allow', digest, facts },
      0,
      '2026-01-01T00:00:00.000Z',
      GENESIS_PREV_HASH,
    );

  it('carries v: 2 and its facts, both covered by the hash', () => {
    const e = v2();
    expect(e.v).toBe(2);
    expect(checkLink(e, 0, GENESIS_PREV_HASH)).toBeUndefined();
    const edited = { ...e, facts: { ...facts, runtime: 'rt_2' } };
    expect(checkLink(edited, 0, GENESIS_PREV_HASH)).toBe('hash');
    const downgraded: Record<string, unknown> = { ...e };
    delete downgraded.v;
    expect(isEntryShape(downgraded)).toBe(false);
  });

  it('still verifies a version-1 entry (no v, no facts)', () => {
    const e = buildEntry(
      { type: 'grant.decision', subject: 'gr_1', digest },
      0,
      't',
      GENESIS_PREV_HASH,
    );
    expect(e.v).toBeUndefined();
    expect(checkLink(e, 0, GENESIS_PREV_HASH)).toBeUndefined();
  });

  it('refuses facts that do not fit the type (missing, unknown, wrong kind, untyped type)', () => {
    const bad: [string, unknown][] = [
      ['grant.decision', { ...facts, runtime: undefined }],
      ['grant.decision', { ...facts, secretValue: 'x' }],
      ['grant.decision', { ...facts, parametersDigest: 'not-a-digest' }],
      ['grant.decision', { ...facts, resource: 'line\nbreak' }],
      ['grant.decision', { ...facts, matchedPolicies: Array.from({ length: 33 }, () => 'p') }],
      ['key.rotated', facts],
    ];
    for (const [type, f] of bad) {
      expect(() => checkEvent({ type, subject: 's', digest, facts: f as typeof facts })).toThrow(
        /audit event/,
      );
      expect(factsProblem(type, f)).toBeDefined();
    }
    // A stored v2 entry whose facts do not fit is not an entry.
    expect(isEntryShape({ ...v2(), facts: { ...facts, extra: 1 } })).toBe(false);
  });

  it('property: arbitrary facts objects are accepted only when they fit the schema exactly', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (f) => {
        const problem = factsProblem('grant.decision', f);
        if (problem === undefined) expect(Object.keys(f).sort()).toEqual(Object.keys(facts).sort());
      }),
    );
  });
});
