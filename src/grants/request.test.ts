/**
 * The grant request against its one schema (request.schema.ts): every limit and the quote
 * checked before any state is touched, each refusal `bad_request` naming its field; and the
 * two canonical texts of a session-mode request are one (the bytes the session key signs and
 * the text the audit entry keeps under its digest: proof.ts `unsignedText`).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GrantorError } from '../shared/errors.js';
import { checkRequest, sessionSigningInput, unsignedRequestText } from './request.js';
import { Fakes, NOW, body, code } from './testing.js';

const idTail = fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/);
const text = fc.string({ minLength: 1, maxLength: 40 });
const sessionBody = fc.record(
  {
    runtimeId: idTail.map((t) => `rt_${t}`),
    requestId: text,
    issuedAt: fc.constant('2026-12-02T19:00:00Z'),
    action: fc.stringMatching(/^[A-Za-z0-9._:-]{1,40}$/),
    resource: text,
    parametersDigest: fc.constant('ab'.repeat(32)),
    audience: text,
    parentGrantId: fc.option(
      idTail.map((t) => `gr_${t}`),
      { nil: null },
    ),
    ttlSeconds: fc.integer({ min: 1, max: 300 }),
    session: fc.record({
      attestationId: idTail.map((t) => `at_${t}`),
      signature: fc.constant('A'.repeat(86)),
    }),
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

const QUOTE = { nonce: 'bm9uY2U=', quote: 'AAAA', signature: 'BBBB', pcrs: { sha256: {} } };

function quoteBody(quote: unknown): Record<string, unknown> {
  const b = body({ quote });
  delete b.session;
  return b;
}

/** The refusal of `untrusted` by checkRequest: its code and field. */
function refusal(untrusted: unknown): { code: string; field: unknown } {
  try {
    checkRequest(untrusted, 300);
  } catch (e) {
    if (e instanceof GrantorError) return { code: e.code, field: e.details?.field };
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('the canonical texts of a grant request', () => {
  it('session mode: the signed bytes are the audited text (fast-check)', () => {
    fc.assert(
      fc.property(sessionBody, (b) => {
        const req = checkRequest(b, 300);
        expect(sessionSigningInput(req.body)).toBe(unsignedRequestText(req.body));
      }),
    );
  });

  it('quote mode: the audited text leaves out the quote signature only', () => {
    const req = checkRequest(quoteBody(QUOTE), 300);
    const audited = JSON.parse(unsignedRequestText(req.body)) as { quote: object };
    const { signature: _signature, ...unsigned } = QUOTE;
    expect(audited.quote).toEqual(unsigned);
  });
});

describe('the request against its one schema', () => {
  it.each([
    ['runtimeId', { runtimeId: 'alpha' }],
    ['runtimeId', { runtimeId: `rt_${'a'.repeat(62)}` }],
    ['requestId', { requestId: '' }],
    ['requestId', { requestId: 'q'.repeat(129) }],
    ['issuedAt', { issuedAt: '2026-01-01 12:00:00Z' }],
    ['issuedAt', { issuedAt: 'yesterday' }],
    ['action', { action: 'tickets read' }],
    ['resource', { resource: 'r'.repeat(513) }],
    ['parametersDigest', { parametersDigest: 'AB'.repeat(32) }],
    ['audience', { audience: 'a'.repeat(129) }],
    ['parentGrantId', { parentGrantId: 'at_notagrant' }],
    ['ttlSeconds', { ttlSeconds: 1.5 }],
    ['ttlSeconds', { ttlSeconds: 0 }],
    ['session.attestationId', { session: { attestationId: 'x', signature: 'A'.repeat(86) } }],
    ['session.signature', { session: { attestationId: 'at_1', signature: 'A'.repeat(85) } }],
    ['extra', { extra: 1 }],
  ])('%s out of its limits: bad_request naming it', (field, over) => {
    expect(refusal(body(over))).toEqual({ code: 'bad_request', field });
  });

  it('ttlSeconds past the configured bound, or no proof, or two: bad_request', () => {
    expect(
      refusal(
        body({ ttlSeconds: 301, session: { attestationId: 'at_1', signature: 'A'.repeat(86) } }),
      ),
    ).toEqual({
      code: 'bad_request',
      field: 'ttlSeconds',
    });
    const none = body();
    delete none.session;
    expect(refusal(none)).toEqual({ code: 'bad_request', field: 'session|quote' });
    const both = body({
      session: { attestationId: 'at_1', signature: 'A'.repeat(86) },
      quote: QUOTE,
    });
    expect(refusal(both)).toEqual({ code: 'bad_request', field: 'session|quote' });
  });
});

describe('a malformed quote is refused before any state is touched', () => {
  it.each([
    ['quote.nonce', { ...QUOTE, nonce: 5 }],
    ['quote.nonce', { ...QUOTE, nonce: '' }],
    ['quote.nonce', { ...QUOTE, nonce: 'A'.repeat(65) }],
    ['quote.nonce', { ...QUOTE, nonce: 'not base64!' }],
    ['quote.quote', { ...QUOTE, quote: ['AAAA'] }],
    ['quote.quote', { ...QUOTE, quote: 'A'.repeat(4097) }],
    ['quote.signature', { nonce: 'AA==', quote: 'AA==', pcrs: {} }],
    ['quote.signature', { ...QUOTE, signature: null }],
    ['quote.pcrs', { ...QUOTE, pcrs: [] }],
    ['quote.pcrs.sha256', { ...QUOTE, pcrs: { sha256: 'ff' } }],
    ['quote.pcrs.sha256.0', { ...QUOTE, pcrs: { sha256: { 0: 7 } } }],
    [
      'quote.pcrs',
      { ...QUOTE, pcrs: Object.fromEntries([...Array(9).keys()].map((i) => [`b${i}`, {}])) },
    ],
    ['quote.eventLog', { ...QUOTE, eventLog: '' }],
    ['quote.ima.format', { ...QUOTE, ima: { offset: 0, format: 'xml', log: '' } }],
    ['quote.ima.offset', { ...QUOTE, ima: { offset: -1, format: 'ascii', log: '' } }],
    ['quote.sessionKey', { ...QUOTE, sessionKey: {} }],
    ['quote', 'AAAA'],
  ])('%s: bad_request naming it; the attestation port never called', async (field, quote) => {
    const f = new Fakes();
    const svc = f.service();
    const err = await svc.request(quoteBody(quote), NOW).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GrantorError);
    expect(err).toMatchObject({ code: 'bad_request', details: { field } });
    // Nothing of the proof ran and nothing was written.
    expect(f.quoteCalls).toEqual([]);
    expect(f.events).toEqual([]);
  });

  it('a quote with a non-string member never reaches the verifier (it was cast unchecked)', async () => {
    const f = new Fakes();
    const quote = { nonce: { toString: 'AA==' }, quote: 7, signature: ['AA=='], pcrs: 'all' };
    expect(await code(f.service().request(quoteBody(quote), NOW))).toBe('bad_request');
    expect(f.quoteCalls).toEqual([]);
  });

  it('a quote that passes reaches the verifier as its copy, every member a checked string', async () => {
    const f = new Fakes();
    await f.service().request(quoteBody(QUOTE), NOW);
    expect(f.quoteCalls.map((c) => c.quote)).toEqual([QUOTE]);
  });

  it('fast-check: any quote value, or any body, is a checked request or bad_request', () => {
    const anyQuote = fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          nonce: fc.oneof(fc.base64String({ maxLength: 80 }), fc.jsonValue()),
          quote: fc.oneof(fc.base64String({ maxLength: 40 }), fc.jsonValue()),
          signature: fc.oneof(fc.base64String({ maxLength: 40 }), fc.jsonValue()),
          pcrs: fc.oneof(
            fc.dictionary(
              fc.string({ maxLength: 18 }),
              fc.dictionary(fc.string({ maxLength: 3 }), fc.string()),
            ),
            fc.jsonValue(),
          ),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(anyQuote, (quote) => {
        let req;
        try {
          req = checkRequest(quoteBody(quote), 300);
        } catch (e) {
          expect(e).toBeInstanceOf(GrantorError);
          expect((e as GrantorError).code).toBe('bad_request');
          return;
        }
        if (req.proof.mode !== 'quote') throw new Error('quote mode expected');
        const q = req.proof.quote;
        for (const member of [q.nonce, q.quote, q.signature]) expect(typeof member).toBe('string');
        for (const bank of Object.values(q.pcrs))
          for (const v of Object.values(bank)) expect(typeof v).toBe('string');
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (untrusted) => {
        try {
          checkRequest(untrusted, 300);
        } catch (e) {
          expect(e).toBeInstanceOf(GrantorError);
          expect((e as GrantorError).code).toBe('bad_request');
        }
      }),
      { numRuns: 200 },
    );
  }, 30_000);
});
