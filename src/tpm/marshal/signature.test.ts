import { describe, expect, it } from 'vitest';
import {
  errorCode,
  expectParserContract,
  fixture,
  parseCode,
} from '../../../test/marshal/support.js';
import { TPM_ALG } from './constants.js';
import { marshalTpmtSignature, unmarshalTpmtSignature } from './signature.js';

const gcp = JSON.parse(fixture('gcp/windows_gcp_shielded_vm.json.raw').toString('utf8')) as {
  Quote: { Signature: string };
};

describe('TPMT_SIGNATURE', () => {
  it.each(['quote-ecc', 'quote-rsa', 'quote-rsapss', 'certify', 'nvcertify'])(
    '%s round-trips',
    (name) => {
      const bytes = fixture(`${name}.sig`);
      expect(marshalTpmtSignature(unmarshalTpmtSignature(bytes)).equals(bytes)).toBe(true);
    },
  );

  it('decodes ECDSA, RSASSA and RSAPSS', () => {
    const ecc = unmarshalTpmtSignature(fixture('quote-ecc.sig'));
    expect(ecc.sigAlg).toBe(TPM_ALG.ECDSA);
    expect(ecc.hash).toBe(TPM_ALG.SHA256);
    if (ecc.sigAlg !== TPM_ALG.ECDSA) return;
    expect(ecc.r.length).toBeLessThanOrEqual(32);
    const rsa = unmarshalTpmtSignature(fixture('quote-rsa.sig'));
    expect(rsa.sigAlg).toBe(TPM_ALG.RSASSA);
    expect(unmarshalTpmtSignature(fixture('quote-rsapss.sig')).sigAlg).toBe(TPM_ALG.RSAPSS);
    const g = unmarshalTpmtSignature(Buffer.from(gcp.Quote.Signature, 'base64'));
    expect(g.sigAlg).toBe(TPM_ALG.RSASSA);
    if (g.sigAlg === TPM_ALG.ECDSA) return;
    expect(g.sig.length).toBe(256);
  });

  it('refuses oversized r, s and RSA signatures', () => {
    const r = Buffer.from('0018000b0081' + '00'.repeat(129), 'hex');
    expect(parseCode(() => unmarshalTpmtSignature(r))).toBe('tpm_parse_oversized');
    const s = Buffer.from('0018000b0001010081' + '00'.repeat(129), 'hex');
    expect(parseCode(() => unmarshalTpmtSignature(s))).toBe('tpm_parse_oversized');
    const rsa = Buffer.from('0014000b0201' + '00'.repeat(513), 'hex');
    expect(parseCode(() => unmarshalTpmtSignature(rsa))).toBe('tpm_parse_oversized');
  });

  it.each([
    ['HMAC', '0005000b'],
    ['NULL', '0010'],
    ['ECDAA', '001a000b'],
    ['unknown hash', '00180006'],
    ['NULL hash', '00140010'],
  ])('refuses %s', (_name, hex) => {
    expect(parseCode(() => unmarshalTpmtSignature(Buffer.from(hex + '00000000', 'hex')))).toBe(
      'tpm_parse_invalid',
    );
  });

  it('refuses truncations and trailing bytes; arbitrary and mutated bytes give a value or its own error', () => {
    for (const n of ['quote-ecc', 'quote-rsa']) {
      expectParserContract(unmarshalTpmtSignature, marshalTpmtSignature, fixture(`${n}.sig`));
    }
  });
});

describe('TPMT_SIGNATURE marshal rejections', () => {
  it('refuses schemes and hashes it would not parse back', () => {
    const ecc = unmarshalTpmtSignature(fixture('quote-ecc.sig'));
    expect(
      errorCode(() => marshalTpmtSignature({ ...ecc, hash: 0x0006 as typeof TPM_ALG.SHA256 })),
    ).toBe('tpm_marshal_invalid');
    expect(
      errorCode(() =>
        marshalTpmtSignature({ ...ecc, sigAlg: TPM_ALG.HMAC } as unknown as typeof ecc),
      ),
    ).toBe('tpm_marshal_invalid');
    if (ecc.sigAlg !== TPM_ALG.ECDSA) throw new Error('fixture');
    expect(errorCode(() => marshalTpmtSignature({ ...ecc, r: Buffer.alloc(129) }))).toBe(
      'tpm_marshal_invalid',
    );
  });
});
