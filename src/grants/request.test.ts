/**
 * The two canonical texts of a session-mode request are one: the bytes the session key
 * signs and the text the audit entry keeps under its digest. The pipeline relies on it to
 * canonicalise a request once per grant (proof.ts `unsignedText`).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkRequest, sessionSigningInput, unsignedRequestText } from './request.js';

const text = fc.string({ minLength: 1, maxLength: 40 });
const sessionBody = fc.record(
  {
    runtimeId: text,
    requestId: text,
    issuedAt: fc.constant('2026-12-02T19:00:00Z'),
    action: text,
    resource: text,
    parametersDigest: fc.constant('ab'.repeat(32)),
    audience: text,
    parentGrantId: fc.option(text, { nil: null }),
    ttlSeconds: fc.integer({ min: 1, max: 300 }),
    session: fc.record({
      attestationId: text,
      signature: fc.constant('A'.repeat(86)),
    }),
    // Members the schema would refuse still reach both texts alike.
    extra: fc.option(fc.jsonValue(), { nil: undefined }),
  },
  {
    requiredKeys: [
      'runtimeId',
      'requestId',
      'issuedAt',
      'action',
      'resource',
      'parametersDigest',
      'audience',
      'ttlSeconds',
      'session',
    ],
  },
);

describe('the canonical texts of a grant request', () => {
  it('session mode: the signed bytes are the audited text (fast-check)', () => {
    fc.assert(
      fc.property(sessionBody, (body) => {
        const req = checkRequest(body, 300);
        expect(sessionSigningInput(req.body)).toBe(unsignedRequestText(req.body));
      }),
    );
  });

  it('quote mode: the audited text leaves out the quote signature only', () => {
    const req = checkRequest(
      {
        runtimeId: 'rt_1',
        requestId: 'q1',
        issuedAt: '2026-12-02T19:00:00Z',
        action: 'a',
        resource: 'r',
        parametersDigest: 'ab'.repeat(32),
        audience: 'gw',
        ttlSeconds: 60,
        quote: { nonce: 'bm9uY2U=', quoted: 'AAAA', signature: 'BBBB' },
      },
      300,
    );
    const audited = JSON.parse(unsignedRequestText(req.body)) as { quote: object };
    expect(audited.quote).toEqual({ nonce: 'bm9uY2U=', quoted: 'AAAA' });
  });
});
