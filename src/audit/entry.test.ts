import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  GENESIS_PREV_HASH,
  buildEntry,
  checkEvent,
  checkLink,
  entryHash,
  fitReason,
} from './entry.js';

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
