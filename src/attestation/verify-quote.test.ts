import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { unmarshalTpmsAttest } from '../tpm/marshal/attest.js';
import { TPM_ALG, TPM_ST } from '../tpm/marshal/constants.js';
import { marshalTpmtSignature, unmarshalTpmtSignature } from '../tpm/marshal/signature.js';
import { GrantorError } from '../shared/errors.js';
import { parseReferencePolicy } from './reference-policy.js';
import { objectName } from '../tpm/marshal/public.js';
import { akQualifiedNameUnderEk } from './ak.js';
import { SoftEk, SoftTpm } from './testing/soft-tpm.js';
import {
  parseQuoteRequest,
  qualifyingData,
  verifyParsedQuote,
  type QuoteRequest,
  type VerifyQuoteContext,
} from './verify-quote.js';

const tpm = new SoftTpm('ecc');
tpm.extend('sha256', 7, 'secure-boot');
const sessionKey = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' };
const policy = parseReferencePolicy(
  {
    name: 'test',
    catchAll: true,
    pcrs: {
      sha256: {
        '0': [tpm.value('sha256', 0).toString('hex')],
        '7': [tpm.value('sha256', 7).toString('hex')],
      },
    },
    allowReset: false,
  },
  'test',
);

function setup(options: Parameters<SoftTpm['quote']>[2] = {}, t: SoftTpm = tpm) {
  const nonce = randomBytes(32);
  const qd = qualifyingData(nonce, sessionKey);
  const req = t.quote(nonce, qd, options);
  const ctx: VerifyQuoteContext = {
    akPublic: t.akPublic,
    qualifyingData: qd,
    nonceStatus: 'ok',
    policy,
    previous: { resetCount: 3, restartCount: 0 },
  };
  return { nonce, qd, req, ctx };
}

function codeOf(req: QuoteRequest, ctx: VerifyQuoteContext): string {
  try {
    verifyParsedQuote(parseQuoteRequest(req), ctx);
  } catch (e) {
    return (e as GrantorError).code;
  }
  return 'ok';
}

function flipBase64(b64: string, index: number): string {
  const b = Buffer.from(b64, 'base64');
  b[index] = (b[index] ?? 0) ^ 1;
  return b.toString('base64');
}

describe('verifyParsedQuote', () => {
  it('accepts an authentic, fresh quote matching the policy', () => {
    const { req, ctx } = setup();
    const facts = verifyParsedQuote(parseQuoteRequest(req), ctx);
    expect(facts.violations).toEqual([]);
    expect(facts.resetCount).toBe(3);
    expect(facts.resetDetected).toBe(false);
  });

  it('accepts an RSA AK quote', () => {
    const rsa = new SoftTpm('rsa');
    rsa.extend('sha256', 7, 'secure-boot');
    const { req, ctx } = setup({}, rsa);
    expect(codeOf(req, ctx)).toBe('ok');
  });

  it('quote_magic_invalid: a structure without TPM_GENERATED_VALUE', () => {
    const { req, ctx } = setup({ tamper: (a) => ({ ...a, magic: 0xff544348 }) });
    expect(codeOf(req, ctx)).toBe('quote_magic_invalid');
  });

  it('quote_type_invalid: a CERTIFY attestation signed by the same AK', () => {
    const { req, ctx } = setup({
      tamper: (a) => ({
        ...a,
        attested: {
          type: TPM_ST.ATTEST_CERTIFY,
          name: Buffer.alloc(34, 1),
          qualifiedName: Buffer.alloc(34, 2),
        },
      }),
    });
    expect(codeOf(req, ctx)).toBe('quote_type_invalid');
  });

  it('quote_signature_invalid: one bit flipped in the attest bytes or the signature', () => {
    const { req, ctx } = setup();
    const attestLen = Buffer.from(req.quote, 'base64').length;
    expect(codeOf({ ...req, quote: flipBase64(req.quote, attestLen - 1) }, ctx)).toBe(
      'quote_signature_invalid',
    );
    const sig = unmarshalTpmtSignature(Buffer.from(req.signature, 'base64'));
    if (sig.sigAlg !== TPM_ALG.ECDSA) throw new Error('expected ECDSA');
    const s = Buffer.from(sig.s);
    s[31] = (s[31] ?? 0) ^ 1;
    const flipped = marshalTpmtSignature({ ...sig, s }).toString('base64');
    expect(codeOf({ ...req, signature: flipped }, ctx)).toBe('quote_signature_invalid');
  });

  it('quote_signature_scheme_mismatch: RSA scheme against an ECC AK, and the wrong hash', () => {
    const { req, ctx } = setup();
    const rsaSig = marshalTpmtSignature({
      sigAlg: TPM_ALG.RSASSA,
      hash: TPM_ALG.SHA256,
      sig: Buffer.alloc(256, 1),
    });
    expect(codeOf({ ...req, signature: rsaSig.toString('base64') }, ctx)).toBe(
      'quote_signature_scheme_mismatch',
    );
    const sig = unmarshalTpmtSignature(Buffer.from(req.signature, 'base64'));
    const sha384 = marshalTpmtSignature({ ...sig, hash: TPM_ALG.SHA384 });
    expect(codeOf({ ...req, signature: sha384.toString('base64') }, ctx)).toBe(
      'quote_signature_scheme_mismatch',
    );
    const rsa = new SoftTpm('rsa');
    const r = setup({}, rsa);
    const ecdsa = marshalTpmtSignature({
      sigAlg: TPM_ALG.ECDSA,
      hash: TPM_ALG.SHA256,
      r: Buffer.alloc(32, 1),
      s: Buffer.alloc(32, 1),
    });
    expect(codeOf({ ...r.req, signature: ecdsa.toString('base64') }, r.ctx)).toBe(
      'quote_signature_scheme_mismatch',
    );
  });

  it('quote_signature_out_of_range: ECDSA r or s zero or >= n', () => {
    const { req, ctx } = setup();
    const sig = unmarshalTpmtSignature(Buffer.from(req.signature, 'base64'));
    if (sig.sigAlg !== TPM_ALG.ECDSA) throw new Error('expected ECDSA');
    const n = Buffer.from(
      'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551',
      'hex',
    );
    for (const bad of [
      { ...sig, r: Buffer.alloc(32) },
      { ...sig, s: Buffer.alloc(0) },
      { ...sig, r: n },
      { ...sig, s: Buffer.alloc(32, 0xff) },
    ]) {
      expect(codeOf({ ...req, signature: marshalTpmtSignature(bad).toString('base64') }, ctx)).toBe(
        'quote_signature_out_of_range',
      );
    }
  });

  it('quote_nonce_mismatch: extraData is not SHA-256(nonce || SHA-256(JCS(sessionKey)))', () => {
    const { req, ctx } = setup();
    expect(
      codeOf(req, { ...ctx, qualifyingData: qualifyingData(randomBytes(32), sessionKey) }),
    ).toBe('quote_nonce_mismatch');
    expect(
      codeOf(req, {
        ...ctx,
        qualifyingData: qualifyingData(Buffer.from(req.nonce, 'base64'), { ...sessionKey, x: 'z' }),
      }),
    ).toBe('quote_nonce_mismatch');
  });

  it('nonce_unknown / nonce_expired / nonce_reused from the nonce store status', () => {
    const { req, ctx } = setup();
    expect(codeOf(req, { ...ctx, nonceStatus: 'unknown' })).toBe('nonce_unknown');
    expect(codeOf(req, { ...ctx, nonceStatus: 'expired' })).toBe('nonce_expired');
    expect(codeOf(req, { ...ctx, nonceStatus: 'reused' })).toBe('nonce_reused');
  });

  it('pcr_selection_mismatch: values relabelled, missing or extra', () => {
    const { req, ctx } = setup();
    const sha256 = req.pcrs.sha256 ?? {};
    // Relabelling: PCR 7's value claimed for PCR 8 (digest unchanged, selection differs).
    const relabelled = { sha256: { '0': sha256['0'] ?? '', '8': sha256['7'] ?? '' } };
    expect(codeOf({ ...req, pcrs: relabelled }, ctx)).toBe('pcr_selection_mismatch');
    expect(codeOf({ ...req, pcrs: { sha256: { '0': sha256['0'] ?? '' } } }, ctx)).toBe(
      'pcr_selection_mismatch',
    );
    const extra = { ...req.pcrs, sha1: { '0': '00'.repeat(20) } };
    expect(codeOf({ ...req, pcrs: extra }, ctx)).toBe('pcr_selection_mismatch');
  });

  it('pcr_bank_not_allowed: a SHA-1 bank offered where SHA-256 is required', () => {
    const { req, ctx } = setup({ selection: [{ bank: 'sha1', pcrs: [0, 7] }] });
    expect(codeOf(req, ctx)).toBe('pcr_bank_not_allowed');
  });

  it('pcr_selection_incomplete: a required PCR missing from the signed selection', () => {
    const { req, ctx } = setup({ selection: [{ bank: 'sha256', pcrs: [0, 1] }] });
    expect(codeOf(req, ctx)).toBe('pcr_selection_incomplete');
  });

  it('pcr_digest_mismatch: one bit flipped in a supplied PCR value, or in pcrDigest', () => {
    const { req, ctx } = setup({ selection: [{ bank: 'sha256', pcrs: [0, 1, 7] }] });
    const v = Buffer.from(req.pcrs.sha256?.['1'] ?? '', 'hex');
    v[0] = (v[0] ?? 0) ^ 1;
    expect(
      codeOf({ ...req, pcrs: { sha256: { ...req.pcrs.sha256, '1': v.toString('hex') } } }, ctx),
    ).toBe('pcr_digest_mismatch');
    const t = setup({
      tamper: (a) => {
        if (a.attested.type !== TPM_ST.ATTEST_QUOTE) return a;
        const d = Buffer.from(a.attested.pcrDigest);
        d[0] = (d[0] ?? 0) ^ 1;
        return { ...a, attested: { ...a.attested, pcrDigest: d } };
      },
    });
    expect(codeOf(t.req, t.ctx)).toBe('pcr_digest_mismatch');
  });

  it('pcr_policy_violation: a PCR value outside the reference values is reported, not thrown', () => {
    const other = new SoftTpm('ecc');
    const { req, ctx } = setup({}, other);
    const facts = verifyParsedQuote(parseQuoteRequest(req), ctx);
    expect(facts.violations.map((v) => v.code)).toEqual(['pcr_policy_violation']);
    expect(facts.violations[0]?.details).toEqual({ pcrs: ['sha256:7'] });
  });

  it('tpm_counter_rollback: resetCount or restartCount going backwards', () => {
    const back = setup({ resetCount: 2 });
    expect(codeOf(back.req, back.ctx)).toBe('tpm_counter_rollback');
    const s = setup({ restartCount: 1 });
    expect(codeOf(s.req, { ...s.ctx, previous: { resetCount: 3, restartCount: 2 } })).toBe(
      'tpm_counter_rollback',
    );
  });

  it('tpm_clock_rollback: the clock going back while reset and restart counts are unchanged', () => {
    const prev = { resetCount: 3, restartCount: 0, clock: 200_000n };
    const back = setup({ clock: 199_999n });
    expect(codeOf(back.req, { ...back.ctx, previous: prev })).toBe('tpm_clock_rollback');
    // The same clock, a later clock, or no recorded clock: accepted.
    for (const [clock, previous] of [
      [200_000n, prev],
      [200_001n, prev],
      [1n, { resetCount: 3, restartCount: 0 }],
    ] as const) {
      const s = setup({ clock });
      expect(codeOf(s.req, { ...s.ctx, previous })).toBe('ok');
    }
    // After a restart or a reset the clock may be lower (it was last saved to NV earlier).
    const restarted = setup({ clock: 1n, restartCount: 1 });
    expect(codeOf(restarted.req, { ...restarted.ctx, previous: prev })).toBe('ok');
    const reset = setup({ clock: 1n, resetCount: 4 });
    expect(
      codeOf(reset.req, { ...reset.ctx, previous: prev, policy: { ...policy, allowReset: true } }),
    ).toBe('ok');
  });

  it('quote_signer_mismatch: a qualifiedSigner other than the AK under its EK, where known', () => {
    const ek = new SoftEk();
    const child = new SoftTpm('ecc');
    child.extend('sha256', 7, 'secure-boot');
    const expectedSigner = akQualifiedNameUnderEk(ek.ekPublic, objectName(child.akPublic));
    const orphan = setup({}, child);
    expect(codeOf(orphan.req, { ...orphan.ctx, expectedSigner })).toBe('quote_signer_mismatch');
    // Not known (records from before): not checked.
    expect(codeOf(orphan.req, orphan.ctx)).toBe('ok');
    child.parentEk = ek.ekPublic;
    const under = setup({}, child);
    expect(codeOf(under.req, { ...under.ctx, expectedSigner })).toBe('ok');
    // Under another EK: another qualified name.
    child.parentEk = new SoftEk().ekPublic;
    const other = setup({}, child);
    expect(codeOf(other.req, { ...other.ctx, expectedSigner })).toBe('quote_signer_mismatch');
  });

  it('tpm_firmware_refused: below the minimum or in a refused range, a collected violation', () => {
    const fw = (firmware: unknown) =>
      parseReferencePolicy(
        {
          name: 'fw',
          catchAll: true,
          pcrs: {
            sha256: {
              '0': [tpm.value('sha256', 0).toString('hex')],
              '7': [tpm.value('sha256', 7).toString('hex')],
            },
          },
          firmware,
        },
        't',
      );
    const t = new SoftTpm('ecc');
    t.extend('sha256', 7, 'secure-boot');
    const verdicts = (firmwareVersion: bigint, p: ReturnType<typeof fw>) => {
      t.firmwareVersion = firmwareVersion;
      const { req, ctx } = setup({}, t);
      const facts = verifyParsedQuote(parseQuoteRequest(req), { ...ctx, policy: p });
      expect(facts.firmwareVersion).toBe(firmwareVersion);
      return facts.violations.map((v) => v.code);
    };
    const min = fw({ minimum: '0049001400000000' });
    expect(verdicts(0x0049_0004_0000_0000n, min)).toEqual(['tpm_firmware_refused']);
    expect(verdicts(0x0049_0014_0000_0000n, min)).toEqual([]);
    const ranges = fw({
      refuse: ['0049000400000001', { from: '000b000800000000', to: '000b00080045ffff' }],
    });
    expect(verdicts(0x0049_0004_0000_0001n, ranges)).toEqual(['tpm_firmware_refused']);
    expect(verdicts(0x0049_0004_0000_0002n, ranges)).toEqual([]);
    expect(verdicts(0x000b_0008_0032_0d62n, ranges)).toEqual(['tpm_firmware_refused']);
    expect(verdicts(0x000b_0008_0046_0000n, ranges)).toEqual([]);
  });

  it('tpm_clock_unsafe: safe flag clear', () => {
    const { req, ctx } = setup({ safe: false });
    expect(codeOf(req, ctx)).toBe('tpm_clock_unsafe');
  });

  it('tpm_reset_detected: reported, and a violation when the policy forbids resets', () => {
    const { req, ctx } = setup({ resetCount: 4, restartCount: 0 });
    const forbidden = verifyParsedQuote(parseQuoteRequest(req), ctx);
    expect(forbidden.resetDetected).toBe(true);
    expect(forbidden.violations.map((v) => v.code)).toEqual(['tpm_reset_detected']);
    const allowed = verifyParsedQuote(parseQuoteRequest(req), {
      ...ctx,
      policy: { ...policy, allowReset: true },
    });
    expect(allowed.resetDetected).toBe(true);
    expect(allowed.violations).toEqual([]);
  });

  it('checks in the fixed order: magic before signature before nonce', () => {
    const { req, ctx } = setup({ tamper: (a) => ({ ...a, magic: 0 }) });
    expect(
      codeOf(
        { ...req, signature: flipBase64(req.signature, 10) },
        { ...ctx, nonceStatus: 'reused' },
      ),
    ).toBe('quote_magic_invalid');
    const ok = setup();
    expect(
      codeOf(
        { ...ok.req, signature: flipBase64(ok.req.signature, 10) },
        { ...ok.ctx, nonceStatus: 'reused' },
      ),
    ).toBe('quote_signature_invalid');
  });

  it('parses a private copy: mutating the request afterwards changes nothing', () => {
    const { req, ctx } = setup();
    const mutable = { ...req, pcrs: { sha256: { ...req.pcrs.sha256 } } };
    const parsed = parseQuoteRequest(mutable);
    mutable.pcrs.sha256['7'] = '00'.repeat(32);
    expect(verifyParsedQuote(parsed, ctx).violations).toEqual([]);
    expect(unmarshalTpmsAttest(parsed.attestBytes).magic).toBe(parsed.attest.magic);
  });

  it('quote_malformed: bad base64, truncated structures, trailing bytes, bad PCR members', () => {
    const { req } = setup();
    const attest = Buffer.from(req.quote, 'base64');
    for (const bad of [
      { ...req, quote: 'not base64!' },
      { ...req, quote: attest.subarray(0, attest.length - 1).toString('base64') },
      { ...req, quote: Buffer.concat([attest, Buffer.alloc(1)]).toString('base64') },
      { ...req, signature: Buffer.from(req.signature, 'base64').subarray(0, 5).toString('base64') },
      { ...req, pcrs: { md5: { '0': '00' } } },
      { ...req, pcrs: { sha256: { '32': '00'.repeat(32) } } },
      { ...req, pcrs: { sha256: { '01': '00'.repeat(32) } } },
      { ...req, pcrs: { sha256: { '0': '00'.repeat(31) } } },
      { ...req, pcrs: [] as unknown as QuoteRequest['pcrs'] },
    ]) {
      expect(() => parseQuoteRequest(bad)).toThrow(
        expect.objectContaining({ code: 'quote_malformed' }),
      );
    }
  });
});

describe('fuzzing every field of the quote request', () => {
  const { req, ctx } = setup();
  const attest = Buffer.from(req.quote, 'base64');
  const signature = Buffer.from(req.signature, 'base64');

  function outcome(r: QuoteRequest): void {
    try {
      verifyParsedQuote(parseQuoteRequest(r), ctx);
    } catch (e) {
      // Only our own typed errors, never a crash or a generic exception.
      expect(e).toBeInstanceOf(GrantorError);
    }
  }

  const mutate = (base: Buffer) =>
    fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
        const b = Buffer.from(base);
        b[i] = (b[i] ?? 0) ^ x;
        return b;
      }),
      fc.nat(base.length).map((n) => base.subarray(0, n)),
      fc.uint8Array({ minLength: 1, maxLength: 8 }).map((t) => Buffer.concat([base, t])),
    );

  it('attest bytes', () => {
    fc.assert(
      fc.property(mutate(attest), (b) => {
        outcome({ ...req, quote: b.toString('base64') });
      }),
      { numRuns: 300 },
    );
  });

  it('signature bytes', () => {
    fc.assert(
      fc.property(mutate(signature), (b) => {
        outcome({ ...req, signature: b.toString('base64') });
      }),
      { numRuns: 300 },
    );
  });

  it('nonce and arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), (n, q, s) => {
        outcome({ ...req, nonce: n, quote: q, signature: s });
      }),
      { numRuns: 300 },
    );
  });

  it('PCR maps', () => {
    const pcrs = fc.dictionary(
      fc.oneof(fc.constantFrom('sha1', 'sha256', 'sha384'), fc.string()),
      fc.dictionary(
        fc.oneof(fc.nat(40).map(String), fc.string()),
        fc.oneof(
          fc.string(),
          fc.string({ unit: fc.constantFrom('0', '1', '9', 'a', 'f') }),
          fc.constant('00'.repeat(32)),
        ),
      ),
    );
    fc.assert(
      fc.property(pcrs, (p) => {
        outcome({ ...req, pcrs: p });
      }),
      { numRuns: 300 },
    );
  });
});
